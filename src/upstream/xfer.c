/* The upstream transfer every HTTP provider runs on: curl easy on the worker's multi, SSE or
 * whole-body reading, deadlines, backpressure, errors. */
#include "upstream/xfer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/alloc.h"
#include "core/log.h"
#include "upstream/multi.h"

#define MAX_ERROR_BODY ((size_t)64 * 1024)
#define MAX_JSON_BODY  ((size_t)64 * 1024 * 1024)
#define MAX_SSE_EVENT  ((size_t)16 * 1024 * 1024)

struct sl_xfer {
    CURL *easy;
    struct curl_slist *headers;
    sl_multi_t *multi;
    uv_timer_t timer;        /* first_byte, then idle */
    sl_upstream_call_t call; /* copy; req and request_id are cleared after start */
    const sl_xfer_decoder_t *dec;
    void *ud;
    sl_buf_t reqbody;
    sl_buf_t body; /* error body, or the whole answer of a non-streaming call */
    sl_sse_parser_t sse;
    double last_data; /* uv_now() of the last bytes, for the idle deadline checked lazily */
    uint64_t first_byte_ms, idle_ms; /* copied: the config may be gone before we are */
    int retry_after;
    bool stream;
    bool got_body, paused, terminal, cancelled, finished;
    bool aborted; /* stop reading (an error came in the stream) */
};

static void free_xfer(uv_handle_t *h)
{
    sl_xfer_t *x = h->data;
    if (x->dec->free)
        x->dec->free(x->ud);
    sl_buf_dispose(&x->reqbody);
    sl_buf_dispose(&x->body);
    sl_sse_parser_dispose(&x->sse);
    sl_free(x);
}

/* Stops the transfer and releases everything; x is freed once the timer has closed. */
static void teardown(sl_xfer_t *x)
{
    if (x->easy) {
        sl_multi_remove(x->multi, x->easy);
        sl_multi_easy_done(x->multi, x->easy);
        x->easy = NULL;
    }
    curl_slist_free_all(x->headers);
    x->headers = NULL;
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

struct curl_slist *sl_xfer_header(struct curl_slist *h, const char *name, const char *value)
{
    sl_buf_t line;
    sl_buf_init(&line);
    sl_buf_printf(&line, "%s: %s", name, value);
    h = curl_slist_append(h, line.data);
    sl_buf_dispose(&line);
    return h;
}

/* ---- deadlines ---- */

static void on_deadline(uv_timer_t *t)
{
    sl_xfer_t *x = t->data;
    uint64_t idle = x->idle_ms;
    if (x->got_body) {
        double quiet = (double)uv_now(t->loop) - x->last_data;
        if (quiet + 1 < (double)idle) {
            uv_timer_start(&x->timer, on_deadline, idle - (uint64_t)quiet, 0);
            return;
        }
        sl_xfer_emit_error(x, 504, "timeout_error", "upstream_idle_timeout",
                           "the upstream provider stopped sending mid-response (idle timeout)");
    } else {
        sl_xfer_emit_error(x, 504, "timeout_error", "upstream_timeout",
                           "the upstream provider did not answer in time (first byte timeout)");
    }
    teardown(x);
}

/* ---- curl callbacks ---- */

static int on_sse_event(void *ud, const sl_sse_event_t *ev)
{
    sl_xfer_t *x = ud;
    int rc = x->dec->sse(x, x->ud, ev);
    return rc || x->terminal ? 1 : 0;
}

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
    sl_xfer_t *x = ud;
    size_t len = size * n;
    if (len > 12 && strncasecmp(p, "retry-after:", 12) == 0) {
        long secs = strtol(p + 12, NULL, 10);
        x->retry_after = secs >= 0 && secs < 86400 ? (int)secs : x->retry_after;
    }
    return len;
}

static void first_body_byte(sl_xfer_t *x)
{
    x->got_body = true;
    if (x->idle_ms)
        uv_timer_start(&x->timer, on_deadline, x->idle_ms, 0);
    else
        uv_timer_stop(&x->timer);
}

static size_t on_data(char *p, size_t size, size_t n, void *ud)
{
    sl_xfer_t *x = ud;
    size_t len = size * n;
    if (x->cancelled || x->aborted)
        return 0;
    if (x->terminal) /* after the end marker read on: it keeps the connection reusable */
        return len;
    long status = 0;
    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
    if (!x->got_body)
        first_body_byte(x);
    x->last_data = (double)uv_now(x->timer.loop); /* the loop's cached clock: no syscall */
    if (status >= 400 || !x->stream) {
        size_t cap = status >= 400 ? MAX_ERROR_BODY : MAX_JSON_BODY;
        if (x->body.len + len <= cap)
            sl_buf_append(&x->body, p, len);
        return len;
    }
    if (x->call.sink.congested(x->call.sink.ud)) {
        /* Backpressure: curl keeps these bytes and hands them back after resume. */
        x->paused = true;
        uv_timer_stop(&x->timer);
        return CURL_WRITEFUNC_PAUSE;
    }
    if (sl_sse_parser_feed(&x->sse, p, len, on_sse_event, x) == SL_ETOOBIG)
        sl_xfer_emit_error(x, 502, "server_error", "upstream_bad_stream",
                           "the upstream sent an event larger than sluice accepts");
    return x->aborted ? 0 : len;
}

static void finish_ok(sl_xfer_t *x, long status)
{
    const char *b = x->body.data ? x->body.data : "";
    if (status >= 400)
        x->dec->error(x, x->ud, (int)status, b, x->body.len, x->retry_after);
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

static void on_done(void *ud, CURLcode res)
{
    sl_xfer_t *x = ud;
    long status = 0;
    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
    if (x->terminal) {
        /* already told the client; nothing to add */
    } else if (res == CURLE_COULDNT_CONNECT || res == CURLE_COULDNT_RESOLVE_HOST) {
        sl_xfer_emit_error(x, 502, "server_error", "upstream_unreachable",
                           "could not connect to the upstream provider");
    } else if (res == CURLE_OPERATION_TIMEDOUT) {
        sl_xfer_emit_error(x, 504, "timeout_error", "upstream_connect_timeout",
                           "connecting to the upstream provider timed out");
    } else if (res != CURLE_OK) {
        sl_log(SL_LOG_WARN, "upstream transfer failed: %s", curl_easy_strerror(res));
        sl_xfer_emit_error(x, 502, "server_error", "upstream_disconnected",
                           "the upstream provider closed the connection before finishing");
    } else {
        finish_ok(x, status);
    }
    teardown(x);
}

/* ---- start, cancel, resume ---- */

int sl_xfer_start(const sl_upstream_call_t *call, sl_xfer_req_t *req, const sl_xfer_decoder_t *dec,
                  void *ud, sl_xfer_t **out)
{
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
    x->multi = call->multi;
    x->dec = dec;
    x->stream = req->stream;
    x->retry_after = -1;
    x->headers = req->headers;
    x->reqbody = req->body;
    req->headers = NULL;
    sl_buf_init(&req->body);
    sl_sse_parser_init(&x->sse, MAX_SSE_EVENT);
    uv_timer_init(call->loop, &x->timer);
    x->timer.data = x;
    x->headers = sl_xfer_header(x->headers, "Expect", ""); /* no 100-continue round trip */
    x->headers = sl_xfer_header(x->headers, "X-Request-Id", call->request_id);

    CURL *e = x->easy = sl_multi_easy(x->multi);
    curl_easy_setopt(e, CURLOPT_URL, req->url);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->headers);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, x->reqbody.data ? x->reqbody.data : "");
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)x->reqbody.len);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    /* curl's receive buffer is held for the whole transfer: an idle stream would keep 16 KiB
     * (the default) for the few hundred bytes an SSE chunk needs. 4 KiB keeps memory per open
     * stream low; bigger answers just take more reads. */
    curl_easy_setopt(e, CURLOPT_BUFFERSIZE, 4096L);
    /* 0 means "no timeout" in our config; never hand curl a 0 it would read differently. */
    if (call->cfg->connect_ms)
        curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)call->cfg->connect_ms);
    if (sl_multi_add(x->multi, e, on_done, x) != 0) {
        static const sl_xfer_decoder_t none = {0};
        x->dec = &none; /* ud stays the caller's */
        x->cancelled = true;
        teardown(x);
        return SL_EINTERNAL;
    }
    x->ud = ud;
    if (x->first_byte_ms)
        uv_timer_start(&x->timer, on_deadline, x->first_byte_ms, 0);
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
    if (!x->paused || !x->easy)
        return;
    x->paused = false;
    x->last_data = (double)uv_now(x->timer.loop);
    if (x->idle_ms)
        uv_timer_start(&x->timer, on_deadline, x->idle_ms, 0);
    /* May call on_data right here with the bytes curl held back. */
    curl_easy_pause(x->easy, CURLPAUSE_CONT);
}
