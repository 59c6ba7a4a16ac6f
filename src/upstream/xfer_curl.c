/* The libcurl transport of an upstream transfer: one easy handle on the worker's multi, for
 * every URL the built-in HTTP/1.1 client does not take (https, proxies, host names). */
#include <string.h>

#include "core/alloc.h"
#include "upstream/multi.h"
#include "upstream/xfer_transport.h"

typedef struct curl_t {
    sl_xfer_t *x; /* borrowed: the transfer owns us and stops us before it goes */
    CURL *easy;   /* owned: from the multi's pool, given back on stop */
    sl_multi_t *multi;
    struct curl_slist *headers; /* owned: curl reads them for the whole transfer */
    sl_buf_t body;              /* owned: CURLOPT_POSTFIELDS does not copy */
    bool status_sent;
} curl_t;

static void send_status(curl_t *c)
{
    if (c->status_sent)
        return;
    long status = 0;
    curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &status);
    c->status_sent = true;
    sl_xfer_on_status(c->x, (int)status);
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
    sl_xfer_on_header(c->x, p, (size_t)(colon - p), v, (size_t)(end - v));
    return len;
}

static size_t on_data(char *p, size_t size, size_t n, void *ud)
{
    curl_t *c = ud;
    size_t len = size * n;
    send_status(c);
    switch (sl_xfer_on_body(c->x, p, len)) {
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
    sl_xfer_on_done(c->x, r, curl_easy_strerror(res));
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
    curl_t *c = sl_calloc(1, sizeof *c);
    c->x = x;
    c->multi = w->multi;
    CURL *e = c->easy = sl_multi_easy(c->multi);
    curl_easy_setopt(e, CURLOPT_URL, w->url);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, w->headers);
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
        sl_free(c);
        return SL_EINTERNAL;
    }
    c->headers = w->headers; /* taken */
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
