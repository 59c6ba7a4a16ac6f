/* Shared plumbing of the seed dialects. */
#include "dialect/seed.h"

#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/id.h"
#include "core/tokens.h"
#include "net/conn.h"
#include "relay/relay.h"

json_t *sl_seed_body(const sl_http_req_t *hr, char *why, size_t why_cap)
{
    json_error_t jerr;
    json_t *body = json_loadb(hr->body.data ? hr->body.data : "", hr->body.len, 0, &jerr);
    if (!body) {
        snprintf(why, why_cap, "invalid JSON: %s (line %d, column %d)", jerr.text, jerr.line,
                 jerr.column);
        return NULL;
    }
    if (!json_is_object(body)) {
        snprintf(why, why_cap, "the body must be a JSON object");
        json_decref(body);
        return NULL;
    }
    return body;
}

bool sl_seed_history_ok(json_t *history)
{
    if (!json_is_array(history))
        return false;
    size_t i;
    json_t *m;
    json_array_foreach (history, i, m) {
        const char *role = json_string_value(json_object_get(m, "role"));
        if (!role || !json_is_string(json_object_get(m, "content")))
            return false;
        if (strcmp(role, "user") && strcmp(role, "assistant") && strcmp(role, "system"))
            return false;
    }
    return true;
}

static json_t *message(const char *role, const char *content)
{
    return json_pack("{s:s, s:s}", "role", role, "content", content);
}

void sl_seed_request(sl_chat_req_t *out, const char *model, const char *system_prompt,
                     json_t *history, const char *user_msg, uint64_t max_tokens, json_t *params,
                     bool stream)
{
    json_t *msgs = json_array();
    if (system_prompt && *system_prompt)
        json_array_append_new(msgs, message("system", system_prompt));
    size_t i;
    json_t *h;
    json_array_foreach (history, i, h) {
        json_array_append_new(msgs, message(json_string_value(json_object_get(h, "role")),
                                            json_string_value(json_object_get(h, "content"))));
    }
    json_array_append_new(msgs, message("user", user_msg));
    json_t *body = json_object();
    json_object_set_new(body, "model", json_string(model));
    if (params)
        json_object_update(body, params);
    if (max_tokens && !json_object_get(body, "max_tokens"))
        json_object_set_new(body, "max_tokens", json_integer((json_int_t)max_tokens));
    json_object_set_new(body, "messages", msgs);
    json_object_set_new(body, "stream", json_boolean(stream));
    out->body = body;
    out->model = json_string_value(json_object_get(body, "model"));
    out->stream = stream;
    out->client_wants_usage = false;
    out->prompt_bytes = sl_chat_prompt_bytes(msgs);
    out->meta.user_message = sl_strdup(user_msg);
}

void sl_seed_session(sl_chat_req_t *req, const char *client_session_id, const char *owner,
                     unsigned history_turns)
{
    char id[64];
    sl_chat_meta_t *m = &req->meta;
    if (client_session_id && *client_session_id && strlen(client_session_id) < 128) {
        m->session_id = sl_strdup(client_session_id);
    } else {
        sl_random_id(id, sizeof id, "sess_");
        m->session_id = sl_strdup(id);
        m->session_new = true;
    }
    m->session_owner = owner ? sl_strdup(owner) : NULL;
    m->history_turns = history_turns;
}

void sl_seed_sse(sl_relay_t *r, json_t *obj, unsigned id)
{
    char *s = json_dumps(obj, JSON_COMPACT);
    json_decref(obj);
    sl_buf_t *b = sl_relay_scratch(r);
    if (id)
        sl_buf_printf(b, "id: %u\n", id);
    sl_buf_puts(b, "data: ");
    sl_buf_puts(b, s ? s : "{}");
    sl_buf_puts(b, "\n\n");
    sl_free(s);
    sl_relay_send(r, b->data, b->len);
}

void sl_seed_json(sl_conn_t *c, int status, json_t *obj)
{
    char *s = json_dumps(obj, JSON_COMPACT);
    json_decref(obj);
    sl_conn_respond(c, status, "application/json", s ? s : "{}", s ? strlen(s) : 2, NULL);
    sl_free(s);
}

void sl_seed_json_relay(sl_relay_t *r, int status, json_t *obj)
{
    char *s = json_dumps(obj, JSON_COMPACT);
    json_decref(obj);
    sl_relay_respond(r, status, "application/json", s ? s : "{}", s ? strlen(s) : 2, NULL);
    sl_free(s);
}

json_t *sl_seed_usage(sl_relay_t *r)
{
    sl_relay_info_t info;
    sl_relay_info(r, &info);
    return json_pack("{s:I, s:I, s:I}", "prompt_tokens", (json_int_t)info.usage.prompt,
                     "completion_tokens", (json_int_t)info.usage.completion, "total_tokens",
                     (json_int_t)sl_tokens_add(info.usage.prompt, info.usage.completion));
}
