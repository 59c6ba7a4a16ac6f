/* Limits and budgets shared by several sluice instances (DESIGN §6, §8): each worker keeps one
 * hiredis async connection on its own loop (never blocking it) and makes every admission
 * decision with one atomic Lua script (EVALSHA, loaded with SCRIPT LOAD; NOSCRIPT → reload).
 * If Redis goes away, calls fail fast with SL_EUNAVAIL so the caller falls back to the local
 * limiter; the connection is retried with backoff (100 ms doubling to 5 s) and the state is
 * logged on each change. */
#ifndef SL_POLICY_RATELIMIT_REDIS_H
#define SL_POLICY_RATELIMIT_REDIS_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "core/err.h"
#include "policy/ratelimit.h"

typedef struct sl_redis sl_redis_t;
typedef struct sl_redis_op sl_redis_op_t;

/* url: redis://[[user]:password@]host[:port][/db]. Connects in the background (names are
 * resolved off the loop). NULL if url is malformed (logged, without the password). */
sl_redis_t *sl_redis_new(uv_loop_t *loop, const char *url);
/* Disconnects and closes its handles; callbacks still pending never run (their owners are gone
 * with the worker). Memory goes once the loop has run the close callbacks. */
void sl_redis_close(sl_redis_t *r);
bool sl_redis_up(const sl_redis_t *r);

/* A budget to check with the limits (policy/budget.h has the rule): the key's spent tokens
 * live at sluice:budget:<id>, its reservations at sluice:budres:<id> (sorted set, member
 * "<member>|<tokens>", expiring after 15 min if never settled) and their sum at
 * sluice:budsum:<id>. */
typedef struct sl_redis_budget {
    const char *id; /* NULL = no budget */
    int64_t budget_tokens;
    int64_t worst;      /* take: tokens to reserve */
    bool strict;        /* take: refused unless all of worst fits */
    int64_t floor;      /* take: spent as the usage records know it (rebuilds a lost counter) */
    const char *member; /* take: a unique id; settle: "<id>|<granted>" of the take, or NULL */
} sl_redis_budget_t;

/* Same decision as sl_limiter_take (all limits or none), plus the budget: refused as
 * sl_budgets_reserve refuses (result scope "budget"); res->budget_granted is what was reserved. cb
 * runs on the loop with err 0, or SL_EUNAVAIL if Redis failed meanwhile. Returns SL_EUNAVAIL at
 * once (cb never runs) while Redis is down. */
typedef void (*sl_redis_take_cb)(void *ud, int err, const sl_limit_result_t *res);
SL_MUST_CHECK int sl_redis_take(sl_redis_t *r, const sl_limit_t *limits, size_t n,
                                int64_t tokens_estimate, const sl_redis_budget_t *budget,
                                sl_redis_take_cb cb, void *ud, sl_redis_op_t **op);
/* The caller's client left: cb will not run. Only before cb ran (op is freed after it). */
void sl_redis_op_cancel(sl_redis_op_t *op);
/* Fire and forget: settle token buckets (actual - estimate), release the budget's reservation
 * (budget->member) and add actual to its spent tokens. */
void sl_redis_settle(sl_redis_t *r, const sl_limit_t *limits, size_t n, int64_t estimate,
                     int64_t actual, const sl_redis_budget_t *budget);

#endif
