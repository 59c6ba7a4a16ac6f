/* The seam between an upstream transfer's logic (xfer.c: deadlines, SSE framing, body caps,
 * error mapping, the one terminal event) and the transport that moves its bytes: libcurl on the
 * worker's multi (xfer_curl.c) or the built-in HTTP/1.1 client for plain http:// upstreams
 * (h1.c). Both feed the transfer the same way: status, header lines, body bytes (the transfer
 * answers taken / pause / stop), then exactly one done. */
#ifndef SL_UPSTREAM_XFER_TRANSPORT_H
#define SL_UPSTREAM_XFER_TRANSPORT_H
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "core/buf.h"
#include "core/err.h"
#include "upstream/headers.h"

typedef struct sl_xfer sl_xfer_t;
typedef struct sl_multi sl_multi_t;
typedef struct sl_h1_pool sl_h1_pool_t;

/* How a transfer ended, as far as the wire is concerned. */
typedef enum sl_xfer_result {
    SL_XFER_OK,              /* a complete response arrived */
    SL_XFER_UNREACHABLE,     /* no connection: refused, unreachable, name not found */
    SL_XFER_CONNECT_TIMEOUT, /* connecting took longer than connect_ms */
    SL_XFER_DISCONNECTED,    /* the connection failed or the response was cut or malformed */
} sl_xfer_result_t;

/* sl_xfer_on_body's answer. */
enum {
    SL_XFER_TAKEN = 0, /* every byte was consumed */
    SL_XFER_PAUSE = 1, /* none was: keep them, stop reading, hand them over again on resume */
    SL_XFER_STOP = 2,  /* none was: read no further (the transfer ends with done) */
};

/* Transport → transfer: what a transport reports, through the wire's sink (so a transport
 * never calls up into xfer.c by name). Status comes before any body byte and before
 * done(SL_XFER_OK). */
typedef struct sl_xfer_sink {
    void (*connected)(sl_xfer_t *x);
    void (*status)(sl_xfer_t *x, int status);
    void (*header)(sl_xfer_t *x, const char *name, size_t nlen, const char *value, size_t vlen);
    /* SL_XFER_TAKEN, _PAUSE or _STOP. */
    int (*body)(sl_xfer_t *x, const char *p, size_t len);
    /* The last call: the transfer reports what it must and stops the transport (state is freed
     * before this returns, so the caller touches it no more). detail is logged on failures. */
    void (*done)(sl_xfer_t *x, sl_xfer_result_t res, const char *detail);
} sl_xfer_sink_t;

/* What a transport is asked to send. */
typedef struct sl_xfer_wire {
    const char *url;            /* borrowed: valid during start only */
    sl_headers_t headers;       /* moved to the transport on success (headers.h: send and omit) */
    sl_buf_t body;              /* moved to the transport on success */
    uint64_t connect_ms;        /* 0 = none */
    uv_loop_t *loop;            /* borrowed: the worker's */
    sl_multi_t *multi;          /* borrowed: the worker's curl multi (xfer_curl) */
    sl_h1_pool_t *h1;           /* borrowed: the worker's built-in client pool (h1) */
    const sl_xfer_sink_t *sink; /* borrowed (static): where the transport reports to */
} sl_xfer_wire_t;

typedef struct sl_xfer_transport {
    const char *name;
    /* True when the transfer enforces connect_ms itself and hears sink->connected (curl
     * has its own connect timeout). */
    bool core_connect_deadline;
    /* Starts sending. Never calls back into x from inside start except sink->connected.
     * SL_EAGAIN: this transport does not take this URL (nothing was taken). */
    SL_MUST_CHECK int (*start)(sl_xfer_t *x, sl_xfer_wire_t *w, void **state);
    /* Ends the transfer now (no callback after this) and frees state; a connection that is
     * not at a clean end of a response is closed, never reused. */
    void (*stop)(void *state);
    /* Reading may go on after SL_XFER_PAUSE; may call sink->body (and done) at once. */
    void (*resume)(void *state);
} sl_xfer_transport_t;

extern const sl_xfer_transport_t sl_xfer_curl;
extern const sl_xfer_transport_t sl_xfer_h1;

#endif
