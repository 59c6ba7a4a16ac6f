/* The configuration document (DESIGN §7): YAML text to an immutable, refcounted sl_config_t.
 * Its lifetime, the top level and the server's own sections (listen, workers, limits, timeouts,
 * auth keys); routing.c reads providers: and models:, sections.c the rest. */
#include "config/config.h"

#include <ctype.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/routing.h"
#include "config/sections.h"
#include "config/ytree.h"
#include "core/alloc.h"
#include "core/sha256.h"

#define MAX_FILE_BYTES (1u << 20) /* a config is a page of text; more is a mistake */

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

/* ---- lifetime ---- */

/* Allocations sized by a mapping or list are zeroed and counted at once, so free_config can
 * run at any point of a failed parse and frees exactly what was filled in. */
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
    sl_routing_free(c);
    sl_cfgsec_free(c);
    sl_cfgsec_dialect_free(c);
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
    sl_cfgsec_dialect_defaults(c);
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

/* ---- listen, workers, limits, timeouts ---- */

static int parse_listen(sl_ytree_t *t, const yaml_node_t *v, sl_config_t *c)
{
    return sl_ytree_host_port(t, v, "listen", &c->listen_host, &c->listen_port);
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
        rc = sl_ytree_nonempty(t, f, "models", &k->models);
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
        rc = sl_ytree_secret(t, v, "key", &k->key);
    } else {
        rc = sl_ytree_check_map(t, v, "auth.keys", allowed, NULL);
        yaml_node_t *key = rc == 0 ? sl_ytree_get(t, v, "key") : NULL;
        yaml_node_t *sha = rc == 0 ? sl_ytree_get(t, v, "key_sha256") : NULL;
        yaml_node_t *name = rc == 0 ? sl_ytree_get(t, v, "name") : NULL;
        if (rc == 0 && !key == !sha)
            return sl_ytree_error(t, v, "auth.keys: an entry needs key: or key_sha256: (one)");
        if (rc == 0)
            rc = key ? sl_ytree_secret(t, key, "key", &k->key) : parse_sha256(t, sha, k);
        if (rc == 0 && name)
            rc = sl_ytree_nonempty(t, name, "name", &k->name);
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
    c->nkeys = sl_ytree_seq_len(v);
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
    c->nadmin_keys = sl_ytree_seq_len(v);
    c->admin_keys = sl_calloc(c->nadmin_keys, sizeof *c->admin_keys);
    for (size_t i = 0; rc == 0 && i < c->nadmin_keys; i++) {
        yaml_node_t *item = sl_ytree_node(t, v->data.sequence.items.start[i]);
        rc = sl_ytree_secret(t, item, "admin key", &c->admin_keys[i]);
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
        {"providers", sl_routing_providers},
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
        sl_routing_default(c);
        sl_cfgsec_ctx_t none = {0};
        return sl_cfgsec_dialect_finish(t, c, &none);
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
        rc = sl_cfgsec_dialect_finish(t, c, &ctx);
    if (rc != 0)
        return rc;
    if (models)
        return sl_routing_models(t, models, c);
    if (providers_key)
        return sl_ytree_error(t, providers_key,
                              "providers are configured but no models route to them; add e.g. "
                              "models: { \"*\": [ { provider: %s } ] }",
                              c->providers[0].name);
    sl_routing_default(c);
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
