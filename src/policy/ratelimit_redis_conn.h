/* The Redis limiter's insides (internal to src/policy/ratelimit_redis*.c): the connection and
 * the ops in flight on it. ratelimit_redis.c owns the connection (hiredis on the worker's loop,
 * reconnects, the handshake that loads the script), ratelimit_redis_ops.c the take and settle
 * ops, ratelimit_redis_script.c the Lua script they run. */
#ifndef SL_POLICY_RATELIMIT_REDIS_CONN_H
#define SL_POLICY_RATELIMIT_REDIS_CONN_H
#include <hiredis/async.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "core/buf.h"
#include "core/closer.h"
#include "policy/ratelimit.h"
#include "policy/ratelimit_redis.h"

/* EVAL(SHA) script numkeys, a key per limit + 3 for a budget, 5 fixed values, rpm and tpm per
 * limit, 5 budget values. */
#define SL_REDIS_ARGC_MAX (3 + SL_LIMITS_MAX + 3 + 5 + 2 * SL_LIMITS_MAX + 5)

typedef enum {
    SL_REDIS_WAIT,
    SL_REDIS_RESOLVING,
    SL_REDIS_CONNECTING,
    SL_REDIS_UP,
    SL_REDIS_CLOSING
} sl_redis_state_t;

/* A name lookup in flight (ratelimit_redis.c). */
typedef struct sl_redis_resolve sl_redis_resolve_t;

struct sl_redis {
    uv_loop_t *loop; /* borrowed: the worker's, which outlives us */
    char *host;      /* owned */
    char *user;      /* owned; NULL without ACL user */
    char *pass;      /* owned; NULL without AUTH */
    char *where;     /* owned: "host:port", what the logs name (never the password) */
    int port, db;
    sl_redis_state_t state;
    bool warned;            /* a failure was logged since the last time we were up */
    bool reloading;         /* a SCRIPT LOAD is on its way after NOSCRIPT */
    char sha[41];           /* the script's, as SCRIPT LOAD answered */
    redisAsyncContext *ac;  /* weak: hiredis frees it; cleared by sl_redis_lost() */
    sl_redis_resolve_t *rq; /* weak: frees itself in on_resolved; cleared by sl_redis_lost() */
    uv_timer_t timer;       /* retries while down, watches while connecting or up */
    sl_closer_t closer;     /* frees r once the timer has closed */
    uint64_t attempt_ms;    /* when the current attempt started */
    uint64_t backoff_ms;    /* the next wait before retrying */
    sl_redis_op_t *oldest;  /* weak: ops in flight, oldest first (replies come in order) */
    sl_redis_op_t *newest;  /* weak */
};

struct sl_redis_op {
    sl_redis_t *r;                /* borrowed: hiredis hands every op back before r is freed */
    sl_redis_op_t *newer, *older; /* weak: r's in-flight list, from send to reply */
    sl_redis_take_cb cb;          /* NULL for a settle, or once cancelled */
    void *ud;                     /* borrowed: the caller's */
    uint64_t sent_ms;
    bool eval; /* re-sent as EVAL after NOSCRIPT */
    bool take; /* a take (answers a decision), not a settle */
    size_t n;  /* limits sent */
    int argc;  /* arguments after the command and the script */
    size_t off[SL_REDIS_ARGC_MAX], len[SL_REDIS_ARGC_MAX], scope_off[SL_LIMITS_MAX];
    sl_redis_budget_t budget; /* a take's budget, its strings in bid/member: released if the
                                 caller cancelled before the answer came */
    char bid[96], member[48];
    sl_buf_t args; /* owned: the arguments and the limits' scopes, each NUL-ended */
};

/* The script's source (NUL-ended) and its length without the NUL. */
extern const char sl_redis_script[];
extern const size_t sl_redis_script_len;

/* The connection is gone (hiredis frees the context itself): retry after the backoff. A no-op
 * while already waiting or closing. */
void sl_redis_lost(sl_redis_t *r, const char *why);
/* Queues SCRIPT LOAD on r's connection (r->ac must be set); its answer sets r->sha. */
SL_MUST_CHECK int sl_redis_load_script(sl_redis_t *r);

#endif
