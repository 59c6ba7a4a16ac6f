/* The worker's upstream context: the two transports, made and closed together. */
#include "upstream/upstream.h"

#include "core/alloc.h"
#include "upstream/h1.h"
#include "upstream/multi.h"

sl_upstream_t *sl_upstream_new(uv_loop_t *loop)
{
    sl_upstream_t *u = sl_calloc(1, sizeof *u);
    u->h1 = sl_h1_pool_new(loop);
    u->multi = sl_multi_new(loop);
    return u;
}

void sl_upstream_close(sl_upstream_t *u)
{
    if (!u)
        return;
    /* The built-in client first, as before the split: its transfers hear "worker stopping"
     * while curl's are still running, so no exchange sees the two end in another order. */
    sl_h1_pool_close(u->h1);
    sl_multi_close(u->multi);
    sl_free(u);
}
