/* The Anthropic provider: POST {base_url}/messages with x-api-key and anthropic-version, on the
 * shared transfer. The request is translated from the canonical (OpenAI) body and the answer
 * back into canonical events by anthropic_codec.c; nothing Anthropic-shaped ever reaches a
 * dialect (there is no raw passthrough: the OpenAI dialect synthesises its chunks). */
#include <time.h>

#include "core/alloc.h"
#include "upstream/anthropic_codec.h"
#include "upstream/xfer.h"

typedef struct anth {
    sl_anth_dec_t dec;
    sl_xfer_t *x; /* borrowed: the transfer owns us, and hands itself to each callback */
} anth_t;

/* The codec's events go out through the transfer; END means the answer finished. */
static void emit(void *ud, const sl_event_t *ev)
{
    anth_t *a = ud;
    if (ev->type == SL_EV_END)
        sl_xfer_finished(a->x);
    sl_xfer_emit(a->x, ev);
}

static int dec_sse(sl_xfer_t *x, void *ud, const sl_sse_event_t *sev)
{
    anth_t *a = ud;
    a->x = x;
    sl_anth_status_t st =
        sl_anth_decode_event(&a->dec, sev->event, sev->data, sev->data_len, emit, a);
    return st == SL_ANTH_MORE ? 0 : 1;
}

static void dec_whole(sl_xfer_t *x, void *ud, const char *body, size_t len)
{
    anth_t *a = ud;
    a->x = x;
    /* The status is in the events: DONE ended with END, FAILED with one ERROR. */
    (void)sl_anth_decode_message(a->dec.created, body, len, emit, a);
}

static void dec_error(sl_xfer_t *x, void *ud, int status, const char *body, size_t len,
                      int retry_after)
{
    anth_t *a = ud;
    a->x = x;
    sl_anth_decode_error(status, body, len, retry_after, emit, a);
}

static void dec_free(void *ud)
{
    sl_free(ud);
}

static const sl_xfer_decoder_t decoder = {
    .sse = dec_sse,
    .whole = dec_whole,
    .error = dec_error,
    .free = dec_free,
};

static int headers(const sl_provider_cfg_t *p, bool stream, sl_headers_t *h)
{
    int rc = p->api_key ? sl_headers_add(h, "x-api-key", p->api_key) : 0;
    if (rc == 0)
        rc = sl_headers_add(h, "anthropic-version", p->api_version ? p->api_version : "2023-06-01");
    if (rc == 0)
        rc = sl_headers_add(h, "Content-Type", "application/json");
    if (rc == 0)
        rc = sl_headers_add(h, "Accept", stream ? "text/event-stream" : "application/json");
    return rc;
}

static void request_body(const sl_upstream_call_t *call, bool stream, sl_buf_t *out)
{
    const char *model = call->target->model ? call->target->model : call->req->model;
    uint64_t max_tokens = call->provider->max_tokens ? call->provider->max_tokens : 1024;
    json_t *body = sl_anth_request(sl_chat_req_json(call->req), model, stream, max_tokens);
    char *s = json_dumps(body, JSON_COMPACT | JSON_REAL_PRECISION(17));
    sl_buf_puts(out, s ? s : "{}");
    sl_free(s); /* jansson allocates through sl_malloc (main sets json_set_alloc_funcs) */
    json_decref(body);
}

static int anth_start(const sl_upstream_call_t *call, void **state)
{
    bool stream = call->req->stream && !call->force_non_stream;
    sl_buf_t url;
    sl_buf_init(&url);
    sl_buf_printf(&url, "%s/messages", call->provider->base_url);
    sl_xfer_req_t req = {.url = url.data, .stream = stream};
    sl_headers_init(&req.headers);
    sl_buf_init(&req.body);
    anth_t *a = NULL;
    sl_xfer_t *x = NULL;
    int rc = headers(call->provider, stream, &req.headers);
    if (rc != 0)
        goto out;
    request_body(call, stream, &req.body);
    a = sl_calloc(1, sizeof *a);
    sl_anth_dec_init(&a->dec, (int64_t)time(NULL));
    rc = sl_xfer_start(call, &req, &decoder, a, &x);
    if (rc == 0) {
        a->x = x;
        a = NULL; /* the transfer's now */
        *state = x;
    }
out:
    sl_headers_dispose(&req.headers); /* empty unless start failed before taking them */
    sl_buf_dispose(&req.body);
    sl_buf_dispose(&url);
    sl_free(a);
    return rc;
}

const sl_provider_ops_t sl_provider_anthropic = {
    .type = "anthropic",
    .start = anth_start,
    .cancel = sl_xfer_cancel,
    .resume = sl_xfer_resume,
};
