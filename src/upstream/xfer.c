/* The upstream transfer every HTTP provider runs on, independent of the transport that moves
 * its bytes (xfer_transport.h): deadlines, backpressure, SSE or whole-body reading, error
 * mapping, exactly one terminal event. */
#include "upstream/xfer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/alloc.h"
#include "core/log.h"
#include "upstream/upstream.h"
#include "upstream/xfer_transport.h"

#define MAX_ERROR_BODY ((size_t)64 * 1024)
#define MAX_JSON_BODY  ((size_t)64 * 1024 * 1024)
#define MAX_SSE_EVENT  ((size_t)16 * 1024 * 1024)

struct sl_xfer {
    const sl_xfer_transport_t *tp;
    void *t;                 /* owned: the transport's state; NULL once stopped */
    uv_timer_t timer;        /* connect, first_byte, then idle */
    sl_upstream_call_t call; /* copy; req and request_id are cleared after start */
    const sl_xfer_decoder_t *dec;
    void *ud;
    sl_buf_t body; /* error body, or the whole answer of a non-streaming call */
    sl_sse_parser_t sse;
    double started;   /* uv_now() at start, for the connect and first-byte deadlines */
    double last_data; /* uv_now() of the last bytes, for the idle deadline checked lazily */
    uint64_t connect_ms, first_byte_ms, idle_ms; /* copied: the config may go before we do */
    int status;
    int retry_after;
    bool stream;
    bool connected, got_body, paused, terminal, cancelled, finished;
    bool aborted; /* stop reading (an error came in the stream) */
};

static void free_xfer(uv_handle_t *h)
{
    sl_xfer_t *x = h->data;
    if (x->dec->free)
        x->dec->free(x->ud);
    sl_buf_dispose(&x->body);
    sl_sse_parser_dispose(&x->sse);
    sl_free(x);
}

/* Stops the transfer and releases everything; x is freed once the timer has closed. */
static void teardown(sl_xfer_t *x)
{
    if (x->t) {
        void *t = x->t;
        x->t = NULL; /* first: stopping may not come back here */
        x->tp->stop(t);
    }
    uv_timer_stop(&x->timer);
    if (!uv_is_closing((uv_handle_t *)&x->timer))
        uv_close((uv_handle_t *)&x->timer, free_xfer);
}

void sl_xfer_emit(sl_xfer_t *x, const sl_event_t *ev)
{
    if (x->terminal || x->cancelled)
        return;
    if (ev->type == SL_EV_END || ev->type == SL_EV_ERROR)
        x->terminal = true;
    if (ev->type == SL_EV_ERROR && x->got_body)
        x->aborted = true; /* an error inside the answer: read no further */
    x->call.sink.emit(x->call.sink.ud, ev);
}

void sl_xfer_emit_error(sl_xfer_t *x, int status, const char *type, const char *code,
                        const char *message)
{
    sl_event_t ev = {.type = SL_EV_ERROR};
    ev.error.status = status;
    ev.error.type = type;
    ev.error.code = code;
    ev.error.message = message;
    ev.error.retry_after = -1;
    sl_xfer_emit(x, &ev);
}

void sl_xfer_finished(sl_xfer_t *x)
{
    x->finished = true;
}

bool sl_xfer_is_terminal(const sl_xfer_t *x)
{
    return x->terminal;
}

const sl_upstream_call_t *sl_xfer_call(const sl_xfer_t *x)
{
    return &x->call;
}

/* ---- deadlines ---- */

static void on_deadline(uv_timer_t *t);

/* One timer serves every deadline: it is armed for the nearest one, and on_deadline finds out
 * which (if any) is due. */
static void arm(sl_xfer_t *x)
{
    double now = (double)uv_now(x->timer.loop), due = -1;
    if (x->got_body) {
        due = x->idle_ms ? x->last_data + (double)x->idle_ms : -1;
    } else {
        if (x->first_byte_ms)
            due = x->started + (double)x->first_byte_ms;
        if (!x->connected && x->connect_ms) {
            double c = x->started + (double)x->connect_ms;
            due = due < 0 || c < due ? c : due;
        }
    }
    if (due < 0 || x->paused) {
        uv_timer_stop(&x->timer);
        return;
    }
    uv_timer_start(&x->timer, on_deadline, due > now ? (uint64_t)(due - now) : 0, 0);
}

static void on_deadline(uv_timer_t *t)
{
    sl_xfer_t *x = t->data;
    double now = (double)uv_now(t->loop);
    if (x->got_body) {
        if (now - x->last_data + 1 < (double)x->idle_ms) {
            arm(x); /* data came since the timer was set: the idle clock restarted */
            return;
        }
        sl_xfer_emit_error(x, 504, "timeout_error", "upstream_idle_timeout",
                           "the upstream provider stopped sending mid-response (idle timeout)");
    } else if (!x->connected && x->connect_ms && now - x->started + 1 >= (double)x->connect_ms) {
        sl_xfer_emit_error(x, 504, "timeout_error", "upstream_connect_timeout",
                           "connecting to the upstream provider timed out");
    } else if (x->first_byte_ms && now - x->started + 1 >= (double)x->first_byte_ms) {
        sl_xfer_emit_error(x, 504, "timeout_error", "upstream_timeout",
                           "the upstream provider did not answer in time (first byte timeout)");
    } else {
        arm(x);
        return;
    }
    teardown(x);
}

/* ---- what the transport reports ---- */

static int on_sse_event(void *ud, const sl_sse_event_t *ev)
{
    sl_xfer_t *x = ud;
    int rc = x->dec->sse(x, x->ud, ev);
    return rc || x->terminal ? 1 : 0;
}

static void on_connected(sl_xfer_t *x)
{
    x->connected = true; /* the timer stays set: it fires at most once more, harmlessly */
}

static void on_status(sl_xfer_t *x, int status)
{
    x->status = status;
}

static void on_header(sl_xfer_t *x, const char *name, size_t nlen, const char *value, size_t vlen)
{
    if (nlen != 11 || strncasecmp(name, "retry-after", 11) != 0)
        return;
    char num[16];
    size_t n = vlen < sizeof num - 1 ? vlen : sizeof num - 1;
    memcpy(num, value, n);
    num[n] = '\0';
    char *end;
    long secs = strtol(num, &end, 10);
    if (end != num && secs >= 0 && secs < 86400)
        x->retry_after = (int)secs;
}

static void first_body_byte(sl_xfer_t *x)
{
    x->got_body = true;
    x->connected = true;
    arm(x);
}

/* An error answer is only read for its message: past the cap the rest is dropped unread. */
static int error_body(sl_xfer_t *x, const char *p, size_t len)
{
    if (x->body.len + len <= MAX_ERROR_BODY)
        sl_buf_append(&x->body, p, len);
    return SL_XFER_TAKEN;
}

/* A whole answer cut at the cap would reach the client as a different (or broken) answer:
 * past the cap the call fails instead, and the relay moves on as for a dropped upstream. */
static int whole_body(sl_xfer_t *x, const char *p, size_t len)
{
    if (len > MAX_JSON_BODY - x->body.len) {
        sl_xfer_emit_error(x, 502, "server_error", "upstream_too_large",
                           "upstream response too large (over 64 MiB)");
        return SL_XFER_STOP;
    }
    sl_buf_append(&x->body, p, len);
    return SL_XFER_TAKEN;
}

static int on_body(sl_xfer_t *x, const char *p, size_t len)
{
    if (x->cancelled || x->aborted)
        return SL_XFER_STOP;
    if (x->terminal) /* after the end marker read on: it keeps the connection reusable */
        return SL_XFER_TAKEN;
    x->last_data = (double)uv_now(x->timer.loop); /* the loop's cached clock: no syscall */
    if (!x->got_body)
        first_body_byte(x);
    if (x->status >= 400)
        return error_body(x, p, len);
    if (!x->stream)
        return whole_body(x, p, len);
    if (x->call.sink.congested(x->call.sink.ud)) {
        /* Backpressure: the transport keeps these bytes and hands them back after resume. */
        x->paused = true;
        uv_timer_stop(&x->timer);
        return SL_XFER_PAUSE;
    }
    if (sl_sse_parser_feed(&x->sse, p, len, on_sse_event, x) == SL_ETOOBIG)
        sl_xfer_emit_error(x, 502, "server_error", "upstream_bad_stream",
                           "the upstream sent an event larger than sluice accepts");
    return x->aborted ? SL_XFER_STOP : SL_XFER_TAKEN;
}

static void finish_ok(sl_xfer_t *x)
{
    const char *b = x->body.data ? x->body.data : "";
    if (x->status >= 400)
        x->dec->error(x, x->ud, x->status, b, x->body.len, x->retry_after);
    else if (!x->stream)
        x->dec->whole(x, x->ud, b, x->body.len);
    else if (x->dec->eof)
        x->dec->eof(x, x->ud);
    if (x->terminal)
        return;
    if (x->finished) {
        sl_event_t end = {.type = SL_EV_END}; /* finished, sent no end marker: still complete */
        sl_xfer_emit(x, &end);
    } else {
        sl_xfer_emit_error(x, 502, "server_error", "upstream_incomplete",
                           "the upstream stream ended before the answer finished");
    }
}

static void on_done(sl_xfer_t *x, sl_xfer_result_t res, const char *detail)
{
    if (x->terminal) {
        /* already told the client; nothing to add */
    } else if (res == SL_XFER_UNREACHABLE) {
        sl_xfer_emit_error(x, 502, "server_error", "upstream_unreachable",
                           "could not connect to the upstream provider");
    } else if (res == SL_XFER_CONNECT_TIMEOUT) {
        sl_xfer_emit_error(x, 504, "timeout_error", "upstream_connect_timeout",
                           "connecting to the upstream provider timed out");
    } else if (res != SL_XFER_OK) {
        sl_log(SL_LOG_WARN, "upstream transfer failed (%s): %s", x->tp->name,
               detail ? detail : "disconnected");
        sl_xfer_emit_error(x, 502, "server_error", "upstream_disconnected",
                           "the upstream provider closed the connection before finishing");
    } else {
        finish_ok(x);
    }
    teardown(x);
}

/* ---- start, cancel, resume ---- */

/* SLUICE_UPSTREAM_CLIENT=curl keeps every upstream on libcurl (the built-in client is used only
 * for the plain http:// URLs it can take: see h1.h). */
static const sl_xfer_transport_t *const transports[] = {&sl_xfer_h1, &sl_xfer_curl};

/* What the transports report to (xfer_transport.h). */
static const sl_xfer_sink_t sink = {
    .connected = on_connected,
    .status = on_status,
    .header = on_header,
    .body = on_body,
    .done = on_done,
};

static int start_transport(sl_xfer_t *x, const sl_upstream_call_t *call, sl_xfer_req_t *req)
{
    sl_xfer_wire_t w = {
        .url = req->url,
        .headers = req->headers,
        .body = req->body,
        .connect_ms = call->cfg->connect_ms,
        .loop = call->loop,
        .multi = call->upstream->multi,
        .h1 = call->upstream->h1,
        .sink = &sink,
    };
    int rc = SL_EAGAIN;
    for (size_t i = 0; rc == SL_EAGAIN && i < sizeof transports / sizeof *transports; i++) {
        x->tp = transports[i];
        rc = x->tp->start(x, &w, &x->t);
    }
    if (rc == 0) { /* taken */
        sl_headers_init(&req->headers);
        sl_buf_init(&req->body);
    }
    return rc;
}

int sl_xfer_start(const sl_upstream_call_t *call, sl_xfer_req_t *req, const sl_xfer_decoder_t *dec,
                  void *ud, sl_xfer_t **out)
{
    sl_headers_omit(&req->headers, "Expect"); /* no 100-continue round trip */
    int rc = sl_headers_add(&req->headers, "X-Request-Id", call->request_id);
    if (rc != 0)
        return rc;
    sl_xfer_t *x = sl_calloc(1, sizeof *x);
    x->call = *call;
    x->call.req = NULL; /* valid during start only */
    x->call.request_id = NULL;
    /* The exchange's config may be released before the transfer is: keep no pointer into it. */
    x->call.cfg = NULL;
    x->call.provider = NULL;
    x->call.target = NULL;
    x->first_byte_ms = call->cfg->first_byte_ms;
    x->idle_ms = call->cfg->idle_ms;
    x->dec = dec;
    x->stream = req->stream;
    x->retry_after = -1;
    sl_sse_parser_init(&x->sse, MAX_SSE_EVENT);
    uv_timer_init(call->loop, &x->timer);
    x->timer.data = x;
    x->started = (double)uv_now(call->loop);
    if (start_transport(x, call, req) != 0) {
        static const sl_xfer_decoder_t none = {0};
        x->dec = &none; /* ud stays the caller's */
        x->cancelled = true;
        teardown(x);
        return SL_EINTERNAL;
    }
    x->ud = ud;
    if (x->tp->core_connect_deadline)
        x->connect_ms = call->cfg->connect_ms;
    arm(x);
    *out = x;
    return 0;
}

void sl_xfer_cancel(void *xfer)
{
    sl_xfer_t *x = xfer;
    x->cancelled = true;
    teardown(x);
}

void sl_xfer_resume(void *xfer)
{
    sl_xfer_t *x = xfer;
    if (!x->paused || !x->t)
        return;
    x->paused = false;
    x->last_data = (double)uv_now(x->timer.loop);
    arm(x);
    /* May call on_body right here with the bytes the transport held back. */
    x->tp->resume(x->t);
}
