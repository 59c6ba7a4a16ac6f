/* The connection's state, private to net/, and the few functions its files call across:
 * conn.c (its life: accept, read, parse, flush, close), conn_response.c (the response writer),
 * conn_ws.c (the WebSocket half), conn_state.c (the state machine), conn_peer.c (who the
 * client is). Calls go one way, conn_ws → conn → conn_response → conn_state/conn_peer; the
 * HTTP side reaches the WebSocket half only through ws_ops. Everything else uses conn.h. */
#ifndef SL_NET_CONN_INT_H
#define SL_NET_CONN_INT_H
#include "core/closer.h"
#include "core/ctx.h"
#include "net/conn.h"

typedef enum sl_conn_state {
    SL_CONN_READING,  /* waiting for (more of) a request */
    SL_CONN_HANDLING, /* a request is being answered */
    SL_CONN_DRAINING, /* answered an unusable request: discard input, then close */
    SL_CONN_WS,       /* upgraded: WebSocket messages, each may start an exchange */
    SL_CONN_CLOSING,  /* terminal: the handles are closing, memory goes in their callback */
} sl_conn_state_t;

/* The WebSocket half's entry points (conn_ws.c), installed with c->ws by sl_conn_ws_upgrade:
 * conn.c and conn_response.c reach that half only through them, so no call goes back from the
 * HTTP side into conn_ws.c. */
typedef struct sl_conn_ws_ops {
    /* Client bytes, as read or as left behind the handshake in the upgrade's read. */
    void (*input)(sl_conn_t *c, const char *p, size_t n);
    /* Output went out (conn.c after_output): input held back may be fed again. */
    void (*output_drained)(sl_conn_t *c);
    /* sl_conn_end on an upgraded connection: the exchange answering a message is over. */
    void (*end)(sl_conn_t *c, bool close);
} sl_conn_ws_ops_t;

struct sl_conn {
    uv_tcp_t tcp;
    uv_timer_t timer;             /* request-head deadline, keep-alive idle, lingering close */
    sl_ctx_t *x;                  /* borrowed: the thread outlives its connections */
    uint64_t id;                  /* the connection's number on its thread (debug log) */
    struct sl_conn *prev, *next;  /* the thread's list of connections (x->conns) */
    struct sl_conn *pending_next; /* the thread's flush list (x->pending) */
    bool pending;

    sl_conn_state_t state; /* changed only by conn_set_state */
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

    sl_ws_t *ws;                    /* owned; set once upgraded */
    const sl_conn_ws_ops_t *ws_ops; /* borrowed (static in conn_ws.c); set with ws */
    const sl_ws_hooks_t *ws_hooks;
    void *ws_ud;        /* the WebSocket handler's; released through ws_hooks->closed */
    bool ws_busy;       /* an exchange is answering a message */
    sl_closer_t closer; /* frees c once tcp and timer have closed */

    /* WebSocket keepalive and input flow control (conn_ws.c). In WS state `timer` is the
     * ping/idle tick, then the close wait; `in` holds input not yet fed. */
    uint64_t ws_rx_at;   /* loop time of the client's last whole frame, or an answer's end */
    uint64_t ws_ping_at; /* loop time of our last ping */
    bool ws_paused;      /* reading stopped: our queued replies passed high_water */
    bool ws_closing;     /* a close was sent or received: the close wait runs */
};

/* ---- called across the files of net/ (defined in conn.c unless said otherwise) ---- */

/* conn_state.c: moves c to state `to`, asserting the edge is one the connection may take; why
 * goes to the debug log line "conn <worker>.<id>: OLD → NEW (why)". */
void conn_set_state(sl_conn_t *c, sl_conn_state_t to, const char *why);
/* conn_response.c: puts c on this turn's flush list (once). */
void conn_schedule(sl_conn_t *c);
/* (Re)starts c's one timer: cb after ms, or no timer when ms is 0. */
void conn_arm_timer(sl_conn_t *c, uint64_t ms, uv_timer_cb cb);
/* Starts or stops reading the socket (nothing once closing). */
void conn_set_reading(sl_conn_t *c, bool on);
/* Gives the current request (or WebSocket exchange) its id: the client's if sane, else ours. */
void conn_new_request_id(sl_conn_t *c);
/* conn_response.c: patches the open chunk's size in place, or drops an empty placeholder. */
void conn_close_chunk(sl_conn_t *c);
/* conn_response.c: answers a CORS preflight and returns true, or returns false if not one. */
bool conn_preflight(sl_conn_t *c);
/* conn_response.c: the response is over: its access-log line and metrics, then the
 * per-response fields reset for the next one. */
void conn_finish_request(sl_conn_t *c);

#endif
