/* The OpenAI dialect (seed 001 exactly, and every OpenAI client): POST /v1/chat/completions,
 * GET /v1/models, also under /api/v1. Upstream OpenAI chunks pass through byte for byte;
 * events from other providers are encoded into chunks that the SDKs' validators accept
 * (DESIGN §3, "What real clients require"). */
#include <inttypes.h>
#include <string.h>

#include "codec/json_scan.h"
#include "codec/openai_chunk.h"
#include "core/alloc.h"
#include "core/ctx.h"
#include "core/log.h"
#include "dialect/dialect.h"
#include "net/conn.h"
#include "policy/auth.h"
#include "relay/relay.h"

/* dialects.openai: only the settings every dialect has. */
static const sl_dialect_section_t openai_section = {.name = "openai"};

typedef struct oai_state {
    char id[96];
    char model[160];
    int64_t created;
    sl_buf_t content; /* non-streaming: the answer of choice 0 */
    sl_buf_t tools;   /* non-streaming: tool_calls JSON array body of choice 0 */
    int tool_index;   /* the tool call being assembled, -1 none */
    sl_buf_t tool_args;
    sl_buf_t tool_id, tool_name; /* non-streaming: empty, and so free, for streams */
    char finish[24];
    sl_usage_t usage;
    bool have_usage;
} oai_state_t;

/* ---- decoding the request ---- */

static void bad_request(sl_conn_t *c, const char *param, const char *msg)
{
    sl_conn_respond_err(c, SL_EINVAL, NULL, param, msg, "x-should-retry: false\r\n");
}

/* The fields the gateway itself reads, straight from the validated text: no tree (DESIGN
 * §11). Jansson's rules throughout, so the tree built later, if a provider needs one, agrees:
 * a duplicated key counts with its last value, a non-integer max_tokens as 0. */
enum { MODEL, MESSAGES, STREAM, STREAM_OPTIONS, MAX_TOKENS, MAX_COMPLETION_TOKENS, USER, NFIELDS };
static const char *const field_keys[NFIELDS] = {
    "model", "messages", "stream", "stream_options", "max_tokens", "max_completion_tokens", "user"};

/* f: the body's root members named field_keys, noted while it was validated (one pass). */
static const char *scan_fields(const char *text, size_t len, const sl_jval_t *f, sl_chat_req_t *out,
                               const char **param)
{
    sl_jval_t root = sl_json_root(text, len), v;
    if (root.type != '{')
        return "The request body must be a JSON object.";
    if (f[MODEL].type != '"' || f[MODEL].n == 2)
        return *param = "model", "you must provide a model parameter";
    if (f[MESSAGES].type != '[' || !sl_json_next(&f[MESSAGES], &(size_t){0}, NULL, &v))
        return *param = "messages", "'messages' must be a non-empty array";
    char st = f[STREAM].type;
    if (st && st != 't' && st != 'f' && st != 'n')
        return *param = "stream", "'stream' must be a boolean";
    const sl_jval_t *so = &f[STREAM_OPTIONS];
    out->has_stream_options = so->type != 0;
    if (so->type && so->type != '{' && so->type != 'n')
        return *param = "stream_options", "'stream_options' must be an object";
    out->model_own = sl_json_str_dup(&f[MODEL]);
    out->model = out->model_own;
    out->stream = st == 't';
    out->client_wants_usage = sl_json_get(so, "include_usage", &v) && v.type == 't';
    const sl_jval_t *mt = f[MAX_TOKENS].type ? &f[MAX_TOKENS] : &f[MAX_COMPLETION_TOKENS];
    (void)sl_json_int(mt, &out->max_tokens); /* absent or not an integer: 0, as jansson */
    size_t at = 0;
    sl_jval_t msg, content;
    while (sl_json_next(&f[MESSAGES], &at, NULL, &msg)) {
        if (!sl_json_get(&msg, "content", &content))
            continue;
        out->prompt_bytes += content.type == '"' ? sl_json_str_len(&content) : 64;
    }
    /* OpenAI's own per-end-user field is the user id limits and usage are kept by. */
    const sl_jval_t *user = &f[USER];
    if (user->type == '"' && user->n > 2 && sl_json_str_len(user) < 256)
        out->meta.user_id = sl_json_str_dup(user);
    return NULL;
}

/* Validates the body; on error answers 400 and returns false. */
static bool decode(sl_conn_t *c, const sl_http_req_t *hr, sl_chat_req_t *out)
{
    const char *text = hr->body.data ? hr->body.data : "";
    sl_jval_t f[NFIELDS];
    if (sl_json_valid_get(text, hr->body.len, field_keys, f, NFIELDS)) {
        const char *param = NULL;
        const char *err = scan_fields(text, hr->body.len, f, out, &param);
        if (err) {
            bad_request(c, param, err);
            sl_chat_req_dispose(out);
            return false;
        }
        /* the exchange keeps the body (for retries and fallback), not a copy of it */
        out->json_text = sl_conn_take_body(c, &out->json_len);
        out->raw = out->json_text;
        out->raw_len = out->json_len;
        return true;
    }
    /* Not valid: jansson says why, in the words OpenAI clients are used to. */
    json_error_t jerr;
    json_t *body = json_loadb(hr->body.data ? hr->body.data : "", hr->body.len, 0, &jerr);
    if (!body) {
        char msg[256];
        snprintf(msg, sizeof msg,
                 "We could not parse the JSON body of your request: %s "
                 "(line %d, column %d)",
                 jerr.text, jerr.line, jerr.column);
        bad_request(c, NULL, msg);
        return false;
    }
    const char *err = NULL, *param = NULL;
    json_t *model = json_object_get(body, "model");
    json_t *messages = json_object_get(body, "messages");
    json_t *stream = json_object_get(body, "stream");
    json_t *so = json_object_get(body, "stream_options");
    if (!json_is_object(body))
        err = "The request body must be a JSON object.";
    else if (!json_is_string(model) || json_string_length(model) == 0)
        err = "you must provide a model parameter", param = "model";
    else if (!json_is_array(messages) || json_array_size(messages) == 0)
        err = "'messages' must be a non-empty array", param = "messages";
    else if (stream && !json_is_boolean(stream) && !json_is_null(stream))
        err = "'stream' must be a boolean", param = "stream";
    else if (so && !json_is_object(so) && !json_is_null(so))
        err = "'stream_options' must be an object", param = "stream_options";
    if (err) {
        bad_request(c, param, err);
        json_decref(body);
        return false;
    }
    out->body = body;
    out->model = json_string_value(model);
    out->stream = json_is_true(stream);
    out->client_wants_usage = json_is_true(json_object_get(so, "include_usage"));
    out->has_stream_options = so != NULL;
    out->prompt_bytes = sl_chat_prompt_bytes(messages);
    const char *user = json_string_value(json_object_get(body, "user"));
    if (user && *user && strlen(user) < 256)
        out->meta.user_id = sl_strdup(user);
    out->raw = hr->body.data;
    out->raw_len = hr->body.len;
    return true;
}

static bool authorised(sl_conn_t *c, const sl_http_req_t *hr, sl_identity_t *who)
{
    const sl_config_t *cfg = sl_conn_ctx(c)->cfg;
    const char *why;
    if (sl_auth_admit(cfg, sl_config_dialect(cfg, &openai_section)->auth, hr, NULL,
                      sl_auth_keys(sl_conn_ctx(c)), who, &why) == 0)
        return true;
    sl_conn_respond_err(c, SL_EAUTH, "invalid_api_key", NULL, why,
                        "WWW-Authenticate: Bearer\r\nx-should-retry: false\r\n");
    return false;
}

/* ---- encoding events ---- */

/* A raw chunk that carries usage the client did not ask for loses that key, nothing else. */
static void send_raw_without_usage(sl_relay_t *r, const sl_event_t *ev)
{
    json_t *root = json_loadb(ev->raw, ev->raw_len, 0, NULL);
    json_object_del(root, "usage");
    char *s = json_dumps(root, JSON_COMPACT | JSON_REAL_PRECISION(17));
    json_decref(root);
    if (!s)
        return;
    sl_buf_t *b = sl_relay_scratch(r);
    sl_buf_puts(b, "data: ");
    sl_buf_puts(b, s);
    sl_buf_puts(b, "\n\n");
    sl_free(s);
    sl_relay_send(r, b->data, b->len);
}

static void stream_event(sl_relay_t *r, oai_state_t *st, const sl_event_t *ev)
{
    const sl_chat_req_t *req = sl_relay_req(r);
    sl_buf_t *b = sl_relay_scratch(r);
    switch (ev->type) {
    case SL_EV_START: return;
    case SL_EV_DELTA:
        sl_relay_stream_head(r, NULL);
        if (ev->raw && ev->raw_has_usage && !req->client_wants_usage) {
            send_raw_without_usage(r, ev);
            return;
        }
        if (ev->raw) {
            /* The passthrough fast path: the upstream's chunk bytes, re-framed. */
            sl_buf_puts(b, "data: ");
            sl_buf_append(b, ev->raw, ev->raw_len);
            sl_buf_puts(b, "\n\n");
        } else if (ev->role || ev->content || ev->tool.present || ev->finish_reason) {
            sl_oai_encode_delta(b, &(sl_oai_meta_t){st->id, st->created, st->model}, ev);
        }
        break;
    case SL_EV_FINISH: {
        sl_relay_stream_head(r, NULL);
        sl_event_t fin = {
            .type = SL_EV_DELTA, .choice = ev->choice, .finish_reason = ev->finish_reason};
        sl_oai_encode_delta(b, &(sl_oai_meta_t){st->id, st->created, st->model}, &fin);
        break;
    }
    case SL_EV_USAGE:
        if (!req->client_wants_usage)
            return;
        sl_relay_stream_head(r, NULL);
        if (ev->raw) {
            sl_buf_puts(b, "data: ");
            sl_buf_append(b, ev->raw, ev->raw_len);
            sl_buf_puts(b, "\n\n");
        } else {
            sl_oai_encode_usage_chunk(b, &(sl_oai_meta_t){st->id, st->created, st->model},
                                      &ev->usage);
        }
        break;
    case SL_EV_ERROR:
        if (!sl_relay_head_sent(r)) {
            sl_relay_respond_error(r, &ev->error);
            return;
        }
        sl_oai_encode_error_event(b, &ev->error); /* no [DONE]: the answer did not finish (§3.6) */
        sl_relay_send(r, b->data, b->len);
        sl_relay_end(r, true);
        return;
    case SL_EV_END:
        sl_relay_stream_head(r, NULL);
        sl_relay_send(r, "data: [DONE]\n\n", 14);
        sl_relay_end(r, false);
        return;
    }
    if (b->len)
        sl_relay_send(r, b->data, b->len);
}

/* ---- non-streaming: collect, then answer once ---- */

static void close_tool(oai_state_t *st)
{
    if (st->tool_index < 0)
        return;
    sl_buf_t *t = &st->tools;
    sl_buf_puts(t, t->len ? "," : "");
    sl_buf_puts(t, "{\"id\":\"");
    sl_buf_json_escape(t, st->tool_id.data ? st->tool_id.data : "", st->tool_id.len);
    sl_buf_puts(t, "\",\"type\":\"function\",\"function\":{\"name\":\"");
    sl_buf_json_escape(t, st->tool_name.data ? st->tool_name.data : "", st->tool_name.len);
    sl_buf_puts(t, "\",\"arguments\":\"");
    sl_buf_json_escape(t, st->tool_args.data ? st->tool_args.data : "", st->tool_args.len);
    sl_buf_puts(t, "\"}}");
    sl_buf_reset(&st->tool_args);
    st->tool_index = -1;
}

static void collect(oai_state_t *st, const sl_event_t *ev)
{
    if (ev->choice != 0)
        return; /* n > 1 answers come only from raw upstreams, which pass through whole */
    if (ev->content)
        sl_buf_append(&st->content, ev->content, ev->content_len);
    if (ev->tool.present) {
        if (ev->tool.index != st->tool_index) {
            close_tool(st);
            st->tool_index = ev->tool.index;
            sl_buf_reset(&st->tool_id);
            sl_buf_reset(&st->tool_name);
        }
        if (ev->tool.id) {
            sl_buf_reset(&st->tool_id);
            sl_buf_puts(&st->tool_id, ev->tool.id);
        }
        if (ev->tool.name) {
            sl_buf_reset(&st->tool_name);
            sl_buf_puts(&st->tool_name, ev->tool.name);
        }
        if (ev->tool.args)
            sl_buf_append(&st->tool_args, ev->tool.args, ev->tool.args_len);
    }
    if (ev->finish_reason)
        snprintf(st->finish, sizeof st->finish, "%s", ev->finish_reason);
}

static void answer_collected(sl_relay_t *r, oai_state_t *st)
{
    close_tool(st);
    sl_buf_t *b = sl_relay_scratch(r);
    sl_buf_puts(b, "{\"id\":\"");
    sl_buf_json_escape(b, st->id, strlen(st->id));
    sl_buf_printf(b, "\",\"object\":\"chat.completion\",\"created\":%" PRId64 ",\"model\":\"",
                  st->created);
    sl_buf_json_escape(b, st->model, strlen(st->model));
    sl_buf_puts(b, "\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":");
    if (st->content.len || !st->tools.len) {
        sl_buf_putc(b, '"');
        sl_buf_json_escape(b, st->content.data ? st->content.data : "", st->content.len);
        sl_buf_putc(b, '"');
    } else {
        sl_buf_puts(b, "null");
    }
    if (st->tools.len) {
        sl_buf_puts(b, ",\"tool_calls\":[");
        sl_buf_append(b, st->tools.data, st->tools.len);
        sl_buf_putc(b, ']');
    }
    sl_buf_printf(b, "},\"logprobs\":null,\"finish_reason\":\"%s\"}],",
                  st->finish[0] ? st->finish : "stop");
    sl_oai_encode_usage(b, &st->usage);
    sl_buf_putc(b, '}');
    sl_relay_respond(r, 200, "application/json", b->data, b->len, NULL);
    sl_relay_end(r, false);
}

static void whole_event(sl_relay_t *r, oai_state_t *st, const sl_event_t *ev)
{
    switch (ev->type) {
    case SL_EV_DELTA:
    case SL_EV_FINISH: collect(st, ev); return;
    case SL_EV_USAGE:
        st->usage = ev->usage;
        st->have_usage = true;
        return;
    case SL_EV_ERROR: sl_relay_respond_error(r, &ev->error); return;
    case SL_EV_END:
        if (ev->raw) { /* an OpenAI upstream's own answer, as it sent it */
            sl_relay_respond(r, 200, "application/json", ev->raw, ev->raw_len, NULL);
            sl_relay_end(r, false);
        } else {
            answer_collected(r, st);
        }
        return;
    case SL_EV_START: return;
    }
}

static void on_event(sl_relay_t *r, void *state, const sl_event_t *ev)
{
    oai_state_t *st = state;
    if (ev->type == SL_EV_START) {
        snprintf(st->id, sizeof st->id, "%s", ev->id ? ev->id : "chatcmpl-sluice");
        snprintf(st->model, sizeof st->model, "%s", ev->model ? ev->model : "");
        st->created = ev->created ? ev->created : sl_wall_s();
        st->tool_index = -1;
    }
    if (sl_relay_req(r)->stream)
        stream_event(r, st, ev);
    else
        whole_event(r, st, ev);
}

static void dispose(void *state)
{
    oai_state_t *st = state;
    sl_buf_dispose(&st->content);
    sl_buf_dispose(&st->tools);
    sl_buf_dispose(&st->tool_args);
    sl_buf_dispose(&st->tool_id);
    sl_buf_dispose(&st->tool_name);
}

static const sl_dialect_enc_t enc = {
    .name = "openai",
    .raw_openai = true,
    .state_size = sizeof(oai_state_t),
    .event = on_event,
    .dispose = dispose,
};

/* ---- handlers ---- */

static void handle_chat(sl_conn_t *c, const sl_http_req_t *hr, const sl_route_match_t *m)
{
    sl_identity_t who;
    if (!authorised(c, hr, &who))
        return; /* nothing was sent upstream */
    sl_chat_req_t req = {0};
    if (!decode(c, hr, &req)) {
        sl_identity_dispose(&who);
        return;
    }
    sl_identity_to_meta(&who, &req.meta);
    sl_relay_start(c, &req, &enc);
}

static void handle_models(sl_conn_t *c, const sl_http_req_t *hr, const sl_route_match_t *m)
{
    sl_identity_t who;
    if (!authorised(c, hr, &who))
        return;
    sl_identity_dispose(&who);
    const sl_config_t *cfg = sl_conn_ctx(c)->cfg;
    sl_buf_t b;
    sl_buf_init(&b);
    sl_buf_puts(&b, "{\"object\":\"list\",\"data\":[");
    for (size_t i = 0; i < cfg->nmodels; i++) {
        sl_buf_puts(&b, i ? ",{\"id\":\"" : "{\"id\":\"");
        sl_buf_json_escape(&b, cfg->models[i].pattern, strlen(cfg->models[i].pattern));
        sl_buf_printf(&b, "\",\"object\":\"model\",\"created\":0,\"owned_by\":\"sluice\"}");
    }
    sl_buf_puts(&b, "]}");
    sl_conn_respond(c, 200, "application/json", b.data, b.len, NULL);
    sl_buf_dispose(&b);
}

static const sl_route_t routes[] = {
    {"POST", "/v1/chat/completions", handle_chat},
    {"GET", "/v1/models", handle_models},
};
static const char *const mounts[] = {"", "/api", NULL}; /* seed 001 serves it under /api */

const sl_dialect_t sl_dialect_openai = {
    .name = "openai",
    .config = &openai_section,
    .mounts = mounts,
    .routes = routes,
    .nroutes = sizeof routes / sizeof routes[0],
};
