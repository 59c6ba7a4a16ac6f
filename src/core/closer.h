/* The one deferred-free idiom: an object that owns libuv handles (or children that must end
 * first) is freed only after the last of them has closed, because libuv still touches a handle
 * until its close callback has run. The object embeds an sl_closer_t; every handle it owns is
 * closed through sl_closer_close, every child that must end first is held; sl_closer_finish says
 * the owner itself is done, and `done` runs exactly once, after finish and the last release. */
#ifndef SL_CORE_CLOSER_H
#define SL_CORE_CLOSER_H
#include <stdbool.h>
#include <uv.h>

typedef struct sl_closer {
    unsigned holds; /* handles closing + children alive */
    bool finished;  /* the owner called sl_closer_finish */
    bool done_run;
    void (*done)(void *owner); /* frees the owner */
    void *owner;
} sl_closer_t;

void sl_closer_init(sl_closer_t *cl, void (*done)(void *owner), void *owner);
/* Closes h once (a handle already closing is left alone) and holds cl until its callback. The
 * handle's data pointer is taken over: nothing else may read it after this call. */
void sl_closer_close(sl_closer_t *cl, uv_handle_t *h);
/* One more thing that must end before done runs / it ended. */
void sl_closer_hold(sl_closer_t *cl);
void sl_closer_release(sl_closer_t *cl);
/* The owner is done with itself: done runs now if nothing is held, else at the last release.
 * A second call is a no-op. */
void sl_closer_finish(sl_closer_t *cl);

#endif
