/* dialects.monoai's section: agents (each with params passed upstream) and users (an allow-list
 * or a validator URL). */
#include "dialect/monoai_cfg.h"

#include <stddef.h>
#include <string.h>

#include "core/alloc.h"

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
        rc = sl_ytree_set_str(t, f, "model", &a->model);
    if (rc == 0 && (f = sl_ytree_get(t, v, "system_prompt")))
        rc = sl_ytree_set_str(t, f, "system_prompt", &a->system_prompt);
    if (rc == 0 && (f = sl_ytree_get(t, v, "params")))
        rc = parse_params(t, f, &a->params);
    if (rc == 0 && !a->params)
        a->params = json_object();
    return rc;
}

static int parse_agents(sl_ytree_t *t, const yaml_node_t *v, void *own)
{
    sl_monoai_cfg_t *m = own;
    if (v->type != YAML_MAPPING_NODE)
        return sl_ytree_error(t, v, "agents: expected a mapping of agent name → preset");
    size_t n = sl_ytree_map_len(v);
    m->agents = sl_calloc(n ? n : 1, sizeof *m->agents);
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        m->nagents = i + 1;
        rc = parse_agent(t, &v->data.mapping.pairs.start[i], &m->agents[i]);
    }
    return rc;
}

static int parse_validator(sl_ytree_t *t, const yaml_node_t *url, const yaml_node_t *cache,
                           sl_monoai_cfg_t *m)
{
    int rc = sl_ytree_set_str(t, url, "url", &m->user_validator_url);
    const char *s = rc == 0 ? m->user_validator_url : "";
    size_t skip = !strncmp(s, "https://", 8) ? 8 : !strncmp(s, "http://", 7) ? 7 : 0;
    if (rc == 0 && (skip == 0 || !s[skip] || s[skip] == '/'))
        return sl_ytree_error(t, url, "url: expected an http:// or https:// URL");
    m->user_validator_cache_ms = 60000;
    if (rc == 0 && cache)
        rc = sl_ytree_duration(t, cache, "cache", &m->user_validator_cache_ms);
    return rc;
}

/* users: { allow: [ ... ] } or { url: http://…, cache: 60s } (seed 002's user validator). */
static int parse_users(sl_ytree_t *t, const yaml_node_t *v, void *own)
{
    static const char *const allowed[] = {"allow", "url", "cache", NULL};
    sl_monoai_cfg_t *m = own;
    int rc = sl_ytree_check_map(t, v, "users", allowed, NULL);
    yaml_node_t *allow = rc == 0 ? sl_ytree_get(t, v, "allow") : NULL;
    yaml_node_t *url = rc == 0 ? sl_ytree_get(t, v, "url") : NULL;
    yaml_node_t *cache = rc == 0 ? sl_ytree_get(t, v, "cache") : NULL;
    if (allow && url)
        return sl_ytree_error(t, url, "users: give either allow or url, not both");
    if (cache && !url)
        return sl_ytree_error(t, cache, "users: cache applies to url answers only");
    if (url)
        return parse_validator(t, url, cache, m);
    if (!allow)
        return rc;
    rc = sl_ytree_check_seq(t, allow, "allow");
    size_t n = rc == 0 ? sl_ytree_seq_len(allow) : 0;
    m->allowed_users = sl_calloc(n ? n : 1, sizeof *m->allowed_users);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        m->nallowed_users = i + 1;
        rc = sl_ytree_str(t, sl_ytree_node(t, allow->data.sequence.items.start[i]), "user id",
                          &m->allowed_users[i]);
    }
    return rc;
}

static void dispose(void *own)
{
    sl_monoai_cfg_t *m = own;
    for (size_t i = 0; i < m->nagents; i++) {
        sl_free(m->agents[i].name);
        sl_free(m->agents[i].model);
        sl_free(m->agents[i].system_prompt);
        json_decref(m->agents[i].params);
    }
    sl_free(m->agents);
    for (size_t i = 0; i < m->nallowed_users; i++)
        sl_free(m->allowed_users[i]);
    sl_free(m->allowed_users);
    sl_free(m->user_validator_url);
}

static const sl_cfgkey_t keys[] = {
    {.name = "agents", .kind = SL_CFGKEY_PARSE, .parse = parse_agents},
    {.name = "users", .kind = SL_CFGKEY_PARSE, .parse = parse_users},
    {0},
};

const sl_dialect_section_t sl_monoai_section = {
    .name = "monoai", .keys = keys, .own_size = sizeof(sl_monoai_cfg_t), .dispose = dispose};

const sl_monoai_cfg_t *sl_monoai_cfg(const sl_config_t *cfg)
{
    return sl_config_dialect(cfg, &sl_monoai_section)->own;
}

const sl_agent_cfg_t *sl_monoai_agent(const sl_config_t *cfg, const char *name)
{
    const sl_monoai_cfg_t *m = sl_monoai_cfg(cfg);
    for (size_t i = 0; i < m->nagents; i++)
        if (strcmp(m->agents[i].name, name) == 0)
            return &m->agents[i];
    return NULL;
}
