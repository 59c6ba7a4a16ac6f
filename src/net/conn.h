/* A client connection: reads requests one at a time (pipelined ones wait their turn), writes
 * responses through one output buffer flushed once per loop turn (DESIGN §3.2), and tells the
 * request's handler when the client goes away (§3.4) or when queued output drained (§3.3). */
#ifndef SL_NET_CONN_H
#define SL_NET_CONN_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "core/buf.h"
#include "http/client_ip.h"
#include "http/request.h"

typedef struct sl_worker sl_worker_t;
typedef struct sl_ws sl_ws_t;
typedef struct sl_conn sl_conn_t;

/* Larger WebSocket messages are refused with close code 1009. */
#define SL_WS_MAX_MESSAGE ((size_t)64 * 1024)

/* What the handler of a WebSocket connection hears (after sl_conn_ws_upgrade). */
typedef struct sl_ws_hooks {
    /* One complete text message from the client. */
    void (*message)(sl_conn_t *c, void *ud, const char *msg, size_t len);
    /* The connection is going away: release ud. No call follows. */
    void (*closed)(void *ud);
} sl_ws_hooks_t;

/* What the handler of the current request hears from its connection. */
typedef struct sl_conn_hooks {
    /* The client went away before the response ended; the handler must stop at once and not
     * touch the connection again. */
    void (*gone)(void *ud);
    /* Queued output fell below the low-water mark. */
    void (*drained)(void *ud);
    /* The server stops (the drain time is over): end the response now, with the dialect's
     * error, cancelling what is in flight. May be NULL (then the connection is just closed). */
    void (*cut)(void *ud);
} sl_conn_hooks_t;

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
    sl_worker_t *w;               /* borrowed: the worker outlives its connections */
    struct sl_conn *prev, *next;  /* worker's list of connections */
    struct sl_conn *pending_next; /* worker's flush list */
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

/* Accepts a connection from the worker's listener. */
void sl_conn_accept(sl_worker_t *w, uv_stream_t *listener);

void sl_conn_set_hooks(sl_conn_t *c, const sl_conn_hooks_t *hooks, void *ud);

/* Response head. extra is a block of "Name: value\r\n" lines (or NULL). content_length < 0
 * means a streamed body (chunked on HTTP/1.1, close-delimited on HTTP/1.0). */
void sl_conn_head(sl_conn_t *c, int status, const char *content_type, long content_length,
                  const char *extra);
/* Body bytes; copied. */
void sl_conn_body(sl_conn_t *c, const void *p, size_t n);
/* Ends the response; the next pipelined request is read after this turn's flush. close=true
 * closes the connection once the bytes are out. */
void sl_conn_end(sl_conn_t *c, bool close);
/* Shutdown past the drain time: the current exchange, if any, ends with an error now (hooks
 * cut); the connection closes once that is written. */
void sl_conn_cut(sl_conn_t *c);
/* A complete response in one call. */
void sl_conn_respond(sl_conn_t *c, int status, const char *content_type, const char *body,
                     size_t len, const char *extra);
/* An OpenAI-shaped error response: {"error":{"message","type","param","code"}}. */
void sl_conn_respond_error(sl_conn_t *c, int status, const char *type, const char *code,
                           const char *param, const char *message, const char *extra);
/* Switches the current request's connection to WebSocket (RFC 6455 handshake). Answers 400
 * itself and returns false when the request is not a valid upgrade. */
bool sl_conn_ws_upgrade(sl_conn_t *c, const sl_ws_hooks_t *hooks, void *ud);
/* Starts an exchange for one WebSocket message (request id, access log, hooks). On a
 * WebSocket connection sl_conn_body sends one text message, and sl_conn_end ends the exchange
 * (close=true closes the socket with 1011). */
void sl_conn_ws_begin(sl_conn_t *c);
/* Sends one text message outside any exchange (e.g. an error reply). */
void sl_conn_ws_send(sl_conn_t *c, const char *msg, size_t len);
/* Starts the closing handshake; the connection closes once it completes. */
void sl_conn_ws_close(sl_conn_t *c, uint16_t code, const char *reason);
/* The client's IP address as text ("" when unknown): the address a trusted proxy forwarded
 * (trusted_proxies) or else the TCP peer; worked out once per request. */
void sl_conn_peer(sl_conn_t *c, char *out, size_t cap);
/* The same, borrowed: valid until the next request on c begins. */
const char *sl_conn_client_ip(sl_conn_t *c);
/* The TCP peer's address, whatever the headers say ("" when unknown); read once per
 * connection. Borrowed: lives as long as c. */
const char *sl_conn_tcp_peer(sl_conn_t *c);
/* Bytes queued and not yet written to the socket. */
size_t sl_conn_queued(const sl_conn_t *c);
/* Closes the connection (idempotent); the handler's gone hook runs if a request is active. */
void sl_conn_close(sl_conn_t *c);
/* Called by the worker's flush pass. */
void sl_conn_flush(sl_conn_t *c);

#endif
