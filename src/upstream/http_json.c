/* One JSON POST on the worker's curl multi (see http_json.h): a curl easy handle from the
 * multi's pool, deadlines kept by curl itself (so no timer of our own), the answer collected up
 * to a cap and handed to the owner once the transfer is over. */
#include "upstream/http_json.h"

#include <curl/curl.h>
#include <stdbool.h>
#include <string.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/log.h"
#include "upstream/multi.h"

#define DEFAULT_TIMEOUT_MS 2000
#define DEFAULT_MAX_BODY   ((size_t)64 * 1024)

struct sl_http_json {
    sl_multi_t *multi; /* borrowed: the worker's, outlives its transfers */
    CURL *easy;        /* owned until given back to the multi's pool */
    struct curl_slist *headers;
    sl_http_json_done_cb done;
    void *ud;
    sl_buf_t body; /* the answer so far */
    size_t max_body;
    bool too_big;
};

/* Gives the handle back and frees h; what the answer said must be read before. */
static void teardown(sl_http_json_t *h)
{
    sl_multi_remove(h->multi, h->easy);
    sl_multi_easy_done(h->multi, h->easy);
    curl_slist_free_all(h->headers);
    sl_buf_dispose(&h->body);
    sl_free(h);
}

static size_t on_data(char *p, size_t size, size_t n, void *ud)
{
    sl_http_json_t *h = ud;
    size_t len = size * n;
    if (h->body.len + len > h->max_body) {
        h->too_big = true;
        return 0; /* curl ends the transfer with CURLE_WRITE_ERROR */
    }
    sl_buf_append(&h->body, p, len);
    return len;
}

/* CURLcode and status → one of our codes (the original is logged here, where it enters). */
static int result_err(const sl_http_json_t *h, CURLcode res, long status)
{
    if (res == CURLE_OK)
        return status >= 200 && status < 300 ? 0 : SL_EUPSTREAM;
    if (h->too_big)
        return SL_ETOOBIG;
    sl_log(SL_LOG_WARN, "JSON callback failed: %s", curl_easy_strerror(res));
    if (res == CURLE_OPERATION_TIMEDOUT)
        return SL_ETIMEOUT;
    if (res == CURLE_COULDNT_CONNECT || res == CURLE_COULDNT_RESOLVE_HOST)
        return SL_EUNAVAIL;
    return SL_EUPSTREAM;
}

/* From the multi, outside any curl callback: the handle may be removed here. */
static void on_done(void *ud, CURLcode res)
{
    sl_http_json_t *h = ud;
    long status = 0;
    curl_easy_getinfo(h->easy, CURLINFO_RESPONSE_CODE, &status);
    int err = result_err(h, res, status);
    /* Detach the answer and free h before done runs: done may start other transfers on this
     * multi, and must find nothing of ours left to release. */
    sl_buf_t body = h->body;
    sl_buf_init(&h->body);
    sl_http_json_done_cb done = h->done;
    void *owner = h->ud;
    teardown(h);
    done(owner, err, status, body.data ? body.data : "", body.len);
    sl_buf_dispose(&body);
}

static void set_options(sl_http_json_t *h, const char *url, const char *body, uint64_t ms)
{
    CURL *e = h->easy;
    h->headers = curl_slist_append(h->headers, "Content-Type: application/json");
    h->headers = curl_slist_append(h->headers, "Accept: application/json");
    h->headers = curl_slist_append(h->headers, "Expect:"); /* no 100-continue round trip */
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, h->headers);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
    curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, body);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, h);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)ms);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)ms);
}

int sl_http_json_post(sl_multi_t *m, const char *url, const char *body,
                      const sl_http_json_opts_t *opts, sl_http_json_done_cb done, void *ud,
                      sl_http_json_t **out)
{
    sl_http_json_t *h = sl_calloc(1, sizeof *h);
    h->multi = m;
    h->done = done;
    h->ud = ud;
    h->max_body = opts && opts->max_body ? opts->max_body : DEFAULT_MAX_BODY;
    sl_buf_init(&h->body);
    h->easy = sl_multi_easy(m);
    set_options(h, url, body, opts && opts->timeout_ms ? opts->timeout_ms : DEFAULT_TIMEOUT_MS);
    if (sl_multi_add(m, h->easy, on_done, h) != 0) {
        teardown(h); /* removing a handle that was never added is harmless to curl */
        return SL_EINTERNAL;
    }
    *out = h;
    return 0;
}

void sl_http_json_cancel(sl_http_json_t *h)
{
    if (h)
        teardown(h);
}
