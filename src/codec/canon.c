/* Lifetime helpers for the canonical request. */
#include "codec/canon.h"

#include <string.h>

#include "core/alloc.h"

void sl_chat_req_dispose(sl_chat_req_t *r)
{
    json_decref(r->body);
    sl_free(r->json_text);
    sl_free(r->model_own);
    sl_free(r->meta.user_id);
    sl_free(r->meta.key_name);
    sl_free(r->meta.key.models);
    sl_free(r->meta.session_id);
    sl_free(r->meta.session_owner);
    sl_free(r->meta.user_message);
    sl_free(r->meta.tags);
    sl_free(r->meta.preset);
    if (r->meta.ext_free)
        r->meta.ext_free(r->meta.ext);
    memset(r, 0, sizeof *r);
}

json_t *sl_chat_req_json(sl_chat_req_t *r)
{
    if (!r->body && r->json_text) {
        r->body = json_loadb(r->json_text, r->json_len, 0, NULL);
        if (r->raw == r->json_text) { /* the raw bytes were the text: they go with it */
            r->raw = NULL;
            r->raw_len = 0;
        }
        sl_free(r->json_text);
        r->json_text = NULL;
    }
    return r->body;
}

int64_t sl_chat_req_max_tokens(const sl_chat_req_t *r)
{
    if (!r->body)
        return r->max_tokens;
    json_t *mt = json_object_get(r->body, "max_tokens");
    if (!mt)
        mt = json_object_get(r->body, "max_completion_tokens");
    return json_integer_value(mt);
}

void sl_chat_req_drop_json(sl_chat_req_t *r)
{
    json_decref(r->body);
    r->body = NULL;
    if (r->raw == r->json_text) {
        r->raw = NULL;
        r->raw_len = 0;
    }
    sl_free(r->json_text);
    r->json_text = NULL;
}

size_t sl_chat_prompt_bytes(json_t *messages)
{
    size_t n = 0, i;
    json_t *m;
    json_array_foreach (messages, i, m) {
        json_t *content = json_object_get(m, "content");
        if (json_is_string(content))
            n += json_string_length(content);
        else if (content)
            n += 64; /* parts (text, images): a rough share */
    }
    return n;
}
