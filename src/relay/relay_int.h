/* The relay's insides, shared by its parts and by nothing else (only the .c files of
 * src/relay include this): the exchange's struct, its lifecycle states, and the calls between
 * the parts. The parts call one way only, top to bottom:
 *   relay.c          start, admission, session history, routing; the connection's hooks
 *   relay_attempt.c  attempts: breakers, retries, fallback, the provider's sink
 *   relay_output.c   towards the dialect and the client: events, keepalive, sl_relay_* calls
 *   relay_finish.c   the exchange's end: access-log fields, usage record, metrics, settle
 *   relay_state.c    the lifecycle: legal state changes, logged */
#ifndef SL_RELAY_RELAY_INT_H
#define SL_RELAY_RELAY_INT_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "codec/canon.h"
#include "config/config.h"
#include "core/buf.h"
#include "core/closer.h"
#include "core/ctx.h"
#include "policy/admit.h"
#include "relay/breaker.h"
#include "relay/relay.h"
#include "store/store.h"
#include "upstream/provider.h"

/* Targets remembered for the fail-open pass (a route rarely has more than a few). */
#define SL_RELAY_SKIPPED_MAX 16

/* Where an exchange is in its life. Every change goes through relay_set_state, which asserts
 * it against the table in relay_state.c:
 *   ADMITTING → [LOADING_HISTORY →] ROUTING → ATTEMPTING ⇄ WAITING_RETRY, ATTEMPTING → STREAMING
 *   any of those → ENDING → ENDED: a terminal event (refusal, failure, answer) ends the response
 *   any that waits (not ROUTING, not ENDING) → GONE: the client left
 * ENDED and GONE are final: the exchange is released. */
typedef enum {
    SL_RELAY_ADMITTING,       /* limits and budget being decided (maybe a Redis round trip) */
    SL_RELAY_LOADING_HISTORY, /* the session's history is being read on the store thread */
    SL_RELAY_ROUTING,         /* admitted: routing, the dialect's begin, the breakers (no wait) */
    SL_RELAY_ATTEMPTING,      /* a provider call is in flight; nothing reached the dialect */
    SL_RELAY_WAITING_RETRY,   /* between attempts: the retry timer is armed */
    SL_RELAY_STREAMING,       /* committed: an answer event reached the dialect */
    SL_RELAY_ENDING,          /* a terminal event is with the dialect (finalized already) */
    SL_RELAY_ENDED,           /* the dialect ended the response */
    SL_RELAY_GONE,            /* the client left: cancelled, finalized with 499 */
    SL_RELAY_NSTATES
} sl_relay_state_t;

struct sl_relay {
    sl_conn_t *conn;  /* weak: cleared by on_gone when the client leaves */
    sl_ctx_t *x;      /* borrowed: the thread outlives every exchange on it */
    sl_config_t *cfg; /* owned ref: the config this exchange started with */
    const sl_dialect_enc_t *enc;
    void *enc_state; /* owned */
    sl_chat_req_t req;
    const sl_provider_ops_t *prov;
    void *pstate; /* the provider's; NULL once it ended or was cancelled */
    const sl_provider_cfg_t *pcfg;
    const sl_target_cfg_t *target;
    uv_timer_t keepalive;
    sl_relay_state_t state; /* written by relay_set_state only */

    /* Fallback (DESIGN §5): targets tried in order while nothing reached the client. */
    const sl_model_cfg_t *route; /* borrowed from cfg */
    size_t target_i;
    unsigned tries;  /* attempts made on the current target */
    bool non_stream; /* the current attempt is the stream → non-stream retry */
    /* The exchange has been STREAMING (relay_set_state sets it on the way in, never clears
     * it): failures are reported now, and the end charges what was answered. */
    bool committed;
    bool probe; /* the current attempt is its breaker's probe */
    /* Targets skipped by their breaker on the first pass, tried anyway on a second one when
     * every target was unavailable (retry.fail_open), least recently failed first. */
    unsigned pass; /* 0: the route's targets in order; 1: the skipped ones */
    size_t nskipped, skipped_i;
    uint8_t skipped[SL_RELAY_SKIPPED_MAX];
    uint64_t skipped_failed[SL_RELAY_SKIPPED_MAX]; /* when each last failed (0 never) */
    uint64_t available_ms; /* the soonest a skipped target is available again */
    double t_attempt;      /* sl_now_ms() when the current attempt started */
    uv_timer_t retry;      /* the next attempt, after a backoff (or at once, outside callbacks) */
    sl_closer_t closer;    /* frees r once both timers have closed */
    sl_buf_t attempts;     /* owned; JSON objects of the failed attempts, for the access log */
    unsigned nretries, nfallbacks;
    sl_error_info_t last_err; /* owned strings: the last failure, told if no target answers */

    sl_admit_t admit; /* the limits and budget this request was admitted under */
    char *model;      /* owned; the client's model name (req.model points here, not into the
                         body, which is released once an answer is committed) */
    sl_buf_t text;    /* owned; choice 0's answer, when the dialect does not pass bytes through */
    sl_store_op_t *load_op; /* session history being loaded; NULL otherwise */

    double t_start, t_first; /* sl_now_ms(): precise, for ttft */
    double t_last_write;     /* uv_now(): cheap, for the keepalive period */
    double t_last_token;     /* uv_now() of the last content event, for inter-token gaps */
    double gaps[8];          /* inter-token gaps not yet handed to the metrics (one lock per 8) */
    size_t ngaps;
    sl_usage_t usage;
    bool have_usage;
    int64_t content_events; /* for the estimate when the upstream reports no usage */
    size_t content_bytes;
    char finish[24];
    bool paused; /* the provider was told to wait: the client's output is above high water */
    int error_status;
};

/* The client left (on_gone): the exchange was cancelled. */
static inline bool relay_gone(const sl_relay_t *r)
{
    return r->state == SL_RELAY_GONE;
}

/* The process-wide state admission and settling use, as of the loop's clock. */
static inline void relay_admit_env(const sl_relay_t *r, sl_admit_env_t *env)
{
    *env = (sl_admit_env_t){.limiter = r->x->limiter,
                            .budgets = r->x->budgets,
                            .redis = r->x->redis,
                            .now_ms = (int64_t)uv_now(&r->x->loop)};
}

/* ---- relay_state.c ---- */

/* Moves r to state to; SL_ASSERTs the edge is legal and logs it at debug level with why. */
void relay_set_state(sl_relay_t *r, sl_relay_state_t to, const char *why);

/* ---- relay_attempt.c ---- */

/* Starts the current target (from ROUTING or WAITING_RETRY), falling back past those that
 * cannot start; when none can, the client hears why (ENDING). */
void relay_attempt(sl_relay_t *r);
/* The attempt in flight will not finish (client gone, shutdown): if it was its breaker's probe,
 * the breaker hears ABANDONED, so another request may probe. */
void relay_abandon_probe(sl_relay_t *r);

/* ---- relay_output.c ---- */

/* Hands an event to the dialect; a terminal one finalizes the exchange first (ENDING), must be
 * ended by the dialect (ENDED), and releases r. */
void relay_deliver(sl_relay_t *r, const sl_event_t *ev);
/* The keepalive timer's callback: an SSE comment on a silent stream. */
void relay_keepalive_cb(uv_timer_t *t);

/* ---- relay_finish.c ---- */

/* The usage so far: the upstream's numbers, or an estimate (*estimated) when it sent none. */
void relay_usage_now(const sl_relay_t *r, sl_usage_t *u, bool *estimated);
/* The exchange is over (ENDING or GONE): metrics, settle, access-log fields, usage record,
 * session write. Runs once; status is what the usage record says. */
void relay_finalize(sl_relay_t *r, int status);
/* Both ends are done with r: it is freed once its timers have closed. Idempotent. */
void relay_release(sl_relay_t *r);
/* The closer's callback: frees r and what it owns. */
void relay_free(void *owner);

#endif
