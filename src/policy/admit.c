/* Per-request limits and budget. */
#include "policy/admit.h"

#include <stdio.h>
#include <string.h>

static void add(sl_admit_t *a, const char *scope, const char *id, sl_rate_cfg_t r)
{
    if ((!r.rpm && !r.tpm) || !id || !*id)
        return;
    snprintf(a->ids[a->n], sizeof a->ids[a->n], "%s", id);
    a->limits[a->n] = (sl_limit_t){.scope = scope, .id = a->ids[a->n], .rpm = r.rpm, .tpm = r.tpm};
    a->n++;
}

void sl_admit_prepare(sl_admit_t *a, const sl_config_t *cfg, const sl_chat_meta_t *m,
                      const char *client_ip, int64_t estimate)
{
    memset(a, 0, sizeof *a);
    a->estimate = estimate;
    if (m->key.present) {
        /* A key's own limits replace the per-key defaults, each separately. */
        sl_rate_cfg_t r = {m->key.rpm ? m->key.rpm : cfg->rl_key.rpm,
                           m->key.tpm ? m->key.tpm : cfg->rl_key.tpm};
        add(a, "key", m->key.id, r);
        if (m->key.budget_tokens) {
            snprintf(a->budget_id, sizeof a->budget_id, "%s", m->key.id);
            a->budget.id = a->budget_id;
            a->budget.budget_tokens = m->key.budget_tokens;
        }
    }
    add(a, "user", m->user_id, cfg->rl_user);
    add(a, "ip", client_ip, cfg->rl_ip);
}

bool sl_admit_none(const sl_admit_t *a)
{
    return a->n == 0 && !a->budget.id;
}

int sl_admit_take(sl_admit_t *a, sl_limiter_t *lim, sl_redis_t *redis, int64_t now_ms,
                  int64_t budget_spent, sl_redis_take_cb cb, void *ud)
{
    if (a->budget.id && budget_spent >= a->budget.budget_tokens) {
        a->result = (sl_limit_result_t){.allowed = false, .scope = "budget", .retry_after_s = -1};
        return 0;
    }
    if (redis && sl_redis_up(redis) &&
        sl_redis_take(redis, a->limits, a->n, a->estimate, &a->budget, cb, ud, &a->op) == 0) {
        a->via_redis = true;
        return 1;
    }
    /* No Redis, or it is down: this process's buckets decide (DESIGN §6). */
    sl_limiter_take(lim, a->limits, a->n, a->estimate, now_ms, &a->result);
    a->taken = a->result.allowed;
    return 0;
}

void sl_admit_cancel(sl_admit_t *a)
{
    if (a->op)
        sl_redis_op_cancel(a->op);
    a->op = NULL;
}

void sl_admit_settle(sl_admit_t *a, sl_limiter_t *lim, sl_redis_t *redis, int64_t actual,
                     int64_t now_ms)
{
    if (!a->taken)
        return;
    a->taken = false;
    /* Only token buckets and budgets care about the real count: a requests-only limit is
     * settled already (and with Redis this saves a round trip per request). */
    bool tokens = a->budget.id != NULL;
    for (size_t i = 0; i < a->n; i++)
        tokens |= a->limits[i].tpm > 0;
    if (!tokens || (actual == a->estimate && !a->budget.id)) /* a budget always adds actual */
        return;
    if (a->via_redis && redis)
        sl_redis_settle(redis, a->limits, a->n, a->estimate, actual, &a->budget);
    else
        sl_limiter_settle(lim, a->limits, a->n, a->estimate, actual, now_ms);
}
