/* The config sections (config/sections.c, and the dialects' in config/dialects.c), read by
 * config.c's parse_root. Private to src/config. */
#ifndef SL_CONFIG_SECTIONS_H
#define SL_CONFIG_SECTIONS_H
#include "config/config.h"
#include "config/ytree.h"

/* Where a dialect asked for jwt explicitly: checked once the whole file is read. */
typedef struct sl_cfgsec_ctx {
    const yaml_node_t *jwt_auth[SL_CONFIG_MAX_DIALECTS];
} sl_cfgsec_ctx_t;

void sl_cfgsec_defaults(sl_config_t *c);
void sl_cfgsec_free(sl_config_t *c);
SL_MUST_CHECK int sl_cfgsec_dialects(sl_ytree_t *t, const yaml_node_t *v, sl_config_t *c,
                                     sl_cfgsec_ctx_t *ctx);
SL_MUST_CHECK int sl_cfgsec_store(sl_ytree_t *t, const yaml_node_t *v, sl_config_t *c);
SL_MUST_CHECK int sl_cfgsec_jwt(sl_ytree_t *t, const yaml_node_t *v, sl_config_t *c);
SL_MUST_CHECK int sl_cfgsec_rate_limits(sl_ytree_t *t, const yaml_node_t *v, sl_config_t *c);
SL_MUST_CHECK int sl_cfgsec_cors(sl_ytree_t *t, const yaml_node_t *v, sl_config_t *c);
SL_MUST_CHECK int sl_cfgsec_retry(sl_ytree_t *t, const yaml_node_t *v, sl_config_t *c);
SL_MUST_CHECK int sl_cfgsec_observability(sl_ytree_t *t, const yaml_node_t *v, sl_config_t *c);
SL_MUST_CHECK int sl_cfgsec_trusted_proxies(sl_ytree_t *t, const yaml_node_t *v, sl_config_t *c);
/* true or false, nothing else. */
SL_MUST_CHECK int sl_cfgsec_bool(sl_ytree_t *t, const yaml_node_t *v, const char *what, bool *out);
/* config/dialects.c: each registered dialect's settings, defaulted, read, freed. */
void sl_cfgsec_dialect_defaults(sl_config_t *c);
void sl_cfgsec_dialect_free(sl_config_t *c);
/* Resolves defaults that depend on several sections (auth modes); errors point at ctx nodes. */
SL_MUST_CHECK int sl_cfgsec_dialect_finish(sl_ytree_t *t, sl_config_t *c,
                                           const sl_cfgsec_ctx_t *ctx);

#endif
