/* dialects.rag's own settings (seed 004): retrieval over a corpus of .md/.txt files, indexed
 * into SQLite FTS5 by the store thread (store/corpus.c). */
#ifndef SL_DIALECT_RAG_CFG_H
#define SL_DIALECT_RAG_CFG_H
#include <stdbool.h>
#include <stdint.h>

#include "config/dialect_section.h"

typedef struct sl_rag_cfg {
    char *corpus;          /* owned; directory, searched recursively; NULL = no corpus */
    bool streaming;        /* the SSE endpoint's upstream call streams (default true) */
    unsigned top_k;        /* passages sent upstream (default 4; a request may ask 1..20) */
    uint64_t cache_ttl_ms; /* exact-question answer cache; 0 = off (the default) */
    /* Distinct for every parsed config: the store thread re-scans the corpus (files whose
     * mtime or size changed) the first time it sees a new one, i.e. after a reload. */
    uint64_t generation;
} sl_rag_cfg_t;

extern const sl_dialect_section_t sl_rag_section;

/* rag's own settings in cfg. */
const sl_rag_cfg_t *sl_rag_cfg(const sl_config_t *cfg);

#endif
