/* A client connection's life: accept, read → parse → dispatch one request at a time, the
 * per-turn flush of coalesced writes, close. The response writer is conn_response.c, the
 * WebSocket half conn_ws.c (see conn_int.h for how they call each other). */
#include "net/conn.h"

#include "core/ctx.h"
#include "net/conn_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "codec/ws.h"
#include "config/config.h"
#include "core/alloc.h"
#include "core/log.h"
#include "http/router.h"

#define LINGER_MS       2000  /* how long an answered-but-unread upload is drained before close */
#define MAX_BUFFERED_IN 65536 /* pipelined input held while a request is answered */

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void process_input(sl_conn_t *c);
static void conn_flush(sl_conn_t *c);
static void refuse(sl_conn_t *c, int status, const char *type, const char *code, const char *msg);

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    sl_conn_t *c = h->data;
    buf->base = c->x->readbuf;
    buf->len = sizeof c->x->readbuf;
}

void conn_arm_timer(sl_conn_t *c, uint64_t ms, uv_timer_cb cb)
{
    uv_timer_stop(&c->timer);
    if (ms)
        uv_timer_start(&c->timer, cb, ms, 0);
}

static void on_deadline(uv_timer_t *t)
{
    sl_conn_t *c = t->data;
    if (c->state == SL_CONN_READING && c->req.started && !c->head_sent) {
        /* A request that never finished arriving (slowloris): say so, then go. */
        refuse(c, 408, "invalid_request_error", "request_timeout",
               "the request was not received in time");
        return;
    }
    sl_conn_close(c);
}

void conn_set_reading(sl_conn_t *c, bool on)
{
    if (on == c->reading || c->state == SL_CONN_CLOSING)
        return;
    c->reading = on;
    if (on)
        (void)uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read); /* fails only if closing */
    else
        uv_read_stop((uv_stream_t *)&c->tcp);
}

void conn_new_request_id(sl_conn_t *c)
{
    static __thread uint64_t counter;
    const char *given = sl_http_req_header(&c->req, "x-request-id");
    if (given && given[0] && strlen(given) < sizeof c->rid) {
        bool sane = true;
        for (const char *p = given; *p; p++)
            sane &= (*p > 0x20 && *p < 0x7f && *p != '"' && *p != '\\');
        if (sane) {
            snprintf(c->rid, sizeof c->rid, "%s", given);
            return;
        }
    }
    uint64_t n = ++counter;
    snprintf(c->rid, sizeof c->rid, "req_%x%08" PRIx64 "%06" PRIx64, c->x->id,
             (uint64_t)uv_hrtime() & 0xffffffffu, n & 0xffffff);
}

static void free_conn(void *owner);

void sl_conn_accept(sl_ctx_t *x, uv_stream_t *listener, bool ops)
{
    static __thread uint64_t counter; /* per thread, like the request ids' */
    sl_conn_t *c = sl_calloc(1, sizeof *c);
    c->x = x;
    c->id = ++counter;
    uv_tcp_init(&x->loop, &c->tcp);
    uv_timer_init(&x->loop, &c->timer);
    c->tcp.data = c;
    c->timer.data = c;
    sl_closer_init(&c->closer, free_conn, c);
    c->ops = ops;
    sl_http_req_init(&c->req, x->cfg->max_header, x->cfg->max_body);
    c->high_water = x->cfg->stream_buffer;
    c->low_water = c->high_water / 4;
    c->next = x->conns;
    if (x->conns)
        x->conns->prev = c;
    x->conns = c;
    x->nconns++;
    if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0 || x->nconns > x->cfg->max_connections) {
        sl_conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    conn_set_reading(c, true);
    conn_arm_timer(c, x->cfg->client_idle_ms, on_deadline);
}

sl_ctx_t *sl_conn_ctx(const sl_conn_t *c)
{
    return c->x;
}

void sl_conn_set_hooks(sl_conn_t *c, const sl_conn_hooks_t *hooks, void *ud)
{
    c->hooks = hooks;
    c->hooks_ud = ud;
}

/* c is going: off the thread's lists, and the worker hears it (drain bookkeeping). */
static void conn_unlink(sl_conn_t *c)
{
    sl_ctx_t *x = c->x;
    if (c->pending) {
        for (sl_conn_t **pp = &x->pending; *pp; pp = &(*pp)->pending_next) {
            if (*pp == c) {
                *pp = c->pending_next;
                break;
            }
        }
        c->pending = false;
    }
    if (c->prev)
        c->prev->next = c->next;
    else
        x->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
    x->nconns--;
    if (x->conn_gone)
        x->conn_gone(x);
}

/* ---- writing: the per-turn flush ---- */

size_t sl_conn_queued(const sl_conn_t *c)
{
    return c->out.len + c->inflight.len;
}

static void on_shutdown(uv_shutdown_t *sr, int status);

static void after_output(sl_conn_t *c)
{
    if (c->ws_ops)
        c->ws_ops->output_drained(c);
    if (c->writing || c->out.len)
        return;
    if (c->ws) {
        if (sl_ws_done(c->ws))
            sl_conn_close(c); /* closing handshake complete and flushed */
        return;
    }
    if (c->close_after && c->state != SL_CONN_HANDLING) {
        if (c->state == SL_CONN_DRAINING) {
            /* Half-close and keep reading a while, so the client sees our answer instead of a
             * reset caused by the upload we did not read. */
            uv_shutdown_t *sr = sl_malloc(sizeof *sr);
            if (uv_shutdown(sr, (uv_stream_t *)&c->tcp, on_shutdown) != 0)
                sl_free(sr);
            conn_arm_timer(c, LINGER_MS, on_deadline);
            return;
        }
        sl_conn_close(c);
        return;
    }
    sl_buf_shrink(&c->out, 4096);
    sl_buf_shrink(&c->inflight, 4096);
}

static void on_shutdown(uv_shutdown_t *sr, int status)
{
    sl_free(sr);
}

static void on_write(uv_write_t *wr, int status)
{
    sl_conn_t *c = wr->data;
    c->writing = false;
    sl_buf_reset(&c->inflight);
    if (status < 0) {
        sl_conn_close(c);
        return;
    }
    if (c->state == SL_CONN_CLOSING)
        return;
    if (c->out.len || c->in_held) {
        conn_flush(c); /* more to write, or held input to take up now that output drained */
        return;
    }
    if (c->hooks && c->hooks->drained)
        c->hooks->drained(c->hooks_ud);
    after_output(c);
}

static void conn_flush(sl_conn_t *c)
{
    if (c->state == SL_CONN_CLOSING)
        return;
    conn_close_chunk(c);
    if (!c->writing && c->out.len) {
        uv_buf_t b = uv_buf_init(c->out.data, (unsigned)c->out.len);
        int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
        if (n < 0 && n != UV_EAGAIN) {
            sl_conn_close(c);
            return;
        }
        size_t done = n > 0 ? (size_t)n : 0;
        if (done == c->out.len) {
            /* All written: the connection keeps no output memory between turns (an idle stream
             * would hold its largest burst). One allocation per turn, not per chunk. */
            sl_buf_dispose(&c->out);
        } else {
            /* Hand the rest to uv_write: swap buffers so new output keeps accumulating. */
            sl_buf_t tmp = c->inflight;
            c->inflight = c->out;
            c->out = tmp;
            sl_buf_consume(&c->inflight, done);
            b = uv_buf_init(c->inflight.data, (unsigned)c->inflight.len);
            c->wreq.data = c;
            if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_write) != 0) {
                sl_conn_close(c);
                return;
            }
            c->writing = true;
        }
    }
    if (c->in_held && sl_conn_queued(c) <= c->low_water) {
        c->in_held = false; /* the client read enough: its next requests may be answered */
        c->need_input = true;
    }
    if (c->need_input && c->state == SL_CONN_READING) {
        c->need_input = false;
        process_input(c);
        if (c->state == SL_CONN_CLOSING)
            return;
    }
    if (!c->writing && !c->out.len && c->hooks && c->hooks->drained)
        c->hooks->drained(c->hooks_ud);
    after_output(c);
}

/* ---- reading ---- */

/* Answers a request that cannot be served (unparseable, too slow) and closes after it; what
 * else the client sends meanwhile is read and dropped (the linger in after_output). */
static void refuse(sl_conn_t *c, int status, const char *type, const char *code, const char *msg)
{
    conn_set_state(c, SL_CONN_HANDLING, "refused"); /* so the response is logged like any other */
    c->x->active++;
    conn_new_request_id(c);
    c->client_known = false;
    c->t_start = sl_now_ms();
    c->req.keep_alive = false;
    c->close_after = true; /* before the head, so it says Connection: close */
    sl_conn_respond_error(c, status, type, code, NULL, msg, NULL);
    conn_set_state(c, SL_CONN_DRAINING, "refused: drain, then close");
    sl_buf_dispose(&c->in);
}

static void reject(sl_conn_t *c, int err, const char *msg)
{
    refuse(c, sl_err_status(err), sl_err_type(err), NULL, msg);
}

/* Stops parsing at a request boundary when the connection is done (its last answer said
 * Connection: close: later pipelined requests are dropped unanswered, as RFC 9112 §9.6 says) or
 * when the client is not reading its answers (queued output above high_water: parsing more would
 * queue more, without bound; on_write takes the input up again). */
static bool stop_at_boundary(sl_conn_t *c)
{
    if (c->req.started)
        return false;
    if (c->close_after) {
        /* the rest is read and dropped until the close */
        conn_set_state(c, SL_CONN_DRAINING, "the last answer said Connection: close");
        sl_buf_dispose(&c->in);
        conn_set_reading(c, true);
        return true;
    }
    if (sl_conn_queued(c) > c->high_water) {
        c->in_held = true;
        /* a client that never reads goes */
        conn_arm_timer(c, c->x->cfg->client_idle_ms, on_deadline);
        return true;
    }
    return false;
}

/* Hands the request to its route's handler, or answers why there is none in the error shape of
 * the mount the path falls under. */
static void route(sl_conn_t *c)
{
    size_t len;
    const char *path = sl_http_req_path(&c->req, &len);
    sl_route_found_t f;
    int rc = sl_router_lookup(c->ops ? c->x->ops_router : c->x->router, sl_http_req_method(&c->req),
                              path, len, &f);
    if (rc == 0)
        f.route->fn(c, &c->req, &f.match);
    else if (f.on_error)
        f.on_error(c, rc, f.allow.data);
    else if (rc == SL_EMETHOD)
        sl_conn_respond_err(c, rc, "method_not_allowed", NULL, "method not allowed on this path",
                            f.allow.data);
    else
        sl_conn_respond_err(c, rc, "unknown_url", NULL, "unknown path", NULL);
    sl_buf_dispose(&f.allow);
}

static void dispatch(sl_conn_t *c)
{
    conn_set_state(c, SL_CONN_HANDLING, "request complete");
    c->x->active++;
    c->t_start = sl_now_ms();
    conn_new_request_id(c);
    c->client_known = false;
    uv_timer_stop(&c->timer);
    if (!conn_preflight(c))
        route(c);
}

/* Parses buffered input from the front; dispatches complete requests one at a time. */
static void parse(sl_conn_t *c, const char *p, size_t n, size_t *used)
{
    *used = 0;
    while (c->state == SL_CONN_READING && *used < n) {
        if (stop_at_boundary(c)) {
            if (c->state == SL_CONN_DRAINING)
                *used = n;
            return;
        }
        bool was_started = c->req.started;
        *used += sl_http_req_feed(&c->req, p + *used, n - *used);
        if (!was_started && c->req.started)
            conn_arm_timer(c, c->x->cfg->client_header_ms, on_deadline);
        if (c->req.error) {
            reject(c, c->req.error, c->req.error_msg);
            *used = n;
            return;
        }
        if (c->req.expect_continue && !c->sent_continue && !c->req.complete) {
            c->sent_continue = true;
            sl_buf_puts(&c->out, "HTTP/1.1 100 Continue\r\n\r\n");
            conn_schedule(c);
        }
        if (!c->req.complete)
            return;
        dispatch(c);
    }
}

/* After an upgrade, bytes that followed the handshake in the same read are WebSocket frames. */
static void ws_feed_leftover(sl_conn_t *c, const char *p, size_t n)
{
    c->ws_ops->input(c, p, n);
}

static void process_input(sl_conn_t *c)
{
    size_t used;
    parse(c, c->in.data, c->in.len, &used);
    if (c->state == SL_CONN_CLOSING)
        return;
    sl_buf_consume(&c->in, used);
    if (c->state == SL_CONN_WS) {
        sl_buf_t rest = c->in;
        sl_buf_init(&c->in);
        ws_feed_leftover(c, rest.data, rest.len);
        sl_buf_dispose(&rest);
        return;
    }
    sl_buf_shrink(&c->in, 4096);
    if (c->state == SL_CONN_READING) {
        conn_set_reading(c, !c->in_held);
        if (!c->req.started && !c->in.len)
            conn_arm_timer(c, c->x->cfg->client_idle_ms, on_deadline);
    }
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    sl_conn_t *c = s->data;
    if (nread < 0) {
        /* EOF or error: the client is gone, whatever it was waiting for. */
        sl_conn_close(c);
        return;
    }
    if (nread == 0 || c->state == SL_CONN_DRAINING)
        return;
    if (c->state == SL_CONN_WS) {
        c->ws_ops->input(c, buf->base, (size_t)nread);
        return;
    }
    if (c->state == SL_CONN_HANDLING || c->in.len) {
        sl_buf_append(&c->in, buf->base, (size_t)nread);
        if (c->state == SL_CONN_READING)
            process_input(c);
        else if (c->in.len > MAX_BUFFERED_IN)
            conn_set_reading(c, false); /* resumes when the current response ends */
        return;
    }
    size_t used;
    parse(c, buf->base, (size_t)nread, &used);
    if (c->state == SL_CONN_WS)
        ws_feed_leftover(c, buf->base + used, (size_t)nread - used);
    else if (c->state != SL_CONN_CLOSING && c->state != SL_CONN_DRAINING && used < (size_t)nread)
        sl_buf_append(&c->in, buf->base + used, (size_t)nread - used);
    if (c->in_held)
        conn_set_reading(c, false); /* at most this read is held; flush resumes */
}

/* ---- closing ---- */

static void free_conn(void *owner)
{
    sl_conn_t *c = owner;
    sl_http_req_dispose(&c->req);
    sl_buf_dispose(&c->in);
    sl_buf_dispose(&c->out);
    sl_buf_dispose(&c->inflight);
    sl_buf_dispose(&c->log_extra);
    sl_buf_dispose(&c->head_extra);
    sl_ws_free(c->ws);
    sl_free(c);
}

void sl_conn_close(sl_conn_t *c)
{
    if (c->state == SL_CONN_CLOSING)
        return;
    bool handling = c->state == SL_CONN_HANDLING || c->ws_busy;
    c->ws_busy = false;
    conn_set_state(c, SL_CONN_CLOSING, handling ? "closed mid-request" : "closed");
    if (handling) {
        /* The client left mid-request: the handler cancels its upstream now (§3.4). */
        const sl_conn_hooks_t *h = c->hooks;
        void *ud = c->hooks_ud;
        if (!c->status)
            c->status = 499; /* nginx's "client closed request" */
        if (h && h->gone)
            h->gone(ud); /* may add to log_extra before the access line is written */
        conn_finish_request(c);
    }
    if (c->ws_hooks && c->ws_hooks->closed)
        c->ws_hooks->closed(c->ws_ud);
    c->ws_hooks = NULL;
    conn_unlink(c);
    sl_closer_close(&c->closer, (uv_handle_t *)&c->timer);
    sl_closer_close(&c->closer, (uv_handle_t *)&c->tcp);
    sl_closer_finish(&c->closer);
}

void sl_conn_cut(sl_conn_t *c)
{
    bool handling = c->state == SL_CONN_HANDLING || c->ws_busy;
    if (handling && c->hooks && c->hooks->cut)
        c->hooks->cut(c->hooks_ud); /* ends the response: it closes once written (draining) */
}

/* ---- accessors ---- */

const sl_http_req_t *sl_conn_request(const sl_conn_t *c)
{
    return &c->req;
}

char *sl_conn_take_body(sl_conn_t *c, size_t *len)
{
    sl_buf_t *b = &c->req.body;
    *len = b->len;
    char *p = b->data;
    if (!p) {
        p = sl_malloc(1);
        p[0] = '\0';
    } else if (b->cap - b->len > 64) {
        p = sl_realloc(p, b->len + 1); /* the buffer grew by doubling: give the slack back */
    }
    sl_buf_init(b);
    return p;
}

sl_buf_t *sl_conn_log_extra(sl_conn_t *c)
{
    return &c->log_extra;
}

sl_buf_t *sl_conn_head_extra(sl_conn_t *c)
{
    return &c->head_extra;
}

bool sl_conn_head_sent(const sl_conn_t *c)
{
    return c->head_sent;
}

size_t sl_conn_bytes_out(const sl_conn_t *c)
{
    return c->bytes_out;
}

const char *sl_conn_request_id(const sl_conn_t *c)
{
    return c->rid;
}

size_t sl_conn_high_water(const sl_conn_t *c)
{
    return c->high_water;
}

size_t sl_conn_low_water(const sl_conn_t *c)
{
    return c->low_water;
}

bool sl_conn_is_ws(const sl_conn_t *c)
{
    return c->ws != NULL;
}

bool sl_conn_ws_busy(const sl_conn_t *c)
{
    return c->ws_busy;
}

bool sl_conn_is_ops(const sl_conn_t *c)
{
    return c->ops;
}

/* ---- the thread's connections ---- */

void sl_conns_flush(sl_ctx_t *x)
{
    while (x->pending) {
        sl_conn_t *c = x->pending;
        x->pending = c->pending_next;
        c->pending = false;
        conn_flush(c);
    }
}

void sl_conns_close_idle(sl_ctx_t *x)
{
    for (sl_conn_t *c = x->conns, *next; c; c = next) {
        next = c->next;
        if (c->state == SL_CONN_READING && !c->req.started && !c->writing && !c->out.len)
            sl_conn_close(c);
    }
}

void sl_conns_cut(sl_ctx_t *x)
{
    for (sl_conn_t *c = x->conns, *next; c; c = next) {
        next = c->next;
        sl_conn_cut(c);
    }
}

void sl_conns_close_all(sl_ctx_t *x)
{
    while (x->conns)
        sl_conn_close(x->conns); /* cancels what is still in flight */
}
