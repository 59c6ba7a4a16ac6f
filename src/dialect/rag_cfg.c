/* dialects.rag's section: corpus, streaming, top_k, cache_ttl. */
#include "dialect/rag_cfg.h"

#include <stddef.h>

#include "core/alloc.h"

/* Hands each parsed config its own generation: an id generator, never read back, so no reader
 * can see a stale value. */
static uint64_t generations;

static void defaults(sl_dialect_cfg_t *d)
{
    sl_rag_cfg_t *r = d->own;
    r->streaming = true; /* seed 004's STREAMING_RESPONSE default */
    r->top_k = 4;
    r->generation = __atomic_add_fetch(&generations, 1, __ATOMIC_RELAXED);
}

static int parse_corpus(sl_ytree_t *t, const yaml_node_t *v, void *own)
{
    sl_rag_cfg_t *r = own;
    int rc = sl_ytree_set_str(t, v, "corpus", &r->corpus);
    if (rc == 0 && !r->corpus[0])
        rc = sl_ytree_error(t, v, "corpus: expected a directory of .md/.txt files");
    return rc;
}

static const sl_cfgkey_t keys[] = {
    /* PARSE, not STR: its own message when empty (dispose frees it). */
    {.name = "corpus", .kind = SL_CFGKEY_PARSE, .parse = parse_corpus},
    {.name = "streaming", .kind = SL_CFGKEY_BOOL, .off = offsetof(sl_rag_cfg_t, streaming)},
    {.name = "top_k",
     .kind = SL_CFGKEY_UINT,
     .off = offsetof(sl_rag_cfg_t, top_k),
     .min = 1,
     .max = 20},
    {.name = "cache_ttl", .kind = SL_CFGKEY_DURATION, .off = offsetof(sl_rag_cfg_t, cache_ttl_ms)},
    {0},
};

static void dispose(void *own)
{
    sl_free(((sl_rag_cfg_t *)own)->corpus);
}

const sl_dialect_section_t sl_rag_section = {.name = "rag",
                                             .keys = keys,
                                             .own_size = sizeof(sl_rag_cfg_t),
                                             .defaults = defaults,
                                             .dispose = dispose};

const sl_rag_cfg_t *sl_rag_cfg(const sl_config_t *cfg)
{
    return sl_config_dialect(cfg, &sl_rag_section)->own;
}
