/* Dialects: the wire protocols clients speak (DESIGN §4). Each exports its routes; main mounts
 * them. A dialect decodes requests into sl_chat_req_t and encodes canonical events back. */
#ifndef SL_DIALECT_DIALECT_H
#define SL_DIALECT_DIALECT_H
#include <stddef.h>

#include "http/router.h"

#include "config/config.h"

typedef struct sl_dialect {
    sl_dialect_id_t id; /* its config: cfg->dialects[id] (enabled, prefix, model, auth, ...) */
    /* Mount points under the configured prefix, NULL-terminated ("" = the prefix itself). */
    const char *const *mounts;
    const sl_route_t *routes;
    size_t nroutes;
    /* Answers what falls under its mounts and matches no route (404/405), in its own error
     * shape; NULL = the OpenAI shape. */
    sl_route_error_fn route_error;
} sl_dialect_t;

extern const sl_dialect_t sl_dialect_openai;
extern const sl_dialect_t sl_dialect_chat;
extern const sl_dialect_t sl_dialect_monoai;
extern const sl_dialect_t sl_dialect_aichat;
extern const sl_dialect_t sl_dialect_rag;

#endif
