/* The rag dialect (seed 004, the RAG service): POST /api/chat answers JSON {answer, sources,
 * timings, streaming, usage}; POST /api/chat/stream answers SSE phase events, sources, content
 * chunks and an end event with the timings. Before generation, the store thread runs the
 * phases cache → retrieval (FTS5 bm25) → rerank (store/corpus.c) in one round trip; the
 * passages then go upstream in the user message through the relay like any seed request. */
#include <math.h>
#include <string.h>

#include "core/alloc.h"
#include "core/ctx.h"
#include "core/log.h"
#include "dialect/dialect.h"
#include "dialect/rag_cfg.h"
#include "dialect/seed.h"
#include "net/conn.h"
#include "relay/relay.h"
#include "store/store.h"

#define MAX_QUESTION 8192 /* bytes; a longer one is refused with 400 */
#define MAX_TOP_K    20

static const char default_system[] =
    "You answer questions about a collection of documents. Use only the numbered passages in "
    "the user's message, cite them as [1], [2]..., and say so plainly when they do not contain "
    "the answer.";

/* One rag request: owned by the handler until the relay starts, then by the request's meta
 * (meta.ext), so the encoders find it through sl_relay_req. */
typedef struct rag {
    sl_conn_t *c;             /* weak: cleared by on_gone; unused once the relay owns c */
    sl_store_client_t *store; /* borrowed: the worker's, outlives every exchange on it */
    sl_store_op_t *op;        /* the phases in flight on the store thread, or NULL */
    sl_config_t *cfg;         /* owned ref: the config this request started with */
    sl_identity_t who;        /* owned until moved into the request's meta */
    bool sse;                 /* the client asked /api/chat/stream */
    bool upstream_stream;     /* the upstream call streams */
    unsigned top_k;
    char *question;   /* owned */
    char *session_id; /* owned; may be NULL (echoed, recorded with usage) */
    char *cache_key;  /* owned; NULL when the cache is off */
    json_t *sources;  /* owned: what the client sees of the passages */
    double t0;        /* sl_now_ms() at arrival */
    double ms_cache, ms_retrieval, ms_rerank;
    double t_gen; /* when generation began */
} rag_t;

static void rag_free(void *p)
{
    rag_t *g = p;
    if (!g)
        return;
    sl_identity_dispose(&g->who);
    sl_config_unref(g->cfg);
    json_decref(g->sources);
    sl_free(g->question);
    sl_free(g->session_id);
    sl_free(g->cache_key);
    sl_free(g);
}

static double ms3(double ms)
{
    return round((ms > 0 ? ms : 0) * 1000.0) / 1000.0;
}

static json_t *timings(const rag_t *g, double generation_ms)
{
    return json_pack("{s:f, s:f, s:f, s:f, s:f}", "cache_ms", ms3(g->ms_cache), "retrieval_ms",
                     ms3(g->ms_retrieval), "rerank_ms", ms3(g->ms_rerank), "generation_ms",
                     ms3(generation_ms), "total_ms", ms3(sl_now_ms() - g->t0));
}

static json_t *phase(const char *name, double ms)
{
    return json_pack("{s:s, s:s, s:f}", "type", "phase", "phase", name, "ms", ms3(ms));
}

/* Timings and scores are reals: 10 significant digits print 0.148 as 0.148, not as the
 * nearest double's 17. */
#define DUMP_FLAGS (JSON_COMPACT | JSON_REAL_PRECISION(10))

/* "data: <JSON>\n\n"; decrefs obj. */
static void sse(sl_relay_t *r, json_t *obj)
{
    char *s = json_dumps(obj, DUMP_FLAGS);
    json_decref(obj);
    sl_buf_t *b = sl_relay_scratch(r);
    sl_buf_puts(b, "data: ");
    sl_buf_puts(b, s ? s : "{}");
    sl_buf_puts(b, "\n\n");
    sl_free(s);
    sl_relay_send(r, b->data, b->len);
}

static void bad_request(sl_conn_t *c, const char *param, const char *msg)
{
    sl_conn_respond_err(c, SL_EINVAL, NULL, param, msg, NULL);
}

/* ---- after generation: the answer cache ---- */

static void cache_answer(rag_t *g, const char *text, size_t len)
{
    if (!g->cache_key)
        return;
    json_t *v = json_pack("{s:s%, s:O}", "answer", text, len, "sources", g->sources);
    char *s = v ? json_dumps(v, DUMP_FLAGS) : NULL;
    if (s)
        sl_store_rag_cache_put(g->store, g->cache_key, s);
    sl_free(s);
    json_decref(v);
}

/* ---- SSE: phase..., sources, chunk..., phase generation, end | error ---- */

static rag_t *rag_of(sl_relay_t *r)
{
    return sl_relay_req(r)->meta.ext;
}

static void stream_begin(sl_relay_t *r, void *st)
{
    rag_t *g = rag_of(r);
    sl_relay_stream_head(r, NULL);
    sse(r, phase("cache", g->ms_cache));
    sse(r, phase("retrieval", g->ms_retrieval));
    sse(r, phase("rerank", g->ms_rerank));
    sse(r, json_pack("{s:s, s:O}", "type", "sources", "sources", g->sources));
    g->t_gen = sl_now_ms();
}

static void stream_event(sl_relay_t *r, void *st, const sl_event_t *ev)
{
    rag_t *g = rag_of(r);
    size_t len;
    const char *text;
    switch (ev->type) {
    case SL_EV_DELTA:
        if (ev->content_len && ev->choice == 0)
            sse(r,
                json_pack("{s:s, s:s%}", "type", "chunk", "content", ev->content, ev->content_len));
        return;
    case SL_EV_ERROR:
        if (!sl_relay_head_sent(r)) { /* refused before the stream began (limits) */
            sl_relay_respond_error(r, &ev->error);
            sl_relay_end(r, false);
            return;
        }
        /* no end event: the answer did not finish (§3.6) */
        sse(r, json_pack("{s:s, s:s}", "type", "error", "error", ev->error.message));
        sl_relay_end(r, true);
        return;
    case SL_EV_END: {
        text = sl_relay_text(r, &len);
        double gen = sl_now_ms() - g->t_gen;
        sse(r, phase("generation", gen));
        sse(r,
            json_pack("{s:s, s:s%, s:o, s:o, s:b}", "type", "end", "answer", text, len, "timings",
                      timings(g, gen), "usage", sl_seed_usage(r), "streaming", g->upstream_stream));
        cache_answer(g, text, len);
        sl_relay_end(r, false);
        return;
    }
    default: return;
    }
}

static const sl_dialect_enc_t enc_stream = {
    .name = "rag",
    .begin = stream_begin,
    .event = stream_event,
};

/* ---- JSON: the whole answer ---- */

static void whole_begin(sl_relay_t *r, void *st)
{
    rag_of(r)->t_gen = sl_now_ms();
}

static void whole_event(sl_relay_t *r, void *st, const sl_event_t *ev)
{
    rag_t *g = rag_of(r);
    size_t len;
    const char *text;
    if (ev->type == SL_EV_ERROR) {
        sl_relay_respond_error(r, &ev->error);
        sl_relay_end(r, false);
    } else if (ev->type == SL_EV_END) {
        text = sl_relay_text(r, &len);
        json_t *body = json_pack("{s:s%, s:O, s:o, s:b, s:o}", "answer", text, len, "sources",
                                 g->sources, "timings", timings(g, sl_now_ms() - g->t_gen),
                                 "streaming", g->upstream_stream, "usage", sl_seed_usage(r));
        if (g->session_id)
            json_object_set_new(body, "session_id", json_string(g->session_id));
        char *text_out = json_dumps(body, DUMP_FLAGS);
        json_decref(body);
        sl_relay_respond(r, 200, "application/json", text_out, strlen(text_out), NULL);
        sl_free(text_out);
        cache_answer(g, text, len);
        sl_relay_end(r, false);
    }
}

static const sl_dialect_enc_t enc_whole = {
    .name = "rag",
    .begin = whole_begin,
    .event = whole_event,
};

/* ---- a cached answer: no generation, no upstream ---- */

static void answer_cached(sl_conn_t *c, rag_t *g, const char *value)
{
    json_t *v = json_loads(value, 0, NULL);
    json_t *answer = json_object_get(v, "answer");
    json_t *sources = json_object_get(v, "sources");
    const char *a = json_is_string(answer) ? json_string_value(answer) : "";
    json_t *src = json_is_array(sources) ? json_incref(sources) : json_array();
    json_t *usage =
        json_pack("{s:i, s:i, s:i}", "prompt_tokens", 0, "completion_tokens", 0, "total_tokens", 0);
    sl_buf_puts(sl_conn_log_extra(c), ",\"dialect\":\"rag\",\"rag_cache\":\"hit\"");
    if (!g->sse) {
        json_t *body =
            json_pack("{s:s, s:o, s:o, s:b, s:o, s:b}", "answer", a, "sources", src, "timings",
                      timings(g, 0), "streaming", false, "usage", usage, "cached", true);
        char *out = json_dumps(body, DUMP_FLAGS);
        json_decref(body);
        sl_conn_respond(c, 200, "application/json", out, strlen(out), NULL);
        sl_free(out);
        json_decref(v);
        return;
    }
    sl_conn_head(c, 200, "text/event-stream; charset=utf-8", -1,
                 "Cache-Control: no-cache\r\nX-Accel-Buffering: no\r\n");
    json_t *evs[] = {
        phase("cache", g->ms_cache),
        json_pack("{s:s, s:o}", "type", "sources", "sources", src),
        json_pack("{s:s, s:s}", "type", "chunk", "content", a),
        json_pack("{s:s, s:s, s:o, s:o, s:b, s:b}", "type", "end", "answer", a, "timings",
                  timings(g, 0), "usage", usage, "streaming", false, "cached", true),
    };
    for (size_t i = 0; i < sizeof evs / sizeof evs[0]; i++) {
        char *s = json_dumps(evs[i], DUMP_FLAGS);
        json_decref(evs[i]);
        sl_conn_body(c, "data: ", 6);
        sl_conn_body(c, s, strlen(s));
        sl_conn_body(c, "\n\n", 2);
        sl_free(s);
    }
    sl_conn_end(c, false);
    json_decref(v);
}

/* ---- generation: the passages go upstream ---- */

/* The user message: the numbered passages (or that none matched), then the question. */
static void prompt(const rag_t *g, json_t *found, sl_buf_t *out)
{
    size_t i;
    json_t *s;
    if (json_array_size(found) == 0) {
        sl_buf_puts(out, "No passage of the documents matches this question: say that the "
                         "documents do not cover it.\n\n");
    } else {
        sl_buf_puts(out, "Passages:\n\n");
        json_array_foreach (found, i, s) {
            sl_buf_printf(out, "[%zu] %s (%s)\n%s\n\n", i + 1,
                          json_string_value(json_object_get(s, "title")),
                          json_string_value(json_object_get(s, "path")),
                          json_string_value(json_object_get(s, "text")));
        }
    }
    sl_buf_puts(out, "Question: ");
    sl_buf_puts(out, g->question);
}

static void generate(sl_conn_t *c, rag_t *g, json_t *found)
{
    const sl_dialect_cfg_t *d = sl_config_dialect(g->cfg, &sl_rag_section);
    /* What the client sees of a passage: no full text. */
    g->sources = json_array();
    size_t i;
    json_t *s;
    json_array_foreach (found, i, s) {
        json_t *copy = json_copy(s);
        json_object_del(copy, "text");
        json_array_append_new(g->sources, copy);
    }
    sl_buf_t user;
    sl_buf_init(&user);
    prompt(g, found, &user);
    sl_chat_req_t req = {0};
    sl_seed_request(&req, d->model, d->system_prompt ? d->system_prompt : default_system, NULL,
                    user.data, d->max_tokens, NULL, g->upstream_stream);
    sl_buf_dispose(&user);
    const char *owner = g->who.user ? g->who.user : g->who.key_name;
    if (owner)
        req.meta.user_id = sl_strdup(owner);
    if (g->session_id) {
        json_t *tags = json_pack("{s:s}", "session_id", g->session_id);
        req.meta.tags = json_dumps(tags, JSON_COMPACT);
        json_decref(tags);
    }
    sl_identity_to_meta(&g->who, &req.meta);
    /* Seed 004: a streaming call that fails before output is asked again, whole. */
    req.fallback_to_non_stream = true;
    req.meta.ext = g; /* the request owns g from here */
    req.meta.ext_free = rag_free;
    g->c = NULL;
    sl_relay_start(c, &req, g->sse ? &enc_stream : &enc_whole);
}

static void on_gone(void *ud)
{
    rag_t *g = ud;
    sl_store_op_cancel(g->op); /* its callback never runs now */
    rag_free(g);
}

static const sl_conn_hooks_t hooks = {.gone = on_gone};

static double num(json_t *res, const char *key)
{
    return json_number_value(json_object_get(res, key));
}

static void on_phases(void *ud, int err, json_t *res)
{
    rag_t *g = ud;
    sl_conn_t *c = g->c;
    g->op = NULL;
    sl_conn_set_hooks(c, NULL, NULL);
    g->ms_cache = num(res, "cache_ms");
    g->ms_retrieval = num(res, "retrieval_ms");
    g->ms_rerank = num(res, "rerank_ms");
    json_t *cached = json_object_get(res, "cached");
    if (err) {
        sl_conn_respond_err(c, SL_EUNAVAIL, "retrieval_unavailable", NULL,
                            "the document index is unavailable right now", NULL);
        rag_free(g);
    } else if (json_is_string(cached)) {
        answer_cached(c, g, json_string_value(cached));
        rag_free(g);
    } else {
        json_t *found = json_object_get(res, "sources");
        generate(c, g, json_is_array(found) ? found : NULL);
    }
    json_decref(res);
}

/* ---- handlers ---- */

/* "question", "message" or "query": the first that is a string. */
static json_t *question_of(json_t *body)
{
    static const char *const names[] = {"question", "message", "query"};
    for (size_t i = 0; i < 3; i++) {
        json_t *q = json_object_get(body, names[i]);
        if (q)
            return q;
    }
    return NULL;
}

/* The cache key: model, top_k and the question with case and spacing normalised. */
static char *cache_key(const char *model, unsigned top_k, const char *q)
{
    sl_buf_t k;
    sl_buf_init(&k);
    sl_buf_printf(&k, "v1\x1f%s\x1f%u\x1f", model, top_k);
    bool space = false;
    for (const char *p = q; *p; p++) {
        unsigned char ch = (unsigned char)*p;
        if (ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r') {
            space = k.data[k.len - 1] != '\x1f';
            continue;
        }
        if (space)
            sl_buf_putc(&k, ' ');
        space = false;
        sl_buf_putc(&k, (char)(ch >= 'A' && ch <= 'Z' ? ch - 'A' + 'a' : ch));
    }
    return k.data;
}

/* The body's question, top_k and session_id, or a 400 already answered (false). */
static bool parse(sl_conn_t *c, const sl_http_req_t *hr, rag_t *g)
{
    char msg[256];
    json_t *body = sl_seed_body(hr, msg, sizeof msg);
    json_t *q = body ? question_of(body) : NULL;
    json_t *k = json_object_get(body, "top_k");
    json_t *sid = json_object_get(body, "session_id");
    const char *bad = !body                    ? msg
                      : !json_is_string(q)     ? "'question' is required (a string; also "
                                                 "accepted as 'message' or 'query')"
                      : !json_string_length(q) ? "'question' must not be empty"
                      : json_string_length(q) > MAX_QUESTION ? "'question' is too long"
                      : k && !json_is_null(k) &&
                              (!json_is_integer(k) || json_integer_value(k) < 1 ||
                               json_integer_value(k) > MAX_TOP_K)
                          ? "'top_k' must be an integer from 1 to 20"
                      : sid && !json_is_null(sid) && !json_is_string(sid)
                          ? "'session_id' must be a string"
                          : NULL;
    const char *param =
        !body ? NULL
        : !q || !json_is_string(q) || !json_string_length(q) || json_string_length(q) > MAX_QUESTION
            ? "question"
        : bad && !strncmp(bad, "'top_k'", 7) ? "top_k"
                                             : "session_id";
    if (bad) {
        bad_request(c, param, bad);
    } else {
        g->question = sl_strdup(json_string_value(q));
        g->top_k = json_is_integer(k) ? (unsigned)json_integer_value(k) : sl_rag_cfg(g->cfg)->top_k;
        g->session_id = json_is_string(sid) ? sl_strdup(json_string_value(sid)) : NULL;
    }
    json_decref(body);
    return bad == NULL;
}

static void handle(sl_conn_t *c, const sl_http_req_t *hr, bool sse)
{
    const sl_config_t *cfg = sl_conn_ctx(c)->cfg;
    const sl_dialect_cfg_t *d = sl_config_dialect(cfg, &sl_rag_section);
    const char *why;
    rag_t *g = sl_calloc(1, sizeof *g);
    g->t0 = sl_now_ms();
    g->cfg = sl_config_ref(sl_conn_ctx(c)->cfg);
    if (sl_auth_admit(cfg, d->auth, hr, NULL, sl_auth_keys(sl_conn_ctx(c)), &g->who, &why) != 0) {
        sl_conn_respond_err(c, SL_EAUTH, "invalid_api_key", NULL, why, NULL);
        rag_free(g);
        return;
    }
    if (!parse(c, hr, g)) {
        rag_free(g);
        return;
    }
    if (!sl_conn_ctx(c)->store) {
        sl_conn_respond_err(c, SL_EUNAVAIL, "retrieval_unavailable", NULL,
                            "the document index is unavailable", NULL);
        rag_free(g);
        return;
    }
    g->c = c;
    g->store = sl_conn_ctx(c)->store;
    g->sse = sse;
    /* The JSON endpoint asks for a whole answer; the SSE one streams when configured (a
     * stream that fails before output is retried whole: fallback_to_non_stream below). */
    const sl_rag_cfg_t *rc = sl_rag_cfg(cfg);
    g->upstream_stream = sse && rc->streaming;
    if (rc->cache_ttl_ms)
        g->cache_key = cache_key(d->model, g->top_k, g->question);
    sl_rag_query_t q = {
        .corpus = rc->corpus,
        .generation = rc->generation,
        .question = g->question,
        .top_k = g->top_k,
        .cache_key = g->cache_key,
        .cache_ttl_s = (int64_t)((rc->cache_ttl_ms + 999) / 1000),
    };
    sl_conn_set_hooks(c, &hooks, g);
    g->op = sl_store_rag_query(g->store, &q, on_phases, g);
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
    {"POST", "/api/chat", handle_whole},
    {"POST", "/api/chat/stream", handle_stream},
};
static const char *const mounts[] = {"", NULL};

/* The corpus is indexed on the store thread, never on a worker (queued first, so the first
 * request finds it done); a reload re-scans on the first rag request of the new config. */
static void prepare(const sl_config_t *cfg, sl_store_t *store)
{
    const sl_rag_cfg_t *rc = sl_rag_cfg(cfg);
    if (rc->corpus)
        sl_store_rag_sync(store, rc->corpus, rc->generation);
}

const sl_dialect_t sl_dialect_rag = {
    .name = "rag",
    .config = &sl_rag_section,
    .prepare = prepare,
    .mounts = mounts,
    .routes = routes,
    .nroutes = sizeof routes / sizeof routes[0],
};
