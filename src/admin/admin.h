/* The operations endpoints, mounted at the root by main. */
#ifndef SL_ADMIN_ADMIN_H
#define SL_ADMIN_ADMIN_H
#include <stddef.h>

#include "http/router.h"

extern const sl_route_t *const sl_admin_routes;
extern const size_t sl_admin_nroutes;
/* What the metrics listener serves: /metrics, /healthz, /readyz. */
extern const sl_route_t *const sl_admin_ops_routes;
extern const size_t sl_admin_nops_routes;

#endif
