/* The response writer: an HTTP response's head (status line, framing, request id, CORS), its
 * body (chunked framing patched in place), its end, the one-call answers (respond, the
 * OpenAI-shaped error) and the access-log line that closes each one. It only fills c->out and
 * puts the connection on the turn's flush list; conn.c flushes it. */
#include "net/conn.h"

#include "core/ctx.h"
#include "net/conn_int.h"

#include <string.h>

#include "codec/ws.h"
#include "config/config.h"
#include "core/err.h"
#include "core/log.h"
#include "obs/metrics.h"

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

void conn_schedule(sl_conn_t *c)
{
    if (c->pending)
        return;
    c->pending = true;
    c->pending_next = c->x->pending;
    c->x->pending = c;
}

void conn_close_chunk(sl_conn_t *c)
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
bool conn_preflight(sl_conn_t *c)
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
    conn_schedule(c);
}

void sl_conn_body(sl_conn_t *c, const void *p, size_t n)
{
    if (n == 0 || c->state == SL_CONN_CLOSING)
        return;
    if (c->ws) {
        sl_ws_send_text(c->ws, p, n); /* one body write is one message */
        c->bytes_out += n;
        conn_schedule(c);
        return;
    }
    if (c->chunked && !c->chunk_open) {
        c->chunk_at = c->out.len;
        sl_buf_append(&c->out, "00000000\r\n", 10);
        c->chunk_open = true;
    }
    sl_buf_append(&c->out, p, n);
    c->bytes_out += n;
    conn_schedule(c);
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

void conn_finish_request(sl_conn_t *c)
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
        c->ws_ops->end(c, close);
        return;
    }
    conn_close_chunk(c);
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
        conn_finish_request(c);
        sl_http_req_reset(&c->req);
        conn_set_state(c, SL_CONN_READING, "response ended");
        c->need_input = true;
    }
    conn_schedule(c);
}

void sl_conn_respond(sl_conn_t *c, int status, const char *content_type, const char *body,
                     size_t len, const char *extra)
{
    sl_conn_head(c, status, content_type, (long)len, extra);
    sl_buf_append(&c->out, body, len);
    c->bytes_out += len;
    sl_conn_end(c, false);
}

void sl_conn_respond_err(sl_conn_t *c, int err, const char *code, const char *param,
                         const char *message, const char *extra)
{
    sl_conn_respond_error(c, sl_err_status(err), sl_err_type(err), code, param,
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
