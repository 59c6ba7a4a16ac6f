/* sl_closer: count what is still closing, free the owner after the last of it. */
#include "core/closer.h"

#include "core/err.h"

static void maybe_done(sl_closer_t *cl)
{
    if (!cl->finished || cl->holds || cl->done_run)
        return;
    cl->done_run = true;
    cl->done(cl->owner); /* cl is gone after this */
}

void sl_closer_init(sl_closer_t *cl, void (*done)(void *owner), void *owner)
{
    *cl = (sl_closer_t){.done = done, .owner = owner};
}

static void on_closed(uv_handle_t *h)
{
    sl_closer_release(h->data);
}

void sl_closer_close(sl_closer_t *cl, uv_handle_t *h)
{
    SL_ASSERT(!cl->done_run);
    if (uv_is_closing(h))
        return;
    h->data = cl;
    cl->holds++;
    uv_close(h, on_closed);
}

void sl_closer_hold(sl_closer_t *cl)
{
    SL_ASSERT(!cl->done_run);
    cl->holds++;
}

void sl_closer_release(sl_closer_t *cl)
{
    SL_ASSERT(cl->holds > 0);
    cl->holds--;
    maybe_done(cl);
}

void sl_closer_finish(sl_closer_t *cl)
{
    cl->finished = true;
    maybe_done(cl);
}
