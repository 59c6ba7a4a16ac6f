/* Config sections for the seed dialects (dialects:), the store (store:) and JWT (auth.jwt). */
#include "config/sections.h"

#include <string.h>

#include "core/alloc.h"

const char *const sl_dialect_names[SL_DIALECT_COUNT] = {
    [SL_DIALECT_OPENAI] = "openai", [SL_DIALECT_CHAT] = "chat", [SL_DIALECT_MONOAI] = "monoai",
    [SL_DIALECT_AICHAT] = "aichat", [SL_DIALECT_RAG] = "rag",
};

/* Hands each parsed config its own rag generation. The one process-wide counter in the config
 * module: an id generator, never read back, so no reader can see a stale value. */
static uint64_t rag_generations;

void sl_cfgsec_defaults(sl_config_t *c)
{
    for (int i = 0; i < SL_DIALECT_COUNT; i++) {
        sl_dialect_cfg_t *d = &c->dialects[i];
        d->enabled = true;
        d->prefix = sl_strdup("");
        d->model = sl_strdup("default");
        d->history_turns = 20;
    }
    c->dialects[SL_DIALECT_CHAT].max_tokens = 1000; /* seed 000 */
    c->rag.streaming = true;                        /* seed 004's STREAMING_RESPONSE default */
    c->rag.top_k = 4;
    c->rag.generation = __atomic_add_fetch(&rag_generations, 1, __ATOMIC_RELAXED);
    c->sqlite_path = sl_strdup("./sluice.db");
    c->cors_max_age_s = 600;
}

void sl_cfgsec_free(sl_config_t *c)
{
    for (int i = 0; i < SL_DIALECT_COUNT; i++) {
        sl_free(c->dialects[i].prefix);
        sl_free(c->dialects[i].model);
        sl_free(c->dialects[i].system_prompt);
    }
    for (size_t i = 0; i < c->nagents; i++) {
        sl_free(c->agents[i].name);
        sl_free(c->agents[i].model);
        sl_free(c->agents[i].system_prompt);
        json_decref(c->agents[i].params);
    }
    sl_free(c->agents);
    for (size_t i = 0; i < c->nallowed_users; i++)
        sl_free(c->allowed_users[i]);
    sl_free(c->allowed_users);
    sl_free(c->user_validator_url);
    sl_free(c->rag.corpus);
    sl_free(c->sqlite_path);
    sl_free(c->redis_url);
    sl_free(c->postgres_url);
    for (size_t i = 0; i < c->ncors_origins; i++)
        sl_free(c->cors_origins[i]);
    sl_free(c->cors_origins);
    sl_free(c->jwt.alg);
    sl_free(c->jwt.key);
    sl_free(c->jwt.user_claim);
    sl_free(c->jwt.issuer);
    sl_free(c->jwt.audience);
    sl_free(c->trusted_proxies);
    sl_free(c->metrics_listen_host);
}

const sl_agent_cfg_t *sl_config_agent(const sl_config_t *c, const char *name)
{
    for (size_t i = 0; i < c->nagents; i++)
        if (strcmp(c->agents[i].name, name) == 0)
            return &c->agents[i];
    return NULL;
}

/* ---- scalars ---- */

static int replace_str(sl_ytree_t *t, const yaml_node_t *v, const char *what, char **dst)
{
    char *s = NULL;
    int rc = sl_ytree_str(t, v, what, &s);
    if (rc != 0)
        return rc;
    sl_free(*dst);
    *dst = s;
    return 0;
}

int sl_cfgsec_bool(sl_ytree_t *t, const yaml_node_t *v, const char *what, bool *out)
{
    char *s = NULL;
    int rc = sl_ytree_str(t, v, what, &s);
    if (rc == 0 && strcmp(s, "true") == 0)
        *out = true;
    else if (rc == 0 && strcmp(s, "false") == 0)
        *out = false;
    else if (rc == 0)
        rc = sl_ytree_error(t, v, "%s: expected true or false", what);
    sl_free(s);
    return rc;
}

static int parse_auth_mode(sl_ytree_t *t, const yaml_node_t *v, sl_auth_mode_t *out)
{
    char *s = NULL;
    int rc = sl_ytree_str(t, v, "auth", &s);
    if (rc == 0) {
        if (!strcmp(s, "none"))
            *out = SL_AUTH_NONE;
        else if (!strcmp(s, "key"))
            *out = SL_AUTH_KEY;
        else if (!strcmp(s, "jwt"))
            *out = SL_AUTH_JWT;
        else
            rc = sl_ytree_error(t, v, "auth: expected one of key, jwt, none");
    }
    sl_free(s);
    return rc;
}

/* A plain scalar that reads as a number or boolean becomes one; anything else is a string. */
static json_t *scalar_json(const yaml_node_t *v, const char *text)
{
    if (v->data.scalar.style == YAML_PLAIN_SCALAR_STYLE) {
        if (!strcmp(text, "true") || !strcmp(text, "false"))
            return json_boolean(!strcmp(text, "true"));
        json_error_t e;
        json_t *num = json_loads(text, JSON_DECODE_ANY, &e);
        if (json_is_number(num))
            return num;
        json_decref(num);
    }
    return json_string(text);
}

/* params: a mapping of scalars, passed upstream as extra request fields. */
static int parse_params(sl_ytree_t *t, const yaml_node_t *v, json_t **out)
{
    if (v->type != YAML_MAPPING_NODE)
        return sl_ytree_error(t, v, "params: expected a mapping like { temperature: 0.2 }");
    json_t *obj = json_object();
    int rc = 0;
    for (yaml_node_pair_t *pr = v->data.mapping.pairs.start;
         rc == 0 && pr < v->data.mapping.pairs.top; pr++) {
        yaml_node_t *k = sl_ytree_node(t, pr->key), *val = sl_ytree_node(t, pr->value);
        char *key = NULL, *text = NULL;
        rc = sl_ytree_str(t, k, "params key", &key);
        if (rc == 0 && val->type != YAML_SCALAR_NODE)
            rc = sl_ytree_error(t, val, "params.%s: expected a number, string or boolean", key);
        if (rc == 0)
            rc = sl_ytree_str(t, val, key, &text);
        if (rc == 0 &&
            (!strcmp(key, "model") || !strcmp(key, "messages") || !strcmp(key, "stream")))
            rc = sl_ytree_error(t, k, "params.%s: set by sluice, not a parameter", key);
        if (rc == 0)
            json_object_set_new(obj, key, scalar_json(val, text));
        sl_free(key);
        sl_free(text);
    }
    if (rc != 0)
        json_decref(obj);
    else
        *out = obj;
    return rc;
}

/* ---- monoai: agents and users ---- */

static int parse_agent(sl_ytree_t *t, const yaml_node_pair_t *pr, sl_agent_cfg_t *a)
{
    static const char *const allowed[] = {"model", "system_prompt", "params", NULL};
    yaml_node_t *k = sl_ytree_node(t, pr->key), *v = sl_ytree_node(t, pr->value);
    int rc = sl_ytree_str(t, k, "agent name", &a->name);
    if (rc == 0 && (!a->name[0] || strchr(a->name, '/')))
        rc = sl_ytree_error(t, k, "agent name: expected a non-empty name without '/'");
    if (rc == 0)
        rc = sl_ytree_check_map(t, v, "agent", allowed, NULL);
    yaml_node_t *f;
    if (rc == 0 && (f = sl_ytree_get(t, v, "model")))
        rc = replace_str(t, f, "model", &a->model);
    if (rc == 0 && (f = sl_ytree_get(t, v, "system_prompt")))
        rc = replace_str(t, f, "system_prompt", &a->system_prompt);
    if (rc == 0 && (f = sl_ytree_get(t, v, "params")))
        rc = parse_params(t, f, &a->params);
    if (rc == 0 && !a->params)
        a->params = json_object();
    return rc;
}

static int parse_agents(sl_ytree_t *t, const yaml_node_t *v, sl_config_t *c)
{
    if (v->type != YAML_MAPPING_NODE)
        return sl_ytree_error(t, v, "agents: expected a mapping of agent name → preset");
    size_t n = (size_t)(v->data.mapping.pairs.top - v->data.mapping.pairs.start);
    c->agents = sl_calloc(n ? n : 1, sizeof *c->agents);
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        c->nagents = i + 1;
        rc = parse_agent(t, &v->data.mapping.pairs.start[i], &c->agents[i]);
    }
    return rc;
}

/* users: { allow: [ ... ] } or { url: http://…, cache: 60s } (seed 002's user validator). */
static int parse_users(sl_ytree_t *t, const yaml_node_t *v, sl_config_t *c)
{
    static const char *const allowed[] = {"allow", "url", "cache", NULL};
    int rc = sl_ytree_check_map(t, v, "users", allowed, NULL);
    yaml_node_t *allow = rc == 0 ? sl_ytree_get(t, v, "allow") : NULL;
    yaml_node_t *url = rc == 0 ? sl_ytree_get(t, v, "url") : NULL;
    yaml_node_t *cache = rc == 0 ? sl_ytree_get(t, v, "cache") : NULL;
    if (allow && url)
        return sl_ytree_error(t, url, "users: give either allow or url, not both");
    if (cache && !url)
        return sl_ytree_error(t, cache, "users: cache applies to url answers only");
    if (url) {
        rc = replace_str(t, url, "url", &c->user_validator_url);
        const char *s = rc == 0 ? c->user_validator_url : "";
        size_t skip = !strncmp(s, "https://", 8) ? 8 : !strncmp(s, "http://", 7) ? 7 : 0;
        if (rc == 0 && (skip == 0 || !s[skip] || s[skip] == '/'))
            return sl_ytree_error(t, url, "url: expected an http:// or https:// URL");
        c->user_validator_cache_ms = 60000;
        if (rc == 0 && cache)
            rc = sl_ytree_duration(t, cache, "cache", &c->user_validator_cache_ms);
        return rc;
    }
    if (!allow)
        return rc;
    rc = sl_ytree_check_seq(t, allow, "allow");
    size_t n =
        rc == 0 ? (size_t)(allow->data.sequence.items.top - allow->data.sequence.items.start) : 0;
    c->allowed_users = sl_calloc(n ? n : 1, sizeof *c->allowed_users);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        c->nallowed_users = i + 1;
        rc = sl_ytree_str(t, sl_ytree_node(t, allow->data.sequence.items.start[i]), "user id",
                          &c->allowed_users[i]);
    }
    return rc;
}

/* ---- rag: corpus, streaming, top_k, cache_ttl ---- */

static bool is_rag_key(const char *key)
{
    return !strcmp(key, "corpus") || !strcmp(key, "streaming") || !strcmp(key, "top_k") ||
           !strcmp(key, "cache_ttl");
}

static int parse_rag_key(sl_ytree_t *t, const yaml_node_t *k, const yaml_node_t *f, sl_config_t *c)
{
    const char *key = sl_ytree_text(k);
    uint64_t n = 0;
    int rc = 0;
    if (!strcmp(key, "corpus")) {
        rc = replace_str(t, f, key, &c->rag.corpus);
        if (rc == 0 && !c->rag.corpus[0])
            rc = sl_ytree_error(t, f, "corpus: expected a directory of .md/.txt files");
    } else if (!strcmp(key, "streaming")) {
        rc = sl_cfgsec_bool(t, f, key, &c->rag.streaming);
    } else if (!strcmp(key, "top_k") && (rc = sl_ytree_uint(t, f, key, 1, 20, &n)) == 0) {
        c->rag.top_k = (unsigned)n;
    } else if (!strcmp(key, "cache_ttl")) {
        rc = sl_ytree_duration(t, f, key, &c->rag.cache_ttl_ms);
    }
    return rc;
}

/* ---- dialects ---- */

static int parse_dialect(sl_ytree_t *t, sl_dialect_id_t id, const yaml_node_t *v, sl_config_t *c,
                         sl_cfgsec_ctx_t *ctx)
{
    static const char *const common[] = {
        "enabled", "prefix", "model",  "system_prompt", "max_tokens", "auth",      "history_turns",
        "agents",  "users",  "corpus", "streaming",     "top_k",      "cache_ttl", NULL};
    sl_dialect_cfg_t *d = &c->dialects[id];
    int rc = sl_ytree_check_map(t, v, sl_dialect_names[id], common, NULL);
    for (yaml_node_pair_t *pr = rc == 0 ? v->data.mapping.pairs.start : NULL;
         pr && rc == 0 && pr < v->data.mapping.pairs.top; pr++) {
        yaml_node_t *k = sl_ytree_node(t, pr->key), *f = sl_ytree_node(t, pr->value);
        const char *key = sl_ytree_text(k);
        uint64_t n = 0;
        if (!strcmp(key, "enabled"))
            rc = sl_cfgsec_bool(t, f, key, &d->enabled);
        else if (!strcmp(key, "prefix"))
            rc = replace_str(t, f, key, &d->prefix);
        else if (!strcmp(key, "model"))
            rc = replace_str(t, f, key, &d->model);
        else if (!strcmp(key, "system_prompt"))
            rc = replace_str(t, f, key, &d->system_prompt);
        else if (!strcmp(key, "max_tokens"))
            rc = sl_ytree_uint(t, f, key, 1, 10000000, &d->max_tokens);
        else if (!strcmp(key, "history_turns") && (rc = sl_ytree_uint(t, f, key, 0, 1000, &n)) == 0)
            d->history_turns = (unsigned)n;
        else if (!strcmp(key, "auth") && (rc = parse_auth_mode(t, f, &d->auth)) == 0 &&
                 d->auth == SL_AUTH_JWT)
            ctx->jwt_auth[id] = f;
        else if ((!strcmp(key, "agents") || !strcmp(key, "users")) && id != SL_DIALECT_MONOAI)
            rc = sl_ytree_error(t, k, "%s: only the monoai dialect has %s", key, key);
        else if (!strcmp(key, "agents"))
            rc = parse_agents(t, f, c);
        else if (!strcmp(key, "users"))
            rc = parse_users(t, f, c);
        else if (is_rag_key(key) && id != SL_DIALECT_RAG)
            rc = sl_ytree_error(t, k, "%s: only the rag dialect has %s", key, key);
        else if (is_rag_key(key))
            rc = parse_rag_key(t, k, f, c);
        if (rc == 0 && !strcmp(key, "prefix") && d->prefix[0] &&
            (d->prefix[0] != '/' || d->prefix[strlen(d->prefix) - 1] == '/'))
            rc = sl_ytree_error(t, f,
                                "prefix: expected a path like /seed000 (leading /, none "
                                "trailing)");
    }
    return rc;
}

int sl_cfgsec_dialects(sl_ytree_t *t, const yaml_node_t *v, sl_config_t *c, sl_cfgsec_ctx_t *ctx)
{
    static const char *const allowed[] = {"openai", "chat", "monoai", "aichat", "rag", NULL};
    int rc = sl_ytree_check_map(t, v, "dialects", allowed, NULL);
    for (int i = 0; rc == 0 && i < SL_DIALECT_COUNT; i++) {
        yaml_node_t *d = sl_ytree_get(t, v, sl_dialect_names[i]);
        if (d)
            rc = parse_dialect(t, (sl_dialect_id_t)i, d, c, ctx);
    }
    return rc;
}

/* ---- store, jwt ---- */

int sl_cfgsec_store(sl_ytree_t *t, const yaml_node_t *v, sl_config_t *c)
{
    static const char *const allowed[] = {"sqlite", "redis", "postgres", NULL};
    int rc = sl_ytree_check_map(t, v, "store", allowed, NULL);
    yaml_node_t *f = rc == 0 ? sl_ytree_get(t, v, "sqlite") : NULL;
    if (f)
        rc = replace_str(t, f, "sqlite", &c->sqlite_path);
    if (rc == 0 && f && !c->sqlite_path[0])
        rc = sl_ytree_error(t, f, "sqlite: expected a file path");
    if (rc == 0 && (f = sl_ytree_get(t, v, "redis"))) {
        rc = replace_str(t, f, "redis", &c->redis_url);
        if (rc == 0 && strncmp(c->redis_url, "redis://", 8) != 0)
            rc = sl_ytree_error(t, f, "redis: expected a URL like redis://127.0.0.1:6379");
    }
    if (rc == 0 && (f = sl_ytree_get(t, v, "postgres"))) {
        rc = replace_str(t, f, "postgres", &c->postgres_url);
        if (rc == 0 && strncmp(c->postgres_url, "postgresql://", 13) != 0 &&
            strncmp(c->postgres_url, "postgres://", 11) != 0)
            rc = sl_ytree_error(t, f,
                                "postgres: expected a URL like "
                                "postgresql://user@127.0.0.1:5432/sluice");
    }
    return rc;
}

int sl_cfgsec_jwt(sl_ytree_t *t, const yaml_node_t *v, sl_config_t *c)
{
    static const char *const allowed[] = {"alg",        "secret",      "public_key",
                                          "user_claim", "leeway",      "issuer",
                                          "audience",   "require_exp", NULL};
    sl_jwt_cfg_t *j = &c->jwt;
    int rc = sl_ytree_check_map(t, v, "jwt", allowed, NULL);
    yaml_node_t *alg = rc == 0 ? sl_ytree_get(t, v, "alg") : NULL;
    if (rc == 0 && !alg)
        return sl_ytree_error(t, v, "jwt: alg is required (HS256, RS256 or ES256)");
    if (rc == 0)
        rc = replace_str(t, alg, "alg", &j->alg);
    bool hs = rc == 0 && !strcmp(j->alg, "HS256");
    if (rc == 0 && !hs && strcmp(j->alg, "RS256") && strcmp(j->alg, "ES256"))
        return sl_ytree_error(t, alg, "alg: expected HS256, RS256 or ES256");
    const char *keyname = hs ? "secret" : "public_key";
    yaml_node_t *key = rc == 0 ? sl_ytree_get(t, v, keyname) : NULL;
    if (rc == 0 && !key)
        return sl_ytree_error(t, v, "jwt: %s is required with alg %s", keyname, j->alg);
    if (rc == 0 && sl_ytree_get(t, v, hs ? "public_key" : "secret"))
        return sl_ytree_error(t, v, "jwt: alg %s takes %s only", j->alg, keyname);
    if (rc == 0)
        rc = replace_str(t, key, keyname, &j->key);
    if (rc == 0 && strlen(j->key) < (hs ? 16u : 64u))
        return sl_ytree_error(t, key, "%s: too short to be safe", keyname);
    j->key_len = rc == 0 ? strlen(j->key) : 0;
    j->user_claim = sl_strdup("sub");
    j->leeway_s = 30;
    j->require_exp = true;
    yaml_node_t *f;
    uint64_t ms = 0;
    if (rc == 0 && (f = sl_ytree_get(t, v, "user_claim")))
        rc = replace_str(t, f, "user_claim", &j->user_claim);
    if (rc == 0 && (f = sl_ytree_get(t, v, "leeway")) &&
        (rc = sl_ytree_duration(t, f, "leeway", &ms)) == 0)
        j->leeway_s = ms / 1000;
    if (rc == 0 && (f = sl_ytree_get(t, v, "require_exp")))
        rc = sl_cfgsec_bool(t, f, "require_exp", &j->require_exp);
    if (rc == 0 && (f = sl_ytree_get(t, v, "issuer")))
        rc = replace_str(t, f, "issuer", &j->issuer);
    if (rc == 0 && (f = sl_ytree_get(t, v, "audience")))
        rc = replace_str(t, f, "audience", &j->audience);
    return rc;
}

int sl_cfgsec_finish(sl_ytree_t *t, sl_config_t *c, const sl_cfgsec_ctx_t *ctx)
{
    for (int i = 0; i < SL_DIALECT_COUNT; i++) {
        sl_dialect_cfg_t *d = &c->dialects[i];
        if (d->auth == SL_AUTH_JWT && !c->jwt.alg && ctx->jwt_auth[i])
            return sl_ytree_error(t, ctx->jwt_auth[i],
                                  "auth: jwt needs auth.jwt (alg and secret or public_key)");
        /* Unset: aichat uses JWT when configured; else keys when any exist (config keys now,
         * issued keys at request time), else none. */
        if (d->auth == SL_AUTH_DEFAULT && i == SL_DIALECT_AICHAT && c->jwt.alg)
            d->auth = SL_AUTH_JWT;
        else if (d->auth == SL_AUTH_DEFAULT && c->nkeys)
            d->auth = SL_AUTH_KEY;
    }
    return 0;
}

int sl_cfgsec_retry(sl_ytree_t *t, const yaml_node_t *v, sl_config_t *c)
{
    static const char *const allowed[] = {"backoff", "max_backoff", "max_retry_after", "fail_open",
                                          NULL};
    int rc = sl_ytree_check_map(t, v, "retry", allowed, NULL);
    yaml_node_t *f;
    if (rc == 0 && (f = sl_ytree_get(t, v, "backoff")))
        rc = sl_ytree_duration(t, f, "backoff", &c->retry_backoff_ms);
    if (rc == 0 && (f = sl_ytree_get(t, v, "max_backoff")))
        rc = sl_ytree_duration(t, f, "max_backoff", &c->retry_max_backoff_ms);
    if (rc == 0 && (f = sl_ytree_get(t, v, "max_retry_after")))
        rc = sl_ytree_duration(t, f, "max_retry_after", &c->retry_max_after_ms);
    if (rc == 0 && (f = sl_ytree_get(t, v, "fail_open")))
        rc = sl_cfgsec_bool(t, f, "fail_open", &c->fail_open);
    return rc;
}

static int parse_metrics_auth(sl_ytree_t *t, const yaml_node_t *v, sl_config_t *c)
{
    static const char *const names[] = {[SL_METRICS_AUTH_NONE] = "none",
                                        [SL_METRICS_AUTH_KEY] = "key",
                                        [SL_METRICS_AUTH_ADMIN] = "admin"};
    char *s = NULL;
    int rc = sl_ytree_str(t, v, "metrics.auth", &s);
    for (int i = SL_METRICS_AUTH_NONE; rc == 0 && i <= SL_METRICS_AUTH_ADMIN; i++)
        if (strcmp(s, names[i]) == 0) {
            c->metrics_auth = (sl_metrics_auth_t)i;
            sl_free(s);
            return 0;
        }
    if (rc == 0)
        rc = sl_ytree_error(t, v, "metrics.auth: expected none, key or admin");
    sl_free(s);
    return rc;
}

/* observability.metrics: true | false, or { enabled, auth, listen }. */
static int parse_metrics(sl_ytree_t *t, const yaml_node_t *v, sl_config_t *c)
{
    if (v->type == YAML_SEQUENCE_NODE)
        return sl_ytree_error(t, v, "metrics: expected true, false or { enabled, auth, listen }");
    if (v->type != YAML_MAPPING_NODE)
        return sl_cfgsec_bool(t, v, "metrics", &c->metrics);
    static const char *const allowed[] = {"enabled", "auth", "listen", NULL};
    int rc = sl_ytree_check_map(t, v, "metrics", allowed, NULL);
    yaml_node_t *f;
    if (rc == 0 && (f = sl_ytree_get(t, v, "enabled")))
        rc = sl_cfgsec_bool(t, f, "metrics.enabled", &c->metrics);
    if (rc == 0 && (f = sl_ytree_get(t, v, "auth")))
        rc = parse_metrics_auth(t, f, c);
    if (rc == 0 && (f = sl_ytree_get(t, v, "listen")))
        rc = sl_ytree_host_port(t, f, "metrics.listen", &c->metrics_listen_host,
                                &c->metrics_listen_port);
    return rc;
}

int sl_cfgsec_observability(sl_ytree_t *t, const yaml_node_t *v, sl_config_t *c)
{
    static const char *const allowed[] = {"metrics", "access_log", NULL};
    int rc = sl_ytree_check_map(t, v, "observability", allowed, NULL);
    yaml_node_t *f;
    if (rc == 0 && (f = sl_ytree_get(t, v, "metrics")))
        rc = parse_metrics(t, f, c);
    if (rc == 0 && (f = sl_ytree_get(t, v, "access_log")))
        rc = sl_cfgsec_bool(t, f, "access_log", &c->access_log);
    return rc;
}

static int parse_rate(sl_ytree_t *t, const yaml_node_t *v, const char *what, sl_rate_cfg_t *r)
{
    static const char *const allowed[] = {"rpm", "tpm", NULL};
    int rc = sl_ytree_check_map(t, v, what, allowed, NULL);
    yaml_node_t *f;
    uint64_t n = 0;
    if (rc == 0 && (f = sl_ytree_get(t, v, "rpm")) &&
        (rc = sl_ytree_uint(t, f, "rpm", 0, 100000000, &n)) == 0)
        r->rpm = (int64_t)n;
    if (rc == 0 && (f = sl_ytree_get(t, v, "tpm")) &&
        (rc = sl_ytree_uint(t, f, "tpm", 0, 1000000000000ull, &n)) == 0)
        r->tpm = (int64_t)n;
    return rc;
}

int sl_cfgsec_rate_limits(sl_ytree_t *t, const yaml_node_t *v, sl_config_t *c)
{
    static const char *const allowed[] = {"per_key", "per_user", "per_ip", "budget_reserve", NULL};
    int rc = sl_ytree_check_map(t, v, "rate_limits", allowed, NULL);
    yaml_node_t *f;
    uint64_t n = 0;
    if (rc == 0 && (f = sl_ytree_get(t, v, "budget_reserve")) &&
        (rc = sl_ytree_uint(t, f, "budget_reserve", 1, 100000000, &n)) == 0)
        c->budget_reserve = (int64_t)n;
    if (rc == 0 && (f = sl_ytree_get(t, v, "per_key")))
        rc = parse_rate(t, f, "per_key", &c->rl_key);
    if (rc == 0 && (f = sl_ytree_get(t, v, "per_user")))
        rc = parse_rate(t, f, "per_user", &c->rl_user);
    if (rc == 0 && (f = sl_ytree_get(t, v, "per_ip")))
        rc = parse_rate(t, f, "per_ip", &c->rl_ip);
    return rc;
}

int sl_cfgsec_cors(sl_ytree_t *t, const yaml_node_t *v, sl_config_t *c)
{
    static const char *const allowed[] = {"origins", "max_age", NULL};
    int rc = sl_ytree_check_map(t, v, "cors", allowed, NULL);
    yaml_node_t *o = rc == 0 ? sl_ytree_get(t, v, "origins") : NULL;
    yaml_node_t *f;
    uint64_t ms = 0;
    if (rc == 0 && (f = sl_ytree_get(t, v, "max_age")) &&
        (rc = sl_ytree_duration(t, f, "max_age", &ms)) == 0)
        c->cors_max_age_s = ms / 1000;
    if (rc != 0 || !o)
        return rc;
    rc = sl_ytree_check_seq(t, o, "origins");
    size_t n = rc == 0 ? (size_t)(o->data.sequence.items.top - o->data.sequence.items.start) : 0;
    c->cors_origins = sl_calloc(n ? n : 1, sizeof *c->cors_origins);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        c->ncors_origins = i + 1;
        yaml_node_t *item = sl_ytree_node(t, o->data.sequence.items.start[i]);
        rc = sl_ytree_str(t, item, "origin", &c->cors_origins[i]);
        if (rc == 0 && strcmp(c->cors_origins[i], "*") != 0 &&
            strncmp(c->cors_origins[i], "http://", 7) != 0 &&
            strncmp(c->cors_origins[i], "https://", 8) != 0)
            rc = sl_ytree_error(t, item, "origin: expected \"*\" or a scheme://host[:port]");
    }
    return rc;
}

/* trusted_proxies: [ "10.0.0.0/8", "::1/128", ... ] (http/client_ip parses and matches). */
int sl_cfgsec_trusted_proxies(sl_ytree_t *t, const yaml_node_t *v, sl_config_t *c)
{
    int rc = sl_ytree_check_seq(t, v, "trusted_proxies");
    size_t n = rc == 0 ? (size_t)(v->data.sequence.items.top - v->data.sequence.items.start) : 0;
    sl_free(c->trusted_proxies);
    c->trusted_proxies = sl_calloc(n ? n : 1, sizeof *c->trusted_proxies);
    c->ntrusted_proxies = 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        yaml_node_t *item = sl_ytree_node(t, v->data.sequence.items.start[i]);
        char *s = NULL;
        const char *why = NULL;
        rc = sl_ytree_str(t, item, "trusted_proxies", &s);
        if (rc == 0 && sl_cidr_parse(s, &c->trusted_proxies[i], &why) != 0)
            rc = sl_ytree_error(t, item, "trusted_proxies: \"%s\": %s", s, why);
        sl_free(s);
        if (rc == 0)
            c->ntrusted_proxies = i + 1;
    }
    return rc;
}
