/* The configuration schema (DESIGN §7): YAML tree to an immutable sl_config_t, plus routing. */
#include "config/config.h"

#include <ctype.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/sections.h"
#include "config/ytree.h"
#include "core/alloc.h"
#include "core/glob.h"
#include "core/sha256.h"

#define DEFAULT_TTFT_MS      200
#define DEFAULT_TOKENS_PER_S 40.0
#define DEFAULT_TOKENS       48
#define MAX_FILE_BYTES       (1u << 20) /* a config is a page of text; more is a mistake */

/* Our own text: if it fails to parse, the build is broken, so sl_config_default aborts. */
static const char default_yaml[] = "listen: 127.0.0.1:8080\n"
                                   "providers:\n"
                                   "  mock: { type: mock, ttft: 200ms, tokens_per_s: 40, "
                                   "tokens: 48 }\n"
                                   "models:\n"
                                   "  \"*\": [ { provider: mock } ]\n";

static const char *const top_keys[] = {
    "listen",        "workers",     "limits",   "timeouts",        "auth",
    "providers",     "models",      "dialects", "store",           "retry",
    "observability", "rate_limits", "cors",     "trusted_proxies", NULL};
/* DESIGN §7 sections that later versions will read: refused by name, never silently skipped. */
static const char *const top_later[] = {NULL};

static const char *const type_names[] = {[SL_PROVIDER_MOCK] = "mock",
                                         [SL_PROVIDER_OPENAI] = "openai",
                                         [SL_PROVIDER_AZURE] = "azure",
                                         [SL_PROVIDER_ANTHROPIC] = "anthropic"};

/* ---- lifetime ---- */

static void free_config(sl_config_t *c)
{
    for (size_t i = 0; i < c->nkeys; i++) {
        sl_free(c->keys[i].name);
        sl_free(c->keys[i].key);
        sl_free(c->keys[i].models);
    }
    sl_free(c->keys);
    for (size_t i = 0; i < c->nadmin_keys; i++)
        sl_free(c->admin_keys[i]);
    sl_free(c->admin_keys);
    for (size_t i = 0; i < c->nproviders; i++) {
        sl_free(c->providers[i].name);
        sl_free(c->providers[i].base_url);
        sl_free(c->providers[i].api_key);
        sl_free(c->providers[i].api_version);
        sl_free(c->providers[i].deployment);
    }
    sl_free(c->providers);
    for (size_t i = 0; i < c->nmodels; i++) {
        for (size_t j = 0; j < c->models[i].ntargets; j++)
            sl_free(c->models[i].targets[j].model);
        sl_free(c->models[i].targets);
        sl_free(c->models[i].pattern);
    }
    sl_free(c->models);
    sl_cfgsec_free(c);
    sl_free(c->listen_host);
    sl_free(c->source);
    sl_free(c);
}

static sl_config_t *new_config(const char *source)
{
    sl_config_t *c = sl_calloc(1, sizeof *c);
    c->refs = 1;
    c->source = sl_strdup(source);
    c->listen_host = sl_strdup("127.0.0.1");
    c->listen_port = 8080;
    c->workers = 0;
    c->max_body = 4u << 20;
    c->max_header = 16u << 10;
    c->max_connections = 20000;
    c->stream_buffer = 256u << 10;
    c->connect_ms = 5000;
    c->first_byte_ms = 60000;
    c->idle_ms = 60000;
    c->keepalive_ms = 15000;
    c->client_header_ms = 10000;
    c->client_idle_ms = 60000;
    c->ws_ping_ms = 30000;
    c->ws_idle_ms = 120000;
    c->drain_ms = 10000;
    c->retry_backoff_ms = 100;
    c->retry_max_backoff_ms = 2000;
    c->retry_max_after_ms = 10000;
    c->fail_open = true;
    c->budget_reserve = 4096;
    c->metrics = true;
    c->access_log = true;
    sl_cfgsec_defaults(c);
    return c;
}

sl_config_t *sl_config_ref(sl_config_t *c)
{
    __atomic_add_fetch(&c->refs, 1, __ATOMIC_RELAXED);
    return c;
}

void sl_config_unref(sl_config_t *c)
{
    /* acq_rel: the thread that frees must see every other holder's reads finished. */
    if (c && __atomic_sub_fetch(&c->refs, 1, __ATOMIC_ACQ_REL) == 0)
        free_config(c);
}

/* Allocations sized by a mapping or list are zeroed and counted at once, so free_config can
 * run at any point of a failed parse and frees exactly what was filled in. */
static size_t map_len(const yaml_node_t *n)
{
    return (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
}

static size_t seq_len(const yaml_node_t *n)
{
    return (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
}

/* ---- listen, workers, limits, timeouts ---- */

static bool is_host_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '.' || ch == '-' || ch == '_';
}

int sl_cfgsec_host_port(sl_ytree_t *t, const yaml_node_t *v, const char *what, char **host,
                        int *port)
{
    char *s = NULL;
    int rc = sl_ytree_str(t, v, what, &s);
    if (rc != 0)
        return rc;
    char *colon = strrchr(s, ':');
    size_t hlen = colon ? (size_t)(colon - s) : 0;
    uint64_t n = 0;
    bool host_ok = hlen > 0;
    for (size_t i = 0; i < hlen; i++)
        host_ok = host_ok && is_host_char(s[i]);
    if (!host_ok || !sl_ytree_parse_uint(colon + 1, &n)) {
        rc = sl_ytree_error(t, v, "%s: expected host:port, like 127.0.0.1:8080", what);
    } else if (n > 65535) {
        rc = sl_ytree_error(t, v, "%s: the port must be from 0 to 65535", what);
    } else {
        sl_free(*host);
        *host = sl_strndup(s, hlen);
        *port = (int)n;
    }
    sl_free(s);
    return rc;
}

static int parse_listen(sl_ytree_t *t, const yaml_node_t *v, sl_config_t *c)
{
    return sl_cfgsec_host_port(t, v, "listen", &c->listen_host, &c->listen_port);
}

static int parse_workers(sl_ytree_t *t, const yaml_node_t *v, sl_config_t *c)
{
    char *s = NULL;
    int rc = sl_ytree_str(t, v, "workers", &s);
    if (rc != 0)
        return rc;
    uint64_t n = 0;
    if (strcmp(s, "auto") == 0)
        c->workers = 0;
    else if (sl_ytree_parse_uint(s, &n) && n >= 1 && n <= 256)
        c->workers = (int)n;
    else
        rc = sl_ytree_error(t, v, "workers: expected auto or a whole number from 1 to 256");
    sl_free(s);
    return rc;
}

enum field_kind { F_SIZE, F_COUNT, F_DURATION };

/* A flat section of scalars, read by table so each key is written down once. */
struct field {
    const char *key;
    enum field_kind kind;
    size_t off; /* into sl_config_t; F_SIZE: size_t, F_COUNT: unsigned, F_DURATION: uint64_t */
};

static const struct field limit_fields[] = {
    {"max_body", F_SIZE, offsetof(sl_config_t, max_body)},
    {"max_header", F_SIZE, offsetof(sl_config_t, max_header)},
    {"max_connections", F_COUNT, offsetof(sl_config_t, max_connections)},
    {"stream_buffer", F_SIZE, offsetof(sl_config_t, stream_buffer)},
    {NULL, F_SIZE, 0},
};

static const struct field timeout_fields[] = {
    {"connect", F_DURATION, offsetof(sl_config_t, connect_ms)},
    {"first_byte", F_DURATION, offsetof(sl_config_t, first_byte_ms)},
    {"idle", F_DURATION, offsetof(sl_config_t, idle_ms)},
    {"keepalive", F_DURATION, offsetof(sl_config_t, keepalive_ms)},
    {"client_header", F_DURATION, offsetof(sl_config_t, client_header_ms)},
    {"client_idle", F_DURATION, offsetof(sl_config_t, client_idle_ms)},
    {"ws_ping", F_DURATION, offsetof(sl_config_t, ws_ping_ms)},
    {"ws_idle", F_DURATION, offsetof(sl_config_t, ws_idle_ms)},
    {"drain", F_DURATION, offsetof(sl_config_t, drain_ms)},
    {NULL, F_DURATION, 0},
};

static int parse_field(sl_ytree_t *t, const struct field *f, const yaml_node_t *v, sl_config_t *c)
{
    char *dst = (char *)c + f->off;
    uint64_t n = 0;
    int rc;
    switch (f->kind) {
    case F_SIZE: return sl_ytree_size(t, v, f->key, (size_t *)(void *)dst);
    case F_DURATION: return sl_ytree_duration(t, v, f->key, (uint64_t *)(void *)dst);
    case F_COUNT:
        rc = sl_ytree_uint(t, v, f->key, 1, 10000000, &n);
        if (rc == 0)
            *(unsigned *)(void *)dst = (unsigned)n;
        return rc;
    }
    return SL_EINTERNAL;
}

static int parse_fields(sl_ytree_t *t, const yaml_node_t *v, const char *what,
                        const struct field *fields, sl_config_t *c)
{
    const char *keys[16];
    size_t n = 0;
    for (; fields[n].key; n++)
        keys[n] = fields[n].key;
    keys[n] = NULL;
    int rc = sl_ytree_check_map(t, v, what, keys, NULL);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        yaml_node_t *fv = sl_ytree_get(t, v, fields[i].key);
        if (fv)
            rc = parse_field(t, &fields[i], fv, c);
    }
    return rc;
}

static int parse_limits(sl_ytree_t *t, const yaml_node_t *v, sl_config_t *c)
{
    return parse_fields(t, v, "limits", limit_fields, c);
}

static int parse_timeouts(sl_ytree_t *t, const yaml_node_t *v, sl_config_t *c)
{
    int rc = parse_fields(t, v, "timeouts", timeout_fields, c);
    /* A quiet but live WebSocket client stays open only by answering pings: with pings no more
     * often than the idle deadline, every such client would be closed. */
    if (rc == 0 && c->ws_ping_ms && c->ws_idle_ms && c->ws_ping_ms >= c->ws_idle_ms) {
        yaml_node_t *at = sl_ytree_get(t, v, "ws_ping");
        rc = sl_ytree_error(t, at ? at : sl_ytree_get(t, v, "ws_idle"),
                            "ws_ping (%llu ms) must be shorter than ws_idle (%llu ms), or 0 for "
                            "no pings",
                            (unsigned long long)c->ws_ping_ms, (unsigned long long)c->ws_idle_ms);
    }
    return rc;
}

/* ---- auth ---- */

/* A value that must be there: an empty one (often an empty ${VAR}) would match nothing or
 * worse, so it is refused. */
static int nonempty(sl_ytree_t *t, const yaml_node_t *v, const char *what, char **out)
{
    int rc = sl_ytree_str(t, v, what, out);
    if (rc == 0 && !**out)
        rc = sl_ytree_error(t, v, "%s: must not be empty", what);
    return rc;
}

static bool is_space(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r';
}

/* A key is compared byte for byte and clients' tokens arrive trimmed, so whitespace at either
 * end (a secret file's final newline, say) would make it silently unusable. */
static int secret(sl_ytree_t *t, const yaml_node_t *v, const char *what, char **out)
{
    int rc = nonempty(t, v, what, out);
    if (rc == 0 && (is_space((*out)[0]) || is_space((*out)[strlen(*out) - 1])))
        rc = sl_ytree_error(t, v, "%s: starts or ends with a space or line break", what);
    return rc;
}

static int parse_key_limits(sl_ytree_t *t, const yaml_node_t *v, sl_key_cfg_t *k)
{
    yaml_node_t *f;
    uint64_t n = 0;
    int rc = 0;
    if ((f = sl_ytree_get(t, v, "rpm")) && (rc = sl_ytree_uint(t, f, "rpm", 0, 100000000, &n)) == 0)
        k->rpm = (int64_t)n;
    if (rc == 0 && (f = sl_ytree_get(t, v, "tpm")) &&
        (rc = sl_ytree_uint(t, f, "tpm", 0, 1000000000000ull, &n)) == 0)
        k->tpm = (int64_t)n;
    if (rc == 0 && (f = sl_ytree_get(t, v, "budget_tokens")) &&
        (rc = sl_ytree_uint(t, f, "budget_tokens", 0, 1000000000000000ull, &n)) == 0)
        k->budget_tokens = (int64_t)n;
    if (rc == 0 && (f = sl_ytree_get(t, v, "models")))
        rc = nonempty(t, f, "models", &k->models);
    return rc;
}

static int parse_sha256(sl_ytree_t *t, const yaml_node_t *v, sl_key_cfg_t *k)
{
    char *hex = NULL;
    int rc = sl_ytree_str(t, v, "key_sha256", &hex);
    if (rc == 0 && strlen(hex) != 64)
        rc = sl_ytree_error(t, v, "key_sha256: expected 64 hex digits (sha256sum of the key)");
    for (size_t i = 0; rc == 0 && i < 32; i++) {
        unsigned byte;
        if (sscanf(hex + 2 * i, "%2x", &byte) != 1 || !isxdigit((unsigned char)hex[2 * i]) ||
            !isxdigit((unsigned char)hex[2 * i + 1]))
            rc = sl_ytree_error(t, v, "key_sha256: expected 64 hex digits (sha256sum of the key)");
        else
            k->sha256[i] = (uint8_t)byte;
    }
    sl_free(hex);
    return rc;
}

static int parse_key_entry(sl_ytree_t *t, const yaml_node_t *v, size_t index, sl_key_cfg_t *k)
{
    static const char *const allowed[] = {"name", "key",           "key_sha256", "rpm",
                                          "tpm",  "budget_tokens", "models",     NULL};
    int rc = 0;
    if (v->type == YAML_SCALAR_NODE) {
        rc = secret(t, v, "key", &k->key);
    } else {
        rc = sl_ytree_check_map(t, v, "auth.keys", allowed, NULL);
        yaml_node_t *key = rc == 0 ? sl_ytree_get(t, v, "key") : NULL;
        yaml_node_t *sha = rc == 0 ? sl_ytree_get(t, v, "key_sha256") : NULL;
        yaml_node_t *name = rc == 0 ? sl_ytree_get(t, v, "name") : NULL;
        if (rc == 0 && !key == !sha)
            return sl_ytree_error(t, v, "auth.keys: an entry needs key: or key_sha256: (one)");
        if (rc == 0)
            rc = key ? secret(t, key, "key", &k->key) : parse_sha256(t, sha, k);
        if (rc == 0 && name)
            rc = nonempty(t, name, "name", &k->name);
        if (rc == 0)
            rc = parse_key_limits(t, v, k);
    }
    if (rc == 0 && k->key)
        sl_sha256(k->key, strlen(k->key), k->sha256);
    if (rc == 0 && !k->name) {
        k->name = sl_malloc(32);
        snprintf(k->name, 32, "key%zu", index);
    }
    return rc;
}

/* Two entries with one key would make usage records ambiguous; two with one name, logs. */
static int check_key_unique(sl_ytree_t *t, const yaml_node_t *v, const sl_config_t *c, size_t i)
{
    for (size_t j = 0; j < i; j++) {
        if (memcmp(c->keys[j].sha256, c->keys[i].sha256, 32) == 0)
            return sl_ytree_error(t, v, "auth.keys: the same key is already listed as '%s'",
                                  c->keys[j].name);
        if (strcmp(c->keys[j].name, c->keys[i].name) == 0)
            return sl_ytree_error(t, v, "auth.keys: the name '%s' is already used",
                                  c->keys[i].name);
    }
    return 0;
}

static int parse_keys(sl_ytree_t *t, const yaml_node_t *v, sl_config_t *c)
{
    int rc = sl_ytree_check_seq(t, v, "auth.keys");
    if (rc != 0)
        return rc;
    c->nkeys = seq_len(v);
    c->keys = sl_calloc(c->nkeys, sizeof *c->keys);
    for (size_t i = 0; rc == 0 && i < c->nkeys; i++) {
        yaml_node_t *item = sl_ytree_node(t, v->data.sequence.items.start[i]);
        rc = parse_key_entry(t, item, i, &c->keys[i]);
        if (rc == 0)
            rc = check_key_unique(t, item, c, i);
    }
    return rc;
}

static int parse_admin_keys(sl_ytree_t *t, const yaml_node_t *v, sl_config_t *c)
{
    int rc = sl_ytree_check_seq(t, v, "auth.admin_keys");
    if (rc != 0)
        return rc;
    c->nadmin_keys = seq_len(v);
    c->admin_keys = sl_calloc(c->nadmin_keys, sizeof *c->admin_keys);
    for (size_t i = 0; rc == 0 && i < c->nadmin_keys; i++) {
        yaml_node_t *item = sl_ytree_node(t, v->data.sequence.items.start[i]);
        rc = secret(t, item, "admin key", &c->admin_keys[i]);
    }
    return rc;
}

static int parse_auth(sl_ytree_t *t, const yaml_node_t *v, sl_config_t *c)
{
    static const char *const allowed[] = {"keys", "admin_keys", "jwt", NULL};
    int rc = sl_ytree_check_map(t, v, "auth", allowed, NULL);
    yaml_node_t *keys = rc == 0 ? sl_ytree_get(t, v, "keys") : NULL;
    yaml_node_t *admin = rc == 0 ? sl_ytree_get(t, v, "admin_keys") : NULL;
    yaml_node_t *jwt = rc == 0 ? sl_ytree_get(t, v, "jwt") : NULL;
    if (keys)
        rc = parse_keys(t, keys, c);
    if (rc == 0 && admin)
        rc = parse_admin_keys(t, admin, c);
    if (rc == 0 && jwt)
        rc = sl_cfgsec_jwt(t, jwt, c);
    return rc;
}

/* ---- providers ---- */

/* Which provider types use a key (bit per type). */
static unsigned key_types(const char *key)
{
    enum {
        MOCK = 1 << SL_PROVIDER_MOCK,
        OPENAI = 1 << SL_PROVIDER_OPENAI,
        AZURE = 1 << SL_PROVIDER_AZURE,
        ANTHROPIC = 1 << SL_PROVIDER_ANTHROPIC
    };
    static const struct {
        const char *key;
        unsigned types;
    } table[] = {
        {"ttft", MOCK},
        {"tokens_per_s", MOCK},
        {"tokens", MOCK},
        {"base_url", OPENAI | AZURE | ANTHROPIC},
        {"api_key", OPENAI | AZURE | ANTHROPIC},
        {"breaker", OPENAI | AZURE | ANTHROPIC | MOCK},
        {"api_version", AZURE | ANTHROPIC},
        {"deployment", AZURE},
        {"max_tokens", ANTHROPIC},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (!strcmp(table[i].key, key))
            return table[i].types;
    return 0;
}

static int parse_base_url(sl_ytree_t *t, const yaml_node_t *v, sl_provider_cfg_t *p)
{
    int rc = sl_ytree_str(t, v, "base_url", &p->base_url);
    if (rc != 0)
        return rc;
    const char *s = p->base_url;
    size_t skip = !strncmp(s, "https://", 8) ? 8 : !strncmp(s, "http://", 7) ? 7 : 0;
    if (skip == 0 || !s[skip] || s[skip] == '/')
        return sl_ytree_error(t, v, "base_url: expected an http:// or https:// URL");
    size_t len = strlen(s);
    if (p->base_url[len - 1] == '/') /* paths are appended as "/chat/completions" */
        p->base_url[len - 1] = '\0';
    return 0;
}

static int parse_breaker(sl_ytree_t *t, const yaml_node_t *v, sl_provider_cfg_t *p)
{
    static const char *const allowed[] = {"failures", "cooldown", "max_cooldown", "max_rate_limit",
                                          NULL};
    int rc = sl_ytree_check_map(t, v, "breaker", allowed, NULL);
    yaml_node_t *f = rc == 0 ? sl_ytree_get(t, v, "failures") : NULL;
    uint64_t n = 0;
    if (f && (rc = sl_ytree_uint(t, f, "failures", 0, 1000, &n)) == 0)
        p->breaker_failures = (unsigned)n;
    if (rc == 0 && (f = sl_ytree_get(t, v, "cooldown")))
        rc = sl_ytree_duration(t, f, "cooldown", &p->breaker_cooldown_ms);
    yaml_node_t *maxc = rc == 0 ? sl_ytree_get(t, v, "max_cooldown") : NULL;
    if (maxc)
        rc = sl_ytree_duration(t, maxc, "max_cooldown", &p->breaker_max_cooldown_ms);
    else if (rc == 0 && p->breaker_max_cooldown_ms < p->breaker_cooldown_ms)
        p->breaker_max_cooldown_ms = p->breaker_cooldown_ms; /* a longer cooldown than 2 min */
    if (rc == 0 && maxc && p->breaker_max_cooldown_ms < p->breaker_cooldown_ms)
        rc = sl_ytree_error(t, maxc, "max_cooldown: must not be shorter than cooldown");
    if (rc == 0 && (f = sl_ytree_get(t, v, "max_rate_limit")))
        rc = sl_ytree_duration(t, f, "max_rate_limit", &p->breaker_max_rate_limit_ms);
    return rc;
}

static int parse_provider_field(sl_ytree_t *t, const char *key, const yaml_node_t *v,
                                sl_provider_cfg_t *p)
{
    uint64_t n = 0;
    int rc = 0;
    if (!strcmp(key, "base_url"))
        return parse_base_url(t, v, p);
    if (!strcmp(key, "api_key"))
        return secret(t, v, "api_key", &p->api_key);
    if (!strcmp(key, "ttft"))
        return sl_ytree_duration(t, v, "ttft", &p->ttft_ms);
    if (!strcmp(key, "tokens_per_s"))
        return sl_ytree_positive(t, v, "tokens_per_s", &p->tokens_per_s);
    if (!strcmp(key, "tokens")) {
        rc = sl_ytree_uint(t, v, "tokens", 1, 1000000, &n);
        p->tokens = (unsigned)n;
    }
    if (!strcmp(key, "api_version")) {
        sl_free(p->api_version);
        p->api_version = NULL;
        return nonempty(t, v, "api_version", &p->api_version);
    }
    if (!strcmp(key, "deployment"))
        return nonempty(t, v, "deployment", &p->deployment);
    if (!strcmp(key, "max_tokens"))
        return sl_ytree_uint(t, v, "max_tokens", 1, 10000000, &p->max_tokens);
    if (!strcmp(key, "breaker"))
        return parse_breaker(t, v, p);
    return rc;
}

static int parse_type(sl_ytree_t *t, const yaml_node_t *v, sl_provider_cfg_t *p)
{
    char *s = NULL;
    int rc = sl_ytree_str(t, v, "type", &s);
    if (rc != 0)
        return rc;
    size_t i = 0;
    while (i < sizeof type_names / sizeof type_names[0] && strcmp(s, type_names[i]) != 0)
        i++;
    if (i < sizeof type_names / sizeof type_names[0])
        p->type = (sl_provider_type_t)i;
    else
        rc = sl_ytree_error(t, v,
                            "unknown provider type '%s' (known types: mock, openai, azure, "
                            "anthropic)",
                            s);
    sl_free(s);
    return rc;
}

/* The type decides which other keys mean anything, so it is read first; a key the type does
 * not use is an error rather than a setting that silently does nothing. */
static int parse_provider(sl_ytree_t *t, const yaml_node_t *v, const char *what,
                          sl_provider_cfg_t *p)
{
    static const char *const allowed[] = {"type",         "base_url",   "api_key", "ttft",
                                          "tokens_per_s", "tokens",     "breaker", "api_version",
                                          "deployment",   "max_tokens", NULL};
    int rc = sl_ytree_check_map(t, v, what, allowed, NULL);
    if (rc != 0)
        return rc;
    yaml_node_t *type = sl_ytree_get(t, v, "type");
    if (!type)
        return sl_ytree_error(t, v,
                              "%s: type is required (known types: mock, openai, azure, "
                              "anthropic)",
                              what);
    rc = parse_type(t, type, p);
    for (yaml_node_pair_t *pr = v->data.mapping.pairs.start;
         rc == 0 && pr < v->data.mapping.pairs.top; pr++) {
        yaml_node_t *k = sl_ytree_node(t, pr->key);
        const char *key = sl_ytree_text(k);
        if (!strcmp(key, "type"))
            continue;
        if (!(key_types(key) & (1u << p->type)))
            return sl_ytree_error(t, k, "%s is not used by type %s", key, type_names[p->type]);
        rc = parse_provider_field(t, key, sl_ytree_node(t, pr->value), p);
    }
    if (rc == 0 && (p->type == SL_PROVIDER_OPENAI || p->type == SL_PROVIDER_AZURE) && !p->base_url)
        rc =
            sl_ytree_error(t, v, "%s: base_url is required for type %s", what, type_names[p->type]);
    if (rc == 0 && p->type == SL_PROVIDER_ANTHROPIC && !p->base_url)
        p->base_url = sl_strdup("https://api.anthropic.com/v1");
    if (rc == 0 && !p->api_version && p->type == SL_PROVIDER_AZURE)
        p->api_version = sl_strdup("2024-06-01");
    if (rc == 0 && !p->api_version && p->type == SL_PROVIDER_ANTHROPIC)
        p->api_version = sl_strdup("2023-06-01");
    return rc;
}

/* Names show up in logs and metrics labels, so they stay plain. */
static bool is_plain_name(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (!is_host_char(*s))
            return false;
    return true;
}

static void provider_defaults(sl_provider_cfg_t *p, const char *name)
{
    p->name = sl_strdup(name);
    p->type = SL_PROVIDER_MOCK;
    p->ttft_ms = DEFAULT_TTFT_MS;
    p->tokens_per_s = DEFAULT_TOKENS_PER_S;
    p->tokens = DEFAULT_TOKENS;
    p->max_tokens = 1024;
    p->breaker_failures = 5;
    p->breaker_cooldown_ms = 10000;
    p->breaker_max_cooldown_ms = 120000;
    p->breaker_max_rate_limit_ms = 60000;
}

static int parse_providers(sl_ytree_t *t, const yaml_node_t *v, sl_config_t *c)
{
    int rc = sl_ytree_check_map(t, v, "providers", NULL, NULL);
    if (rc == 0 && map_len(v) == 0)
        rc = sl_ytree_error(t, v, "providers: expected at least one provider");
    if (rc != 0)
        return rc;
    c->nproviders = map_len(v);
    c->providers = sl_calloc(c->nproviders, sizeof *c->providers);
    sl_buf_t what;
    sl_buf_init(&what);
    for (size_t i = 0; rc == 0 && i < c->nproviders; i++) {
        yaml_node_pair_t *pr = &v->data.mapping.pairs.start[i];
        yaml_node_t *k = sl_ytree_node(t, pr->key);
        const char *name = sl_ytree_text(k);
        if (!is_plain_name(name)) {
            rc = sl_ytree_error(t, k,
                                "provider name '%s' may only use letters, digits, "
                                "'_', '-' and '.'",
                                name);
            break;
        }
        provider_defaults(&c->providers[i], name);
        sl_buf_reset(&what);
        sl_buf_printf(&what, "providers.%s", name);
        rc = parse_provider(t, sl_ytree_node(t, pr->value), what.data, &c->providers[i]);
    }
    sl_buf_dispose(&what);
    return rc;
}

/* ---- models ---- */

static int find_provider(sl_ytree_t *t, const yaml_node_t *v, const sl_config_t *c, size_t *out)
{
    char *name = NULL;
    int rc = sl_ytree_str(t, v, "provider", &name);
    if (rc != 0)
        return rc;
    size_t i = 0;
    while (i < c->nproviders && strcmp(c->providers[i].name, name) != 0)
        i++;
    *out = i;
    if (i == c->nproviders) {
        sl_buf_t known;
        sl_buf_init(&known);
        for (size_t j = 0; j < c->nproviders; j++)
            sl_buf_printf(&known, "%s%s", j ? ", " : "", c->providers[j].name);
        rc = sl_ytree_error(t, v, "unknown provider '%s' (%s%s)", name,
                            c->nproviders ? "configured: " : "no providers are configured",
                            c->nproviders ? known.data : "");
        sl_buf_dispose(&known);
    }
    sl_free(name);
    return rc;
}

static int parse_target(sl_ytree_t *t, const yaml_node_t *v, const sl_config_t *c,
                        sl_target_cfg_t *tg)
{
    static const char *const allowed[] = {"provider", "model", "retries", "fallback_to_non_stream",
                                          NULL};
    int rc = sl_ytree_check_map(t, v, "a model target", allowed, NULL);
    if (rc != 0)
        return rc;
    yaml_node_t *provider = sl_ytree_get(t, v, "provider");
    yaml_node_t *model = sl_ytree_get(t, v, "model");
    yaml_node_t *retries = sl_ytree_get(t, v, "retries");
    yaml_node_t *fb = sl_ytree_get(t, v, "fallback_to_non_stream");
    if (!provider)
        return sl_ytree_error(t, v, "a model target needs provider: NAME");
    rc = find_provider(t, provider, c, &tg->provider);
    if (rc == 0 && model)
        rc = nonempty(t, model, "model", &tg->model);
    uint64_t n = 0;
    if (rc == 0 && retries && (rc = sl_ytree_uint(t, retries, "retries", 0, 10, &n)) == 0)
        tg->retries = (unsigned)n;
    if (rc == 0 && fb)
        rc = sl_cfgsec_bool(t, fb, "fallback_to_non_stream", &tg->fallback_to_non_stream);
    return rc;
}

static int parse_model(sl_ytree_t *t, const yaml_node_pair_t *pr, const sl_config_t *c,
                       sl_model_cfg_t *m)
{
    yaml_node_t *k = sl_ytree_node(t, pr->key);
    yaml_node_t *v = sl_ytree_node(t, pr->value);
    m->pattern = sl_strdup(sl_ytree_text(k));
    if (!*m->pattern)
        return sl_ytree_error(t, k, "models: a model name or pattern must not be empty");
    if (v->type != YAML_SEQUENCE_NODE || seq_len(v) == 0)
        return sl_ytree_error(t, v, "%s: expected a list of targets like [ { provider: NAME } ]",
                              m->pattern);
    m->ntargets = seq_len(v);
    m->targets = sl_calloc(m->ntargets, sizeof *m->targets);
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < m->ntargets; i++)
        rc = parse_target(t, sl_ytree_node(t, v->data.sequence.items.start[i]), c, &m->targets[i]);
    return rc;
}

static int parse_models(sl_ytree_t *t, const yaml_node_t *v, sl_config_t *c)
{
    int rc = sl_ytree_check_map(t, v, "models", NULL, NULL);
    if (rc == 0 && map_len(v) == 0)
        rc = sl_ytree_error(t, v, "models: expected at least one model");
    if (rc != 0)
        return rc;
    c->nmodels = map_len(v);
    c->models = sl_calloc(c->nmodels, sizeof *c->models);
    for (size_t i = 0; rc == 0 && i < c->nmodels; i++)
        rc = parse_model(t, &v->data.mapping.pairs.start[i], c, &c->models[i]);
    return rc;
}

/* No providers and no models: every model name is answered by a mock, as in the default. */
static void add_default_routing(sl_config_t *c)
{
    c->nproviders = 1;
    c->providers = sl_calloc(1, sizeof *c->providers);
    provider_defaults(&c->providers[0], "mock");
    c->nmodels = 1;
    c->models = sl_calloc(1, sizeof *c->models);
    c->models[0].pattern = sl_strdup("*");
    c->models[0].ntargets = 1;
    c->models[0].targets = sl_calloc(1, sizeof *c->models[0].targets);
}

/* ---- the document ---- */

typedef int (*section_fn)(sl_ytree_t *t, const yaml_node_t *v, sl_config_t *c);

static section_fn section(const char *key)
{
    static const struct {
        const char *key;
        section_fn fn;
    } sections[] = {
        {"listen", parse_listen},
        {"workers", parse_workers},
        {"limits", parse_limits},
        {"timeouts", parse_timeouts},
        {"auth", parse_auth},
        {"providers", parse_providers},
        {"store", sl_cfgsec_store},
        {"retry", sl_cfgsec_retry},
        {"observability", sl_cfgsec_observability},
        {"rate_limits", sl_cfgsec_rate_limits},
        {"cors", sl_cfgsec_cors},
        {"trusted_proxies", sl_cfgsec_trusted_proxies},
    };
    for (size_t i = 0; i < sizeof sections / sizeof sections[0]; i++)
        if (strcmp(sections[i].key, key) == 0)
            return sections[i].fn;
    return NULL;
}

/* Sections are read in file order, except models: its targets name providers, which may
 * come later in the file, so it is read last. */
static int parse_root(sl_ytree_t *t, sl_config_t *c)
{
    yaml_node_t *root = sl_ytree_root(t);
    if (!root || sl_ytree_is_null(root)) {
        add_default_routing(c);
        sl_cfgsec_ctx_t none = {0};
        return sl_cfgsec_finish(t, c, &none);
    }
    int rc = sl_ytree_check_map(t, root, NULL, top_keys, top_later);
    yaml_node_t *models = NULL, *providers_key = NULL;
    sl_cfgsec_ctx_t ctx = {0};
    for (yaml_node_pair_t *pr = root->data.mapping.pairs.start;
         rc == 0 && pr < root->data.mapping.pairs.top; pr++) {
        yaml_node_t *k = sl_ytree_node(t, pr->key);
        yaml_node_t *v = sl_ytree_node(t, pr->value);
        if (!strcmp(sl_ytree_text(k), "models"))
            models = v;
        else if (!strcmp(sl_ytree_text(k), "dialects"))
            rc = sl_cfgsec_dialects(t, v, c, &ctx);
        else
            rc = section(sl_ytree_text(k))(t, v, c);
        if (!strcmp(sl_ytree_text(k), "providers"))
            providers_key = k;
    }
    if (rc == 0)
        rc = sl_cfgsec_finish(t, c, &ctx);
    if (rc != 0)
        return rc;
    if (models)
        return parse_models(t, models, c);
    if (providers_key)
        return sl_ytree_error(t, providers_key,
                              "providers are configured but no models route to them; add e.g. "
                              "models: { \"*\": [ { provider: %s } ] }",
                              c->providers[0].name);
    add_default_routing(c);
    return 0;
}

int sl_config_parse(const char *yaml, size_t len, const char *name, sl_config_t **out,
                    sl_buf_t *err)
{
    *out = NULL;
    sl_ytree_t t;
    int rc = sl_ytree_load(&t, yaml, len, name, err);
    if (rc != 0)
        return rc;
    sl_config_t *c = new_config(name ? name : "<config>");
    rc = parse_root(&t, c);
    sl_ytree_dispose(&t);
    if (rc != 0) {
        free_config(c);
        return rc;
    }
    *out = c;
    return 0;
}

static int file_error(sl_buf_t *err, const char *path, const char *what, int errnum)
{
    if (err)
        sl_buf_printf(err, "%s: %s%s%s", path, what, errnum ? ": " : "",
                      errnum ? strerror(errnum) : "");
    return SL_ECONFIG;
}

/* Reads the whole file into b; a config is small, so one read of a capped size is enough. */
static int read_file(const char *path, sl_buf_t *b, sl_buf_t *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return file_error(err, path, "cannot open", errno);
    size_t n = fread(sl_buf_reserve(b, MAX_FILE_BYTES + 1), 1, MAX_FILE_BYTES + 1, f);
    sl_buf_commit(b, n);
    int rc = 0;
    if (ferror(f))
        rc = file_error(err, path, "cannot read", errno);
    else if (n > MAX_FILE_BYTES)
        rc = file_error(err, path, "too large for a config file (the most is 1 MiB)", 0);
    fclose(f);
    return rc;
}

int sl_config_load(const char *path, sl_config_t **out, sl_buf_t *err)
{
    sl_buf_t text;
    sl_buf_init(&text);
    *out = NULL;
    int rc = read_file(path, &text, err);
    if (rc == 0)
        rc = sl_config_parse(text.data, text.len, path, out, err);
    sl_buf_dispose(&text);
    return rc;
}

sl_config_t *sl_config_default(void)
{
    sl_config_t *c = NULL;
    sl_buf_t err;
    sl_buf_init(&err);
    if (sl_config_parse(default_yaml, sizeof default_yaml - 1, "<embedded>", &c, &err) != 0) {
        fprintf(stderr, "sluice: the embedded default config is broken: %s\n", err.data);
        abort();
    }
    sl_buf_dispose(&err);
    return c;
}

/* ---- routing ---- */

const sl_model_cfg_t *sl_config_route(const sl_config_t *c, const char *model)
{
    const sl_model_cfg_t *glob = NULL;
    for (size_t i = 0; i < c->nmodels; i++) {
        const sl_model_cfg_t *m = &c->models[i];
        if (!strpbrk(m->pattern, "*?")) {
            if (strcmp(m->pattern, model) == 0)
                return m;
        } else if (!glob && sl_glob_match(m->pattern, model)) {
            glob = m;
        }
    }
    return glob;
}
