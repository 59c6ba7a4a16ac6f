/* Attempts (DESIGN §5): the route's targets started in order through their circuit breakers,
 * retries with backoff, the stream → non-stream retry, fallback to the next target and the
 * fail-open pass, and the provider's sink, where the first answer event commits the exchange.
 * Every further attempt starts from the retry timer, never inside the failed provider's
 * callback. */
#include <string.h>

#include "core/alloc.h"
#include "core/err.h"
#include "core/log.h"
#include "net/conn.h"
#include "obs/metrics.h"
#include "relay/relay_int.h"

/* ---- circuit breakers (relay/breaker.h): one per target, shared by the process ---- */

static sl_breakers_t *breakers(const sl_relay_t *r)
{
    return r->x->breakers;
}

/* The target's upstream model: configured, or the client's name passing through. */
static const char *upstream_model(const sl_relay_t *r)
{
    return r->target->model ? r->target->model : r->req.model;
}

static void breaker_policy(const sl_provider_cfg_t *p, sl_breaker_policy_t *out)
{
    *out = (sl_breaker_policy_t){.failures = p->breaker_failures,
                                 .cooldown_ms = p->breaker_cooldown_ms,
                                 .max_cooldown_ms = p->breaker_max_cooldown_ms,
                                 .max_rate_limit_ms = p->breaker_max_rate_limit_ms};
}

/* Tells the current target's breaker how the attempt went; the probe, if it was one, is over. */
static void breaker_report(sl_relay_t *r, sl_breaker_outcome_t outcome, int retry_after,
                           const char *why)
{
    sl_breaker_policy_t p;
    breaker_policy(r->pcfg, &p);
    sl_breakers_report(breakers(r), r->pcfg->name, upstream_model(r), &p, outcome, retry_after,
                       r->probe, why, uv_now(&r->x->loop));
    r->probe = false;
}

void relay_abandon_probe(sl_relay_t *r)
{
    if (r->probe)
        breaker_report(r, SL_BREAKER_ABANDONED, -1, NULL);
}

/* What the upstream is to blame for: 5xx answers, connect/reset errors and timeouts (504).
 * Never a 4xx, and never the client's own abort (that never arrives as an event). */
static bool upstream_caused(const sl_error_info_t *e)
{
    return e->status == 0 || e->status >= 500;
}

/* ---- the provider's sink ---- */

static bool try_again(sl_relay_t *r, const sl_event_t *ev);
static bool has_next(const sl_relay_t *r);
static const char *next_provider(const sl_relay_t *r);
static void step(sl_relay_t *r);

/* Before the commit an error may still be replaced by another attempt; the first answer event
 * commits the exchange (STREAMING), and the breaker hears how the attempt went. */
static void on_event(void *ud, const sl_event_t *ev)
{
    sl_relay_t *r = ud;
    if (!r->committed) {
        if (ev->type == SL_EV_ERROR) {
            r->pstate = NULL; /* this attempt is over */
            if (try_again(r, ev))
                return; /* nothing reached the client: another attempt will answer */
        } else if (ev->type == SL_EV_DELTA || ev->type == SL_EV_FINISH || ev->type == SL_EV_END) {
            /* From here on a failure is reported, never replaced. */
            relay_set_state(r, SL_RELAY_STREAMING, "answering");
            /* No attempt will need the request again: a long stream need not keep it. */
            sl_chat_req_drop_json(&r->req);
            breaker_report(r, ev->type == SL_EV_END ? SL_BREAKER_SUCCEEDED : SL_BREAKER_ANSWERED,
                           -1, NULL);
        }
    } else if (ev->type == SL_EV_END) {
        breaker_report(r, SL_BREAKER_SUCCEEDED, -1, NULL);
    } else if (ev->type == SL_EV_ERROR && upstream_caused(&ev->error)) {
        /* A drop mid-answer still counts against the target. */
        breaker_report(r, SL_BREAKER_FAILED, -1, ev->error.code ? ev->error.code : "error");
    }
    relay_deliver(r, ev);
}

static bool is_congested(void *ud)
{
    sl_relay_t *r = ud;
    if (r->conn && sl_conn_queued(r->conn) > sl_conn_high_water(r->conn))
        r->paused = true;
    return r->paused;
}

/* ---- attempts and fallback (DESIGN §5) ---- */

static void on_retry(uv_timer_t *t);

static void note_attempt(sl_relay_t *r, const char *provider, int status, const char *why)
{
    sl_buf_t *b = &r->attempts;
    sl_buf_puts(b, b->len ? ",{\"provider\":\"" : "{\"provider\":\"");
    sl_buf_json_escape(b, provider, strlen(provider));
    sl_buf_puts(b, "\",\"status\":");
    sl_buf_put_i64(b, status);
    sl_buf_puts(b, ",\"ms\":");
    sl_buf_put_ms(b, r->t_attempt ? sl_now_ms() - r->t_attempt : 0.0);
    if (why) {
        sl_buf_puts(b, ",\"error\":\"");
        sl_buf_json_escape(b, why, strlen(why));
        sl_buf_putc(b, '"');
    }
    sl_buf_putc(b, '}');
}

static void keep_error(sl_relay_t *r, const sl_error_info_t *e)
{
    sl_free((char *)r->last_err.type);
    sl_free((char *)r->last_err.code);
    sl_free((char *)r->last_err.message);
    r->last_err = *e;
    r->last_err.type = e->type ? sl_strdup(e->type) : NULL;
    r->last_err.code = e->code ? sl_strdup(e->code) : NULL;
    r->last_err.message = sl_strdup(e->message ? e->message : "the upstream provider failed");
    r->last_err.param = NULL;
}

/* Exponential backoff with jitter (half fixed, half random), honouring Retry-After. */
static uint64_t backoff_ms(const sl_relay_t *r, int retry_after)
{
    static __thread uint64_t seed;
    if (!seed)
        seed = uv_hrtime() | 1;
    seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17; /* xorshift64 */
    uint64_t d = r->cfg->retry_backoff_ms << (r->tries < 16 ? r->tries : 16);
    if (d > r->cfg->retry_max_backoff_ms)
        d = r->cfg->retry_max_backoff_ms;
    d = d / 2 + (d ? seed % (d / 2 + 1) : 0);
    if (retry_after >= 0 && (uint64_t)retry_after * 1000 > d)
        d = (uint64_t)retry_after * 1000;
    return d;
}

/* The attempt failed before anything reached the client: retry this target, retry it without
 * streaming, or move to the next one. False when the error must go to the client. */
static bool try_again(sl_relay_t *r, const sl_event_t *ev)
{
    const sl_error_info_t *e = &ev->error;
    int st = e->status ? e->status : 502;
    bool retryable = st == 429 || st >= 500;
    const char *why = e->code ? e->code : e->message;
    note_attempt(r, r->pcfg->name, st, why);
    keep_error(r, e);
    if (st == 429)
        breaker_report(r, SL_BREAKER_LIMITED, e->retry_after, why);
    else if (upstream_caused(e))
        breaker_report(r, SL_BREAKER_FAILED, -1, why);
    else /* it answered: the upstream is up, the request was refused */
        breaker_report(r, SL_BREAKER_SUCCEEDED, -1, why);
    if (relay_gone(r) || !r->conn)
        return false;
    bool whole_instead = r->target->fallback_to_non_stream || r->req.fallback_to_non_stream;
    if (r->req.stream && whole_instead && !r->non_stream) {
        r->non_stream = true; /* seed 004: the same target, asked for a whole answer */
        r->nretries++;
        if (r->cfg->metrics)
            sl_metrics_retry(r->x->metrics, r->pcfg->name);
        relay_set_state(r, SL_RELAY_WAITING_RETRY, "retry without streaming");
        uv_timer_start(&r->retry, on_retry, 0, 0);
        return true;
    }
    if (!retryable)
        return false;
    bool too_long =
        e->retry_after >= 0 && (uint64_t)e->retry_after * 1000 > r->cfg->retry_max_after_ms;
    /* A 429 is the upstream asking for less traffic: another target answers sooner. */
    bool elsewhere = st == 429 && has_next(r);
    if (r->pass == 0 && r->tries < r->target->retries && !too_long && !elsewhere) {
        uint64_t delay = backoff_ms(r, e->retry_after);
        r->tries++;
        r->nretries++;
        if (r->cfg->metrics)
            sl_metrics_retry(r->x->metrics, r->pcfg->name);
        relay_set_state(r, SL_RELAY_WAITING_RETRY, "retry after backoff");
        uv_timer_start(&r->retry, on_retry, delay, 0);
        return true;
    }
    if (!has_next(r))
        return false;
    if (r->cfg->metrics)
        sl_metrics_fallback(r->x->metrics, r->pcfg->name, next_provider(r));
    step(r);
    r->nfallbacks++;
    relay_set_state(r, SL_RELAY_WAITING_RETRY, "fall back");
    uv_timer_start(&r->retry, on_retry, 0, 0); /* at once, but outside the provider's callback */
    return true;
}

/* The target in use from here on. */
static void use_target(sl_relay_t *r, size_t i)
{
    r->target = &r->route->targets[i];
    r->pcfg = &r->cfg->providers[r->target->provider];
    r->prov = sl_provider_ops_for(r->pcfg->type);
}

/* The breaker skipped target i: remember it for the fail-open pass. */
static void remember_skip(sl_relay_t *r, size_t i, const sl_breaker_check_t *chk)
{
    r->t_attempt = 0;
    note_attempt(r, r->pcfg->name, 503, chk->why);
    uint64_t at = chk->available_ms ? chk->available_ms : uv_now(&r->x->loop) + 1000;
    if (!r->available_ms || at < r->available_ms)
        r->available_ms = at;
    if (r->nskipped < SL_RELAY_SKIPPED_MAX && i <= UINT8_MAX) {
        r->skipped[r->nskipped] = (uint8_t)i;
        r->skipped_failed[r->nskipped++] = chk->last_failure_ms;
    }
}

/* Every target was tried or skipped and none answered: with retry.fail_open the skipped ones
 * are tried after all, least recently failed first (a breaker must never turn a blip into an
 * outage). False when there is nothing more to try. */
static bool begin_fail_open(sl_relay_t *r)
{
    if (r->pass != 0 || !r->nskipped || !r->cfg->fail_open || relay_gone(r) || !r->conn)
        return false;
    for (size_t i = 1; i < r->nskipped; i++) { /* insertion sort: a handful of targets */
        for (size_t j = i; j > 0 && r->skipped_failed[j - 1] > r->skipped_failed[j]; j--) {
            uint8_t t = r->skipped[j];
            uint64_t f = r->skipped_failed[j];
            r->skipped[j] = r->skipped[j - 1];
            r->skipped_failed[j] = r->skipped_failed[j - 1];
            r->skipped[j - 1] = t;
            r->skipped_failed[j - 1] = f;
        }
    }
    r->pass = 1;
    r->skipped_i = 0;
    const sl_target_cfg_t *t = &r->route->targets[r->skipped[0]];
    sl_log(SL_LOG_INFO,
           "every target of model '%.200s' is unavailable: trying %s anyway (fail open)",
           r->req.model, r->cfg->providers[t->provider].name);
    return true;
}

static bool has_next(const sl_relay_t *r)
{
    if (r->pass == 0)
        return r->target_i + 1 < r->route->ntargets || (r->cfg->fail_open && r->nskipped);
    return r->skipped_i + 1 < r->nskipped;
}

/* The provider the next attempt goes to, as far as is known now (for the fallback metric). */
static const char *next_provider(const sl_relay_t *r)
{
    size_t i = r->pass == 0 && r->target_i + 1 < r->route->ntargets ? r->target_i + 1
               : r->pass == 0                                       ? r->skipped[0]
                                                                    : r->skipped[r->skipped_i + 1];
    return r->cfg->providers[r->route->targets[i].provider].name;
}

/* Moves to the next target of the current pass. */
static void step(sl_relay_t *r)
{
    if (r->pass == 0)
        r->target_i++;
    else
        r->skipped_i++;
    r->tries = 0;
    r->non_stream = false;
}

/* Nothing answered: the client hears the last failure, or, when every target was skipped and
 * fail open is off, a 503 saying when one is available again. */
static void fail_unavailable(sl_relay_t *r)
{
    if (r->last_err.message) {
        sl_event_t ev = {.type = SL_EV_ERROR, .error = r->last_err};
        relay_deliver(r, &ev);
        return;
    }
    sl_event_t ev = {.type = SL_EV_ERROR};
    ev.error.status = 503;
    ev.error.type = "server_error";
    ev.error.code = "no_provider_available";
    ev.error.message = "every provider for this model is unavailable (circuit open)";
    uint64_t now = uv_now(&r->x->loop);
    uint64_t wait = r->available_ms > now ? r->available_ms - now : 0;
    ev.error.retry_after = r->nskipped ? (int)((wait + 999) / 1000) : -1;
    if (r->nskipped && ev.error.retry_after < 1)
        ev.error.retry_after = 1;
    relay_deliver(r, &ev);
}

/* Starts the current target: on the first pass skipping those whose breaker says so, on the
 * fail-open pass regardless. */
void relay_attempt(sl_relay_t *r)
{
    for (;;) {
        if (r->pass == 0 && r->target_i >= r->route->ntargets && !begin_fail_open(r))
            break;
        if (r->pass == 1 && r->skipped_i >= r->nskipped)
            break;
        size_t i = r->pass == 0 ? r->target_i : r->skipped[r->skipped_i];
        use_target(r, i);
        r->probe = false;
        if (r->pass == 0) {
            sl_breaker_policy_t p;
            sl_breaker_check_t chk;
            breaker_policy(r->pcfg, &p);
            sl_breakers_check(breakers(r), r->pcfg->name, upstream_model(r), &p,
                              uv_now(&r->x->loop), &chk);
            if (chk.verdict == SL_BREAKER_SKIP) {
                remember_skip(r, i, &chk);
                if (r->target_i + 1 < r->route->ntargets)
                    r->nfallbacks++;
                step(r);
                continue;
            }
            r->probe = chk.verdict == SL_BREAKER_PROBE;
        }
        sl_upstream_call_t call = {
            .loop = &r->x->loop,
            .upstream = r->x->upstream,
            .cfg = r->cfg,
            .provider = r->pcfg,
            .target = r->target,
            .req = &r->req,
            .request_id = sl_conn_request_id(r->conn),
            .want_raw = r->enc->raw_openai,
            .force_non_stream = r->non_stream,
            .sink = {.emit = on_event, .congested = is_congested, .ud = r},
        };
        if (r->state != SL_RELAY_ATTEMPTING) /* before start: the sink sees ATTEMPTING */
            relay_set_state(r, SL_RELAY_ATTEMPTING, r->pcfg->name);
        r->t_attempt = sl_now_ms();
        int rc = r->prov->start(&call, &r->pstate);
        r->req.raw = NULL; /* valid for the first start only (it may be the connection's bytes) */
        r->req.raw_len = 0;
        if (rc == 0)
            return;
        r->pstate = NULL;
        note_attempt(r, r->pcfg->name, 500, "could not start the upstream call");
        relay_abandon_probe(r);
        step(r);
    }
    fail_unavailable(r);
}

static void on_retry(uv_timer_t *t)
{
    sl_relay_t *r = t->data;
    if (r->conn && !relay_gone(r))
        relay_attempt(r);
}
