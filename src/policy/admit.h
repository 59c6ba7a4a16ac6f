/* Admission (DESIGN §6): the limits that apply to one request — per key (its own rpm/tpm or
 * rate_limits.per_key), per user, per client IP — and the key's token budget, decided by the
 * process's limiter, or by Redis when it is configured and up (then the limits hold across
 * instances). Settled with the real usage when the exchange ends. */
#ifndef SL_POLICY_ADMIT_H
#define SL_POLICY_ADMIT_H
#include <stdbool.h>
#include <stdint.h>

#include "codec/canon.h"
#include "config/config.h"
#include "policy/ratelimit.h"
#include "store/redis.h"

typedef struct sl_admit {
    sl_limit_t limits[3];
    size_t n;
    char ids[3][96]; /* a key id, a user id (longer ones are cut), an IP */
    int64_t estimate;
    sl_redis_budget_t budget;
    char budget_id[48];
    bool taken; /* tokens were taken: settle at the end */
    bool via_redis;
    sl_redis_op_t *op; /* pending Redis decision */
    sl_limit_result_t result;
} sl_admit_t;

/* What applies to this request; estimate is the token guess (prompt + max_tokens). */
void sl_admit_prepare(sl_admit_t *a, const sl_config_t *cfg, const sl_chat_meta_t *m,
                      const char *client_ip, int64_t estimate);
/* True when nothing limits the request (no limits, no budget): skip the rest. */
bool sl_admit_none(const sl_admit_t *a);
/* Decides now (returns 0, a->result set) or asks Redis (returns 1; cb runs later on the loop
 * with the decision, unless sl_admit_cancel). A budget already spent as far as the snapshot
 * knows is refused at once. */
int sl_admit_take(sl_admit_t *a, sl_limiter_t *lim, sl_redis_t *redis, int64_t now_ms,
                  int64_t budget_spent, sl_redis_take_cb cb, void *ud);
void sl_admit_cancel(sl_admit_t *a);
/* The exchange is over: give back or charge the difference to the estimate. */
void sl_admit_settle(sl_admit_t *a, sl_limiter_t *lim, sl_redis_t *redis, int64_t actual,
                     int64_t now_ms);

#endif
