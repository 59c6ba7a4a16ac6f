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

typedef struct sl_ctx sl_ctx_t;
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

/* Accepts a connection from one of the thread's listeners; ops: the metrics listener (routed
 * by x->ops_router). */
void sl_conn_accept(sl_ctx_t *x, uv_stream_t *listener, bool ops);
/* The context of the thread c lives on. */
sl_ctx_t *sl_conn_ctx(const sl_conn_t *c);

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
/* The same, from the error table (core/err.h): err gives the status and error.type; message
 * NULL = the table's. */
void sl_conn_respond_err(sl_conn_t *c, int err, const char *code, const char *param,
                         const char *message, const char *extra);
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
/* The request being answered (borrowed: valid until it ends). */
const sl_http_req_t *sl_conn_request(const sl_conn_t *c);
/* The current request's body, handed over: NUL-terminated, *len bytes, the caller's to sl_free;
 * the connection keeps none of it (an exchange holding the body for retries would otherwise
 * hold it twice for as long as it streams). */
char *sl_conn_take_body(sl_conn_t *c, size_t *len);
/* The current request's access-log line: a handler appends ",\"field\":value" pairs. */
sl_buf_t *sl_conn_log_extra(sl_conn_t *c);
/* Response-head lines ("Name: v\r\n") added to the current response (before its head). */
sl_buf_t *sl_conn_head_extra(sl_conn_t *c);
bool sl_conn_head_sent(const sl_conn_t *c);
/* Body bytes of the current response so far. */
size_t sl_conn_bytes_out(const sl_conn_t *c);
/* The current request's id (the client's X-Request-Id if sane, else generated). */
const char *sl_conn_request_id(const sl_conn_t *c);
/* Output high-water mark (stream_buffer): above it a producer should pause. */
size_t sl_conn_high_water(const sl_conn_t *c);
/* Output low-water mark: below it the drained hook runs. */
size_t sl_conn_low_water(const sl_conn_t *c);
/* True once upgraded to WebSocket; ws_busy: an exchange is answering a message. */
bool sl_conn_is_ws(const sl_conn_t *c);
bool sl_conn_ws_busy(const sl_conn_t *c);
/* Accepted on the metrics listener (observability.metrics.listen). */
bool sl_conn_is_ops(const sl_conn_t *c);

/* ---- the thread's set of connections (x->conns), driven by the worker ---- */

/* Once per loop turn: writes every connection with output waiting, parses pending input. */
void sl_conns_flush(sl_ctx_t *x);
/* Draining: closes every connection with nothing in flight. */
void sl_conns_close_idle(sl_ctx_t *x);
/* The drain time is over: every exchange still running ends now with its dialect's error. */
void sl_conns_cut(sl_ctx_t *x);
/* The loop stops: closes every connection (cancelling what is in flight). */
void sl_conns_close_all(sl_ctx_t *x);

#endif
