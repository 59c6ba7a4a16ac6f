/* Circuit breakers (DESIGN §5): one per target — provider + upstream model — shared by every
 * worker of the process, so the threshold means the same whichever thread a connection lands
 * on. Only failures the upstream caused count (5xx, connect/reset errors, first-byte and idle
 * timeouts): the caller says which outcome an attempt had, never a client abort or a 4xx.
 *
 *   closed    --`failures` upstream failures in a row-->  open (for `cooldown`)
 *   open      --cooldown over, next check-->             half-open: one probe per process
 *   half-open --the probe answers-->                      closed
 *   half-open --the probe fails-->                        open again, cooldown doubled (up to
 *                                                         max_cooldown)
 *   any       --an answer starts or a 4xx comes back-->   closed, count reset
 *
 * A 429 is not a failure: it puts the target into a cooldown of its Retry-After (bounded by
 * max_rate_limit; 1 s without one), after which it is simply available again. A target that is
 * open, cooling down or being probed by someone else is SKIPped; what to do when every target
 * of a route is skipped (fail open: try anyway) is the relay's decision, helped by
 * last_failure_ms. State changes are logged (old -> new, why) and counted for /metrics.
 * Thread-safe: one mutex over a small table (a few dozen ns a call; called a few times per
 * request, never per token). */
#ifndef SL_RELAY_BREAKER_H
#define SL_RELAY_BREAKER_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

typedef enum {
    SL_BREAKER_CLOSED = 0,
    SL_BREAKER_OPEN = 1,
    SL_BREAKER_HALF_OPEN = 2
} sl_breaker_state_t;

/* A provider's settings (providers.<name>.breaker in the config). */
typedef struct sl_breaker_policy {
    unsigned failures;          /* upstream failures in a row that open it; 0 = never opens */
    uint64_t cooldown_ms;       /* the first open period */
    uint64_t max_cooldown_ms;   /* a failed probe doubles the period up to this */
    uint64_t max_rate_limit_ms; /* a 429's Retry-After cooldown is capped at this */
} sl_breaker_policy_t;

typedef enum {
    SL_BREAKER_GO,    /* closed and not cooling down: try it */
    SL_BREAKER_PROBE, /* half-open and this caller is the probe: report its outcome */
    SL_BREAKER_SKIP,  /* open, cooling down after a 429, or someone else is probing */
} sl_breaker_verdict_t;

typedef struct sl_breaker_check {
    sl_breaker_verdict_t verdict;
    const char *why;          /* SKIP: "circuit_open", "probe_in_flight", "rate_limited" */
    uint64_t available_ms;    /* SKIP: when it may be tried again (0 = when the probe ends) */
    uint64_t last_failure_ms; /* 0 = never failed */
} sl_breaker_check_t;

typedef enum {
    SL_BREAKER_ANSWERED,  /* the answer started (committed): an open target closes */
    SL_BREAKER_SUCCEEDED, /* the answer ended cleanly, or the upstream refused with a 4xx */
    SL_BREAKER_FAILED,    /* an upstream-caused failure, before or after the answer started */
    SL_BREAKER_LIMITED,   /* a 429 (retry_after_s: its Retry-After, < 0 none) */
    SL_BREAKER_ABANDONED, /* the probe's client left, or the call never started */
} sl_breaker_outcome_t;

typedef struct sl_breakers sl_breakers_t;

/* At most this many targets are tracked; past it a target with nothing to remember (closed,
 * no failures) is forgotten, and if none is, new targets go untracked (always GO). Client
 * model names reach here on pass-through routes, so the table must stay bounded. */
#define SL_BREAKERS_MAX 512

sl_breakers_t *sl_breakers_new(void);
void sl_breakers_free(sl_breakers_t *b); /* NULL is a no-op */

/* May an attempt go to provider/model now? now_ms is monotonic (uv_now of any worker: they
 * share one clock). A PROBE answer must be followed by sl_breakers_report(..., probe = true). */
void sl_breakers_check(sl_breakers_t *b, const char *provider, const char *model,
                       const sl_breaker_policy_t *p, uint64_t now_ms, sl_breaker_check_t *out);
/* What an attempt ended with. probe: it was admitted as the probe. why: a short reason for
 * the log line when the state changes (e.g. the error code). */
void sl_breakers_report(sl_breakers_t *b, const char *provider, const char *model,
                        const sl_breaker_policy_t *p, sl_breaker_outcome_t outcome,
                        int retry_after_s, bool probe, const char *why, uint64_t now_ms);

/* The state of one target (for tests and the admin view); CLOSED when untracked. */
sl_breaker_state_t sl_breakers_state(sl_breakers_t *b, const char *provider, const char *model);

/* Prometheus text for the given providers: sluice_breaker_state{provider} (the worst state of
 * its targets: open, then half-open, then closed; one series per provider, 0 when untracked),
 * sluice_breaker_target_state{provider,model} for each target not closed, and
 * sluice_breaker_opened_total{provider}. */
void sl_breakers_render(sl_breakers_t *b, const char *const *providers, size_t n, sl_buf_t *out);

#endif
