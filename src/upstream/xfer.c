/* The upstream transfer every HTTP provider runs on, independent of the transport that moves
 * its bytes (xfer_transport.h): deadlines, backpressure, SSE or whole-body reading, error
 * mapping, exactly one terminal event. */
#include "upstream/xfer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <inttypes.h>

#include "core/alloc.h"
#include "core/closer.h"
#include "core/fsm.h"
#include "core/log.h"
#include "upstream/upstream.h"
#include "upstream/xfer_transport.h"

#define MAX_ERROR_BODY ((size_t)64 * 1024)
#define MAX_JSON_BODY  ((size_t)64 * 1024 * 1024)
#define MAX_SSE_EVENT  ((size_t)16 * 1024 * 1024)

/* A transfer's lifecycle. Until the first body byte the connect and first-byte deadlines run,
 * from then the idle one (none while PAUSED). ENDED and FAILED mean the one terminal event went
 * out; the transport may still be running until done or a deadline tears it down. */
typedef enum xfer_state {
    /* Started; the transport has not said it is connected (curl never does, it times its own
     * connect: there this lasts until the first body byte). */
    XFER_CONNECTING,
    XFER_WAITING,   /* connected, no body byte yet: status and headers may come */
    XFER_RECEIVING, /* body bytes are coming */
    XFER_PAUSED,    /* backpressure: the transport holds the bytes until resume */
    /* END went out, or an error before the body: later bytes are read and dropped (reading to
     * the answer's end keeps the connection reusable). */
    XFER_ENDED,
    XFER_FAILED,    /* an error went out mid-answer: read no further */
    XFER_CLOSED,    /* torn down after the terminal event: freed once the timer has closed */
    XFER_CANCELLED, /* torn down by the owner (or no transport started) before any terminal event */
    XFER_NSTATES
} xfer_state_t;

struct sl_xfer {
    const sl_xfer_transport_t *tp;
    void *t;                 /* owned: the transport's state; NULL once stopped */
    uv_timer_t timer;        /* connect, first_byte, then idle */
    sl_closer_t closer;      /* frees x once the timer has closed */
    sl_upstream_call_t call; /* copy; req and request_id are cleared after start */
    const sl_xfer_decoder_t *dec;
    void *ud;
    sl_buf_t body; /* error body, or the whole answer of a non-streaming call */
    sl_sse_parser_t sse;
    double started;   /* uv_now() at start, for the connect and first-byte deadlines */
    double last_data; /* uv_now() of the last bytes, for the idle deadline checked lazily */
    uint64_t connect_ms, first_byte_ms, idle_ms; /* copied: the config may go before we do */
    uint64_t id;                                 /* per worker thread: names x in debug lines */
    int status;
    int retry_after;
    xfer_state_t state;
    bool stream;
    bool finished; /* the decoder saw the answer's end marker */
};

/* ---- the lifecycle ---- */

#define TO(s) SL_FSM_TO(XFER_##s)
/* Any live state may be cancelled (the client left, a cut) or end with an event. An error
 * fails a transfer whose body began (ENDED: none had). CLOSED only follows a terminal event. */
static const uint32_t edges[XFER_NSTATES] = {
    /* curl says nothing before the first body byte: RECEIVING straight from CONNECTING. */
    [XFER_CONNECTING] = TO(WAITING) | TO(RECEIVING) | TO(ENDED) | TO(CANCELLED),
    [XFER_WAITING] = TO(RECEIVING) | TO(ENDED) | TO(CANCELLED),
    [XFER_RECEIVING] = TO(PAUSED) | TO(ENDED) | TO(FAILED) | TO(CANCELLED),
    /* A transport's done can come while paused (the worker stops). */
    [XFER_PAUSED] = TO(RECEIVING) | TO(ENDED) | TO(FAILED) | TO(CANCELLED),
    [XFER_ENDED] = TO(CLOSED),
    [XFER_FAILED] = TO(CLOSED),
    [XFER_CLOSED] = 0,
    [XFER_CANCELLED] = 0,
};
static const char *const names[XFER_NSTATES] = {
    [XFER_CONNECTING] = "CONNECTING", [XFER_WAITING] = "WAITING",
    [XFER_RECEIVING] = "RECEIVING",   [XFER_PAUSED] = "PAUSED",
    [XFER_ENDED] = "ENDED",           [XFER_FAILED] = "FAILED",
    [XFER_CLOSED] = "CLOSED",         [XFER_CANCELLED] = "CANCELLED",
};
static const sl_fsm_t xfer_fsm = {"xfer", names, edges, XFER_NSTATES};

static void xfer_set_state(sl_xfer_t *x, xfer_state_t to, const char *why)
{
    char id[24] = "";
    if (sl_fsm_speaks(&xfer_fsm, x->state, to))
        snprintf(id, sizeof id, "%" PRIu64, x->id);
    x->state = (xfer_state_t)sl_fsm_step(&xfer_fsm, x->state, to, id, why);
}

/* The terminal event went out (CLOSED: and x was torn down after it). */
static bool told(const sl_xfer_t *x)
{
    return x->state == XFER_ENDED || x->state == XFER_FAILED || x->state == XFER_CLOSED;
}

static bool torn_down(const sl_xfer_t *x)
{
    return x->state == XFER_CLOSED || x->state == XFER_CANCELLED;
}

/* Body bytes came (the idle deadline runs, an error fails the answer). */
static bool got_body(const sl_xfer_t *x)
{
    return x->state == XFER_RECEIVING || x->state == XFER_PAUSED || x->state == XFER_ENDED ||
           x->state == XFER_FAILED;
}

static void free_xfer(void *owner)
{
    sl_xfer_t *x = owner;
    if (x->dec->free)
        x->dec->free(x->ud);
    sl_buf_dispose(&x->body);
    sl_sse_parser_dispose(&x->sse);
    sl_free(x);
}

/* Stops the transfer and releases everything; x is freed once the timer has closed. A second
 * call (from inside an emit) finds it torn down already. */
static void teardown(sl_xfer_t *x, xfer_state_t to, const char *why)
{
    if (torn_down(x))
        return;
    xfer_set_state(x, to, why);
    if (x->t) {
        void *t = x->t;
        x->t = NULL; /* first: stopping may not come back here */
        x->tp->stop(t);
    }
    uv_timer_stop(&x->timer);
    sl_closer_close(&x->closer, (uv_handle_t *)&x->timer);
    sl_closer_finish(&x->closer);
}

void sl_xfer_emit(sl_xfer_t *x, const sl_event_t *ev)
{
    if (told(x) || torn_down(x))
        return;
    if (ev->type == SL_EV_END)
        xfer_set_state(x, XFER_ENDED, "end");
    else if (ev->type == SL_EV_ERROR) /* inside the answer: read no further */
        xfer_set_state(x, got_body(x) ? XFER_FAILED : XFER_ENDED,
                       ev->error.code ? ev->error.code : "error");
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
    return told(x);
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
    if (got_body(x)) {
        due = x->idle_ms ? x->last_data + (double)x->idle_ms : -1;
    } else {
        if (x->first_byte_ms)
            due = x->started + (double)x->first_byte_ms;
        if (x->state == XFER_CONNECTING && x->connect_ms) {
            double c = x->started + (double)x->connect_ms;
            due = due < 0 || c < due ? c : due;
        }
    }
    if (due < 0 || x->state == XFER_PAUSED) {
        uv_timer_stop(&x->timer);
        return;
    }
    uv_timer_start(&x->timer, on_deadline, due > now ? (uint64_t)(due - now) : 0, 0);
}

static void on_deadline(uv_timer_t *t)
{
    sl_xfer_t *x = t->data;
    double now = (double)uv_now(t->loop);
    if (got_body(x)) {
        if (now - x->last_data + 1 < (double)x->idle_ms) {
            arm(x); /* data came since the timer was set: the idle clock restarted */
            return;
        }
        sl_xfer_emit_error(x, 504, "timeout_error", "upstream_idle_timeout",
                           "the upstream provider stopped sending mid-response (idle timeout)");
    } else if (x->state == XFER_CONNECTING && x->connect_ms &&
               now - x->started + 1 >= (double)x->connect_ms) {
        sl_xfer_emit_error(x, 504, "timeout_error", "upstream_connect_timeout",
                           "connecting to the upstream provider timed out");
    } else if (x->first_byte_ms && now - x->started + 1 >= (double)x->first_byte_ms) {
        sl_xfer_emit_error(x, 504, "timeout_error", "upstream_timeout",
                           "the upstream provider did not answer in time (first byte timeout)");
    } else {
        arm(x);
        return;
    }
    teardown(x, XFER_CLOSED, "deadline");
}

/* ---- what the transport reports ---- */

static int on_sse_event(void *ud, const sl_sse_event_t *ev)
{
    sl_xfer_t *x = ud;
    int rc = x->dec->sse(x, x->ud, ev);
    return rc || told(x) ? 1 : 0;
}

static void on_connected(sl_xfer_t *x)
{
    /* Once: a retry on a fresh connection says it again. The timer stays set: it fires at most
     * once more, harmlessly. */
    if (x->state == XFER_CONNECTING)
        xfer_set_state(x, XFER_WAITING, "connected");
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
    xfer_set_state(x, XFER_RECEIVING, "first body byte"); /* connected too, then */
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
    if (x->state == XFER_FAILED || torn_down(x))
        return SL_XFER_STOP;
    if (x->state == XFER_ENDED) /* after the end marker read on: it keeps the connection reusable */
        return SL_XFER_TAKEN;
    x->last_data = (double)uv_now(x->timer.loop); /* the loop's cached clock: no syscall */
    if (!got_body(x))
        first_body_byte(x);
    if (x->status >= 400)
        return error_body(x, p, len);
    if (!x->stream)
        return whole_body(x, p, len);
    if (x->call.sink.congested(x->call.sink.ud)) {
        /* Backpressure: the transport keeps these bytes and hands them back after resume. */
        xfer_set_state(x, XFER_PAUSED, "congested");
        uv_timer_stop(&x->timer);
        return SL_XFER_PAUSE;
    }
    if (sl_sse_parser_feed(&x->sse, p, len, on_sse_event, x) == SL_ETOOBIG)
        sl_xfer_emit_error(x, 502, "server_error", "upstream_bad_stream",
                           "the upstream sent an event larger than sluice accepts");
    return x->state == XFER_FAILED ? SL_XFER_STOP : SL_XFER_TAKEN;
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
    if (told(x) || torn_down(x))
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
    if (told(x)) {
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
    teardown(x, XFER_CLOSED, "done");
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
    static __thread uint64_t seq; /* per worker, like the connections' ids */
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
    sl_closer_init(&x->closer, free_xfer, x);
    x->id = ++seq;
    x->started = (double)uv_now(call->loop);
    if (start_transport(x, call, req) != 0) {
        static const sl_xfer_decoder_t none = {0};
        x->dec = &none; /* ud stays the caller's */
        teardown(x, XFER_CANCELLED, "no transport started");
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
    /* After the terminal event it only closes early what was reading on. */
    teardown(x, told(x) ? XFER_CLOSED : XFER_CANCELLED, "cancelled");
}

void sl_xfer_resume(void *xfer)
{
    sl_xfer_t *x = xfer;
    if (x->state != XFER_PAUSED || !x->t)
        return;
    xfer_set_state(x, XFER_RECEIVING, "resumed");
    x->last_data = (double)uv_now(x->timer.loop);
    arm(x);
    /* May call on_body right here with the bytes the transport held back. */
    x->tp->resume(x->t);
}
