/* The aichat dialect (seed 003, NestJS): POST /api/ai-chat/stream (JSON body) and GET
 * /api/ai-chat/stream-sse (the same fields as query parameters, for a browser EventSource),
 * answering SSE {"content","done":false} ... {"done":true}; JWT bearer auth by default. */
#include <string.h>

#include "core/alloc.h"
#include "core/ctx.h"
#include "dialect/dialect.h"
#include "dialect/seed.h"
#include "net/conn.h"
#include "relay/relay.h"

/* Unset auth: JWT when auth.jwt is configured (seed 003 verifies JWTs), else the common
 * default. */
static void aichat_finish(const sl_config_t *cfg, sl_dialect_cfg_t *d)
{
    if (d->auth == SL_AUTH_DEFAULT && cfg->jwt.alg)
        d->auth = SL_AUTH_JWT;
}

static const sl_dialect_section_t aichat_section = {.name = "aichat", .finish = aichat_finish};

static const char *const id_fields[] = {"workspaceId", "projectId", "currentOrganizationId", NULL};

/* NestJS's error shape. */
static void nest_error(sl_conn_t *c, int status, const char *msg)
{
    const char *name = status == 401   ? "Unauthorized"
                       : status == 404 ? "Not Found"
                       : status == 405 ? "Method Not Allowed"
                                       : "Bad Request";
    sl_seed_json(c, status,
                 json_pack("{s:i, s:s, s:s}", "statusCode", status, "message", msg, "error", name));
}

/* A path under the dialect's mounts that no route answers, worded as NestJS words it
 * ("Cannot GET /path"). */
static void route_error(sl_conn_t *c, int err, const char *allow)
{
    const sl_http_req_t *hr = sl_conn_request(c);
    size_t len;
    const char *path = sl_http_req_path(hr, &len);
    sl_buf_t msg;
    sl_buf_init(&msg);
    sl_buf_printf(&msg, "Cannot %s %.*s", sl_http_req_method(hr), (int)(len < 256 ? len : 256),
                  path);
    if (allow)
        sl_buf_puts(sl_conn_head_extra(c), allow);
    nest_error(c, sl_err_status(err), msg.data);
    sl_buf_dispose(&msg);
}

/* ---- encoder: each event carries an id, so a reconnect says where it was ---- */

typedef struct state {
    unsigned next_id;
} state_t;

static void on_event(sl_relay_t *r, void *stp, const sl_event_t *ev)
{
    state_t *st = stp;
    if (ev->type == SL_EV_DELTA && ev->content_len && ev->choice == 0) {
        sl_relay_stream_head(r, NULL);
        sl_seed_sse(r, json_pack("{s:s%, s:b}", "content", ev->content, ev->content_len, "done", 0),
                    ++st->next_id);
    } else if (ev->type == SL_EV_ERROR && !sl_relay_head_sent(r) && ev->error.status == 429) {
        /* Refused before anything was sent upstream: NestJS's throttler answers like this. */
        const char *msg = ev->error.message;
        sl_seed_json_relay(r, 429,
                           json_pack("{s:i, s:s, s:s}", "statusCode", 429, "message", msg, "error",
                                     "Too Many Requests"));
        sl_relay_end(r, false);
    } else if (ev->type == SL_EV_ERROR) {
        sl_relay_stream_head(r, NULL);
        sl_seed_sse(r, json_pack("{s:s, s:b}", "error", ev->error.message, "done", 1),
                    ++st->next_id);
        sl_relay_end(r, true);
    } else if (ev->type == SL_EV_END) {
        sl_relay_stream_head(r, NULL);
        sl_seed_sse(r, json_pack("{s:b}", "done", 1), ++st->next_id);
        sl_relay_end(r, false);
    }
}

static const sl_dialect_enc_t enc = {
    .name = "aichat",
    .state_size = sizeof(state_t),
    .event = on_event,
};

/* ---- requests ---- */

/* The fields of seed 003's ChatRequestDto, from a JSON body or from query parameters. */
static void start(sl_conn_t *c, sl_identity_t *who, json_t *f)
{
    const sl_dialect_cfg_t *d = sl_config_dialect(sl_conn_ctx(c)->cfg, &aichat_section);
    json_t *history = json_object_get(f, "history");
    const char *sid = json_string_value(json_object_get(f, "sessionId"));
    sl_chat_req_t req = {0};
    sl_seed_request(&req, d->model, d->system_prompt, history,
                    json_string_value(json_object_get(f, "message")), d->max_tokens, NULL, true);
    const char *owner = who->user ? who->user : who->key_name;
    /* History the client sent is the conversation; else the server's, when the id is known. */
    sl_seed_session(&req, sid, owner, json_array_size(history) ? 0 : d->history_turns);
    if (!sid)
        sl_free(req.meta.session_id), req.meta.session_id = NULL; /* nothing to continue */
    req.meta.session_named = true; /* seed 003's clients choose their own session ids */
    req.meta.user_id = owner ? sl_strdup(owner) : NULL;
    sl_identity_to_meta(who, &req.meta);
    json_t *tags = json_object();
    for (const char *const *k = id_fields; *k; k++) {
        json_t *v = json_object_get(f, *k);
        if (json_is_string(v))
            json_object_set(tags, *k, v);
    }
    req.meta.tags = json_object_size(tags) ? json_dumps(tags, JSON_COMPACT) : NULL;
    json_decref(tags);
    sl_relay_start(c, &req, &enc);
}

static const char *check(json_t *f)
{
    json_t *message = json_object_get(f, "message");
    json_t *history = json_object_get(f, "history");
    if (!json_is_string(message) || json_string_length(message) == 0)
        return "message must be a non-empty string";
    if (history && !json_is_null(history) && !sl_seed_history_ok(history))
        return "history must be an array of {role, content}";
    json_t *sid = json_object_get(f, "sessionId");
    if (sid && !json_is_string(sid) && !json_is_null(sid))
        return "sessionId must be a string";
    return NULL;
}

static void handle(sl_conn_t *c, const sl_http_req_t *hr, json_t *fields, const char *bad,
                   const char *token)
{
    const sl_config_t *cfg = sl_conn_ctx(c)->cfg;
    sl_identity_t who;
    const char *why;
    if (sl_auth_admit(cfg, sl_config_dialect(cfg, &aichat_section)->auth, hr, token,
                      sl_auth_keys(sl_conn_ctx(c)), &who, &why) != 0) {
        nest_error(c, 401, why);
    } else if (bad || (bad = check(fields))) {
        nest_error(c, 400, bad);
    } else if (sl_http_req_header(hr, "last-event-id")) {
        /* An EventSource reconnecting after a finished stream: 204 stops it, rather than paying
         * for the same completion again (DESIGN §3). */
        sl_conn_respond(c, 204, NULL, "", 0, NULL);
    } else {
        start(c, &who, fields);
    }
    sl_identity_dispose(&who);
}

static void post_stream(sl_conn_t *c, const sl_http_req_t *hr, const sl_route_match_t *m)
{
    char why[256];
    json_t *body = sl_seed_body(hr, why, sizeof why);
    handle(c, hr, body, body ? NULL : why, NULL);
    json_decref(body);
}

static void get_stream(sl_conn_t *c, const sl_http_req_t *hr, const sl_route_match_t *m)
{
    static const char *const plain[] = {
        "message", "sessionId", "workspaceId", "projectId", "currentOrganizationId", NULL};
    json_t *f = json_object();
    sl_buf_t v, token;
    sl_buf_init(&v);
    sl_buf_init(&token);
    const char *bad = NULL;
    for (const char *const *k = plain; *k; k++)
        if (sl_http_req_query(hr, *k, &v))
            json_object_set_new(f, *k, json_stringn(v.data, v.len));
    if (sl_http_req_query(hr, "history", &v) && v.len) {
        json_t *h = json_loadb(v.data, v.len, 0, NULL);
        if (!h)
            bad = "history must be a JSON-encoded array";
        json_object_set_new(f, "history", h ? h : json_null());
    }
    bool has_token = sl_http_req_query(hr, "access_token", &token);
    handle(c, hr, f, bad, has_token ? token.data : NULL);
    json_decref(f);
    sl_buf_dispose(&v);
    sl_buf_dispose(&token);
}

static const sl_route_t routes[] = {
    {"POST", "/api/ai-chat/stream", post_stream},
    {"GET", "/api/ai-chat/stream-sse", get_stream},
};
static const char *const mounts[] = {"", NULL};

const sl_dialect_t sl_dialect_aichat = {
    .name = "aichat",
    .config = &aichat_section,
    .mounts = mounts,
    .routes = routes,
    .nroutes = sizeof routes / sizeof routes[0],
    .route_error = route_error,
};
