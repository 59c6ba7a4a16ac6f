/* Client connections: read → parse → dispatch one request at a time → coalesced writes. */
#include "net/conn.h"

#include "core/ctx.h"
#include "net/conn_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "codec/ws.h"
#include "config/config.h"
#include "core/alloc.h"
#include "core/log.h"
#include "http/router.h"
#include "obs/metrics.h"

#define LINGER_MS       2000  /* how long an answered-but-unread upload is drained before close */
#define MAX_BUFFERED_IN 65536 /* pipelined input held while a request is answered */

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void ws_feed_leftover(sl_conn_t *c, const char *p, size_t n);
static void ws_input(sl_conn_t *c, const char *p, size_t n);
static void ws_output_drained(sl_conn_t *c);
static void process_input(sl_conn_t *c);
static void conn_flush(sl_conn_t *c);
static void refuse(sl_conn_t *c, int status, const char *type, const char *code, const char *msg);

static const char *status_text(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 204: return "No Content";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 429: return "Too Many Requests";
    case 426: return "Upgrade Required";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return status < 400 ? "OK" : status < 500 ? "Client Error" : "Server Error";
    }
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    sl_conn_t *c = h->data;
    buf->base = c->x->readbuf;
    buf->len = sizeof c->x->readbuf;
}

static void arm_timer(sl_conn_t *c, uint64_t ms, uv_timer_cb cb)
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

static void set_reading(sl_conn_t *c, bool on)
{
    if (on == c->reading || c->state == SL_CONN_CLOSING)
        return;
    c->reading = on;
    if (on)
        (void)uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read); /* fails only if closing */
    else
        uv_read_stop((uv_stream_t *)&c->tcp);
}

static void new_request_id(sl_conn_t *c)
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

void sl_conn_accept(sl_ctx_t *x, uv_stream_t *listener, bool ops)
{
    sl_conn_t *c = sl_calloc(1, sizeof *c);
    c->x = x;
    uv_tcp_init(&x->loop, &c->tcp);
    uv_timer_init(&x->loop, &c->timer);
    c->tcp.data = c;
    c->timer.data = c;
    c->closes_pending = 2;
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
    set_reading(c, true);
    arm_timer(c, x->cfg->client_idle_ms, on_deadline);
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

/* Puts c on this turn's flush list (once). */
static void schedule(sl_conn_t *c)
{
    if (c->pending)
        return;
    c->pending = true;
    c->pending_next = c->x->pending;
    c->x->pending = c;
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

/* ---- writing ---- */

static void close_chunk(sl_conn_t *c)
{
    if (!c->chunk_open)
        return;
    c->chunk_open = false;
    size_t size = c->out.len - c->chunk_at - 10;
    if (size == 0) {
        c->out.len = c->chunk_at; /* nothing was added: drop the placeholder */
        c->out.data[c->out.len] = '\0';
        return;
    }
    /* Leading zeros are valid chunk-size digits (RFC 9112 §7.1), so the size goes in place. */
    static const char digits[] = "0123456789abcdef";
    SL_ASSERT(size <= 0xffffffffu); /* a chunk is at most one turn of output */
    for (int i = 7; i >= 0; i--, size >>= 4)
        c->out.data[c->chunk_at + (size_t)i] = digits[size & 15];
    sl_buf_append(&c->out, "\r\n", 2);
}

/* The configured origin the request comes from, or NULL (DESIGN §6: configured origins get
 * CORS headers, others none). */
static const char *cors_origin(const sl_conn_t *c)
{
    const sl_config_t *cfg = c->x->cfg;
    const char *origin = sl_http_req_header(&c->req, "origin");
    if (!origin || !cfg->ncors_origins)
        return NULL;
    for (size_t i = 0; i < cfg->ncors_origins; i++)
        if (!strcmp(cfg->cors_origins[i], "*") || !strcmp(cfg->cors_origins[i], origin))
            return origin;
    return NULL;
}

static void cors_headers(sl_conn_t *c)
{
    const char *origin = cors_origin(c);
    if (!origin)
        return;
    sl_buf_puts(&c->out, "Access-Control-Allow-Origin: ");
    sl_buf_puts(&c->out, origin);
    sl_buf_puts(&c->out, "\r\nVary: Origin\r\nAccess-Control-Expose-Headers: x-request-id, "
                         "retry-after, x-ratelimit-limit-requests, x-ratelimit-remaining-requests, "
                         "x-ratelimit-reset-requests, x-ratelimit-limit-tokens, "
                         "x-ratelimit-remaining-tokens, x-ratelimit-reset-tokens\r\n");
}

/* A CORS preflight: answered here for any path, since browsers send it before every
 * cross-origin call with an Authorization header. */
static bool preflight(sl_conn_t *c)
{
    if (c->req.parser.method != HTTP_OPTIONS ||
        !sl_http_req_header(&c->req, "access-control-request-method"))
        return false;
    const char *origin = cors_origin(c);
    sl_buf_t h;
    sl_buf_init(&h);
    if (origin) {
        const char *want = sl_http_req_header(&c->req, "access-control-request-headers");
        sl_buf_printf(&h,
                      "Access-Control-Allow-Methods: GET, POST, OPTIONS\r\n"
                      "Access-Control-Allow-Headers: %s\r\n"
                      "Access-Control-Max-Age: %llu\r\n",
                      want && strlen(want) < 1024 ? want : "authorization, content-type",
                      (unsigned long long)c->x->cfg->cors_max_age_s);
    }
    /* Another origin gets a plain 204: without the headers the browser refuses the call. */
    sl_conn_head(c, 204, NULL, 0, h.data);
    sl_conn_end(c, false);
    sl_buf_dispose(&h);
    return true;
}

void sl_conn_head(sl_conn_t *c, int status, const char *content_type, long content_length,
                  const char *extra)
{
    if (c->head_sent || c->state == SL_CONN_CLOSING || c->ws)
        return; /* a WebSocket exchange has no HTTP head */
    c->head_sent = true;
    c->status = status;
    bool http11 = c->req.parser.http_major == 1 && c->req.parser.http_minor >= 1;
    if (!c->req.keep_alive || c->x->draining)
        c->close_after = true;
    if (content_length < 0) {
        c->chunked = http11;
        if (!http11)
            c->close_after = true;
    }
    /* Appends, not printf: every response pays for this head. */
    sl_buf_puts(&c->out, http11 ? "HTTP/1.1 " : "HTTP/1.0 ");
    sl_buf_put_i64(&c->out, status);
    sl_buf_putc(&c->out, ' ');
    sl_buf_puts(&c->out, status_text(status));
    if (content_type) {
        sl_buf_puts(&c->out, "\r\nContent-Type: ");
        sl_buf_puts(&c->out, content_type);
    }
    if (status == 204 || status == 304)
        ; /* no body, and no framing headers for one (RFC 9110 §8.6) */
    else if (content_length >= 0) {
        sl_buf_puts(&c->out, "\r\nContent-Length: ");
        sl_buf_put_i64(&c->out, content_length);
    } else if (c->chunked)
        sl_buf_puts(&c->out, "\r\nTransfer-Encoding: chunked");
    sl_buf_puts(&c->out, "\r\nX-Request-Id: ");
    sl_buf_puts(&c->out, c->rid);
    sl_buf_puts(&c->out, "\r\n");
    if (c->close_after)
        sl_buf_puts(&c->out, "Connection: close\r\n");
    cors_headers(c);
    if (c->head_extra.len)
        sl_buf_append(&c->out, c->head_extra.data, c->head_extra.len);
    if (extra)
        sl_buf_puts(&c->out, extra);
    sl_buf_puts(&c->out, "\r\n");
    schedule(c);
}

void sl_conn_body(sl_conn_t *c, const void *p, size_t n)
{
    if (n == 0 || c->state == SL_CONN_CLOSING)
        return;
    if (c->ws) {
        sl_ws_send_text(c->ws, p, n); /* one body write is one message */
        c->bytes_out += n;
        schedule(c);
        return;
    }
    if (c->chunked && !c->chunk_open) {
        c->chunk_at = c->out.len;
        sl_buf_append(&c->out, "00000000\r\n", 10);
        c->chunk_open = true;
    }
    sl_buf_append(&c->out, p, n);
    c->bytes_out += n;
    schedule(c);
}

static void write_access_log(sl_conn_t *c)
{
    size_t plen;
    const char *path = sl_http_req_path(&c->req, &plen);
    /* Straight into the worker's batch, written once per loop turn (worker.c flush_log). */
    sl_buf_t *line = &c->x->access_log;
    sl_buf_puts(line, "{\"ts\":");
    sl_buf_put_i64(line, sl_wall_s());
    sl_buf_puts(line, ",\"request_id\":\"");
    sl_buf_puts(line, c->rid); /* ours or checked at intake: nothing to escape */
    sl_buf_puts(line, "\",\"worker\":");
    sl_buf_put_i64(line, c->x->id);
    if (c->req.method_read) {
        sl_buf_puts(line, ",\"method\":\"");
        sl_buf_puts(line, sl_http_req_method(&c->req));
        sl_buf_puts(line, "\",\"path\":\"");
        sl_buf_json_escape(line, path, plen < 512 ? plen : 512);
        sl_buf_puts(line, "\"");
    } else { /* refused before the method: unknown, not http-parser's method 0 (DELETE) */
        sl_buf_puts(line, ",\"method\":null,\"path\":null");
    }
    sl_buf_puts(line, ",\"client\":\"");
    sl_buf_puts(line, sl_conn_client_ip(c)); /* an address's text: nothing to escape */
    sl_buf_puts(line, "\",\"status\":");
    sl_buf_put_i64(line, c->status);
    sl_buf_puts(line, ",\"bytes_out\":");
    sl_buf_put_u64(line, c->bytes_out);
    sl_buf_puts(line, ",\"total_ms\":");
    sl_buf_put_ms(line, sl_now_ms() - c->t_start);
    if (c->log_extra.len)
        sl_buf_append(line, c->log_extra.data, c->log_extra.len);
    else /* answered before any exchange began: same schema, unknown values (see relay.c) */
        sl_buf_puts(
            line,
            ",\"final_status\":null,\"dialect\":null,\"model\":null,"
            "\"provider\":null,\"stream\":null,\"prompt_tokens\":null,\"completion_tokens\":null,"
            "\"usage_estimated\":null,\"ttft_ms\":null,\"finish_reason\":null,"
            "\"cancelled\":false");
    sl_buf_puts(line, "}\n");
}

static void finish_request(sl_conn_t *c)
{
    if (c->x->cfg->access_log)
        write_access_log(c);
    /* Answers given outside an exchange (404, 401, health) are counted here; exchanges count
     * themselves, with their labels. */
    if (!c->log_extra.len && c->x->cfg->metrics)
        sl_metrics_http(c->x->metrics, "", c->status);
    sl_buf_reset(&c->log_extra);
    sl_buf_shrink(&c->log_extra, 256);
    sl_buf_reset(&c->head_extra);
    sl_buf_shrink(&c->head_extra, 512);
    c->hooks = NULL;
    c->hooks_ud = NULL;
    c->head_sent = c->chunked = c->sent_continue = false;
    c->bytes_out = 0;
    c->status = 0;
    if (c->x->active)
        c->x->active--;
}

void sl_conn_end(sl_conn_t *c, bool close)
{
    if (c->state == SL_CONN_CLOSING)
        return;
    if (c->ws) {
        if (c->ws_busy) {
            c->ws_busy = false;
            c->ws_rx_at = uv_now(&c->x->loop); /* WebSocket idle time counts from here */
            if (!c->status)
                c->status = 200;
            finish_request(c);
        }
        if (close)
            sl_conn_ws_close(c, 1011, "internal error");
        schedule(c);
        return;
    }
    close_chunk(c);
    if (c->chunked) {
        sl_buf_append(&c->out, "0\r\n\r\n", 5);
        /* A stream that failed (the dialect asks to close) still ends in a well-framed body:
         * the connection stays usable. Closing it now, unannounced, would hand the next request
         * of a pooled client (keep-alive, the SDKs) a dead socket. */
        close = false;
    }
    if (close || c->x->draining)
        c->close_after = true; /* shutting down: this was the connection's last answer */
    bool was_handling = c->state == SL_CONN_HANDLING;
    if (was_handling) {
        finish_request(c);
        sl_http_req_reset(&c->req);
        c->state = SL_CONN_READING;
        c->need_input = true;
    }
    schedule(c);
}

void sl_conn_cut(sl_conn_t *c)
{
    bool handling = c->state == SL_CONN_HANDLING || c->ws_busy;
    if (handling && c->hooks && c->hooks->cut)
        c->hooks->cut(c->hooks_ud); /* ends the response: it closes once written (draining) */
}

void sl_conn_respond(sl_conn_t *c, int status, const char *content_type, const char *body,
                     size_t len, const char *extra)
{
    sl_conn_head(c, status, content_type, (long)len, extra);
    sl_buf_append(&c->out, body, len);
    c->bytes_out += len;
    sl_conn_end(c, false);
}

void sl_conn_respond_err(sl_conn_t *c, int err, const char *code, const char *message,
                         const char *extra)
{
    sl_conn_respond_error(c, sl_err_status(err), sl_err_type(err), code, NULL,
                          message ? message : sl_strerror(err), extra);
}

void sl_conn_respond_error(sl_conn_t *c, int status, const char *type, const char *code,
                           const char *param, const char *message, const char *extra)
{
    sl_buf_t b;
    sl_buf_init(&b);
    sl_buf_puts(&b, "{\"error\":{\"message\":\"");
    sl_buf_json_escape(&b, message, strlen(message));
    sl_buf_puts(&b, "\",\"type\":\"");
    sl_buf_json_escape(&b, type, strlen(type));
    sl_buf_puts(&b, "\",\"param\":");
    if (param) {
        sl_buf_putc(&b, '"');
        sl_buf_json_escape(&b, param, strlen(param));
        sl_buf_putc(&b, '"');
    } else {
        sl_buf_puts(&b, "null");
    }
    sl_buf_puts(&b, ",\"code\":");
    if (code) {
        sl_buf_putc(&b, '"');
        sl_buf_json_escape(&b, code, strlen(code));
        sl_buf_putc(&b, '"');
    } else {
        sl_buf_puts(&b, "null");
    }
    sl_buf_puts(&b, "}}");
    sl_conn_respond(c, status, "application/json", b.data, b.len, extra);
    sl_buf_dispose(&b);
}

size_t sl_conn_queued(const sl_conn_t *c)
{
    return c->out.len + c->inflight.len;
}

static void on_shutdown(uv_shutdown_t *sr, int status);

static void after_output(sl_conn_t *c)
{
    ws_output_drained(c);
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
            arm_timer(c, LINGER_MS, on_deadline);
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
    close_chunk(c);
    if (!c->writing && c->out.len) {
        uv_buf_t b = uv_buf_init(c->out.data, (unsigned)c->out.len);
        int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
        if (n < 0 && n != UV_EAGAIN) {
            sl_conn_close(c);
            return;
        }
        size_t done = n > 0 ? (size_t)n : 0;
        if (done == c->out.len) {
            sl_buf_reset(&c->out);
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
    c->state = SL_CONN_HANDLING; /* so the response is logged like any other */
    c->x->active++;
    new_request_id(c);
    c->client_known = false;
    c->t_start = sl_now_ms();
    c->req.keep_alive = false;
    c->close_after = true; /* before the head, so it says Connection: close */
    sl_conn_respond_error(c, status, type, code, NULL, msg, NULL);
    c->state = SL_CONN_DRAINING;
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
        c->state = SL_CONN_DRAINING; /* the rest is read and dropped until the close */
        sl_buf_dispose(&c->in);
        set_reading(c, true);
        return true;
    }
    if (sl_conn_queued(c) > c->high_water) {
        c->in_held = true;
        arm_timer(c, c->x->cfg->client_idle_ms, on_deadline); /* a client that never reads goes */
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
        sl_conn_respond_err(c, rc, "method_not_allowed", "method not allowed on this path",
                            f.allow.data);
    else
        sl_conn_respond_err(c, rc, "unknown_url", "unknown path", NULL);
    sl_buf_dispose(&f.allow);
}

static void dispatch(sl_conn_t *c)
{
    c->state = SL_CONN_HANDLING;
    c->x->active++;
    c->t_start = sl_now_ms();
    new_request_id(c);
    c->client_known = false;
    uv_timer_stop(&c->timer);
    if (!preflight(c))
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
            arm_timer(c, c->x->cfg->client_header_ms, on_deadline);
        if (c->req.error) {
            reject(c, c->req.error, c->req.error_msg);
            *used = n;
            return;
        }
        if (c->req.expect_continue && !c->sent_continue && !c->req.complete) {
            c->sent_continue = true;
            sl_buf_puts(&c->out, "HTTP/1.1 100 Continue\r\n\r\n");
            schedule(c);
        }
        if (!c->req.complete)
            return;
        dispatch(c);
    }
}

/* After an upgrade, bytes that followed the handshake in the same read are WebSocket frames. */
static void ws_feed_leftover(sl_conn_t *c, const char *p, size_t n)
{
    ws_input(c, p, n);
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
        set_reading(c, !c->in_held);
        if (!c->req.started && !c->in.len)
            arm_timer(c, c->x->cfg->client_idle_ms, on_deadline);
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
        ws_input(c, buf->base, (size_t)nread);
        return;
    }
    if (c->state == SL_CONN_HANDLING || c->in.len) {
        sl_buf_append(&c->in, buf->base, (size_t)nread);
        if (c->state == SL_CONN_READING)
            process_input(c);
        else if (c->in.len > MAX_BUFFERED_IN)
            set_reading(c, false); /* resumes when the current response ends */
        return;
    }
    size_t used;
    parse(c, buf->base, (size_t)nread, &used);
    if (c->state == SL_CONN_WS)
        ws_feed_leftover(c, buf->base + used, (size_t)nread - used);
    else if (c->state != SL_CONN_CLOSING && c->state != SL_CONN_DRAINING && used < (size_t)nread)
        sl_buf_append(&c->in, buf->base + used, (size_t)nread - used);
    if (c->in_held)
        set_reading(c, false); /* at most this read is held; flush resumes */
}

/* ---- closing ---- */

static void on_closed(uv_handle_t *h)
{
    sl_conn_t *c = h->data;
    if (--c->closes_pending > 0)
        return;
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
    c->state = SL_CONN_CLOSING;
    if (handling) {
        /* The client left mid-request: the handler cancels its upstream now (§3.4). */
        const sl_conn_hooks_t *h = c->hooks;
        void *ud = c->hooks_ud;
        if (!c->status)
            c->status = 499; /* nginx's "client closed request" */
        if (h && h->gone)
            h->gone(ud); /* may add to log_extra before the access line is written */
        finish_request(c);
    }
    if (c->ws_hooks && c->ws_hooks->closed)
        c->ws_hooks->closed(c->ws_ud);
    c->ws_hooks = NULL;
    conn_unlink(c);
    uv_close((uv_handle_t *)&c->timer, on_closed);
    uv_close((uv_handle_t *)&c->tcp, on_closed);
}

/* ---- WebSocket ---- */

/* Client bytes go to the codec in pieces this large, so the replies one read provokes overshoot
 * the high-water mark by at most a piece's worth of frames (ws_input). */
#define WS_FEED_PIECE 1024
/* How long our close frame (or our reply to the client's) waits for the handshake to complete
 * before the socket is closed anyway: a peer that went silent will not answer it. */
#define WS_CLOSE_WAIT_MS 2000

static void ws_on_close_wait(uv_timer_t *t)
{
    sl_conn_close(t->data);
}

/* A close was sent or received: the socket closes once the handshake is done and flushed
 * (after_output), or when the wait is over, whichever is first. Replaces the tick. */
static void ws_close_wait(sl_conn_t *c)
{
    if (c->ws_closing)
        return;
    c->ws_closing = true;
    arm_timer(c, WS_CLOSE_WAIT_MS, ws_on_close_wait);
}

static uint64_t ws_ping_due(const sl_conn_t *c, uint64_t every)
{
    return (c->ws_rx_at > c->ws_ping_at ? c->ws_rx_at : c->ws_ping_at) + every;
}

static void ws_on_tick(uv_timer_t *t);

/* One timer serves both deadlines: it fires at the next ping or at the idle deadline, whichever
 * comes first, and the tick works out which. Frames only move ws_rx_at, so a busy socket costs
 * no timer updates. */
static void ws_arm(sl_conn_t *c)
{
    const sl_config_t *cfg = c->x->cfg;
    uint64_t now = uv_now(&c->x->loop), due = UINT64_MAX;
    if (c->ws_closing)
        return;
    if (cfg->ws_idle_ms)
        due = c->ws_rx_at + cfg->ws_idle_ms;
    if (cfg->ws_ping_ms && ws_ping_due(c, cfg->ws_ping_ms) < due)
        due = ws_ping_due(c, cfg->ws_ping_ms);
    if (due == UINT64_MAX)
        uv_timer_stop(&c->timer); /* both off: long-lived with no deadline */
    else
        arm_timer(c, due > now ? due - now : 1, ws_on_tick);
}

/* A client silent (no whole frame, pongs included) for ws_idle is told 1001 and closed; one
 * silent for ws_ping is pinged, which a live client (every browser) answers by itself. */
static void ws_on_tick(uv_timer_t *t)
{
    sl_conn_t *c = t->data;
    const sl_config_t *cfg = c->x->cfg;
    uint64_t now = uv_now(&c->x->loop);
    if (c->ws_busy)
        c->ws_rx_at = now; /* an answer going out is not idleness; its end restarts the count */
    if (cfg->ws_idle_ms && now - c->ws_rx_at >= cfg->ws_idle_ms) {
        sl_conn_ws_close(c, 1001, "idle timeout"); /* "going away" */
        return;
    }
    if (cfg->ws_ping_ms && now >= ws_ping_due(c, cfg->ws_ping_ms)) {
        sl_ws_ping(c->ws);
        c->ws_ping_at = now;
        schedule(c);
    }
    ws_arm(c);
}

/* Feeds client bytes to the codec a piece at a time and stops, keeping the rest in c->in and
 * reading nothing more, once the replies they caused pass the high-water mark: one 64 KiB read
 * can hold thousands of tiny frames that each get an answer, so checking between reads would
 * not bound the output. ws_output_drained resumes. */
static void ws_input(sl_conn_t *c, const char *p, size_t n)
{
    size_t off = 0;
    while (off < n && c->state == SL_CONN_WS && sl_ws_reading(c->ws)) {
        if (c->ws_paused || sl_conn_queued(c) >= c->high_water) {
            sl_buf_append(&c->in, p + off, n - off);
            c->ws_paused = true;
            break;
        }
        size_t k = n - off < WS_FEED_PIECE ? n - off : WS_FEED_PIECE;
        if (sl_ws_feed(c->ws, p + off, k) != 0)
            break; /* a protocol violation: the codec queued its close and reads no more */
        off += k;
    }
    if (c->state != SL_CONN_WS)
        return; /* a handler closed the connection */
    if (!sl_ws_reading(c->ws)) {
        set_reading(c, false); /* the close frames go out, then the socket closes */
        ws_close_wait(c);
    } else {
        set_reading(c, !c->ws_paused);
    }
    schedule(c);
}

/* Runs whenever output went out (after_output): once the queued replies fall below the
 * low-water mark, the input ws_input held back is fed and reading resumes. */
static void ws_output_drained(sl_conn_t *c)
{
    if (!c->ws_paused || c->state != SL_CONN_WS || sl_conn_queued(c) >= c->low_water)
        return;
    c->ws_paused = false;
    sl_buf_t held = c->in;
    sl_buf_init(&c->in);
    ws_input(c, held.data, held.len);
    sl_buf_dispose(&held);
}

static void ws_on_frame(void *ud)
{
    sl_conn_t *c = ud;
    c->ws_rx_at = uv_now(&c->x->loop);
}

static void ws_on_text(void *ud, const char *msg, size_t len)
{
    sl_conn_t *c = ud;
    if (c->ws_hooks && c->ws_hooks->message && c->state == SL_CONN_WS)
        c->ws_hooks->message(c, c->ws_ud, msg, len);
}

static void ws_on_close(void *ud, uint16_t code)
{
    sl_conn_t *c = ud;
    if (c->ws_busy && c->hooks && c->hooks->gone) {
        /* The client closed mid-answer: cancel like a disconnect (§3.4). */
        const sl_conn_hooks_t *h = c->hooks;
        c->ws_busy = false;
        c->status = 499;
        h->gone(c->hooks_ud);
        finish_request(c);
    }
    set_reading(c, false);
    schedule(c);
}

static const sl_ws_callbacks_t ws_callbacks = {
    .on_text = ws_on_text, .on_close = ws_on_close, .on_frame = ws_on_frame};

static bool header_has_token(const char *v, const char *token)
{
    size_t n = strlen(token);
    for (const char *p = v; p && *p;) {
        while (*p == ' ' || *p == ',')
            p++;
        if (strncasecmp(p, token, n) == 0 && (p[n] == '\0' || p[n] == ',' || p[n] == ' '))
            return true;
        p = strchr(p, ',');
    }
    return false;
}

bool sl_conn_ws_upgrade(sl_conn_t *c, const sl_ws_hooks_t *hooks, void *ud)
{
    const sl_http_req_t *r = &c->req;
    const char *upgrade = sl_http_req_header(r, "upgrade");
    const char *connection = sl_http_req_header(r, "connection");
    const char *version = sl_http_req_header(r, "sec-websocket-version");
    const char *key = sl_http_req_header(r, "sec-websocket-key");
    char accept[29];
    if (!upgrade || !header_has_token(upgrade, "websocket") || !connection ||
        !header_has_token(connection, "upgrade") || !key || sl_ws_accept_key(key, accept) != 0) {
        sl_conn_respond_error(c, 400, "invalid_request_error", "websocket_required", NULL,
                              "this endpoint speaks WebSocket: send a valid Upgrade request", NULL);
        return false;
    }
    if (!version || strcmp(version, "13") != 0) {
        sl_conn_respond_error(c, 426, "invalid_request_error", "websocket_version", NULL,
                              "WebSocket version 13 is required", "Sec-WebSocket-Version: 13\r\n");
        return false;
    }
    sl_buf_printf(&c->out,
                  "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                  "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n"
                  "X-Request-Id: %s\r\n\r\n",
                  accept, c->rid);
    c->status = 101;
    finish_request(c); /* the upgrade itself is one access-log line */
    c->state = SL_CONN_WS;
    c->ws = sl_ws_new(SL_WS_MAX_MESSAGE, &ws_callbacks, c, &c->out);
    c->ws_hooks = hooks;
    c->ws_ud = ud;
    /* Long-lived by design, but a silent client is pinged, and closed after ws_idle. */
    c->ws_rx_at = c->ws_ping_at = uv_now(&c->x->loop);
    ws_arm(c);
    schedule(c);
    return true; /* frames right behind the handshake are fed by ws_feed_leftover */
}

void sl_conn_ws_begin(sl_conn_t *c)
{
    c->ws_busy = true;
    c->x->active++;
    c->t_start = sl_now_ms();
    c->status = 0;
    c->bytes_out = 0;
    new_request_id(c);
}

void sl_conn_ws_send(sl_conn_t *c, const char *msg, size_t len)
{
    if (!c->ws || c->state == SL_CONN_CLOSING)
        return;
    sl_ws_send_text(c->ws, msg, len);
    schedule(c);
}

void sl_conn_ws_close(sl_conn_t *c, uint16_t code, const char *reason)
{
    if (!c->ws || c->state == SL_CONN_CLOSING)
        return;
    sl_ws_close(c->ws, code, reason);
    ws_close_wait(c);
    schedule(c);
}

/* ---- who the client is ---- */

const char *sl_conn_tcp_peer(sl_conn_t *c)
{
    if (c->tcp_peer_read)
        return c->tcp_peer;
    c->tcp_peer_read = true; /* a syscall: at most once per connection */
    struct sockaddr_storage ss;
    int len = sizeof ss;
    char *out = c->tcp_peer;
    out[0] = '\0';
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) != 0)
        return out;
    if (ss.ss_family == AF_INET)
        (void)uv_ip4_name((const struct sockaddr_in *)&ss, out, SL_IP_TEXT); /* "" on failure */
    else if (ss.ss_family == AF_INET6)
        (void)uv_ip6_name((const struct sockaddr_in6 *)&ss, out, SL_IP_TEXT);
    return out;
}

/* Every line of a list header, comma-joined (RFC 9110 §5.3), or NULL when absent. One line is
 * returned as is; tmp holds a join. */
static const char *header_list(const sl_http_req_t *r, const char *lname, sl_buf_t *tmp)
{
    const char *first = sl_http_req_header(r, lname);
    const char *next = first ? sl_http_req_header_next(r, lname, first) : NULL;
    if (!next)
        return first;
    sl_buf_puts(tmp, first);
    for (; next; next = sl_http_req_header_next(r, lname, next)) {
        sl_buf_puts(tmp, ", ");
        sl_buf_puts(tmp, next);
    }
    return tmp->data;
}

const char *sl_conn_client_ip(sl_conn_t *c)
{
    if (c->client_known)
        return c->client_ip;
    c->client_known = true;
    const sl_config_t *cfg = c->x->cfg;
    const char *peer = sl_conn_tcp_peer(c);
    if (!cfg->ntrusted_proxies) {
        snprintf(c->client_ip, sizeof c->client_ip, "%s", peer);
        return c->client_ip;
    }
    sl_buf_t xff, fwd;
    sl_buf_init(&xff);
    sl_buf_init(&fwd);
    (void)sl_client_ip(cfg->trusted_proxies, cfg->ntrusted_proxies, peer,
                       header_list(&c->req, "x-forwarded-for", &xff),
                       header_list(&c->req, "forwarded", &fwd), c->client_ip); /* peer or not */
    sl_buf_dispose(&xff);
    sl_buf_dispose(&fwd);
    return c->client_ip;
}

void sl_conn_peer(sl_conn_t *c, char *out, size_t cap)
{
    snprintf(out, cap, "%s", sl_conn_client_ip(c));
}

/* ---- accessors ---- */

const sl_http_req_t *sl_conn_request(const sl_conn_t *c)
{
    return &c->req;
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
