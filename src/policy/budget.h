/* Token budgets that hold under concurrency (DESIGN §6): a request reserves its worst case at
 * admission — prompt estimate + max_tokens, or a default when it sent none — atomically, and
 * settles to its real usage at the end (a failure settles to what it used, often 0). One ledger
 * per process, shared by the workers (one mutex: budgets are checked once per request, never
 * per token); with Redis the same rule runs in the shared Lua script (policy/ratelimit_redis.c) and
 * this ledger is the fallback while Redis is away.
 *
 * Spent tokens come from two places: the store's running total of the key's usage records
 * (`floor`, refreshed every 500 ms and shared by every instance on one database) and what this
 * process settled since. The ledger keeps the larger of the two, so it is never behind the
 * records and never counts a request twice. Pure bookkeeping: no I/O. */
#ifndef SL_POLICY_BUDGET_H
#define SL_POLICY_BUDGET_H
#include <stdbool.h>
#include <stdint.h>

typedef struct sl_budgets sl_budgets_t;

/* The ledger forgets idle keys (nothing reserved) past this many; the floor restores them. */
#define SL_BUDGETS_MAX 65536

sl_budgets_t *sl_budgets_new(void);
void sl_budgets_free(sl_budgets_t *b); /* NULL is a no-op */

/* What a reservation answered. */
typedef struct sl_budget_grant {
    bool allowed;
    int64_t granted; /* tokens reserved: settle them with sl_budgets_settle */
    int64_t left;    /* budget - spent - reserved before this request */
} sl_budget_grant_t;

/* Reserves worst tokens of key id's budget. strict (the client sent max_tokens): refused unless
 * the whole worst case fits. Not strict: refused only when nothing is left, and then reserves
 * at most what is left, so parallel requests without max_tokens cannot all pass on the same
 * remainder. floor: spent tokens as the usage records know them. */
void sl_budgets_reserve(sl_budgets_t *b, const char *id, int64_t budget, int64_t floor,
                        int64_t worst, bool strict, sl_budget_grant_t *out);
/* The request is over: release granted, charge actual. */
void sl_budgets_settle(sl_budgets_t *b, const char *id, int64_t granted, int64_t actual);
/* For tests: spent and reserved as the ledger has them (0, 0 when unknown). */
void sl_budgets_peek(sl_budgets_t *b, const char *id, int64_t *spent, int64_t *reserved);

#endif
