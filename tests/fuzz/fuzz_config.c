/* config (config.c, sections.c, dialects.c, ytree.c, glob.c; the monoai and rag sections): YAML
 * text loaded as a config either gives a config or fails with SL_ECONFIG and one message
 * "fuzz.yaml:LINE:COL: ..." whose mark lies inside the text; nothing else. A config that loads is
 * consistent: every model routes to at least one target on a provider that exists, a dialect on JWT
 * auth has a JWT setup, which names an algorithm sluice pins, and each model pattern routes to an
 * entry.
 *
 * Input: the YAML text as it is. ${FUZZ_SET} expands to "8080"; other variables are unset. */
#include "fuzz.h"

#include <ctype.h>

#include "config/config.h"
#include "dialect/monoai_cfg.h"
#include "dialect/rag_cfg.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fuzz_init_json();
    setenv("FUZZ_SET", "8080", 1);
    /* The two dialects with settings of their own (the others have only the common keys). */
    sl_config_register_dialect(&sl_monoai_section);
    sl_config_register_dialect(&sl_rag_section);
    /* The default config once: the embedded text must always load. */
    sl_config_t *d = sl_config_default();
    FUZZ_CHECK(d != NULL);
    sl_config_unref(d);
    return 0;
}

/* "fuzz.yaml:L:C: message" with L within the text's lines and C >= 1. */
static void check_error(const sl_buf_t *err, const char *text, size_t n)
{
    static const char name[] = "fuzz.yaml:";
    FUZZ_CHECK(err->data && err->len > sizeof name);
    FUZZ_CHECK(strncmp(err->data, name, sizeof name - 1) == 0);
    const char *p = err->data + sizeof name - 1;
    char *end;
    long line = strtol(p, &end, 10);
    FUZZ_CHECK(end > p && *end == ':');
    p = end + 1;
    long col = strtol(p, &end, 10);
    FUZZ_CHECK(end > p && end[0] == ':' && end[1] == ' ' && end[2] != '\0');
    /* YAML breaks lines at \n, \r, and (libyaml) NEL, LS and PS: an upper bound counts each. */
    size_t lines = 1;
    for (size_t i = 0; i < n; i++)
        lines += text[i] == '\n' || text[i] == '\r' || text[i] == '\x85' ||
                 (text[i] == '\xe2' && i + 2 < n && text[i + 1] == '\x80' &&
                  (text[i + 2] == '\xa8' || text[i + 2] == '\xa9'));
    FUZZ_CHECK(line >= 1 && (size_t)line <= lines + 1);
    FUZZ_CHECK(col >= 1);
}

static void check_config(const sl_config_t *c)
{
    FUZZ_CHECK(c->listen_host && c->source);
    FUZZ_CHECK(c->nproviders == 0 || c->providers);
    for (size_t i = 0; i < c->nproviders; i++) {
        const sl_provider_cfg_t *p = &c->providers[i];
        FUZZ_CHECK(p->name);
        FUZZ_CHECK(p->type == SL_PROVIDER_MOCK || p->base_url);
    }
    for (size_t i = 0; i < c->nmodels; i++) {
        const sl_model_cfg_t *m = &c->models[i];
        FUZZ_CHECK(m->pattern && m->ntargets >= 1 && m->targets);
        for (size_t t = 0; t < m->ntargets; t++)
            FUZZ_CHECK(m->targets[t].provider < c->nproviders);
        const sl_model_cfg_t *r = sl_config_route(c, m->pattern);
        FUZZ_CHECK(r != NULL);
    }
    FUZZ_CHECK(c->ndialects == 2);
    for (size_t d = 0; d < c->ndialects; d++) {
        /* DEFAULT stays when no key is configured: issued keys decide at request time. */
        FUZZ_CHECK(c->dialects[d].auth >= SL_AUTH_DEFAULT && c->dialects[d].auth <= SL_AUTH_JWT);
        if (c->dialects[d].auth == SL_AUTH_JWT)
            FUZZ_CHECK(c->jwt.alg != NULL);
        FUZZ_CHECK(c->dialects[d].prefix && c->dialects[d].model && c->dialects[d].own);
    }
    const sl_rag_cfg_t *rag = sl_rag_cfg(c);
    FUZZ_CHECK(rag->top_k >= 1 && rag->top_k <= 20 && (!rag->corpus || rag->corpus[0]));
    if (c->jwt.alg) {
        FUZZ_CHECK(!strcmp(c->jwt.alg, "HS256") || !strcmp(c->jwt.alg, "RS256") ||
                   !strcmp(c->jwt.alg, "ES256"));
        FUZZ_CHECK(c->jwt.key && c->jwt.key_len > 0);
    }
    for (size_t i = 0; i < c->nkeys; i++)
        FUZZ_CHECK(c->keys[i].name);
    const sl_monoai_cfg_t *m = sl_monoai_cfg(c);
    for (size_t i = 0; i < m->nagents; i++)
        FUZZ_CHECK(m->agents[i].name && json_is_object(m->agents[i].params));
    (void)sl_monoai_agent(c, "none");
    (void)sl_config_route(c, "gpt-4o");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = sl_malloc(size ? size : 1);
    memcpy(text, data, size);
    sl_buf_t err;
    sl_buf_init(&err);
    sl_config_t *c = (sl_config_t *)1;
    int rc = sl_config_parse(text, size, "fuzz.yaml", &c, &err);
    if (rc == 0) {
        FUZZ_CHECK(c != NULL && c != (sl_config_t *)1);
        FUZZ_CHECK(err.len == 0);
        check_config(c);
        sl_config_t *again = sl_config_ref(c);
        sl_config_unref(again);
        sl_config_unref(c);
    } else {
        FUZZ_CHECK(rc == SL_ECONFIG);
        FUZZ_CHECK(c == NULL);
        check_error(&err, text, size);
    }
    sl_buf_dispose(&err);
    sl_free(text);
    return 0;
}
