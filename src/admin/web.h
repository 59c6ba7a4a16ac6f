/* The chat page and its assets (DESIGN §10), embedded in the binary at build time from
 * web/dist (scripts/embed.sh) and mounted at the root by main. */
#ifndef SL_ADMIN_WEB_H
#define SL_ADMIN_WEB_H
#include <stddef.h>

#include "http/router.h"

/* GET / (index.html) and GET /<file> for each embedded file. */
extern const sl_route_t *const sl_web_routes;
extern const size_t sl_web_nroutes;

#endif
