/* One upstream HTTP POST (on libcurl or the built-in HTTP/1.1 client: xfer_transport.h), with
 * what every HTTP provider needs: connect, first-byte and idle deadlines (no total one),
 * backpressure (the transport stops reading until the client catches up), SSE framing of
 * streamed answers, a bounded whole body otherwise, error bodies with Retry-After, cancellation
 * that closes the upstream connection at once, and exactly one terminal event. A provider
 * supplies the request and a decoder for its wire format; the decoder turns it into canonical
 * events with sl_xfer_emit. */
#ifndef SL_UPSTREAM_XFER_H
#define SL_UPSTREAM_XFER_H
#include <stdbool.h>

#include "codec/sse.h"
#include "core/buf.h"
#include "upstream/headers.h"
#include "upstream/provider.h"

typedef struct sl_xfer sl_xfer_t;

typedef struct sl_xfer_decoder {
    /* One SSE event of a 2xx streamed answer. Return nonzero to stop reading (e.g. after a
     * terminal event). */
    int (*sse)(sl_xfer_t *x, void *ud, const sl_sse_event_t *ev);
    /* The whole body of a 2xx answer to a non-streaming request: emit through to END. */
    void (*whole)(sl_xfer_t *x, void *ud, const char *body, size_t len);
    /* An answer with status >= 400: emit one ERROR (status kept, retry_after seconds or -1). */
    void (*error)(sl_xfer_t *x, void *ud, int status, const char *body, size_t len,
                  int retry_after);
    /* A streamed answer ended cleanly without a terminal event: END when the answer finished
     * (finished = the decoder saw its end marker), else an error. May be NULL (then: END if
     * finished, else a 502 "ended before the answer finished"). */
    void (*eof)(sl_xfer_t *x, void *ud);
    void (*free)(void *ud); /* releases ud; may be NULL */
} sl_xfer_decoder_t;

typedef struct sl_xfer_req {
    const char *url;
    sl_headers_t headers; /* moved to the transfer on success; still the caller's on failure */
    sl_buf_t body;        /* moved to the transfer on success; still the caller's on failure */
    bool stream;          /* the answer is SSE */
} sl_xfer_req_t;

/* Starts the call, adding X-Request-Id (and omitting curl's Expect) to req->headers. On success
 * *out is the transfer (the provider's state for cancel/resume); req's headers and body were
 * moved into it (req holds empty ones) and ud belongs to it from then on (dec->free). On failure
 * nothing runs and req's headers, body and ud are still the caller's to dispose. */
SL_MUST_CHECK int sl_xfer_start(const sl_upstream_call_t *call, sl_xfer_req_t *req,
                                const sl_xfer_decoder_t *dec, void *ud, sl_xfer_t **out);
/* For decoders: delivers an event (ignored after a terminal one or a cancel). */
void sl_xfer_emit(sl_xfer_t *x, const sl_event_t *ev);
void sl_xfer_emit_error(sl_xfer_t *x, int status, const char *type, const char *code,
                        const char *message);
/* The decoder saw the answer's end marker (finish_reason, message_stop...). */
void sl_xfer_finished(sl_xfer_t *x);
bool sl_xfer_is_terminal(const sl_xfer_t *x);
/* The call's options as the provider was started with them: loop, multi, sink, want_raw and
 * force_non_stream (cfg, provider, target, req and request_id were valid during start only
 * and are NULL here). */
const sl_upstream_call_t *sl_xfer_call(const sl_xfer_t *x);

/* Provider ops on top of a transfer. */
void sl_xfer_cancel(void *xfer);
void sl_xfer_resume(void *xfer);

#endif
