/* Admission (DESIGN §6): the limits that apply to one request — per key (its own rpm/tpm or
 * rate_limits.per_key), per user, per client IP — and the key's token budget, decided by the
 * process's limiter, or by Redis when it is configured and up (then the limits hold across
 * instances). The budget's worst case is reserved at admission (policy/budget.h), so parallel
 * requests cannot overspend it. Settled with the real usage when the exchange ends. */
#ifndef SL_POLICY_ADMIT_H
#define SL_POLICY_ADMIT_H
#include <stdbool.h>
#include <stdint.h>

#include "codec/canon.h"
#include "config/config.h"
#include "policy/budget.h"
#include "policy/ratelimit.h"
#include "policy/ratelimit_redis.h"

typedef struct sl_admit {
    sl_limit_t limits[3];
    size_t n;
    char ids[3][96];  /* a key id, a user id (longer ones are cut), an IP */
    int64_t estimate; /* tokens for the tpm buckets: prompt estimate + max_tokens */
    sl_redis_budget_t budget;
    char budget_id[48];
    char member[40]; /* this request's reservation id (Redis) */
    int64_t granted; /* budget tokens reserved, released at settle */
    bool taken;      /* admitted: settle at the end */
    bool via_redis;
    sl_redis_op_t *op; /* pending Redis decision */
    sl_limit_result_t result;
} sl_admit_t;

/* The process-wide state admission uses (the app's). */
typedef struct sl_admit_env {
    sl_limiter_t *limiter;
    sl_budgets_t *budgets;
    sl_redis_t *redis; /* the worker's; NULL without store.redis */
    int64_t now_ms;
} sl_admit_env_t;

/* What applies to this request. prompt_bytes: the size of the prompt's text; max_tokens: what
 * the client asked for (0: none, then cfg->budget_reserve is the budget's worst case). */
void sl_admit_prepare(sl_admit_t *a, const sl_config_t *cfg, const sl_chat_meta_t *m,
                      const char *client_ip, size_t prompt_bytes, int64_t max_tokens);
/* True when nothing limits the request (no limits, no budget): skip the rest. */
bool sl_admit_none(const sl_admit_t *a);
/* Decides now (returns 0, a->result set) or asks Redis (returns 1; cb runs later on the loop
 * with the decision — hand it to sl_admit_decided — unless sl_admit_cancel). A budget already
 * spent as far as the records know is refused at once. */
int sl_admit_take(sl_admit_t *a, const sl_admit_env_t *env, sl_redis_take_cb cb, void *ud);
/* Redis answered (err 0, res) or failed (err < 0: this process decides instead). */
void sl_admit_decided(sl_admit_t *a, const sl_admit_env_t *env, int err,
                      const sl_limit_result_t *res);
void sl_admit_cancel(sl_admit_t *a);
/* The exchange is over: give back or charge the difference to the estimate, release the
 * budget's reservation and charge actual to it. */
void sl_admit_settle(sl_admit_t *a, const sl_admit_env_t *env, int64_t actual);

#endif
