/* Rate limits (DESIGN §6): token buckets for requests/minute and tokens/minute, per key, per
 * user and per client IP. One limiter per process, shared by the workers (striped mutexes: a
 * few hundred nanoseconds per check); with Redis configured the same decision is made by one
 * atomic Lua script there instead, so limits hold across instances (policy/ratelimit_redis.c), and
 * this limiter is the fallback while Redis is away. Pure arithmetic + a table: no I/O. */
#ifndef SL_POLICY_RATELIMIT_H
#define SL_POLICY_RATELIMIT_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One bucket pair to check: scope ("key", "user", "ip") + id; limits 0 = unlimited. */
typedef struct sl_limit {
    const char *scope;
    const char *id;
    int64_t rpm, tpm;
} sl_limit_t;

/* What a check answers: allowed or not, and what the x-ratelimit-* headers show (of the
 * tightest scope). */
typedef struct sl_limit_result {
    bool allowed;
    const char *scope; /* the scope that refused, or the tightest one; NULL if none limits */
    int retry_after_s; /* when refused */
    int64_t limit_requests, remaining_requests, reset_requests_ms;
    int64_t limit_tokens, remaining_tokens, reset_tokens_ms;
    int64_t budget_granted; /* tokens of the key's budget reserved (policy/budget.h) */
    int64_t budget_left;    /* when refused for the budget: what was left of it */
} sl_limit_result_t;

typedef struct sl_limiter sl_limiter_t;

/* At most this many limits per check (key, user, ip and room to spare). */
#define SL_LIMITS_MAX 8
/* Larger rpm/tpm count as this (it keeps the bucket arithmetic exact, here and in Redis). */
#define SL_LIMIT_RATE_MAX 10000000000LL
/* The limiter holds at most this many buckets; past it the least recently used goes. */
#define SL_LIMITER_MAX_BUCKETS (1 << 18)

sl_limiter_t *sl_limiter_new(void);
void sl_limiter_free(sl_limiter_t *l);
/* Checks every limit and, only if all allow, takes 1 request and tokens_estimate tokens from
 * each (all or nothing). Buckets start full: capacity rpm (tpm), refilled continuously at
 * rpm/60 (tpm/60) per second. now_ms is monotonic. */
void sl_limiter_take(sl_limiter_t *l, const sl_limit_t *limits, size_t n, int64_t tokens_estimate,
                     int64_t now_ms, sl_limit_result_t *out);
/* When the real usage is known: gives back (or takes more of) the difference between the
 * estimate and the actual tokens, for each limit. */
void sl_limiter_settle(sl_limiter_t *l, const sl_limit_t *limits, size_t n, int64_t estimate,
                       int64_t actual, int64_t now_ms);
/* Buckets held now (idle ones go two minutes after their last use): for metrics and tests. */
size_t sl_limiter_size(sl_limiter_t *l);
/* Appends the x-ratelimit-* headers for r ("Name: value\r\n" lines). */
struct sl_buf;
void sl_limit_headers(const sl_limit_result_t *r, struct sl_buf *out);

#endif
