/* dialects: the registry of dialect sections, and the reading of each dialects.<name> mapping:
 * the keys every dialect has here, the dialect's own through its table. */
#include "config/dialect_section.h"

#include <string.h>

#include "config/sections.h"
#include "core/alloc.h"
#include "core/err.h"

/* Written at start-up only, before any thread or config exists (sl_config_register_dialect),
 * and read-only afterwards: the set of dialects is a property of the binary, not of a file. */
static const sl_dialect_section_t *registered[SL_CONFIG_MAX_DIALECTS];
static size_t nregistered;

void sl_config_register_dialect(const sl_dialect_section_t *s)
{
    for (size_t i = 0; i < nregistered; i++)
        if (registered[i] == s)
            return;
    SL_ASSERT(nregistered < SL_CONFIG_MAX_DIALECTS && s->name);
    registered[nregistered++] = s;
}

const sl_dialect_cfg_t *sl_config_dialect(const sl_config_t *c, const sl_dialect_section_t *s)
{
    for (size_t i = 0; i < c->ndialects; i++)
        if (c->dialects[i].section == s)
            return &c->dialects[i];
    SL_ASSERT(!"dialect section not registered");
    return NULL;
}

const sl_dialect_cfg_t *sl_config_dialect_named(const sl_config_t *c, const char *name)
{
    for (size_t i = 0; i < c->ndialects; i++)
        if (strcmp(c->dialects[i].section->name, name) == 0)
            return &c->dialects[i];
    return NULL;
}

void sl_cfgsec_dialect_defaults(sl_config_t *c)
{
    c->ndialects = nregistered;
    for (size_t i = 0; i < nregistered; i++) {
        sl_dialect_cfg_t *d = &c->dialects[i];
        const sl_dialect_section_t *s = registered[i];
        *d = (sl_dialect_cfg_t){.section = s, .index = (unsigned)i, .enabled = true};
        d->prefix = sl_strdup("");
        d->model = sl_strdup("default");
        d->history_turns = 20;
        d->own = s->own_size ? sl_calloc(1, s->own_size) : NULL;
        if (s->defaults)
            s->defaults(d);
    }
}

void sl_cfgsec_dialect_free(sl_config_t *c)
{
    for (size_t i = 0; i < c->ndialects; i++) {
        sl_dialect_cfg_t *d = &c->dialects[i];
        const sl_dialect_section_t *s = d->section;
        sl_free(d->prefix);
        sl_free(d->model);
        sl_free(d->system_prompt);
        if (!d->own)
            continue;
        if (s->dispose)
            s->dispose(d->own);
        for (const sl_cfgkey_t *k = s->keys; k && k->name; k++)
            if (k->kind == SL_CFGKEY_STR)
                sl_free(*(char **)((char *)d->own + k->off));
        sl_free(d->own);
    }
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

/* One of the dialect's own keys, through its table. */
static int parse_own(sl_ytree_t *t, const sl_cfgkey_t *k, const yaml_node_t *v, void *own)
{
    void *at = (char *)own + k->off;
    uint64_t n = 0;
    int rc = 0;
    switch (k->kind) {
    case SL_CFGKEY_BOOL: return sl_cfgsec_bool(t, v, k->name, at);
    case SL_CFGKEY_STR:
        rc = sl_ytree_set_str(t, v, k->name, at);
        if (rc == 0 && k->min && !**(char **)at)
            rc = sl_ytree_error(t, v, "%s: expected a non-empty value", k->name);
        return rc;
    case SL_CFGKEY_UINT:
        SL_ASSERT(k->max <= UINT32_MAX);
        if ((rc = sl_ytree_uint(t, v, k->name, k->min, k->max, &n)) == 0)
            *(unsigned *)at = (unsigned)n;
        return rc;
    case SL_CFGKEY_DURATION: return sl_ytree_duration(t, v, k->name, at);
    case SL_CFGKEY_PARSE: return k->parse(t, v, own);
    }
    return SL_ECONFIG;
}

/* The keys every dialect has; a dialect's own may not reuse them. */
static const char *const common[] = {"enabled",    "prefix", "model",         "system_prompt",
                                     "max_tokens", "auth",   "history_turns", NULL};

static int parse_common(sl_ytree_t *t, const yaml_node_t *k, const yaml_node_t *f,
                        sl_dialect_cfg_t *d, sl_cfgsec_ctx_t *ctx)
{
    const char *key = sl_ytree_text(k);
    uint64_t n = 0;
    int rc = 0;
    if (!strcmp(key, "enabled"))
        rc = sl_cfgsec_bool(t, f, key, &d->enabled);
    else if (!strcmp(key, "prefix"))
        rc = sl_ytree_set_str(t, f, key, &d->prefix);
    else if (!strcmp(key, "model"))
        rc = sl_ytree_set_str(t, f, key, &d->model);
    else if (!strcmp(key, "system_prompt"))
        rc = sl_ytree_set_str(t, f, key, &d->system_prompt);
    else if (!strcmp(key, "max_tokens"))
        rc = sl_ytree_uint(t, f, key, 1, 10000000, &d->max_tokens);
    else if (!strcmp(key, "history_turns") && (rc = sl_ytree_uint(t, f, key, 0, 1000, &n)) == 0)
        d->history_turns = (unsigned)n;
    else if (!strcmp(key, "auth") && (rc = parse_auth_mode(t, f, &d->auth)) == 0 &&
             d->auth == SL_AUTH_JWT)
        ctx->jwt_auth[d->index] = f;
    if (rc == 0 && !strcmp(key, "prefix") && d->prefix[0] &&
        (d->prefix[0] != '/' || d->prefix[strlen(d->prefix) - 1] == '/'))
        rc = sl_ytree_error(t, f,
                            "prefix: expected a path like /seed000 (leading /, none "
                            "trailing)");
    return rc;
}

#define MAX_KEYS 32

static int parse_dialect(sl_ytree_t *t, sl_dialect_cfg_t *d, const yaml_node_t *v,
                         sl_cfgsec_ctx_t *ctx)
{
    const sl_dialect_section_t *s = d->section;
    const char *allowed[MAX_KEYS + 1];
    size_t n = 0;
    for (const char *const *c = common; *c; c++)
        allowed[n++] = *c;
    for (const sl_cfgkey_t *k = s->keys; k && k->name; k++) {
        SL_ASSERT(n < MAX_KEYS);
        allowed[n++] = k->name;
    }
    allowed[n] = NULL;
    int rc = sl_ytree_check_map(t, v, s->name, allowed, NULL);
    for (yaml_node_pair_t *pr = rc == 0 ? v->data.mapping.pairs.start : NULL;
         pr && rc == 0 && pr < v->data.mapping.pairs.top; pr++) {
        yaml_node_t *k = sl_ytree_node(t, pr->key), *f = sl_ytree_node(t, pr->value);
        const sl_cfgkey_t *own = s->keys;
        while (own && own->name && strcmp(own->name, sl_ytree_text(k)) != 0)
            own++;
        rc = own && own->name ? parse_own(t, own, f, d->own) : parse_common(t, k, f, d, ctx);
    }
    return rc;
}

int sl_cfgsec_dialects(sl_ytree_t *t, const yaml_node_t *v, sl_config_t *c, sl_cfgsec_ctx_t *ctx)
{
    const char *allowed[SL_CONFIG_MAX_DIALECTS + 1];
    for (size_t i = 0; i < c->ndialects; i++)
        allowed[i] = c->dialects[i].section->name;
    allowed[c->ndialects] = NULL;
    int rc = sl_ytree_check_map(t, v, "dialects", allowed, NULL);
    for (size_t i = 0; rc == 0 && i < c->ndialects; i++) {
        yaml_node_t *d = sl_ytree_get(t, v, c->dialects[i].section->name);
        if (d)
            rc = parse_dialect(t, &c->dialects[i], d, ctx);
    }
    return rc;
}

int sl_cfgsec_dialect_finish(sl_ytree_t *t, sl_config_t *c, const sl_cfgsec_ctx_t *ctx)
{
    for (size_t i = 0; i < c->ndialects; i++) {
        sl_dialect_cfg_t *d = &c->dialects[i];
        if (d->auth == SL_AUTH_JWT && !c->jwt.alg && ctx->jwt_auth[i])
            return sl_ytree_error(t, ctx->jwt_auth[i],
                                  "auth: jwt needs auth.jwt (alg and secret or public_key)");
        if (d->section->finish)
            d->section->finish(c, d); /* e.g. aichat: jwt when auth.jwt is configured */
        /* Unset: keys when any exist (config keys now, issued keys at request time), else
         * none. */
        if (d->auth == SL_AUTH_DEFAULT && c->nkeys)
            d->auth = SL_AUTH_KEY;
    }
    return 0;
}
