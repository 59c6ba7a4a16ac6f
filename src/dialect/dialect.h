/* Dialects: the wire protocols clients speak (DESIGN §4). Each exports its routes; main mounts
 * them. A dialect decodes requests into sl_chat_req_t and encodes canonical events back. */
#ifndef SL_DIALECT_DIALECT_H
#define SL_DIALECT_DIALECT_H
#include <stddef.h>

#include "http/router.h"

#include "config/config.h"
#include "config/dialect_section.h"

struct sl_store;

typedef struct sl_dialect {
    const char *name;
    /* Its config section: sl_config_dialect(cfg, config) has its settings (enabled, prefix,
     * model, auth, ... and its own). */
    const sl_dialect_section_t *config;
    /* Mount points under the configured prefix, NULL-terminated ("" = the prefix itself). */
    const char *const *mounts;
    const sl_route_t *routes;
    size_t nroutes;
    /* Answers what falls under its mounts and matches no route (404/405), in its own error
     * shape; NULL = the OpenAI shape. */
    sl_route_error_fn route_error;
    /* At start-up, when enabled: work queued on the store thread before the first request
     * (rag: index the corpus). NULL = none. */
    void (*prepare)(const sl_config_t *cfg, struct sl_store *store);
} sl_dialect_t;

/* Every dialect in the binary (dialect/dialects.c), in mount order, n in *n. */
const sl_dialect_t *const *sl_dialects(size_t *n);
/* Makes every dialect's config section known (sl_config_register_dialect): once at start-up,
 * before any config is read. */
void sl_dialects_register(void);

#endif
