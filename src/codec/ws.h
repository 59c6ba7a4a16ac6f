/* WebSocket (RFC 6455) server side, as a pure codec over wslay's event API: bytes in through
 * sl_ws_feed, frames out appended to a caller's buffer, complete text messages out through a
 * callback. Handles ping/pong, fragmentation, masking, the close handshake, a message size
 * limit and protocol errors (with the right close codes). No I/O: the connection owns the
 * socket. */
#ifndef SL_CODEC_WS_H
#define SL_CODEC_WS_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/err.h"

typedef struct sl_ws sl_ws_t;

typedef struct sl_ws_callbacks {
    /* One complete text message (reassembled from fragments, UTF-8 validated by wslay). */
    void (*on_text)(void *ud, const char *msg, size_t len);
    /* The peer sent a close frame (code 1005 when it gave none); our reply is already queued. */
    void (*on_close)(void *ud, uint16_t code);
    /* A frame arrived whole (text, continuation, ping, pong or close): the peer is alive.
     * May be NULL. */
    void (*on_frame)(void *ud);
} sl_ws_callbacks_t;

/* The Sec-WebSocket-Accept value for a client's Sec-WebSocket-Key (base64 of SHA-1 of key +
 * the RFC's GUID): 28 characters + NUL. SL_EINVAL if the key is not 16 bytes of base64. */
SL_MUST_CHECK int sl_ws_accept_key(const char *client_key, char out[29]);

/* out is borrowed: frames to send are appended to it; it must outlive the session. */
sl_ws_t *sl_ws_new(size_t max_message, const sl_ws_callbacks_t *cb, void *ud, sl_buf_t *out);
void sl_ws_free(sl_ws_t *ws); /* NULL is a no-op */
/* Processes received bytes: delivers messages, queues pongs and close replies. Returns 0, or
 * SL_EINVAL on a protocol violation (a close frame with 1002/1007/1009 is already queued). */
SL_MUST_CHECK int sl_ws_feed(sl_ws_t *ws, const char *p, size_t n);
/* Queues one text message (unfragmented, unmasked as a server must send). */
void sl_ws_send_text(sl_ws_t *ws, const char *p, size_t n);
/* Queues an empty ping; the peer's pong arrives as a frame (on_frame). Dropped once a close is
 * queued or sent. */
void sl_ws_ping(sl_ws_t *ws);
/* Starts the close handshake with code and reason. */
void sl_ws_close(sl_ws_t *ws, uint16_t code, const char *reason);
/* True once a close frame was both sent and received (or the session failed): the connection
 * can be closed after flushing. */
bool sl_ws_done(const sl_ws_t *ws);
/* False once nothing more is read: the peer's close arrived, or the session failed. */
bool sl_ws_reading(const sl_ws_t *ws);

#endif
