/* Per-request limits and budget. */
#include "policy/admit.h"

#include <stdio.h>
#include <string.h>

#include "core/id.h"

static void add(sl_admit_t *a, const char *scope, const char *id, sl_rate_cfg_t r)
{
    if ((!r.rpm && !r.tpm) || !id || !*id)
        return;
    snprintf(a->ids[a->n], sizeof a->ids[a->n], "%s", id);
    a->limits[a->n] = (sl_limit_t){.scope = scope, .id = a->ids[a->n], .rpm = r.rpm, .tpm = r.tpm};
    a->n++;
}

static int64_t sat_add(int64_t a, int64_t b)
{
    return b > 0 && a > INT64_MAX - b ? INT64_MAX : a + b;
}

/* An upper estimate of a prompt's tokens for the budget: a token rarely covers fewer than 3
 * bytes of text (CJK runs about one a character), plus the per-message framing every provider
 * bills. Overestimating only reserves more; the real count is what gets charged. */
static int64_t prompt_upper(size_t bytes)
{
    return (int64_t)(bytes / 3) + 8;
}

void sl_admit_prepare(sl_admit_t *a, const sl_config_t *cfg, const sl_chat_meta_t *m,
                      const char *client_ip, size_t prompt_bytes, int64_t max_tokens)
{
    memset(a, 0, sizeof *a);
    if (max_tokens < 0)
        max_tokens = 0;
    a->estimate = sat_add((int64_t)(prompt_bytes + 3) / 4, max_tokens);
    if (m->key.present) {
        /* A key's own limits replace the per-key defaults, each separately. */
        sl_rate_cfg_t r = {m->key.rpm ? m->key.rpm : cfg->rl_key.rpm,
                           m->key.tpm ? m->key.tpm : cfg->rl_key.tpm};
        add(a, "key", m->key.id, r);
        if (m->key.budget_tokens) {
            snprintf(a->budget_id, sizeof a->budget_id, "%s", m->key.id);
            a->budget.id = a->budget_id;
            a->budget.budget_tokens = m->key.budget_tokens;
            a->budget.worst =
                sat_add(prompt_upper(prompt_bytes), max_tokens ? max_tokens : cfg->budget_reserve);
            a->budget.strict = max_tokens > 0;
            a->budget.floor = m->key.budget_spent > 0 ? m->key.budget_spent : 0;
        }
    }
    add(a, "user", m->user_id, cfg->rl_user);
    add(a, "ip", client_ip, cfg->rl_ip);
}

bool sl_admit_none(const sl_admit_t *a)
{
    return a->n == 0 && !a->budget.id;
}

static void refuse_budget(sl_admit_t *a, int64_t left)
{
    a->result = (sl_limit_result_t){
        .allowed = false, .scope = "budget", .retry_after_s = -1, .budget_left = left};
}

/* This process decides: the budget's reservation first (it can be given back exactly), then
 * the token buckets; a refusal by the buckets releases the reservation. */
static void take_local(sl_admit_t *a, const sl_admit_env_t *env)
{
    a->via_redis = false;
    a->granted = 0;
    if (a->budget.id) {
        sl_budget_grant_t g;
        sl_budgets_reserve(env->budgets, a->budget.id, a->budget.budget_tokens, a->budget.floor,
                           a->budget.worst, a->budget.strict, &g);
        if (!g.allowed) {
            refuse_budget(a, g.left);
            return;
        }
        a->granted = g.granted;
    }
    sl_limiter_take(env->limiter, a->limits, a->n, a->estimate, env->now_ms, &a->result);
    a->taken = a->result.allowed;
    if (!a->taken && a->granted) {
        sl_budgets_settle(env->budgets, a->budget.id, a->granted, 0);
        a->granted = 0;
    }
}

int sl_admit_take(sl_admit_t *a, const sl_admit_env_t *env, sl_redis_take_cb cb, void *ud)
{
    if (a->budget.id && a->budget.floor >= a->budget.budget_tokens) {
        refuse_budget(a, a->budget.budget_tokens - a->budget.floor);
        return 0;
    }
    if (a->budget.id) {
        sl_random_id(a->member, sizeof a->member, "r");
        a->budget.member = a->member;
    }
    if (env->redis && sl_redis_up(env->redis) &&
        sl_redis_take(env->redis, a->limits, a->n, a->estimate, &a->budget, cb, ud, &a->op) == 0) {
        a->via_redis = true;
        return 1;
    }
    /* No Redis, or it is down: this process's buckets and ledger decide (DESIGN §6). */
    take_local(a, env);
    return 0;
}

void sl_admit_decided(sl_admit_t *a, const sl_admit_env_t *env, int err,
                      const sl_limit_result_t *res)
{
    a->op = NULL;
    if (err != 0) {
        take_local(a, env); /* Redis failed mid-decision */
        return;
    }
    a->result = *res;
    a->taken = res->allowed;
    a->granted = res->allowed ? res->budget_granted : 0;
}

void sl_admit_cancel(sl_admit_t *a)
{
    if (a->op)
        sl_redis_op_cancel(a->op); /* a reservation it made is released when the answer comes */
    a->op = NULL;
}

void sl_admit_settle(sl_admit_t *a, const sl_admit_env_t *env, int64_t actual)
{
    if (!a->taken)
        return;
    a->taken = false;
    if (actual < 0)
        actual = 0;
    /* Only token buckets and budgets care about the real count: a requests-only limit is
     * settled already (and with Redis this saves a round trip per request). */
    bool tpm = false;
    for (size_t i = 0; i < a->n; i++)
        tpm |= a->limits[i].tpm > 0;
    if (!a->budget.id && (!tpm || actual == a->estimate)) /* a budget always settles */
        return;
    if (a->via_redis && env->redis) {
        char member[80] = "";
        if (a->granted > 0)
            snprintf(member, sizeof member, "%s|%lld", a->member, (long long)a->granted);
        a->budget.member = member;
        sl_redis_settle(env->redis, a->limits, a->n, a->estimate, actual, &a->budget);
        a->budget.member = a->member;
        return;
    }
    if (tpm && actual != a->estimate)
        sl_limiter_settle(env->limiter, a->limits, a->n, a->estimate, actual, env->now_ms);
    if (a->budget.id)
        sl_budgets_settle(env->budgets, a->budget.id, a->granted, actual);
    a->granted = 0;
}
