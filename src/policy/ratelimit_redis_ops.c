/* The Redis limiter's operations: take (an admission decision, with a budget reservation) and
 * settle (the correction once usage is known), each one call of the script with its arguments
 * built here, sent on the connection of ratelimit_redis.c, its answer read back in order. */
#include "policy/ratelimit_redis.h"

#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/log.h"
#include "policy/ratelimit_redis_conn.h"

/* Elements of the take script's answer (ratelimit_redis_script.c says what each one is). */
#define TAKE_REPLY_LEN 13
/* A reservation whose holder never settles (the instance died) is dropped after this. */
#define BUDGET_HOLD_MS (15 * 60 * 1000)

/* ---- operations ---- */

static void link_op(sl_redis_t *r, sl_redis_op_t *op)
{
    op->sent_ms = uv_now(r->loop);
    op->older = r->newest;
    op->newer = NULL;
    *(r->newest ? &r->newest->newer : &r->oldest) = op;
    r->newest = op;
}

static void unlink_op(sl_redis_t *r, sl_redis_op_t *op)
{
    *(op->newer ? &op->newer->older : &r->newest) = op->older;
    *(op->older ? &op->older->newer : &r->oldest) = op->newer;
}

/* op is not in flight: never sent, or its reply came. */
static void op_free(sl_redis_op_t *op)
{
    sl_buf_dispose(&op->args);
    sl_free(op);
}

static void arg_begin(sl_redis_op_t *op)
{
    SL_ASSERT(op->argc < SL_REDIS_ARGC_MAX);
    op->off[op->argc] = op->args.len;
}

static void arg_end(sl_redis_op_t *op)
{
    op->len[op->argc] = op->args.len - op->off[op->argc];
    op->argc++;
    sl_buf_putc(&op->args, '\0'); /* ends the argument, so it reads as a C string too */
}

#define ADD_ARG(op, ...) (arg_begin(op), sl_buf_printf(&(op)->args, __VA_ARGS__), arg_end(op))

static int64_t clamp_rate(int64_t v)
{
    return v < 0 ? 0 : v > SL_LIMIT_RATE_MAX ? SL_LIMIT_RATE_MAX : v;
}

/* The script's arguments for these limits (those limiting nothing are left out, as the local
 * limiter does); the budget key only when there is a budget. */
static sl_redis_op_t *op_new(sl_redis_t *r, const sl_limit_t *limits, size_t n, const char *mode,
                             int64_t estimate, int64_t actual, const sl_redis_budget_t *budget)
{
    sl_redis_op_t *op = sl_calloc(1, sizeof *op);
    op->r = r;
    sl_buf_init(&op->args);
    const sl_limit_t *use[SL_LIMITS_MAX];
    size_t m = 0;
    SL_ASSERT(n <= SL_LIMITS_MAX); /* checked by the callers */
    for (size_t i = 0; i < n; i++) {
        if (clamp_rate(limits[i].rpm) > 0 || clamp_rate(limits[i].tpm) > 0)
            use[m++] = &limits[i];
    }
    op->n = m;
    bool has_budget = budget && budget->id && budget->budget_tokens > 0;
    ADD_ARG(op, "%zu", m + (has_budget ? 3 : 0));
    for (size_t i = 0; i < m; i++) {
        ADD_ARG(op, "sluice:rl:%s:%s", use[i]->scope, use[i]->id);
        op->scope_off[i] = op->args.len; /* not an argument: the answer names it */
        sl_buf_append(&op->args, use[i]->scope, strlen(use[i]->scope) + 1);
    }
    if (has_budget) {
        ADD_ARG(op, "sluice:budget:%s", budget->id);
        ADD_ARG(op, "sluice:budres:%s", budget->id);
        ADD_ARG(op, "sluice:budsum:%s", budget->id);
    }
    ADD_ARG(op, "%s", mode);
    ADD_ARG(op, "%zu", m);
    ADD_ARG(op, "%" PRId64, estimate);
    ADD_ARG(op, "%" PRId64, actual);
    ADD_ARG(op, "%" PRId64, has_budget ? budget->budget_tokens : 0);
    for (size_t i = 0; i < m; i++) {
        ADD_ARG(op, "%" PRId64, clamp_rate(use[i]->rpm));
        ADD_ARG(op, "%" PRId64, clamp_rate(use[i]->tpm));
    }
    if (has_budget) {
        ADD_ARG(op, "%" PRId64, budget->worst);
        ADD_ARG(op, "%d", budget->strict ? 1 : 0);
        ADD_ARG(op, "%s", budget->member ? budget->member : "");
        ADD_ARG(op, "%d", BUDGET_HOLD_MS);
        ADD_ARG(op, "%" PRId64, budget->floor > 0 ? budget->floor : 0);
        op->budget = *budget;
        (void)snprintf(op->bid, sizeof op->bid, "%s", budget->id);
        (void)snprintf(op->member, sizeof op->member, "%s", budget->member ? budget->member : "");
        op->budget.id = op->bid;
        op->budget.member = op->member;
    }
    return op;
}

static void on_op_reply(redisAsyncContext *ac, void *reply, void *priv);

SL_MUST_CHECK static int send_op(sl_redis_t *r, sl_redis_op_t *op)
{
    if (r->state != SL_REDIS_UP || !r->ac)
        return SL_EUNAVAIL;
    const char *argv[SL_REDIS_ARGC_MAX + 2];
    size_t lens[SL_REDIS_ARGC_MAX + 2];
    argv[0] = op->eval ? "EVAL" : "EVALSHA";
    argv[1] = op->eval ? sl_redis_script : r->sha;
    lens[0] = strlen(argv[0]);
    lens[1] = op->eval ? sl_redis_script_len : 40;
    for (int i = 0; i < op->argc; i++) {
        argv[i + 2] = op->args.data + op->off[i];
        lens[i + 2] = op->len[i];
    }
    /* hiredis copies the arguments into its output buffer; ours stay for a NOSCRIPT retry. */
    if (redisAsyncCommandArgv(r->ac, on_op_reply, op, op->argc + 2, argv, lens) != REDIS_OK)
        return SL_EUNAVAIL;
    link_op(r, op);
    return 0;
}

/* Reads the take script's answer; SL_EUNAVAIL if it is not what the script returns. */
SL_MUST_CHECK static int parse_take(const sl_redis_op_t *op, const redisReply *reply,
                                    sl_limit_result_t *res)
{
    long long v[TAKE_REPLY_LEN];
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != TAKE_REPLY_LEN)
        return SL_EUNAVAIL;
    for (size_t i = 0; i < TAKE_REPLY_LEN; i++) {
        if (reply->element[i]->type != REDIS_REPLY_INTEGER)
            return SL_EUNAVAIL;
        v[i] = reply->element[i]->integer;
    }
    long long n = (long long)op->n;
    if (v[1] < -1 || v[1] > n || v[3] < 0 || v[3] > n || v[7] < 0 || v[7] > n)
        return SL_EUNAVAIL;
    *res = (sl_limit_result_t){.allowed = v[0] == 1,
                               .retry_after_s = (int)((v[2] + 999) / 1000),
                               .limit_requests = v[4],
                               .remaining_requests = v[5],
                               .reset_requests_ms = v[6],
                               .limit_tokens = v[8],
                               .remaining_tokens = v[9],
                               .reset_tokens_ms = v[10],
                               .budget_granted = v[11],
                               .budget_left = v[12]};
    long long at = v[1] ? v[1] : v[3] ? v[3] : v[7];
    res->scope = at == -1 ? "budget" : at > 0 ? op->args.data + op->scope_off[at - 1] : NULL;
    return 0;
}

/* Runs the caller's callback, unless it cancelled or r is closing, then frees op. */
static void finish(sl_redis_op_t *op, int err, const redisReply *reply)
{
    sl_limit_result_t res;
    if (!err && reply->type == REDIS_REPLY_ERROR) {
        sl_log(SL_LOG_ERROR, "redis %s: script failed: %s", op->r->where, reply->str);
        err = SL_EUNAVAIL;
    }
    if (op->cb && !err && parse_take(op, reply, &res) != 0) {
        sl_log(SL_LOG_ERROR, "redis %s: unexpected answer to a take", op->r->where);
        err = SL_EUNAVAIL;
    }
    if (op->cb && op->r->state != SL_REDIS_CLOSING) {
        op->cb(op->ud, err, err ? NULL : &res);
    } else if (op->take && !op->cb && op->budget.id && !err && op->r->state == SL_REDIS_UP &&
               parse_take(op, reply, &res) == 0 && res.allowed && res.budget_granted > 0) {
        /* The caller left before the answer: give its reservation back now, not in 15 min. */
        char member[80];
        (void)snprintf(member, sizeof member, "%s|%" PRId64, op->member, res.budget_granted);
        sl_redis_budget_t b = op->budget;
        b.member = member;
        sl_redis_settle(op->r, NULL, 0, 0, 0, &b);
    }
    op_free(op);
}

static void on_op_reply(redisAsyncContext *ac, void *reply_, void *priv)
{
    redisReply *reply = reply_;
    sl_redis_op_t *op = priv;
    sl_redis_t *r = op->r;
    unlink_op(r, op);
    if (!reply) {
        /* First, so a callback asking again hears SL_EUNAVAIL. */
        sl_redis_lost(r, ac->err ? ac->errstr : "connection lost");
        finish(op, SL_EUNAVAIL, NULL);
        return;
    }
    /* The script cache was flushed (SCRIPT FLUSH, a restart behind a proxy, a failover):
     * send this one with its source, and load it again for the next ones. */
    if (reply->type == REDIS_REPLY_ERROR && !op->eval && strncmp(reply->str, "NOSCRIPT", 8) == 0) {
        sl_log(SL_LOG_INFO, "redis %s: script cache flushed; loading the script again", r->where);
        op->eval = true;
        if (!r->reloading && sl_redis_load_script(r) != 0)
            sl_log(SL_LOG_WARN, "redis %s: cannot queue SCRIPT LOAD", r->where);
        if (send_op(r, op) != 0)
            finish(op, SL_EUNAVAIL, NULL);
        return;
    }
    finish(op, 0, reply);
}

int sl_redis_take(sl_redis_t *r, const sl_limit_t *limits, size_t n, int64_t tokens_estimate,
                  const sl_redis_budget_t *budget, sl_redis_take_cb cb, void *ud,
                  sl_redis_op_t **op)
{
    if (op)
        *op = NULL;
    if (n > SL_LIMITS_MAX)
        return SL_EINVAL;
    if (!sl_redis_up(r))
        return SL_EUNAVAIL;
    sl_redis_op_t *o = op_new(r, limits, n, "take", tokens_estimate, 0, budget);
    o->take = true;
    o->cb = cb;
    o->ud = ud;
    int err = send_op(r, o);
    if (err) {
        op_free(o);
        return err;
    }
    if (op)
        *op = o;
    return 0;
}

void sl_redis_op_cancel(sl_redis_op_t *op)
{
    if (!op)
        return;
    op->cb = NULL; /* hiredis still holds op; it goes when the reply (or the end) comes */
    op->ud = NULL;
}

void sl_redis_settle(sl_redis_t *r, const sl_limit_t *limits, size_t n, int64_t estimate,
                     int64_t actual, const sl_redis_budget_t *budget)
{
    if (n > SL_LIMITS_MAX || !sl_redis_up(r)) {
        /* Usage still reaches the store; only the shared buckets miss this correction. */
        sl_log(SL_LOG_DEBUG, "redis: settle dropped while Redis is unavailable");
        return;
    }
    sl_redis_op_t *o = op_new(r, limits, n, "settle", estimate, actual, budget);
    if (send_op(r, o) != 0)
        op_free(o);
}
