/* The connection's state, private to net/: conn.c (HTTP) and its WebSocket half share it.
 * Everything else uses the functions in conn.h. */
#ifndef SL_NET_CONN_INT_H
#define SL_NET_CONN_INT_H
#include "core/ctx.h"
#include "net/conn.h"

typedef enum sl_conn_state {
    SL_CONN_READING,  /* waiting for (more of) a request */
    SL_CONN_HANDLING, /* a request is being answered */
    SL_CONN_DRAINING, /* answered an unusable request: discard input, then close */
    SL_CONN_WS,       /* upgraded: WebSocket messages, each may start an exchange */
    SL_CONN_CLOSING,
} sl_conn_state_t;

struct sl_conn {
    uv_tcp_t tcp;
    uv_timer_t timer;             /* request-head deadline, keep-alive idle, lingering close */
    sl_ctx_t *x;                  /* borrowed: the thread outlives its connections */
    struct sl_conn *prev, *next;  /* the thread's list of connections (x->conns) */
    struct sl_conn *pending_next; /* the thread's flush list (x->pending) */
    bool pending;

    sl_conn_state_t state;
    sl_http_req_t req;
    sl_buf_t in;       /* owned; input received but not parsed yet (pipelining) */
    sl_buf_t out;      /* owned; output waiting for this turn's flush */
    sl_buf_t inflight; /* owned; output handed to uv_write, alive until its callback */
    uv_write_t wreq;
    bool writing;
    bool reading;
    bool need_input; /* a response ended: parse what is buffered at the next flush */
    bool in_held;    /* pipelined input waits: queued output passed high_water (conn.c) */

    /* response being written */
    bool head_sent;
    bool chunked;    /* body goes out in HTTP/1.1 chunks */
    bool chunk_open; /* out holds a chunk-size placeholder at chunk_at */
    size_t chunk_at;
    bool close_after; /* close once everything queued is written */
    bool sent_continue;
    size_t low_water, high_water;

    /* access log of the current request */
    double t_start;
    int status;
    size_t bytes_out;
    char rid[72];        /* request id: the client's X-Request-Id if sane, else generated */
    sl_buf_t log_extra;  /* owned; ",\"field\":value" pairs a handler adds to the log line */
    sl_buf_t head_extra; /* owned; "Name: v\r\n" lines a handler adds to this response's head */

    /* who the client is (http/client_ip): read on first use, so a request that needs neither
     * costs no syscall and no header parse */
    char tcp_peer[SL_IP_TEXT]; /* the socket's peer, once per connection ("" unknown) */
    bool tcp_peer_read;
    char client_ip[SL_IP_TEXT]; /* the current request's client (trusted_proxies) */
    bool client_known;          /* client_ip is this request's; cleared when one begins */
    bool ops;                   /* accepted on the metrics listener (observability.metrics) */

    const sl_conn_hooks_t *hooks; /* of the current request; NULL when none listens */
    void *hooks_ud;

    sl_ws_t *ws; /* owned; set once upgraded */
    const sl_ws_hooks_t *ws_hooks;
    void *ws_ud;        /* the WebSocket handler's; released through ws_hooks->closed */
    bool ws_busy;       /* an exchange is answering a message */
    int closes_pending; /* uv handles still to be closed before free */

    /* WebSocket keepalive and input flow control (conn.c, WebSocket section). In WS state
     * `timer` is the ping/idle tick, then the close wait; `in` holds input not yet fed. */
    uint64_t ws_rx_at;   /* loop time of the client's last whole frame, or an answer's end */
    uint64_t ws_ping_at; /* loop time of our last ping */
    bool ws_paused;      /* reading stopped: our queued replies passed high_water */
    bool ws_closing;     /* a close was sent or received: the close wait runs */
};

#endif
