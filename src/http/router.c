/* Exact-path routing table. A handful of routes: a linear scan beats any index here. */
#include "http/router.h"

#include <stdbool.h>
#include <string.h>

#include "core/alloc.h"
#include "core/err.h"

typedef struct entry {
    char *method;
    char *path;                 /* the mount prefix + the route's path */
    size_t prefix_len;          /* of the mount prefix within path */
    const sl_route_t *route;    /* borrowed: route tables are static */
    sl_route_error_fn on_error; /* the mount's error shape */
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

void sl_router_add(sl_router_t *r, const char *prefix, const sl_route_t *routes, size_t n,
                   sl_route_error_fn on_error)
{
    r->e = sl_realloc(r->e, (r->n + n) * sizeof *r->e);
    for (size_t i = 0; i < n; i++) {
        sl_buf_t p;
        sl_buf_init(&p);
        sl_buf_puts(&p, prefix);
        sl_buf_puts(&p, routes[i].path);
        r->e[r->n].method = sl_strdup(routes[i].method);
        r->e[r->n].path = p.data;
        r->e[r->n].prefix_len = strlen(prefix);
        r->e[r->n].route = &routes[i];
        r->e[r->n].on_error = on_error;
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

/* Whether path falls under a mount prefix: equal to it, or it followed by '/'. */
static bool under(const entry_t *e, const char *path, size_t len)
{
    size_t n = e->prefix_len;
    return n && len >= n && memcmp(e->path, path, n) == 0 && (len == n || path[n] == '/');
}

int sl_router_lookup(const sl_router_t *r, const char *method, const char *path, size_t len,
                     sl_route_found_t *f)
{
    f->route = NULL;
    f->on_error = NULL;
    sl_buf_init(&f->allow);
    size_t best = 0; /* the longest mount prefix the path falls under */
    bool path_known = false;
    for (size_t i = 0; i < r->n; i++) {
        const entry_t *e = &r->e[i];
        sl_route_match_t m;
        if (!match(e->path, path, len, &m)) {
            if (!path_known && under(e, path, len) && e->prefix_len > best) {
                best = e->prefix_len;
                f->on_error = e->on_error;
            }
            continue;
        }
        if (strcmp(e->method, method) == 0) {
            sl_buf_dispose(&f->allow);
            f->route = e->route;
            f->match = m;
            return 0;
        }
        if (!path_known)
            f->on_error = e->on_error;
        path_known = true;
        sl_buf_puts(&f->allow, f->allow.len ? ", " : "Allow: ");
        sl_buf_puts(&f->allow, e->method);
    }
    if (!path_known)
        return SL_ENOTFOUND;
    sl_buf_puts(&f->allow, "\r\n");
    return SL_EMETHOD;
}
