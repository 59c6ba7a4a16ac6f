/* The monoai dialect (seed 002, MonoAI/FastAPI): /model and /agent/{name} (JSON, /stream
 * variants that answer JSON or, with Accept: text/event-stream, SSE), WebSocket /model/ws and
 * /agent/{name}/ws, /validate-user and /rate-limit/stats. Agents are presets from config; users
 * are checked against an allow-list or the seed's user validator, called over HTTP. */
#include <string.h>

#include "core/alloc.h"
#include "core/ctx.h"
#include "core/log.h"
#include "core/tokens.h"
#include "dialect/dialect.h"
#include "dialect/monoai_cfg.h"
#include "dialect/seed.h"
#include "http/client_ip.h"
#include "net/conn.h"
#include "relay/relay.h"
#include "store/store.h"
#include "upstream/http_json.h"
#include "upstream/upstream.h"

/* FastAPI answers errors as {"detail": ...}; the seed's clients also read "error". */
static void error_json(sl_conn_t *c, int status, const char *msg)
{
    sl_seed_json(c, status, json_pack("{s:s, s:s}", "detail", msg, "error", msg));
}

/* A path under the dialect's mounts that no route answers, worded as FastAPI words it. */
static void route_error(sl_conn_t *c, int err, const char *allow)
{
    if (allow)
        sl_buf_puts(sl_conn_head_extra(c), allow);
    error_json(c, sl_err_status(err), err == SL_EMETHOD ? "Method Not Allowed" : "Not Found");
}

static json_t *error_obj(const char *msg)
{
    return json_pack("{s:s}", "error", msg);
}

static bool user_allowed(const sl_config_t *cfg, const char *user)
{
    const sl_monoai_cfg_t *m = sl_monoai_cfg(cfg);
    if (m->nallowed_users == 0)
        return true;
    for (size_t i = 0; i < m->nallowed_users; i++)
        if (strcmp(m->allowed_users[i], user) == 0)
            return true;
    return false;
}

/* The result seed 002 returns: {response, usage} and, for agents, prompt and iterations (one
 * entry per upstream call). */
static json_t *result(sl_relay_t *r)
{
    size_t len;
    const char *text = sl_relay_text(r, &len);
    const sl_chat_meta_t *m = &sl_relay_req(r)->meta;
    json_t *res = json_pack("{s:s%, s:o}", "response", text, len, "usage", sl_seed_usage(r));
    if (m->preset) {
        sl_relay_info_t info;
        sl_relay_info(r, &info);
        json_t *it = json_pack("{s:s, s:s?, s:s, s:o, s:f}", "model", info.upstream_model,
                               "provider", info.provider, "finish_reason", info.finish, "usage",
                               sl_seed_usage(r), "ttft_ms", info.ttft_ms);
        json_object_set_new(res, "prompt", json_string(m->user_message ? m->user_message : ""));
        json_object_set_new(res, "iterations", json_pack("[o]", it));
    }
    return res;
}

/* ---- encoders: whole JSON, SSE, WebSocket ---- */

static void whole_event(sl_relay_t *r, void *st, const sl_event_t *ev)
{
    if (ev->type == SL_EV_ERROR) {
        const char *msg = ev->error.message;
        sl_seed_json_relay(r, ev->error.status ? ev->error.status : 502,
                           json_pack("{s:s, s:s}", "detail", msg, "error", msg));
        sl_relay_end(r, false);
    } else if (ev->type == SL_EV_END) {
        sl_seed_json_relay(r, 200, result(r));
        sl_relay_end(r, false);
    }
}

/* The same events for SSE and WebSocket; only the framing differs (send decides). */
static void message_event(sl_relay_t *r, const sl_event_t *ev, void (*send)(sl_relay_t *, json_t *))
{
    if (ev->type == SL_EV_DELTA && ev->content_len && ev->choice == 0) {
        send(r, json_pack("{s:s, s:s%}", "type", "chunk", "content", ev->content, ev->content_len));
    } else if (ev->type == SL_EV_ERROR) {
        send(r, error_obj(ev->error.message));
        sl_relay_end(r, false);
    } else if (ev->type == SL_EV_END) {
        send(r, json_pack("{s:s, s:o}", "type", "complete", "result", result(r)));
        sl_relay_end(r, false);
    }
}

static void send_sse(sl_relay_t *r, json_t *obj)
{
    sl_relay_stream_head(r, NULL);
    sl_seed_sse(r, obj, 0);
}

static void send_ws(sl_relay_t *r, json_t *obj)
{
    char *s = json_dumps(obj, JSON_COMPACT);
    json_decref(obj);
    sl_relay_send(r, s, strlen(s)); /* one write on a WebSocket is one message */
    sl_free(s);
}

static void sse_event(sl_relay_t *r, void *st, const sl_event_t *ev)
{
    if (ev->type == SL_EV_ERROR && !sl_relay_head_sent(r)) {
        whole_event(r, st, ev); /* refused before the stream began: an HTTP status says so */
        return;
    }
    message_event(r, ev, send_sse);
}

static void ws_event(sl_relay_t *r, void *st, const sl_event_t *ev)
{
    message_event(r, ev, send_ws);
}

static const sl_dialect_enc_t enc_whole = {.name = "monoai", .event = whole_event};
static const sl_dialect_enc_t enc_sse = {.name = "monoai", .event = sse_event};
static const sl_dialect_enc_t enc_ws = {.name = "monoai", .event = ws_event};

/* ---- one prompt → one exchange ---- */

typedef struct prompt {
    const char *prompt;
    const char *user_id;
    const sl_agent_cfg_t *agent; /* NULL: the plain model */
    const char *bad;             /* why the prompt is refused, or NULL */
    int status;
} prompt_t;

/* Reads {prompt, user_id}; the user is checked afterwards (check_user). */
static void read_prompt(sl_conn_t *c, json_t *body, prompt_t *p, char *peer, size_t peer_cap)
{
    json_t *prompt = json_object_get(body, "prompt");
    json_t *user = json_object_get(body, "user_id");
    p->status = 400;
    if (!json_is_string(prompt) || json_string_length(prompt) == 0) {
        p->bad = "'prompt' is required (a non-empty string)";
        return;
    }
    if (user && !json_is_string(user) && !json_is_null(user)) {
        p->bad = "'user_id' must be a string";
        return;
    }
    p->prompt = json_string_value(prompt);
    /* Seed 002: the user is user_id when given, else the client's IP. */
    sl_conn_peer(c, peer, peer_cap);
    p->user_id = json_is_string(user) ? json_string_value(user) : peer;
}

/* cfg: the config p->agent belongs to (the worker's may have been replaced meanwhile). */
static void start(sl_conn_t *c, const sl_config_t *cfg, const prompt_t *p, sl_identity_t *who,
                  bool stream, const sl_dialect_enc_t *enc)
{
    const sl_dialect_cfg_t *d = sl_config_dialect(cfg, &sl_monoai_section);
    const sl_agent_cfg_t *a = p->agent;
    sl_chat_req_t req = {0};
    sl_seed_request(&req, a && a->model ? a->model : d->model,
                    a && a->system_prompt ? a->system_prompt : d->system_prompt, NULL, p->prompt,
                    d->max_tokens, a ? a->params : NULL, stream);
    req.meta.preset = a ? sl_strdup(a->name) : NULL;
    sl_free(who->user); /* seed 002: the user is the body's user_id (or the IP), not a token's */
    who->user = NULL;
    sl_identity_to_meta(who, &req.meta);
    req.meta.user_id = sl_strdup(p->user_id);
    sl_relay_start(c, &req, enc);
}

static const sl_agent_cfg_t *find_agent(const sl_config_t *cfg, const sl_route_match_t *m)
{
    char name[128];
    if (!m->param || m->param_len >= sizeof name)
        return NULL;
    memcpy(name, m->param, m->param_len);
    name[m->param_len] = '\0';
    return sl_monoai_agent(cfg, name);
}

/* ---- users: the allow-list, or seed 002's user validator called over HTTP ---- */

#define VALIDATOR_TIMEOUT_MS 2000                /* connect + answer; then fail closed */
#define VALIDATOR_MAX_BODY   ((size_t)16 * 1024) /* an answer is a few dozen bytes */
#define MAX_NORMALIZED       255                 /* a longer "normalized" id is not believed */
#define CACHE_SLOTS          1024                /* per worker; a power of two */
#define CACHE_MAX_ID         256                 /* longer ids are asked about, never kept */

typedef enum verdict { USER_VALID, USER_INVALID, USER_UNAVAILABLE } verdict_t;

typedef struct answer {
    verdict_t verdict;
    char *normalized; /* owned; NULL = the id as the client sent it */
    const char *why;  /* USER_UNAVAILABLE: what went wrong (static text) */
} answer_t;

/* Direct-mapped: a colliding user only costs one more validator call, and memory stays
 * bounded whatever ids clients invent. */
typedef struct cache_slot {
    char *user;       /* owned; NULL = empty */
    char *normalized; /* owned; NULL = none */
    bool valid;
    uint64_t expires; /* uv_now() of the worker's loop */
} cache_slot_t;

typedef struct user_cache {
    char *url; /* owned: the validator these answers came from (a reload may change it) */
    cache_slot_t slot[CACHE_SLOTS];
} user_cache_t;

static void cache_clear(user_cache_t *uc)
{
    for (size_t i = 0; i < CACHE_SLOTS; i++) {
        sl_free(uc->slot[i].user);
        sl_free(uc->slot[i].normalized);
        memset(&uc->slot[i], 0, sizeof uc->slot[i]);
    }
}

static void cache_free(void *p)
{
    user_cache_t *uc = p;
    cache_clear(uc);
    sl_free(uc->url);
    sl_free(uc);
}

_Static_assert(SL_CONFIG_MAX_DIALECTS <= SL_CTX_SLOTS, "a context slot per dialect");

/* This thread's cache of url's answers, in the dialect's slot of the thread's context: made on
 * first use, freed with the thread, never shared between workers. */
static user_cache_t *worker_cache(sl_ctx_t *x, const char *url)
{
    unsigned slot = sl_config_dialect(x->cfg, &sl_monoai_section)->index;
    user_cache_t *uc = x->slot[slot];
    if (uc && strcmp(uc->url, url) != 0) {
        cache_clear(uc); /* answers from another validator say nothing now */
        sl_free(uc->url);
        uc->url = sl_strdup(url);
    }
    if (!uc) {
        uc = sl_calloc(1, sizeof *uc);
        uc->url = sl_strdup(url);
        x->slot[slot] = uc;
        x->free_slot[slot] = cache_free;
    }
    return uc;
}

static cache_slot_t *cache_slot(sl_conn_t *c, const sl_config_t *cfg, const char *user)
{
    const sl_monoai_cfg_t *m = sl_monoai_cfg(cfg);
    if (!m->user_validator_cache_ms || strlen(user) >= CACHE_MAX_ID)
        return NULL;
    uint32_t h = 2166136261u; /* FNV-1a */
    for (const char *p = user; *p; p++)
        h = (h ^ (uint8_t)*p) * 16777619u;
    return &worker_cache(sl_conn_ctx(c), m->user_validator_url)->slot[h & (CACHE_SLOTS - 1)];
}

static bool cache_get(sl_conn_t *c, const sl_config_t *cfg, const char *user, answer_t *out)
{
    cache_slot_t *s = cache_slot(c, cfg, user);
    if (!s || !s->user || strcmp(s->user, user) != 0 || uv_now(&sl_conn_ctx(c)->loop) >= s->expires)
        return false;
    out->verdict = s->valid ? USER_VALID : USER_INVALID;
    out->normalized = s->normalized ? sl_strdup(s->normalized) : NULL;
    return true;
}

/* Keeps a validator's verdict; "unavailable" is never kept (the next request asks again). */
static void cache_put(sl_conn_t *c, const sl_config_t *cfg, const char *user, const answer_t *a)
{
    cache_slot_t *s = a->verdict != USER_UNAVAILABLE ? cache_slot(c, cfg, user) : NULL;
    if (!s)
        return;
    sl_free(s->user);
    sl_free(s->normalized);
    s->user = sl_strdup(user);
    s->normalized = a->normalized ? sl_strdup(a->normalized) : NULL;
    s->valid = a->verdict == USER_VALID;
    s->expires = uv_now(&sl_conn_ctx(c)->loop) + sl_monoai_cfg(cfg)->user_validator_cache_ms;
}

/* The verdict when it is known now (no validator, or a cached answer); false: ask. */
static bool check_now(sl_conn_t *c, const char *user, answer_t *out)
{
    const sl_config_t *cfg = sl_conn_ctx(c)->cfg;
    *out = (answer_t){.verdict = USER_VALID};
    if (!sl_monoai_cfg(cfg)->user_validator_url) {
        out->verdict = user_allowed(cfg, user) ? USER_VALID : USER_INVALID;
        return true;
    }
    return cache_get(c, cfg, user, out);
}

static const char *failure(int err)
{
    switch (err) {
    case SL_ETIMEOUT: return "the user validator did not answer in time";
    case SL_EUNAVAIL: return "the user validator is unreachable";
    case SL_ETOOBIG: return "the user validator's answer is too large";
    default: return "the user validator failed";
    }
}

/* Is j an answer a validator may give, as the seed's Python validator returns: true, false, or
 * a string (valid, normalized); or {"valid": bool, "user_id": "<normalized>"?}. *name is the
 * normalized id (borrowed from j) or NULL. */
static bool parse_verdict(json_t *j, bool *valid, json_t **name)
{
    json_t *v = j, *n = NULL;
    if (json_is_object(j)) {
        v = json_object_get(j, "valid");
        n = json_object_get(j, "user_id");
    } else if (json_is_string(j)) {
        v = json_true(); /* a singleton: no reference to drop */
        n = j;
    }
    if (!json_is_boolean(v))
        return false;
    *valid = json_is_true(v);
    *name = *valid && n && !json_is_null(n) ? n : NULL;
    return !*name || (json_is_string(*name) && json_string_length(*name) > 0 &&
                      json_string_length(*name) <= MAX_NORMALIZED);
}

/* What the validator's answer to user means; anything unreadable fails closed. A "normalized"
 * id equal to the one sent is no normalization. */
static void read_answer(const char *user, int err, long status, const char *body, size_t len,
                        answer_t *a)
{
    *a = (answer_t){.verdict = USER_UNAVAILABLE, .why = failure(err)};
    if (err) {
        if (status)
            sl_log(SL_LOG_WARN, "monoai: the user validator answered HTTP %ld", status);
        return;
    }
    json_t *j = json_loadb(body, len, JSON_DECODE_ANY, NULL), *name = NULL;
    bool valid = false;
    if (parse_verdict(j, &valid, &name)) {
        a->verdict = valid ? USER_VALID : USER_INVALID;
        if (name && strcmp(json_string_value(name), user) != 0)
            a->normalized = sl_strdup(json_string_value(name));
    } else {
        a->why = "the user validator sent an answer sluice cannot read";
        sl_log(SL_LOG_WARN, "monoai: %s", a->why);
    }
    json_decref(j);
}

/* ---- checking the user, then going on ---- */

/* A request waiting for the validator: what going on needs, owned, since the request's buffers
 * may be reused and the worker's config replaced meanwhile. */
typedef struct job {
    sl_conn_t *c;                /* borrowed: its gone hook ends the job before c goes */
    sl_config_t *cfg;            /* owned ref: p.agent points into it */
    sl_http_json_t *call;        /* owned until it answers */
    prompt_t p;                  /* prompt and user_id point at the copies below */
    char *prompt, *user;         /* owned */
    sl_identity_t who;           /* owned */
    const sl_dialect_enc_t *enc; /* NULL: POST /validate-user */
} job_t;

static void ws_error(sl_conn_t *c, const char *msg)
{
    json_t *obj = error_obj(msg);
    char *s = json_dumps(obj, JSON_COMPACT);
    json_decref(obj);
    sl_conn_ws_send(c, s, strlen(s));
    sl_free(s);
}

/* A refusal before any exchange: FastAPI's status and body on HTTP, {"error"} on a WebSocket,
 * where it also ends the exchange begun to wait for the validator. */
static void refuse(sl_conn_t *c, int status, const char *detail, const char *why)
{
    if (!sl_conn_is_ws(c)) {
        sl_seed_json(c, status, json_pack("{s:s, s:s}", "detail", detail, "error", why));
        return;
    }
    sl_buf_t msg;
    sl_buf_init(&msg);
    sl_buf_puts(&msg, detail);
    if (strcmp(detail, why) != 0)
        sl_buf_printf(&msg, ": %s", why);
    if (!sl_conn_ws_busy(c)) {
        ws_error(c, msg.data);
    } else {
        json_t *obj = error_obj(msg.data);
        char *s = json_dumps(obj, JSON_COMPACT);
        json_decref(obj);
        sl_conn_body(c, s, strlen(s)); /* within the exchange: one write is one message */
        sl_conn_end(c, false);
        sl_free(s);
    }
    sl_buf_dispose(&msg);
}

/* With the verdict on p's user: answers /validate-user, refuses, or starts the exchange as the
 * (normalized) user. cfg: the config p was read under. */
static void go_on(sl_conn_t *c, const sl_config_t *cfg, const prompt_t *p, sl_identity_t *who,
                  const sl_dialect_enc_t *enc, const answer_t *a)
{
    if (a->verdict == USER_UNAVAILABLE) {
        refuse(c, 503, "user validation is unavailable", a->why); /* fail closed */
    } else if (!enc) {
        sl_seed_json(c, 200,
                     json_pack("{s:b, s:s, s:s?}", "valid", a->verdict == USER_VALID, "user_id",
                               p->user_id, "normalized", a->normalized));
    } else if (a->verdict == USER_INVALID) {
        refuse(c, 403, "invalid user", "invalid user");
    } else {
        prompt_t q = *p;
        q.user_id = a->normalized ? a->normalized : p->user_id;
        if (sl_conn_is_ws(c) && !sl_conn_ws_busy(c))
            sl_conn_ws_begin(c);
        start(c, cfg, &q, who, true, enc);
    }
}

static void job_free(job_t *j)
{
    sl_config_unref(j->cfg);
    sl_free(j->prompt);
    sl_free(j->user);
    sl_identity_dispose(&j->who);
    sl_free(j);
}

static void on_answer(void *ud, int err, long status, const char *body, size_t len)
{
    job_t *j = ud;
    answer_t a;
    read_answer(j->user, err, status, body, len, &a);
    cache_put(j->c, j->cfg, j->user, &a);
    sl_conn_set_hooks(j->c, NULL, NULL);
    go_on(j->c, j->cfg, &j->p, &j->who, j->enc, &a);
    sl_free(a.normalized);
    job_free(j);
}

/* The client left while the validator was being asked: nobody needs the answer. */
static void job_gone(void *ud)
{
    job_t *j = ud;
    sl_http_json_cancel(j->call);
    job_free(j);
}

static const sl_conn_hooks_t job_hooks = {.gone = job_gone};

/* Asks the validator about j's user; on a WebSocket the wait is an exchange of its own, so the
 * next prompt waits its turn and a close cancels. */
static void ask(job_t *j)
{
    sl_conn_t *c = j->c;
    sl_buf_t body;
    sl_buf_init(&body);
    sl_buf_puts(&body, "{\"user_id\":\"");
    sl_buf_json_escape(&body, j->user, strlen(j->user));
    sl_buf_puts(&body, "\"}");
    const sl_http_json_opts_t opts = {.timeout_ms = VALIDATOR_TIMEOUT_MS,
                                      .max_body = VALIDATOR_MAX_BODY};
    int err = sl_http_json_post(sl_conn_ctx(c)->upstream->multi,
                                sl_monoai_cfg(j->cfg)->user_validator_url, body.data, &opts,
                                on_answer, j, &j->call);
    sl_buf_dispose(&body);
    if (sl_conn_is_ws(c))
        sl_conn_ws_begin(c);
    if (err == 0) {
        sl_conn_set_hooks(c, &job_hooks, j);
        return;
    }
    const answer_t a = {.verdict = USER_UNAVAILABLE,
                        .why = "the user validator could not be asked"};
    go_on(c, j->cfg, &j->p, &j->who, j->enc, &a);
    job_free(j);
}

/* Checks p's user, then goes on: at once when the verdict is known, else once the validator
 * answered (the relay never starts before). who's contents may be taken; the caller disposes it
 * as usual. enc NULL: POST /validate-user. */
static void check_user(sl_conn_t *c, const prompt_t *p, sl_identity_t *who,
                       const sl_dialect_enc_t *enc)
{
    answer_t a;
    if (check_now(c, p->user_id, &a)) {
        go_on(c, sl_conn_ctx(c)->cfg, p, who, enc, &a);
        sl_free(a.normalized);
        return;
    }
    job_t *j = sl_calloc(1, sizeof *j);
    j->c = c;
    j->cfg = sl_config_ref(sl_conn_ctx(c)->cfg);
    j->enc = enc;
    j->prompt = p->prompt ? sl_strdup(p->prompt) : NULL;
    j->user = sl_strdup(p->user_id);
    j->p = *p;
    j->p.prompt = j->prompt;
    j->p.user_id = j->user;
    j->who = *who;
    memset(who, 0, sizeof *who);
    ask(j);
}

static bool admit(sl_conn_t *c, const sl_http_req_t *hr, sl_identity_t *who)
{
    const sl_config_t *cfg = sl_conn_ctx(c)->cfg;
    const char *why;
    if (sl_auth_admit(cfg, sl_config_dialect(cfg, &sl_monoai_section)->auth, hr, NULL,
                      sl_auth_keys(sl_conn_ctx(c)), who, &why) == 0)
        return true;
    error_json(c, 401, why);
    return false;
}

/* POST /model, /model/stream, /agent/{name}, /agent/{name}/stream */
static void handle_http(sl_conn_t *c, const sl_http_req_t *hr, const sl_route_match_t *m,
                        bool agent, bool stream_path)
{
    sl_identity_t who;
    if (!admit(c, hr, &who))
        return;
    prompt_t p = {0};
    if (agent && !(p.agent = find_agent(sl_conn_ctx(c)->cfg, m))) {
        error_json(c, 404, "agent not found");
        sl_identity_dispose(&who);
        return;
    }
    char why[256], peer[64];
    json_t *body = sl_seed_body(hr, why, sizeof why);
    if (!body)
        p.bad = why, p.status = 400;
    else
        read_prompt(c, body, &p, peer, sizeof peer);
    if (p.bad) {
        error_json(c, p.status, p.bad);
    } else {
        /* SDK-style Accept: application/json gets JSON; only an explicit event-stream streams. */
        const char *accept = sl_http_req_header(hr, "accept");
        bool sse = stream_path && accept && strstr(accept, "text/event-stream");
        check_user(c, &p, &who, sse ? &enc_sse : &enc_whole);
    }
    json_decref(body);
    sl_identity_dispose(&who);
}

static void model(sl_conn_t *c, const sl_http_req_t *hr, const sl_route_match_t *m)
{
    handle_http(c, hr, m, false, false);
}

static void model_stream(sl_conn_t *c, const sl_http_req_t *hr, const sl_route_match_t *m)
{
    handle_http(c, hr, m, false, true);
}

static void agent(sl_conn_t *c, const sl_http_req_t *hr, const sl_route_match_t *m)
{
    handle_http(c, hr, m, true, false);
}

static void agent_stream(sl_conn_t *c, const sl_http_req_t *hr, const sl_route_match_t *m)
{
    handle_http(c, hr, m, true, true);
}

/* ---- WebSocket ---- */

typedef struct ws_session {
    char *agent;         /* owned; NULL for /model/ws */
    char *key_name;      /* owned */
    sl_key_policy_t key; /* the key that opened the socket, for each prompt's limits */
} ws_session_t;

static void ws_message(sl_conn_t *c, void *ud, const char *msg, size_t len)
{
    ws_session_t *ws = ud;
    if (sl_conn_ws_busy(c)) {
        ws_error(c, "a response is still streaming: send the next prompt after 'complete'");
        return;
    }
    prompt_t p = {0};
    if (ws->agent && !(p.agent = sl_monoai_agent(sl_conn_ctx(c)->cfg, ws->agent))) {
        ws_error(c, "agent not found");
        sl_conn_ws_close(c, 1008, "agent not found");
        return;
    }
    json_t *body = json_loadb(msg, len, 0, NULL);
    char peer[64];
    if (!json_is_object(body))
        p.bad = "invalid JSON: send {\"prompt\": \"...\"}";
    else
        read_prompt(c, body, &p, peer, sizeof peer);
    if (p.bad) {
        ws_error(c, p.bad);
    } else {
        sl_identity_t who = {.key_name = ws->key_name ? sl_strdup(ws->key_name) : NULL,
                             .key = ws->key};
        who.key.models = sl_key_models_dup(ws->key.models); /* the session keeps its own */
        check_user(c, &p, &who, &enc_ws);
        sl_identity_dispose(&who);
    }
    json_decref(body);
}

static void ws_closed(void *ud)
{
    ws_session_t *ws = ud;
    sl_free(ws->agent);
    sl_free(ws->key_name);
    sl_free(ws->key.models);
    sl_free(ws);
}

static const sl_ws_hooks_t ws_hooks = {.message = ws_message, .closed = ws_closed};

static void upgrade(sl_conn_t *c, const sl_http_req_t *hr, const sl_route_match_t *m, bool agent)
{
    sl_identity_t who;
    if (!admit(c, hr, &who))
        return;
    ws_session_t *ws = sl_calloc(1, sizeof *ws);
    ws->key_name = who.key_name;
    ws->key = who.key;
    who.key_name = NULL;
    who.key.models = NULL; /* moved into the session */
    sl_identity_dispose(&who);
    if (agent)
        ws->agent = sl_strndup(m->param, m->param_len);
    if (!sl_conn_ws_upgrade(c, &ws_hooks, ws)) {
        ws_closed(ws);
        return;
    }
    /* An unknown agent is told at once, in the socket's own terms (an error message). */
    if (agent && !sl_monoai_agent(sl_conn_ctx(c)->cfg, ws->agent)) {
        ws_error(c, "agent not found");
        sl_conn_ws_close(c, 1008, "agent not found");
    }
}

static void model_ws(sl_conn_t *c, const sl_http_req_t *hr, const sl_route_match_t *m)
{
    upgrade(c, hr, m, false);
}

static void agent_ws(sl_conn_t *c, const sl_http_req_t *hr, const sl_route_match_t *m)
{
    upgrade(c, hr, m, true);
}

/* ---- users and stats ---- */

/* {"valid", "user_id", "normalized"}: the allow-list's or the validator's verdict. */
static void validate_user(sl_conn_t *c, const sl_http_req_t *hr, const sl_route_match_t *m)
{
    sl_identity_t who;
    if (!admit(c, hr, &who))
        return;
    char why[256];
    json_t *body = sl_seed_body(hr, why, sizeof why);
    json_t *user = json_object_get(body, "user_id");
    if (!json_is_string(user)) {
        error_json(c, 400, body ? "'user_id' is required (a string)" : why);
    } else {
        const prompt_t p = {.user_id = json_string_value(user)};
        check_user(c, &p, &who, NULL);
    }
    json_decref(body);
    sl_identity_dispose(&who);
}

/* A stats query waits for the store thread; the client may leave meanwhile. */
typedef struct stats_wait {
    sl_conn_t *c;
    sl_store_op_t *op;
    bool one;
    char user[128];
} stats_wait_t;

static void stats_gone(void *ud)
{
    stats_wait_t *s = ud;
    sl_store_op_cancel(s->op);
    sl_free(s);
}

static const sl_conn_hooks_t stats_hooks = {.gone = stats_gone};

static json_t *stats_row(const sl_user_stats_t *u)
{
    json_t *row = json_pack("{s:s, s:I, s:I, s:I, s:I}", "user_id", u->user_id, "requests",
                            (json_int_t)u->requests, "prompt_tokens", (json_int_t)u->prompt_tokens,
                            "completion_tokens", (json_int_t)u->completion_tokens, "total_tokens",
                            (json_int_t)sl_tokens_add(u->prompt_tokens, u->completion_tokens));
    json_object_set_new(row, "last_request",
                        u->last_ts ? json_integer((json_int_t)u->last_ts) : json_null());
    return row;
}

static void on_stats(void *ud, int err, const sl_user_stats_t *rows, size_t n)
{
    stats_wait_t *s = ud;
    sl_conn_t *c = s->c;
    sl_conn_set_hooks(c, NULL, NULL);
    if (err) {
        error_json(c, 503, "usage statistics are unavailable right now");
    } else if (s->one) {
        sl_user_stats_t zero = {0};
        snprintf(zero.user_id, sizeof zero.user_id, "%s", s->user);
        sl_seed_json(c, 200, stats_row(n ? &rows[0] : &zero));
    } else {
        json_t *users = json_array();
        for (size_t i = 0; i < n; i++)
            json_array_append_new(users, stats_row(&rows[i]));
        sl_seed_json(c, 200, json_pack("{s:o}", "users", users));
    }
    sl_free(s);
}

/* Whose usage the caller may see: an admin key (auth.admin_keys) every record, an API key the
 * records of that key (*key_name, owned), nobody else anything, except a loopback peer (the
 * socket's, whatever headers say) when no key was used. False: refused (answered). */
static bool stats_scope(sl_conn_t *c, const sl_http_req_t *hr, char **key_name)
{
    *key_name = NULL;
    if (sl_auth_is_admin(sl_conn_ctx(c)->cfg, hr))
        return true;
    sl_identity_t who;
    if (!admit(c, hr, &who))
        return false;
    *key_name = who.key_name;
    who.key_name = NULL;
    sl_identity_dispose(&who);
    if (*key_name || sl_ip_is_loopback(sl_conn_tcp_peer(c)))
        return true;
    error_json(c, 403, "usage statistics need an API key (or a loopback client when none is used)");
    return false;
}

static void stats(sl_conn_t *c, const sl_http_req_t *hr, const sl_route_match_t *m)
{
    char *key_name;
    if (!stats_scope(c, hr, &key_name))
        return;
    stats_wait_t *s = NULL;
    if (!sl_conn_ctx(c)->store) {
        error_json(c, 503, "usage statistics are unavailable");
    } else if (m->param && m->param_len >= sizeof s->user) {
        error_json(c, 400, "user id too long");
    } else {
        s = sl_calloc(1, sizeof *s);
        s->c = c;
        s->one = m->param != NULL;
        if (s->one)
            memcpy(s->user, m->param, m->param_len);
        sl_conn_set_hooks(c, &stats_hooks, s);
        s->op = sl_store_user_stats_key(sl_conn_ctx(c)->store, s->one ? s->user : NULL, key_name,
                                        on_stats, s); /* the op copies key_name */
    }
    sl_free(key_name);
}

static const sl_route_t routes[] = {
    {"POST", "/model", model},
    {"POST", "/model/stream", model_stream},
    {"POST", "/agent/{name}", agent},
    {"POST", "/agent/{name}/stream", agent_stream},
    {"GET", "/model/ws", model_ws},
    {"GET", "/agent/{name}/ws", agent_ws},
    {"POST", "/validate-user", validate_user},
    {"GET", "/rate-limit/stats", stats},
    {"GET", "/rate-limit/stats/{user_id}", stats},
};
static const char *const mounts[] = {"", NULL};

const sl_dialect_t sl_dialect_monoai = {
    .name = "monoai",
    .config = &sl_monoai_section,
    .mounts = mounts,
    .routes = routes,
    .nroutes = sizeof routes / sizeof routes[0],
    .route_error = route_error,
};
