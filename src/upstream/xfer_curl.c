/* The libcurl transport of an upstream transfer: one easy handle on the worker's multi, for
 * every URL the built-in HTTP/1.1 client does not take (https, proxies, host names). */
#include <curl/curl.h>
#include <string.h>

#include "core/alloc.h"
#include "upstream/multi.h"
#include "upstream/xfer_transport.h"

typedef struct curl_t {
    sl_xfer_t *x;               /* borrowed: the transfer owns us and stops us before it goes */
    const sl_xfer_sink_t *sink; /* borrowed (static): x's reports */
    CURL *easy;                 /* owned: from the multi's pool, given back on stop */
    sl_multi_t *multi;
    struct curl_slist *headers; /* owned: made from the wire's, read by curl all along */
    sl_buf_t body;              /* owned: CURLOPT_POSTFIELDS does not copy */
    bool status_sent;
} curl_t;

/* Appends each "Name: value\r\n" (or "Name:\r\n") line of block as a curl_slist entry. Lines
 * end at their CR: a value never holds one (headers.h). False when curl is out of memory (l
 * is then what it was). */
static bool append_lines(struct curl_slist **l, const sl_buf_t *block)
{
    sl_buf_t line;
    sl_buf_init(&line);
    bool ok = true;
    const char *p = block->data, *end = p + block->len;
    while (ok && p < end) {
        const char *eol = memchr(p, '\r', (size_t)(end - p));
        SL_ASSERT(eol && eol + 1 < end && eol[1] == '\n');
        sl_buf_reset(&line);
        sl_buf_append(&line, p, (size_t)(eol - p));
        struct curl_slist *next = curl_slist_append(*l, line.data);
        ok = next != NULL;
        if (ok)
            *l = next;
        p = eol + 2;
    }
    sl_buf_dispose(&line);
    return ok;
}

/* sluice's header block as curl takes it: "Name: value" entries, then "Name:" for each header
 * curl must not add of its own. NULL and false when out of memory. */
static bool to_slist(const sl_headers_t *h, struct curl_slist **out)
{
    *out = NULL;
    if (append_lines(out, &h->send) && append_lines(out, &h->omit))
        return true;
    curl_slist_free_all(*out);
    *out = NULL;
    return false;
}

static void send_status(curl_t *c)
{
    if (c->status_sent)
        return;
    long status = 0;
    curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &status);
    c->status_sent = true;
    c->sink->status(c->x, (int)status);
}

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
    curl_t *c = ud;
    size_t len = size * n;
    const char *colon = memchr(p, ':', len);
    if (!colon || (len > 5 && memcmp(p, "HTTP/", 5) == 0))
        return len; /* the status line, or the blank line ending the head */
    const char *v = colon + 1, *end = p + len;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
        end--;
    c->sink->header(c->x, p, (size_t)(colon - p), v, (size_t)(end - v));
    return len;
}

static size_t on_data(char *p, size_t size, size_t n, void *ud)
{
    curl_t *c = ud;
    size_t len = size * n;
    send_status(c);
    switch (c->sink->body(c->x, p, len)) {
    case SL_XFER_TAKEN: return len;
    case SL_XFER_PAUSE:
        return CURL_WRITEFUNC_PAUSE; /* curl keeps the bytes and hands them back on resume */
    default: return 0;               /* curl ends the transfer with a write error */
    }
}

static void on_done(void *ud, CURLcode res)
{
    curl_t *c = ud;
    sl_xfer_result_t r = SL_XFER_DISCONNECTED;
    if (res == CURLE_OK) {
        send_status(c);
        r = SL_XFER_OK;
    } else if (res == CURLE_COULDNT_CONNECT || res == CURLE_COULDNT_RESOLVE_HOST) {
        r = SL_XFER_UNREACHABLE;
    } else if (res == CURLE_OPERATION_TIMEDOUT) {
        r = SL_XFER_CONNECT_TIMEOUT;
    }
    c->sink->done(c->x, r, curl_easy_strerror(res));
}

static void curl_stop(void *state)
{
    curl_t *c = state;
    sl_multi_remove(c->multi, c->easy);
    sl_multi_easy_done(c->multi, c->easy);
    curl_slist_free_all(c->headers);
    sl_buf_dispose(&c->body);
    sl_free(c);
}

static void curl_resume(void *state)
{
    curl_t *c = state;
    /* May call on_data right here with the bytes curl held back. */
    curl_easy_pause(c->easy, CURLPAUSE_CONT);
}

static int curl_start(sl_xfer_t *x, sl_xfer_wire_t *w, void **state)
{
    struct curl_slist *headers;
    if (!to_slist(&w->headers, &headers))
        return SL_EINTERNAL;
    curl_t *c = sl_calloc(1, sizeof *c);
    c->x = x;
    c->sink = w->sink;
    c->multi = w->multi;
    c->headers = headers; /* curl reads them for the whole transfer */
    CURL *e = c->easy = sl_multi_easy(c->multi);
    curl_easy_setopt(e, CURLOPT_URL, w->url);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, c->headers);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, w->body.data ? w->body.data : "");
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)w->body.len);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, c);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, c);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    /* curl's receive buffer is held for the whole transfer: an idle stream would keep 16 KiB
     * (the default) for the few hundred bytes an SSE chunk needs. 4 KiB keeps memory per open
     * stream low; bigger answers just take more reads. */
    curl_easy_setopt(e, CURLOPT_BUFFERSIZE, 4096L);
    /* 0 means "no timeout" in our config; never hand curl a 0 it would read differently. */
    if (w->connect_ms)
        curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)w->connect_ms);
    if (sl_multi_add(c->multi, e, on_done, c) != 0) {
        sl_multi_easy_done(c->multi, e);
        curl_slist_free_all(c->headers);
        sl_free(c);
        return SL_EINTERNAL;
    }
    sl_headers_dispose(&w->headers); /* taken: they live on in c->headers */
    c->body = w->body;
    *state = c;
    return 0;
}

const sl_xfer_transport_t sl_xfer_curl = {
    .name = "curl",
    .core_connect_deadline = false,
    .start = curl_start,
    .stop = curl_stop,
    .resume = curl_resume,
};
