/* The chat dialect (seed 000, Django): POST /api/chat/ answers JSON, POST /api/chat/stream/
 * answers SSE {"type":"start"|"chunk"|"end"|"error"}. Conversations continue by session_id:
 * the server keeps the history (relay + store thread). */
#include <string.h>

#include "core/alloc.h"
#include "core/ctx.h"
#include "dialect/dialect.h"
#include "dialect/seed.h"
#include "net/conn.h"
#include "relay/relay.h"

static void chat_defaults(sl_dialect_cfg_t *d)
{
    d->max_tokens = 1000; /* seed 000 sends max_tokens 1000 */
}

/* dialects.chat: the settings every dialect has, max_tokens defaulting as the seed's. */
static const sl_dialect_section_t chat_section = {.name = "chat", .defaults = chat_defaults};

static void error_json(sl_conn_t *c, int status, const char *msg)
{
    sl_seed_json(c, status, json_pack("{s:s}", "error", msg));
}

/* A path under the dialect's mounts that no route answers, in the seed's shape. */
static void route_error(sl_conn_t *c, int err, const char *allow)
{
    if (allow)
        sl_buf_puts(sl_conn_head_extra(c), allow);
    error_json(c, sl_err_status(err), sl_strerror(err));
}

/* ---- streaming: start, chunk..., end | error ---- */

static void stream_begin(sl_relay_t *r, void *st)
{
    sl_relay_stream_head(r, NULL);
    const char *sid = sl_relay_req(r)->meta.session_id;
    sl_seed_sse(r, json_pack("{s:s, s:s}", "type", "start", "session_id", sid ? sid : ""), 0);
}

static void stream_event(sl_relay_t *r, void *st, const sl_event_t *ev)
{
    size_t len;
    const char *text;
    switch (ev->type) {
    case SL_EV_DELTA:
        if (ev->content_len && ev->choice == 0)
            sl_seed_sse(
                r,
                json_pack("{s:s, s:s%}", "type", "chunk", "content", ev->content, ev->content_len),
                0);
        return;
    case SL_EV_ERROR:
        if (!sl_relay_head_sent(r)) { /* refused before the stream began (limits) */
            sl_seed_json_relay(r, ev->error.status ? ev->error.status : 502,
                               json_pack("{s:s}", "error", ev->error.message));
            sl_relay_end(r, false);
            return;
        }
        /* no end event: the answer did not finish (§3.6) */
        sl_seed_sse(r, json_pack("{s:s, s:s}", "type", "error", "error", ev->error.message), 0);
        sl_relay_end(r, true);
        return;
    case SL_EV_END:
        text = sl_relay_text(r, &len);
        sl_seed_sse(r, json_pack("{s:s, s:s%}", "type", "end", "complete_response", text, len), 0);
        sl_relay_end(r, false);
        return;
    default: return;
    }
}

static const sl_dialect_enc_t enc_stream = {
    .name = "chat",
    .begin = stream_begin,
    .event = stream_event,
};

/* ---- whole answer ---- */

static void whole_event(sl_relay_t *r, void *st, const sl_event_t *ev)
{
    size_t len;
    const char *text;
    if (ev->type == SL_EV_ERROR) {
        int status = ev->error.status ? ev->error.status : 502;
        sl_seed_json_relay(r, status, json_pack("{s:s}", "error", ev->error.message));
        sl_relay_end(r, false);
    } else if (ev->type == SL_EV_END) {
        text = sl_relay_text(r, &len);
        const char *sid = sl_relay_req(r)->meta.session_id;
        sl_seed_json_relay(r, 200,
                           json_pack("{s:s%, s:s, s:o}", "response", text, len, "session_id",
                                     sid ? sid : "", "usage", sl_seed_usage(r)));
        sl_relay_end(r, false);
    }
}

static const sl_dialect_enc_t enc_whole = {
    .name = "chat",
    .event = whole_event,
};

/* ---- handlers ---- */

static void handle(sl_conn_t *c, const sl_http_req_t *hr, bool stream)
{
    const sl_config_t *cfg = sl_conn_ctx(c)->cfg;
    const sl_dialect_cfg_t *d = sl_config_dialect(cfg, &chat_section);
    sl_identity_t who;
    const char *why;
    if (sl_auth_admit(cfg, d->auth, hr, NULL, sl_auth_keys(sl_conn_ctx(c)), &who, &why) != 0) {
        error_json(c, 401, why);
        return;
    }
    char msg[256];
    json_t *body = sl_seed_body(hr, msg, sizeof msg);
    json_t *message = json_object_get(body, "message");
    json_t *sid = json_object_get(body, "session_id");
    const char *bad = !body                              ? msg
                      : !json_is_string(message)         ? "'message' is required (a string)"
                      : json_string_length(message) == 0 ? "'message' must not be empty"
                      : sid && !json_is_string(sid) && !json_is_null(sid)
                          ? "'session_id' must be a string"
                          : NULL;
    if (bad) {
        error_json(c, 400, bad);
        json_decref(body);
        sl_identity_dispose(&who);
        return;
    }
    sl_chat_req_t req = {0};
    sl_seed_request(&req, d->model, d->system_prompt, NULL, json_string_value(message),
                    d->max_tokens, NULL, stream);
    const char *owner = who.user ? who.user : who.key_name;
    sl_seed_session(&req, json_string_value(sid), owner, d->history_turns);
    if (owner)
        req.meta.user_id = sl_strdup(owner);
    sl_identity_to_meta(&who, &req.meta);
    json_decref(body);
    sl_relay_start(c, &req, stream ? &enc_stream : &enc_whole);
}

static void handle_whole(sl_conn_t *c, const sl_http_req_t *hr, const sl_route_match_t *m)
{
    handle(c, hr, false);
}

static void handle_stream(sl_conn_t *c, const sl_http_req_t *hr, const sl_route_match_t *m)
{
    handle(c, hr, true);
}

static const sl_route_t routes[] = {
    {"POST", "/api/chat/", handle_whole},
    {"POST", "/api/chat/stream/", handle_stream},
};
static const char *const mounts[] = {"", NULL};

const sl_dialect_t sl_dialect_chat = {
    .name = "chat",
    .config = &chat_section,
    .mounts = mounts,
    .routes = routes,
    .nroutes = sizeof routes / sizeof routes[0],
    .route_error = route_error,
};
