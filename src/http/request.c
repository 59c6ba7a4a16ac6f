/* http-parser callbacks that fill an sl_http_req_t and enforce the size limits as bytes arrive. */
#include "http/request.h"

#include <ctype.h>
#include <stdint.h>
#include <string.h>

#include "core/err.h"

static sl_http_req_t *req_of(http_parser *p)
{
    return (sl_http_req_t *)p->data;
}

static int fail(sl_http_req_t *r, int err, const char *msg)
{
    r->error = err;
    r->error_msg = msg;
    return 1; /* non-zero stops http-parser */
}

static int on_message_begin(http_parser *p)
{
    req_of(p)->started = true;
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t n)
{
    sl_http_req_t *r = req_of(p);
    r->method_read = true; /* the target follows the method */
    sl_buf_append(&r->url, at, n);
    return 0;
}

/* A field value holds visible bytes, spaces and tabs only (RFC 9110 §5.5). A NUL, CR, LF or other
 * control would end the value early in "name\0value\0" storage and shift every later pair. */
static bool value_is_clean(const char *at, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)at[i];
        if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
            return false;
    }
    return true;
}

static int on_header_field(http_parser *p, const char *at, size_t n)
{
    sl_http_req_t *r = req_of(p);
    if (r->headers_done)
        return 0; /* a trailer (http-parser bounds them): never a request header */
    if (r->hstate != SL_HDR_NAME) {
        if (r->hstate == SL_HDR_VALUE)
            sl_buf_putc(&r->hdrs, '\0'); /* close the previous value */
        r->hstate = SL_HDR_NAME;
        r->nfields++;
    }
    char *dst = sl_buf_reserve(&r->hdrs, n);
    for (size_t i = 0; i < n; i++)
        dst[i] = (char)tolower((unsigned char)at[i]);
    sl_buf_commit(&r->hdrs, n);
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t n)
{
    sl_http_req_t *r = req_of(p);
    if (r->headers_done)
        return 0; /* a trailer's value */
    if (!value_is_clean(at, n))
        return fail(r, SL_EINVAL, "control character in a header value");
    if (r->hstate != SL_HDR_VALUE) {
        sl_buf_putc(&r->hdrs, '\0'); /* close the name */
        r->hstate = SL_HDR_VALUE;
    }
    sl_buf_append(&r->hdrs, at, n);
    return 0;
}

/* RFC 9112 §3.2: a 1.1 request without Host, or any request with two, gets a 400. */
static bool host_count_wrong(const sl_http_req_t *r)
{
    const char *host = sl_http_req_header(r, "host");
    if (host && sl_http_req_header_next(r, "host", host))
        return true;
    bool http11 = r->parser.http_major == 1 && r->parser.http_minor >= 1;
    return http11 && !host;
}

static int on_headers_complete(http_parser *p)
{
    sl_http_req_t *r = req_of(p);
    if (r->hstate == SL_HDR_NAME)
        sl_buf_putc(&r->hdrs, '\0'); /* a name the parser ended without a value */
    if (r->hstate != SL_HDR_NONE)
        sl_buf_putc(&r->hdrs, '\0');
    r->hstate = SL_HDR_NONE;
    r->headers_done = true;
    http_parser_pause(p, 1); /* feed_head learns where the head ends (see there) */
    r->keep_alive = http_should_keep_alive(p);
    /* Refuse a declared oversize body before reading any of it. */
    /* -1, not fail()'s 1: from this callback 1 means "no body", not "stop". */
    if ((p->flags & F_CONTENTLENGTH) && p->content_length > r->max_body)
        return fail(r, SL_ETOOBIG, "request body too large") ? -1 : 0;
    if (host_count_wrong(r))
        return fail(r, SL_EINVAL, "an HTTP/1.1 request needs exactly one Host header") ? -1 : 0;
    const char *expect = sl_http_req_header(r, "expect");
    r->expect_continue = expect && strcasecmp(expect, "100-continue") == 0;
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t n)
{
    sl_http_req_t *r = req_of(p);
    if (r->body.len + n > r->max_body)
        return fail(r, SL_ETOOBIG, "request body too large");
    sl_buf_append(&r->body, at, n);
    return 0;
}

static int on_message_complete(http_parser *p)
{
    sl_http_req_t *r = req_of(p);
    r->complete = true;
    /* Pipelined requests wait: we answer one at a time, in order. */
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

void sl_http_req_init(sl_http_req_t *r, size_t max_header, size_t max_body)
{
    memset(r, 0, sizeof *r);
    http_parser_init(&r->parser, HTTP_REQUEST);
    r->parser.data = r;
    r->max_header = max_header;
    r->max_body = max_body;
}

void sl_http_req_dispose(sl_http_req_t *r)
{
    sl_buf_dispose(&r->url);
    sl_buf_dispose(&r->hdrs);
    sl_buf_dispose(&r->body);
}

void sl_http_req_reset(sl_http_req_t *r)
{
    /* Keep small buffers for the next request on a keep-alive connection, drop big ones. */
    sl_buf_reset(&r->url);
    sl_buf_reset(&r->hdrs);
    sl_buf_reset(&r->body);
    sl_buf_shrink(&r->url, 512);
    sl_buf_shrink(&r->hdrs, 2048);
    sl_buf_shrink(&r->body, 8192);
    enum http_errno e = HTTP_PARSER_ERRNO(&r->parser);
    if (e == HPE_PAUSED)
        http_parser_pause(&r->parser, 0);
    else if (e != HPE_OK)
        http_parser_init(&r->parser, HTTP_REQUEST); /* http-parser cannot resume from an error */
    r->head_bytes = 0;
    r->started = r->method_read = r->headers_done = r->complete = false;
    r->hstate = SL_HDR_NONE;
    r->nfields = 0;
    r->line_ended = false;
    r->expect_continue = false;
    r->error = 0;
    r->error_msg = NULL;
}

/* Runs http-parser and turns its errors into ours. */
static size_t execute(sl_http_req_t *r, const char *p, size_t n)
{
    size_t used = http_parser_execute(&r->parser, &settings, p, n);
    enum http_errno e = HTTP_PARSER_ERRNO(&r->parser);
    if (r->error || e == HPE_PAUSED || e == HPE_OK)
        return used;
    if (e == HPE_HEADER_OVERFLOW)
        (void)fail(r, SL_EHEADERS, "request header fields too large");
    else
        (void)fail(r, SL_EINVAL, http_errno_description(e));
    return used;
}

/* The head goes to http-parser a line at a time (its CRLF included), for what the parser's own
 * callbacks cannot give, since they come per piece of input:
 * - the head's size, to the byte, so the limit holds at the same byte however TCP cut it; a
 *   request line alone over it is a 414, not a 431;
 * - obs-fold (a line starting with a space or tab), which http-parser takes as part of the
 *   previous value (after an empty value not even its callbacks show it), while a proxy in front
 *   may read the same bytes differently: request smuggling.
 * on_headers_complete pauses the parser, so the head's end is known exactly too. Returns the
 * bytes consumed; the head's last byte is left for the body phase to feed again. */
static size_t feed_head(sl_http_req_t *r, const char *p, size_t n)
{
    size_t at = 0;
    while (at < n && !r->headers_done && !r->error) {
        if (r->line_ended && (p[at] == ' ' || p[at] == '\t')) {
            (void)fail(r, SL_EINVAL, "obsolete line folding in the request head");
            break;
        }
        const char *lf = memchr(p + at, '\n', n - at);
        size_t len = lf ? (size_t)(lf - (p + at)) + 1 : n - at;
        size_t budget = r->max_header - r->head_bytes;
        bool cut = len > budget;
        if (cut)
            len = budget;
        size_t used = len ? execute(r, p + at, len) : 0;
        if (r->headers_done) { /* paused on the head's last byte: it is not consumed yet */
            r->head_bytes += used + 1;
            return at + used;
        }
        r->head_bytes += used;
        at += used;
        if (r->error)
            break;
        if (cut) {
            bool in_line = !r->line_ended && r->nfields == 0;
            (void)fail(r, in_line ? SL_EURI : SL_EHEADERS,
                       in_line ? "request target too long" : "request header fields too large");
            break;
        }
        r->line_ended = r->started && used && p[at - 1] == '\n';
    }
    return at;
}

size_t sl_http_req_feed(sl_http_req_t *r, const char *p, size_t n)
{
    if (r->complete || r->error)
        return 0;
    size_t at = 0;
    if (!r->headers_done) {
        at = feed_head(r, p, n);
        if (r->error || !r->headers_done)
            return at;
        http_parser_pause(&r->parser, 0);
    }
    return at < n ? at + execute(r, p + at, n - at) : at;
}

/* The value of the first header named lname whose name starts at or after p, or NULL. The
 * end is computed only with storage present: a request without header lines has none. */
static const char *header_from(const sl_http_req_t *r, const char *lname, const char *p)
{
    if (!p)
        return NULL;
    const char *end = r->hdrs.data + r->hdrs.len;
    while (p < end) {
        const char *name = p;
        const char *value = name + strlen(name) + 1;
        if (value >= end)
            break;
        if (strcmp(name, lname) == 0)
            return value;
        p = value + strlen(value) + 1;
    }
    return NULL;
}

const char *sl_http_req_header(const sl_http_req_t *r, const char *lname)
{
    return header_from(r, lname, r->hdrs.data);
}

const char *sl_http_req_header_next(const sl_http_req_t *r, const char *lname, const char *prev)
{
    return header_from(r, lname, prev + strlen(prev) + 1);
}

const char *sl_http_req_path(const sl_http_req_t *r, size_t *len)
{
    const char *u = r->url.data ? r->url.data : "";
    const char *q = strchr(u, '?');
    *len = q ? (size_t)(q - u) : strlen(u);
    return u;
}

const char *sl_http_req_method(const sl_http_req_t *r)
{
    return http_method_str((enum http_method)r->parser.method);
}

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

static bool decode_into(const char *p, size_t n, sl_buf_t *out)
{
    for (size_t i = 0; i < n; i++) {
        char ch = p[i];
        if (ch == '+') {
            ch = ' ';
        } else if (ch == '%') {
            int hi = i + 2 < n ? hexval(p[i + 1]) : -1;
            int lo = i + 2 < n ? hexval(p[i + 2]) : -1;
            if (hi < 0 || lo < 0)
                return false;
            ch = (char)(hi * 16 + lo);
            if (ch == '\0')
                return false; /* "%00" would cut the C string the caller sees */
            i += 2;
        }
        sl_buf_putc(out, ch);
    }
    return true;
}

bool sl_http_req_query(const sl_http_req_t *r, const char *name, sl_buf_t *out)
{
    sl_buf_reset(out);
    const char *u = r->url.data ? r->url.data : "";
    const char *q = strchr(u, '?');
    size_t nl = strlen(name);
    for (const char *p = q ? q + 1 : NULL; p && *p;) {
        const char *end = strchr(p, '&');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        const char *eq = memchr(p, '=', len);
        size_t klen = eq ? (size_t)(eq - p) : len;
        if (klen == nl && memcmp(p, name, nl) == 0) {
            const char *v = eq ? eq + 1 : p + len;
            sl_buf_append(out, "", 0); /* terminated even when the value is empty */
            return decode_into(v, (size_t)(p + len - v), out);
        }
        p = end ? end + 1 : NULL;
    }
    return false;
}
