/* The providers: and models: sections (config/routing.c), read by config.c's parse_root.
 * Private to src/config; sl_config_route, the lookup, is declared in config.h. */
#ifndef SL_CONFIG_ROUTING_H
#define SL_CONFIG_ROUTING_H
#include "config/config.h"
#include "config/ytree.h"

/* providers: into c->providers, in file order. */
SL_MUST_CHECK int sl_routing_providers(sl_ytree_t *t, const yaml_node_t *v, sl_config_t *c);
/* models: into c->models; read after every other section, as its targets name providers. */
SL_MUST_CHECK int sl_routing_models(sl_ytree_t *t, const yaml_node_t *v, sl_config_t *c);
/* No providers and no models: every model name is answered by a mock, as in the default. */
void sl_routing_default(sl_config_t *c);
/* Frees the providers and models, as far as a failed parse filled them in. */
void sl_routing_free(sl_config_t *c);

#endif
