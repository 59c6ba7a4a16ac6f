/* Exact-path routing table. A handful of routes: a linear scan beats any index here. */
#include "http/router.h"

#include <stdbool.h>
#include <string.h>

#include "core/alloc.h"
#include "net/conn.h"

typedef struct entry {
    char *method;
    char *path;
    sl_route_fn fn;
} entry_t;

struct sl_router {
    entry_t *e;
    size_t n;
    int refs; /* atomic */
};

sl_router_t *sl_router_new(void)
{
    sl_router_t *r = sl_calloc(1, sizeof(sl_router_t));
    r->refs = 1;
    return r;
}

sl_router_t *sl_router_ref(sl_router_t *r)
{
    __atomic_add_fetch(&r->refs, 1, __ATOMIC_RELAXED);
    return r;
}

void sl_router_unref(sl_router_t *r)
{
    if (!r || __atomic_sub_fetch(&r->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    for (size_t i = 0; i < r->n; i++) {
        sl_free(r->e[i].method);
        sl_free(r->e[i].path);
    }
    sl_free(r->e);
    sl_free(r);
}

void sl_router_add(sl_router_t *r, const char *prefix, const sl_route_t *routes, size_t n)
{
    r->e = sl_realloc(r->e, (r->n + n) * sizeof *r->e);
    for (size_t i = 0; i < n; i++) {
        sl_buf_t p;
        sl_buf_init(&p);
        sl_buf_puts(&p, prefix);
        sl_buf_puts(&p, routes[i].path);
        r->e[r->n].method = sl_strdup(routes[i].method);
        r->e[r->n].path = p.data;
        r->e[r->n].fn = routes[i].fn;
        r->n++;
    }
}

/* Matches path against a pattern with at most one {param} segment. */
static bool match(const char *pat, const char *path, size_t len, sl_route_match_t *m)
{
    const char *open = strchr(pat, '{');
    m->param = NULL;
    m->param_len = 0;
    if (!open)
        return strlen(pat) == len && memcmp(pat, path, len) == 0;
    size_t pre = (size_t)(open - pat);
    const char *after = strchr(open, '}') + 1;
    size_t post = strlen(after);
    if (len < pre + post + 1 || memcmp(pat, path, pre) != 0 ||
        memcmp(after, path + len - post, post) != 0)
        return false;
    m->param = path + pre;
    m->param_len = len - pre - post;
    return memchr(m->param, '/', m->param_len) == NULL;
}

void sl_router_dispatch(const sl_router_t *r, sl_conn_t *c, const sl_http_req_t *req)
{
    size_t len;
    const char *path = sl_http_req_path(req, &len);
    const char *method = sl_http_req_method(req);
    sl_buf_t allow;
    sl_buf_init(&allow);
    for (size_t i = 0; i < r->n; i++) {
        const entry_t *e = &r->e[i];
        sl_route_match_t m;
        if (!match(e->path, path, len, &m))
            continue;
        if (strcmp(e->method, method) == 0) {
            sl_buf_dispose(&allow);
            e->fn(c, req, &m);
            return;
        }
        sl_buf_puts(&allow, allow.len ? ", " : "Allow: ");
        sl_buf_puts(&allow, e->method);
    }
    if (allow.len) {
        sl_buf_puts(&allow, "\r\n");
        sl_conn_respond_error(c, 405, "invalid_request_error", "method_not_allowed", NULL,
                              "method not allowed on this path", allow.data);
    } else {
        sl_conn_respond_error(c, 404, "invalid_request_error", "unknown_url", NULL, "unknown path",
                              NULL);
    }
    sl_buf_dispose(&allow);
}
