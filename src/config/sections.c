/* Config sections beside the top-level scalars: store, auth.jwt, retry, observability,
 * rate_limits, cors, trusted_proxies (the dialects' are in config/dialects.c). */
#include "config/sections.h"

#include <string.h>

#include "core/alloc.h"

void sl_cfgsec_defaults(sl_config_t *c)
{
    c->sqlite_path = sl_strdup("./sluice.db");
    c->cors_max_age_s = 600;
}

void sl_cfgsec_free(sl_config_t *c)
{
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

/* ---- scalars ---- */

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

/* ---- store, jwt ---- */

int sl_cfgsec_store(sl_ytree_t *t, const yaml_node_t *v, sl_config_t *c)
{
    static const char *const allowed[] = {"sqlite", "redis", "postgres", NULL};
    int rc = sl_ytree_check_map(t, v, "store", allowed, NULL);
    yaml_node_t *f = rc == 0 ? sl_ytree_get(t, v, "sqlite") : NULL;
    if (f)
        rc = sl_ytree_set_str(t, f, "sqlite", &c->sqlite_path);
    if (rc == 0 && f && !c->sqlite_path[0])
        rc = sl_ytree_error(t, f, "sqlite: expected a file path");
    if (rc == 0 && (f = sl_ytree_get(t, v, "redis"))) {
        rc = sl_ytree_set_str(t, f, "redis", &c->redis_url);
        if (rc == 0 && strncmp(c->redis_url, "redis://", 8) != 0)
            rc = sl_ytree_error(t, f, "redis: expected a URL like redis://127.0.0.1:6379");
    }
    if (rc == 0 && (f = sl_ytree_get(t, v, "postgres"))) {
        rc = sl_ytree_set_str(t, f, "postgres", &c->postgres_url);
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
        rc = sl_ytree_set_str(t, alg, "alg", &j->alg);
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
        rc = sl_ytree_set_str(t, key, keyname, &j->key);
    if (rc == 0 && strlen(j->key) < (hs ? 16u : 64u))
        return sl_ytree_error(t, key, "%s: too short to be safe", keyname);
    j->key_len = rc == 0 ? strlen(j->key) : 0;
    j->user_claim = sl_strdup("sub");
    j->leeway_s = 30;
    j->require_exp = true;
    yaml_node_t *f;
    uint64_t ms = 0;
    if (rc == 0 && (f = sl_ytree_get(t, v, "user_claim")))
        rc = sl_ytree_set_str(t, f, "user_claim", &j->user_claim);
    if (rc == 0 && (f = sl_ytree_get(t, v, "leeway")) &&
        (rc = sl_ytree_duration(t, f, "leeway", &ms)) == 0)
        j->leeway_s = ms / 1000;
    if (rc == 0 && (f = sl_ytree_get(t, v, "require_exp")))
        rc = sl_cfgsec_bool(t, f, "require_exp", &j->require_exp);
    if (rc == 0 && (f = sl_ytree_get(t, v, "issuer")))
        rc = sl_ytree_set_str(t, f, "issuer", &j->issuer);
    if (rc == 0 && (f = sl_ytree_get(t, v, "audience")))
        rc = sl_ytree_set_str(t, f, "audience", &j->audience);
    return rc;
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
