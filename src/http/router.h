/* Maps method + exact path to a handler (DESIGN §4: paths match exactly, trailing slash
 * included). Built once by main from the dialects' route tables, then shared read-only. Pure:
 * a lookup says what matched or why nothing did; the connection answers (net/conn.c). */
#ifndef SL_HTTP_ROUTER_H
#define SL_HTTP_ROUTER_H
#include <stddef.h>

#include "core/buf.h"
#include "core/err.h"
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

/* How the routes of one mount answer a request the router could not route, in their dialect's
 * error shape: err is SL_ENOTFOUND (unknown path) or SL_EMETHOD (known path, other method;
 * allow is its "Allow: ...\r\n" head line). NULL: the OpenAI error shape. */
typedef void (*sl_route_error_fn)(sl_conn_t *c, int err, const char *allow);

/* A lookup's answer. */
typedef struct sl_route_found {
    const sl_route_t *route;    /* 0: the handler's route; borrowed from the router */
    sl_route_match_t match;     /* 0: its {param} */
    sl_route_error_fn on_error; /* otherwise: the shape of the mount the path falls under */
    sl_buf_t allow;             /* SL_EMETHOD: "Allow: GET, POST\r\n"; owned by the caller */
} sl_route_found_t;

typedef struct sl_router sl_router_t;

/* Routers are shared by the workers and replaced on reload: reference counted. */
sl_router_t *sl_router_new(void);
sl_router_t *sl_router_ref(sl_router_t *r);
void sl_router_unref(sl_router_t *r); /* NULL is a no-op; the last unref frees */
/* Mounts routes under prefix ("" for none); the strings are copied. on_error answers what
 * falls under this mount and matches nothing (NULL: the OpenAI shape). */
void sl_router_add(sl_router_t *r, const char *prefix, const sl_route_t *routes, size_t n,
                   sl_route_error_fn on_error);
/* Finds the route for method + path (path[0..len), no query). 0: f->route and f->match are
 * set. SL_EMETHOD: the path exists with other methods (f->allow lists them). SL_ENOTFOUND:
 * nothing has this path. Unless 0, f->on_error is the error shape of the mount whose routes
 * matched the path, else of the longest mount prefix the path falls under. f->allow must be
 * disposed by the caller whatever the answer. */
SL_MUST_CHECK int sl_router_lookup(const sl_router_t *r, const char *method, const char *path,
                                   size_t len, sl_route_found_t *f);

#endif
