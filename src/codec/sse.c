/* Server-Sent Events: the incremental WHATWG parser for upstream streams and the data encoder. */
#include "codec/sse.h"

#include <stdint.h>
#include <string.h>

/* Storage an idle parser keeps; anything a large event grew beyond this is given back. */
#define KEEP_BYTES 4096

void sl_sse_parser_init(sl_sse_parser_t *p, size_t max_event)
{
    sl_buf_init(&p->line);
    sl_buf_init(&p->data);
    sl_buf_init(&p->event);
    sl_buf_init(&p->id);
    p->after_cr = false;
    p->have_data = false;
    p->pend = NULL;
    p->pend_len = 0;
    p->max_event = max_event ? max_event : SIZE_MAX;
}

void sl_sse_parser_dispose(sl_sse_parser_t *p)
{
    sl_buf_dispose(&p->line);
    sl_buf_dispose(&p->data);
    sl_buf_dispose(&p->event);
    sl_buf_dispose(&p->id);
}

/* A blank line: hand the event over, then forget its data and type. The id is the WHATWG
 * "last event ID": it stays until an id: field replaces it. */
/* The bytes of the event's data gathered so far, wherever they are. */
static size_t data_bytes(const sl_sse_parser_t *p)
{
    return p->data.len + (p->pend ? p->pend_len + 1 : 0);
}

/* Moves a data line held by reference into the parser's own storage. */
static void own_pending(sl_sse_parser_t *p)
{
    if (!p->pend)
        return;
    sl_buf_append(&p->data, p->pend, p->pend_len);
    sl_buf_putc(&p->data, '\n');
    p->pend = NULL;
    p->pend_len = 0;
}

static int dispatch(sl_sse_parser_t *p, sl_sse_event_cb cb, void *ud)
{
    int rc = 0;
    if (p->have_data) {
        const char *data = p->pend;
        size_t data_len = p->pend_len;
        if (!data) { /* the data buffer ends in the \n of its last line; the spec drops it */
            p->data.data[--p->data.len] = '\0';
            data = p->data.data;
            data_len = p->data.len;
        }
        sl_sse_event_t ev = {
            .event = p->event.len ? p->event.data : "",
            .event_len = p->event.len,
            .data = data,
            .data_len = data_len,
            .id = p->id.len ? p->id.data : "",
            .id_len = p->id.len,
        };
        rc = cb(ud, &ev);
    }
    p->have_data = false;
    p->pend = NULL;
    p->pend_len = 0;
    sl_buf_reset(&p->data);
    sl_buf_reset(&p->event);
    sl_buf_shrink(&p->data, KEEP_BYTES);
    return rc;
}

/* `stable`: v lies in the bytes being fed (not in the carried line), so it may be held by
 * reference until feed returns. */
static void set_field(sl_sse_parser_t *p, const char *name, size_t nlen, const char *v, size_t vlen,
                      bool stable)
{
    if (nlen == 4 && memcmp(name, "data", 4) == 0) {
        if (stable && !p->have_data) {
            p->pend = v;
            p->pend_len = vlen;
        } else {
            own_pending(p);
            sl_buf_append(&p->data, v, vlen);
            sl_buf_putc(&p->data, '\n');
        }
        p->have_data = true;
    } else if (nlen == 5 && memcmp(name, "event", 5) == 0) {
        sl_buf_reset(&p->event);
        sl_buf_append(&p->event, v, vlen);
    } else if (nlen == 2 && memcmp(name, "id", 2) == 0) {
        if (!memchr(v, '\0', vlen)) { /* the spec ignores ids holding NUL */
            sl_buf_reset(&p->id);
            sl_buf_append(&p->id, v, vlen);
        }
    }
    /* retry: and unknown fields are ignored, as the spec says. */
}

/* One complete line without its terminator. */
static int on_line(sl_sse_parser_t *p, const char *s, size_t n, bool stable, sl_sse_event_cb cb,
                   void *ud)
{
    if (n == 0)
        return dispatch(p, cb, ud);
    if (s[0] == ':')
        return 0; /* comment, e.g. ": keepalive" */
    const char *colon = memchr(s, ':', n);
    if (!colon) {
        set_field(p, s, n, "", 0, true);
        return 0;
    }
    size_t nlen = (size_t)(colon - s);
    size_t off = nlen + 1;
    if (off < n && s[off] == ' ')
        off++;
    set_field(p, s, nlen, s + off, n - off, stable);
    return 0;
}

/* Where the next line ends: the first \r or \n at or after i, or len. The positions of both
 * are remembered across lines so a stream that uses only one kind is still scanned once. */
struct eol {
    size_t nl, cr;
    bool nl_known, cr_known;
};

static size_t find_eol(struct eol *e, const char *buf, size_t len, size_t i)
{
    if (!e->nl_known || e->nl < i) {
        const char *q = memchr(buf + i, '\n', len - i);
        e->nl = q ? (size_t)(q - buf) : len;
        e->nl_known = true;
    }
    if (!e->cr_known || e->cr < i) {
        const char *q = memchr(buf + i, '\r', len - i);
        e->cr = q ? (size_t)(q - buf) : len;
        e->cr_known = true;
    }
    return e->nl < e->cr ? e->nl : e->cr;
}

/* Keeps the unfinished tail of a read. The cap counts the data gathered so far plus the line
 * being read; checking the partial line gives the same verdict as checking it whole later, so
 * the outcome does not depend on how the stream was split into reads. */
static int carry(sl_sse_parser_t *p, const char *s, size_t n)
{
    if (p->line.len + n + data_bytes(p) > p->max_event)
        return SL_ETOOBIG;
    sl_buf_append(&p->line, s, n);
    return 0;
}

static int parse_lines(sl_sse_parser_t *p, const char *buf, size_t len, sl_sse_event_cb cb,
                       void *ud);

int sl_sse_parser_feed(sl_sse_parser_t *p, const char *buf, size_t len, sl_sse_event_cb cb,
                       void *ud)
{
    int rc = parse_lines(p, buf, len, cb, ud);
    own_pending(p); /* buf is the caller's again once this returns */
    return rc;
}

static int parse_lines(sl_sse_parser_t *p, const char *buf, size_t len, sl_sse_event_cb cb,
                       void *ud)
{
    size_t i = 0;
    if (len > 0 && p->after_cr) {
        p->after_cr = false;
        if (buf[0] == '\n')
            i = 1; /* the \n of a \r\n split between two reads */
    }
    struct eol e = {0};
    while (i < len) {
        size_t end = find_eol(&e, buf, len, i);
        if (end == len)
            return carry(p, buf + i, len - i);
        const char *s = buf + i;
        size_t n = end - i;
        /* Hot path: a line complete inside this read is parsed where it lies, uncopied. */
        bool carried = p->line.len > 0;
        if (carried) {
            sl_buf_append(&p->line, s, n);
            s = p->line.data;
            n = p->line.len;
        }
        if (n + data_bytes(p) > p->max_event)
            return SL_ETOOBIG;
        i = end + 1;
        if (buf[end] == '\r') {
            if (i == len)
                p->after_cr = true;
            else if (buf[i] == '\n')
                i++;
        }
        int rc = on_line(p, s, n, !carried, cb, ud);
        if (carried) {
            sl_buf_reset(&p->line);
            sl_buf_shrink(&p->line, KEEP_BYTES);
        }
        if (rc != 0)
            return rc;
    }
    return 0;
}

static void encode_line(sl_buf_t *out, const char *s, size_t n)
{
    sl_buf_append(out, "data: ", 6);
    sl_buf_append(out, s, n);
    sl_buf_putc(out, '\n');
}

/* Splits on \r\n and a lone \r as well as \n: a bare \r reaching a client would end the line
 * there and let the rest be read as a field of its own. */
void sl_sse_encode_data(sl_buf_t *out, const char *data, size_t len)
{
    size_t start = 0;
    for (size_t i = 0; i < len; i++) {
        if (data[i] != '\n' && data[i] != '\r')
            continue;
        encode_line(out, data + start, i - start);
        if (data[i] == '\r' && i + 1 < len && data[i + 1] == '\n')
            i++;
        start = i + 1;
    }
    encode_line(out, data + start, len - start);
    sl_buf_putc(out, '\n');
}
