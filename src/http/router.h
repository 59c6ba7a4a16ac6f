/* Maps method + exact path to a handler (DESIGN §4: paths match exactly, trailing slash
 * included). Built once by main from the dialects' route tables, then shared read-only. */
#ifndef SL_HTTP_ROUTER_H
#define SL_HTTP_ROUTER_H
#include <stddef.h>

#include "http/request.h"

typedef struct sl_conn sl_conn_t;

/* What matched: the one {param} segment of the route's path, if it has one. */
typedef struct sl_route_match {
    const char *param; /* points into the request's URL; not NUL-terminated */
    size_t param_len;
} sl_route_match_t;

/* Answers the request on c (now or later, via sl_conn_end). */
typedef void (*sl_route_fn)(sl_conn_t *c, const sl_http_req_t *req, const sl_route_match_t *m);

typedef struct sl_route {
    const char *method; /* "GET", "POST", ... */
    const char *path;   /* exact; one segment may be {name}: any non-empty text without '/' */
    sl_route_fn fn;
} sl_route_t;

typedef struct sl_router sl_router_t;

/* Routers are shared by the workers and replaced on reload: reference counted. */
sl_router_t *sl_router_new(void);
sl_router_t *sl_router_ref(sl_router_t *r);
void sl_router_unref(sl_router_t *r); /* NULL is a no-op; the last unref frees */
/* Mounts routes under prefix ("" for none); the strings are copied. */
void sl_router_add(sl_router_t *r, const char *prefix, const sl_route_t *routes, size_t n);
/* Calls the handler, or answers 404 (unknown path) / 405 (known path, other method). */
void sl_router_dispatch(const sl_router_t *r, sl_conn_t *c, const sl_http_req_t *req);

#endif
