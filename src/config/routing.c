/* The routing table (DESIGN §7): the providers: and models: sections, what each model name is
 * sent to, and sl_config_route, which looks a client's model name up in it. */
#include "config/routing.h"

#include <string.h>

#include "config/sections.h"
#include "core/alloc.h"
#include "core/glob.h"

#define DEFAULT_TTFT_MS      200
#define DEFAULT_TOKENS_PER_S 40.0
#define DEFAULT_TOKENS       48

static const char *const type_names[] = {[SL_PROVIDER_MOCK] = "mock",
                                         [SL_PROVIDER_OPENAI] = "openai",
                                         [SL_PROVIDER_AZURE] = "azure",
                                         [SL_PROVIDER_ANTHROPIC] = "anthropic"};

void sl_routing_free(sl_config_t *c)
{
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
        return sl_ytree_secret(t, v, "api_key", &p->api_key);
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
        return sl_ytree_nonempty(t, v, "api_version", &p->api_version);
    }
    if (!strcmp(key, "deployment"))
        return sl_ytree_nonempty(t, v, "deployment", &p->deployment);
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

int sl_routing_providers(sl_ytree_t *t, const yaml_node_t *v, sl_config_t *c)
{
    int rc = sl_ytree_check_map(t, v, "providers", NULL, NULL);
    if (rc == 0 && sl_ytree_map_len(v) == 0)
        rc = sl_ytree_error(t, v, "providers: expected at least one provider");
    if (rc != 0)
        return rc;
    c->nproviders = sl_ytree_map_len(v);
    c->providers = sl_calloc(c->nproviders, sizeof *c->providers);
    sl_buf_t what;
    sl_buf_init(&what);
    for (size_t i = 0; rc == 0 && i < c->nproviders; i++) {
        yaml_node_pair_t *pr = &v->data.mapping.pairs.start[i];
        yaml_node_t *k = sl_ytree_node(t, pr->key);
        const char *name = sl_ytree_text(k);
        if (!sl_ytree_is_plain_name(name)) {
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
        rc = sl_ytree_nonempty(t, model, "model", &tg->model);
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
    if (v->type != YAML_SEQUENCE_NODE || sl_ytree_seq_len(v) == 0)
        return sl_ytree_error(t, v, "%s: expected a list of targets like [ { provider: NAME } ]",
                              m->pattern);
    m->ntargets = sl_ytree_seq_len(v);
    m->targets = sl_calloc(m->ntargets, sizeof *m->targets);
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < m->ntargets; i++)
        rc = parse_target(t, sl_ytree_node(t, v->data.sequence.items.start[i]), c, &m->targets[i]);
    return rc;
}

int sl_routing_models(sl_ytree_t *t, const yaml_node_t *v, sl_config_t *c)
{
    int rc = sl_ytree_check_map(t, v, "models", NULL, NULL);
    if (rc == 0 && sl_ytree_map_len(v) == 0)
        rc = sl_ytree_error(t, v, "models: expected at least one model");
    if (rc != 0)
        return rc;
    c->nmodels = sl_ytree_map_len(v);
    c->models = sl_calloc(c->nmodels, sizeof *c->models);
    for (size_t i = 0; rc == 0 && i < c->nmodels; i++)
        rc = parse_model(t, &v->data.mapping.pairs.start[i], c, &c->models[i]);
    return rc;
}

void sl_routing_default(sl_config_t *c)
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

/* ---- lookup ---- */

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
