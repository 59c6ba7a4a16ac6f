/* Lifetime helpers for the canonical request. */
#include "codec/canon.h"

#include <string.h>

#include "core/alloc.h"

void sl_chat_req_dispose(sl_chat_req_t *r)
{
    json_decref(r->body);
    sl_free(r->meta.user_id);
    sl_free(r->meta.key_name);
    sl_free(r->meta.session_id);
    sl_free(r->meta.session_owner);
    sl_free(r->meta.user_message);
    sl_free(r->meta.tags);
    sl_free(r->meta.preset);
    if (r->meta.ext_free)
        r->meta.ext_free(r->meta.ext);
    memset(r, 0, sizeof *r);
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
