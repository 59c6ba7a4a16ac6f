/* The OpenAI-compatible provider (OpenAI, vLLM, llama.cpp, Ollama /v1, LM Studio, Azure AI
 * inference): POST {base_url}/chat/completions. On the passthrough path each chunk's bytes are
 * forwarded as they are and JSON is parsed only for what decides something: usage, errors, the
 * finish (DESIGN §1). The request/decoder pieces are shared with the azure provider. */
#include "upstream/openai.h"

#include <string.h>

#include "core/alloc.h"
#include "upstream/openai_decode.h"

typedef struct oai_dec {
    bool started; /* START was emitted (parsed mode) */
} oai_dec_t;

static void emit_all(sl_xfer_t *x, sl_oai_chunk_t *ck)
{
    for (size_t i = 0; i < ck->nevents; i++)
        sl_xfer_emit(x, &ck->events[i]);
    sl_oai_chunk_dispose(ck);
}

static int dec_sse(sl_xfer_t *x, void *ud, const sl_sse_event_t *sev)
{
    oai_dec_t *d = ud;
    if (sev->data_len == 6 && memcmp(sev->data, "[DONE]", 6) == 0) {
        sl_event_t ev = {.type = SL_EV_END};
        sl_xfer_emit(x, &ev);
        return 1;
    }
    sl_oai_chunk_t ck;
    sl_oai_decode_chunk(sev->data, sev->data_len, sl_xfer_call(x)->want_raw, !d->started, &ck);
    d->started = true;
    if (ck.finish)
        sl_xfer_finished(x);
    emit_all(x, &ck);
    return 0;
}

static void dec_whole(sl_xfer_t *x, void *ud, const char *body, size_t len)
{
    const sl_upstream_call_t *call = sl_xfer_call(x);
    sl_oai_chunk_t ck;
    /* A forced non-stream answer to a streaming client is replayed as parsed events. */
    sl_oai_decode_completion(body, len, call->want_raw && !call->force_non_stream, &ck);
    emit_all(x, &ck);
}

static void dec_error(sl_xfer_t *x, void *ud, int status, const char *body, size_t len,
                      int retry_after)
{
    sl_oai_chunk_t ck;
    sl_oai_decode_error(body, len, status, retry_after, &ck);
    emit_all(x, &ck);
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

/* The passthrough path: the client's bytes go upstream as they are, with stream_options
 * spliced in front when it must be added (no JSON re-encoding, numbers stay as written).
 * False when the body needs a real edit (model rename, the client's own stream_options). */
static bool forward_raw(const sl_upstream_call_t *call, bool stream, sl_buf_t *out)
{
    const sl_chat_req_t *req = call->req;
    if (!req->raw || call->target->model || call->force_non_stream)
        return false;
    if (!stream) {
        sl_buf_append(out, req->raw, req->raw_len);
        return true;
    }
    if (req->has_stream_options)
        return false;
    const char *brace = memchr(req->raw, '{', req->raw_len);
    if (!brace)
        return false;
    size_t head = (size_t)(brace - req->raw) + 1;
    sl_buf_append(out, req->raw, head);
    sl_buf_puts(out, "\"stream_options\":{\"include_usage\":true},");
    sl_buf_append(out, req->raw + head, req->raw_len - head);
    return true;
}

void sl_oai_request_body(const sl_upstream_call_t *call, bool stream, bool send_model,
                         sl_buf_t *out)
{
    if (send_model && forward_raw(call, stream, out))
        return;
    /* shallow: the client's values are shared */
    json_t *body = json_copy(sl_chat_req_json(call->req));
    if (!body)
        body = json_object(); /* out of memory parsing: the upstream answers the bad request */
    if (!send_model)
        json_object_del(body, "model"); /* azure: the deployment is in the URL */
    else if (call->target->model)
        json_object_set_new(body, "model", json_string(call->target->model));
    json_object_set_new(body, "stream", json_boolean(stream));
    if (stream) {
        /* Usage is always known (DESIGN §3.8): ask for it whatever the client asked. */
        json_t *so = json_object_get(body, "stream_options");
        json_t *mine = json_is_object(so) ? json_copy(so) : json_object();
        json_object_set_new(mine, "include_usage", json_true());
        json_object_set_new(body, "stream_options", mine);
    } else {
        json_object_del(body, "stream_options");
    }
    char *s = json_dumps(body, JSON_COMPACT | JSON_REAL_PRECISION(17));
    sl_buf_puts(out, s ? s : "{}");
    sl_free(s); /* jansson allocates through sl_malloc (main sets json_set_alloc_funcs) */
    json_decref(body);
}

int sl_oai_start(const sl_upstream_call_t *call, const char *url, sl_headers_t *headers,
                 bool send_model, void **state)
{
    bool stream = call->req->stream && !call->force_non_stream;
    sl_xfer_req_t req = {.url = url, .headers = *headers, .stream = stream};
    sl_headers_init(headers); /* taken */
    sl_buf_init(&req.body);
    oai_dec_t *d = NULL;
    sl_xfer_t *x = NULL;
    int rc = sl_headers_add(&req.headers, "Content-Type", "application/json");
    if (rc == 0)
        rc = sl_headers_add(&req.headers, "Accept",
                            stream ? "text/event-stream" : "application/json");
    if (rc != 0)
        goto out;
    sl_oai_request_body(call, stream, send_model, &req.body);
    d = sl_calloc(1, sizeof *d);
    rc = sl_xfer_start(call, &req, &decoder, d, &x);
    if (rc == 0) {
        d = NULL; /* the transfer's now */
        *state = x;
    }
out:
    sl_headers_dispose(&req.headers); /* empty unless start failed before taking them */
    sl_buf_dispose(&req.body);
    sl_free(d);
    return rc;
}

static int oai_start(const sl_upstream_call_t *call, void **state)
{
    sl_buf_t url, auth;
    sl_buf_init(&url);
    sl_buf_init(&auth);
    sl_buf_puts(&url, call->provider->base_url);
    sl_buf_puts(&url, "/chat/completions");
    sl_headers_t h;
    sl_headers_init(&h);
    int rc = 0;
    if (call->provider->api_key) {
        sl_buf_puts(&auth, "Bearer ");
        sl_buf_puts(&auth, call->provider->api_key);
        rc = sl_headers_add(&h, "Authorization", auth.data);
    }
    if (rc == 0)
        rc = sl_oai_start(call, url.data, &h, true, state);
    sl_headers_dispose(&h); /* empty once sl_oai_start took it */
    sl_buf_dispose(&url);
    sl_buf_dispose(&auth);
    return rc;
}

const sl_provider_ops_t sl_provider_openai = {
    .type = "openai",
    .start = oai_start,
    .cancel = sl_xfer_cancel,
    .resume = sl_xfer_resume,
};
