/* dialects.monoai's own settings (seed 002): agents (named presets) and who may use it. */
#ifndef SL_DIALECT_MONOAI_CFG_H
#define SL_DIALECT_MONOAI_CFG_H
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "config/dialect_section.h"

/* A monoai agent: a named preset. */
typedef struct sl_agent_cfg {
    char *name;          /* owned */
    char *model;         /* owned; NULL = the dialect's model */
    char *system_prompt; /* owned; NULL = none */
    json_t *params;      /* owned object: extra upstream fields (temperature, max_tokens, ...) */
} sl_agent_cfg_t;

typedef struct sl_monoai_cfg {
    sl_agent_cfg_t *agents; /* owned; agents: */
    size_t nagents;
    /* users: who may use monoai (seed 002's user validator). With neither an allow-list nor a
     * URL every user_id is valid. */
    char **allowed_users; /* owned */
    size_t nallowed_users;
    char *user_validator_url;         /* owned; POST {"user_id"} → {"valid", "user_id"?} */
    uint64_t user_validator_cache_ms; /* users.cache: how long answers are kept (60 s; 0 = none) */
} sl_monoai_cfg_t;

extern const sl_dialect_section_t sl_monoai_section;

/* monoai's own settings in cfg. */
const sl_monoai_cfg_t *sl_monoai_cfg(const sl_config_t *cfg);
/* The agent called name, or NULL. */
const sl_agent_cfg_t *sl_monoai_agent(const sl_config_t *cfg, const char *name);

#endif
