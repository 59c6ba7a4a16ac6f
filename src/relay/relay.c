/* One chat exchange: route → provider → events → dialect → connection. */
#include "relay/relay.h"

#include <inttypes.h>
#include <string.h>

#include "core/alloc.h"
#include "core/ctx.h"
#include "core/id.h"
#include "core/log.h"
#include "core/tokens.h"
#include "net/conn.h"
#include "obs/metrics.h"
#include "policy/admit.h"
#include "policy/ratelimit_redis.h"
#include "relay/breaker.h"
#include "store/keys.h"
#include "store/store.h"
#include "upstream/provider.h"

/* Targets remembered for the fail-open pass (a route rarely has more than a few). */
#define SKIPPED_MAX 16

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
    sl_buf_t scratch;

    /* Fallback (DESIGN §5): targets tried in order while nothing reached the client. */
    const sl_model_cfg_t *route; /* borrowed from cfg */
    size_t target_i;
    unsigned tries;  /* attempts made on the current target */
    bool non_stream; /* the current attempt is the stream → non-stream retry */
    bool committed;  /* an answer event reached the dialect: failures are reported now */
    bool probe;      /* the current attempt is its breaker's probe */
    /* Targets skipped by their breaker on the first pass, tried anyway on a second one when
     * every target was unavailable (retry.fail_open), least recently failed first. */
    unsigned pass; /* 0: the route's targets in order; 1: the skipped ones */
    size_t nskipped, skipped_i;
    uint8_t skipped[SKIPPED_MAX];
    uint64_t skipped_failed[SKIPPED_MAX]; /* when each last failed (0 never) */
    uint64_t available_ms;                /* the soonest a skipped target is available again */
    double t_attempt;                     /* sl_now_ms() when the current attempt started */
    uv_timer_t retry;  /* the next attempt, after a backoff (or at once, outside callbacks) */
    int closes;        /* uv handles still to be closed before free */
    sl_buf_t attempts; /* owned; JSON objects of the failed attempts, for the access log */
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
    double gaps[32];         /* inter-token gaps not yet handed to the metrics shard */
    size_t ngaps;
    sl_usage_t usage;
    bool have_usage;
    int64_t content_events; /* for the estimate when the upstream reports no usage */
    size_t content_bytes;
    char finish[24];
    bool ended, paused, cancelled;
    int error_status;
};

static const sl_conn_hooks_t hooks;

static void admit_env(const sl_relay_t *r, sl_admit_env_t *env)
{
    *env = (sl_admit_env_t){.limiter = r->x->limiter,
                            .budgets = r->x->budgets,
                            .redis = r->x->redis,
                            .now_ms = (int64_t)uv_now(&r->x->loop)};
}

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

/* What the upstream is to blame for: 5xx answers, connect/reset errors and timeouts (504).
 * Never a 4xx, and never the client's own abort (that never arrives as an event). */
static bool upstream_caused(const sl_error_info_t *e)
{
    return e->status == 0 || e->status >= 500;
}

static void free_relay(uv_handle_t *h)
{
    sl_relay_t *r = h->data;
    if (--r->closes > 0)
        return;
    sl_buf_dispose(&r->attempts);
    sl_free((char *)r->last_err.type);
    sl_free((char *)r->last_err.code);
    sl_free((char *)r->last_err.message);
    if (r->enc->dispose)
        r->enc->dispose(r->enc_state);
    sl_free(r->enc_state);
    sl_chat_req_dispose(&r->req);
    sl_free(r->model);
    sl_buf_dispose(&r->scratch);
    sl_buf_dispose(&r->text);
    sl_config_unref(r->cfg);
    sl_free(r);
}

/* Both ends are done with r (the provider ended or was cancelled, and the response ended or the
 * client left): release it once the timer has closed. */
static void release(sl_relay_t *r)
{
    uv_timer_stop(&r->keepalive);
    uv_timer_stop(&r->retry);
    if (!uv_is_closing((uv_handle_t *)&r->keepalive)) {
        uv_close((uv_handle_t *)&r->keepalive, free_relay);
        uv_close((uv_handle_t *)&r->retry, free_relay);
    }
}

static void usage_now(const sl_relay_t *r, sl_usage_t *u, bool *estimated)
{
    *u = r->usage;
    *estimated = !r->have_usage;
    if (*estimated) {
        /* Roughly one token per streamed delta, or per 4 bytes of text (DESIGN §3.8). */
        u->prompt = (int64_t)(r->req.prompt_bytes + 3) / 4;
        u->completion = r->content_bytes ? (int64_t)(r->content_bytes + 3) / 4 : r->content_events;
        u->cached = -1;
    }
}

static void log_fields(sl_relay_t *r, sl_buf_t *b, const sl_usage_t *u, bool estimated, int status)
{
    /* The usage record's status: the HTTP status, or the error's once the answer failed after
     * its head went out (499: the client left). The line's "status" stays what was sent. */
    sl_buf_puts(b, ",\"final_status\":");
    sl_buf_put_i64(b, status);
    sl_buf_puts(b, ",\"dialect\":\"");
    sl_buf_puts(b, r->enc->name);
    sl_buf_puts(b, "\",\"model\":\"");
    sl_buf_json_escape(b, r->req.model, strlen(r->req.model));
    sl_buf_puts(b, "\",\"provider\":\"");
    if (r->pcfg)
        sl_buf_json_escape(b, r->pcfg->name, strlen(r->pcfg->name));
    sl_buf_puts(b, r->req.stream ? "\",\"stream\":true" : "\",\"stream\":false");
    sl_buf_puts(b, ",\"prompt_tokens\":");
    sl_buf_put_i64(b, u->prompt);
    sl_buf_puts(b, ",\"completion_tokens\":");
    sl_buf_put_i64(b, u->completion);
    sl_buf_puts(b, estimated ? ",\"usage_estimated\":true" : ",\"usage_estimated\":false");
    sl_buf_puts(b, ",\"ttft_ms\":");
    sl_buf_put_ms(b, r->t_first ? r->t_first - r->t_start : -1.0);
    sl_buf_puts(b, ",\"finish_reason\":\"");
    sl_buf_puts(b, r->finish);
    sl_buf_puts(b, r->cancelled ? "\",\"cancelled\":true" : "\",\"cancelled\":false");
    sl_buf_puts(b, ",\"retries\":");
    sl_buf_put_u64(b, r->nretries);
    sl_buf_puts(b, ",\"fallbacks\":");
    sl_buf_put_u64(b, r->nfallbacks);
    sl_buf_puts(b, ",\"attempts\":[");
    if (r->attempts.len)
        sl_buf_append(b, r->attempts.data, r->attempts.len);
    if (r->pcfg && r->committed) {
        sl_buf_puts(b, r->attempts.len ? ",{\"provider\":\"" : "{\"provider\":\"");
        sl_buf_json_escape(b, r->pcfg->name, strlen(r->pcfg->name));
        sl_buf_puts(b, "\",\"status\":200}");
    }
    sl_buf_putc(b, ']');
    if (r->req.meta.user_id) {
        sl_buf_puts(b, ",\"user\":\"");
        sl_buf_json_escape(b, r->req.meta.user_id, strlen(r->req.meta.user_id));
        sl_buf_putc(b, '"');
    }
}

/* The exchange is over (answered, failed or abandoned): access-log fields, the usage record
 * and, for a finished conversation turn, the session write. Runs once. */
static void count(sl_relay_t *r, int status, const sl_usage_t *u)
{
    if (!r->cfg->metrics)
        return;
    double ttft = r->t_first ? r->t_first - r->t_start : -1.0;
    sl_metrics_req_t mr = {
        .dialect = r->enc->name,
        .model = r->route ? r->route->pattern : "",
        .provider = r->pcfg ? r->pcfg->name : "",
        .status = status,
        .stream = r->req.stream,
        .cancelled = r->cancelled,
        .total_ms = sl_now_ms() - r->t_start,
        .ttft_ms = ttft,
        /* The answering attempt: upstream time to first token, and what came before it
         * (parsing, routing, history, earlier attempts) as sluice's own share. */
        .upstream_ms = r->t_first && r->t_attempt ? r->t_first - r->t_attempt : -1.0,
        .added_ms = r->t_first && r->t_attempt ? r->t_attempt - r->t_start : -1.0,
        .prompt_tokens = u->prompt,
        .completion_tokens = u->completion,
    };
    sl_metrics_request(r->x->metrics, &mr);
    if (r->ngaps)
        sl_metrics_gaps(r->x->metrics, r->gaps, r->ngaps);
    r->ngaps = 0;
    if (r->req.stream)
        sl_metrics_active(r->x->metrics, -1);
}

static void finalize(sl_relay_t *r, int status)
{
    sl_usage_t u;
    bool estimated;
    usage_now(r, &u, &estimated);
    count(r, status, &u);
    sl_admit_cancel(&r->admit);
    /* Nothing answered and nothing was reported: an upstream failure spent nothing (its
     * reservation comes back whole); a client that left while the upstream was reading its
     * prompt is charged the prompt (providers bill it). */
    int64_t spent = r->committed || r->have_usage  ? sl_tokens_add(u.prompt, u.completion)
                    : r->cancelled && r->t_attempt ? u.prompt
                                                   : 0;
    sl_admit_env_t env;
    admit_env(r, &env);
    sl_admit_settle(&r->admit, &env, spent);
    if (r->conn)
        log_fields(r, sl_conn_log_extra(r->conn), &u, estimated, status);
    sl_store_client_t *store = r->x->store;
    if (!store)
        return;
    const sl_chat_meta_t *m = &r->req.meta;
    sl_usage_record_t rec = {
        .ts = sl_wall_s(),
        .request_id = r->conn ? sl_conn_request_id(r->conn) : "",
        .key_name = m->key_name,
        .user_id = m->user_id,
        .dialect = r->enc->name,
        .model = r->req.model,
        .provider = r->pcfg ? r->pcfg->name : NULL,
        .status = status,
        .prompt_tokens = u.prompt,
        .completion_tokens = u.completion,
        .usage_estimated = estimated,
        .ttft_ms = r->t_first ? r->t_first - r->t_start : -1.0,
        .total_ms = sl_now_ms() - r->t_start,
        .bytes_out = r->conn ? (int64_t)sl_conn_bytes_out(r->conn) : 0,
        .cancelled = r->cancelled,
        .tags = m->tags,
    };
    sl_store_usage(store, &rec);
    if (status == 200 && m->session_id && m->user_message)
        sl_store_session_append(store, m->session_id, m->session_owner, m->user_message,
                                r->text.data ? r->text.data : "");
}

/* ---- events from the provider ---- */

static void note(sl_relay_t *r, const sl_event_t *ev)
{
    /* The first answer event: a stream's first chunk, or a whole answer's arrival. */
    if (!r->t_first && ev->type != SL_EV_ERROR)
        r->t_first = sl_now_ms();
    switch (ev->type) {
    case SL_EV_DELTA:
        if (ev->raw || ev->content_len || ev->tool.present) {
            r->content_events++;
            double now = (double)uv_now(&r->x->loop); /* cached: no syscall per token */
            if (r->t_last_token && r->cfg->metrics) {
                r->gaps[r->ngaps++] = now - r->t_last_token;
                if (r->ngaps == sizeof r->gaps / sizeof r->gaps[0]) {
                    sl_metrics_gaps(r->x->metrics, r->gaps, r->ngaps);
                    r->ngaps = 0;
                }
            }
            r->t_last_token = now;
        }
        r->content_bytes += ev->content_len + ev->tool.args_len;
        if (ev->content && ev->choice == 0 && !r->enc->raw_openai)
            sl_buf_append(&r->text, ev->content, ev->content_len);
        if (ev->finish_reason)
            snprintf(r->finish, sizeof r->finish, "%s", ev->finish_reason);
        break;
    case SL_EV_FINISH: snprintf(r->finish, sizeof r->finish, "%s", ev->finish_reason); break;
    case SL_EV_USAGE:
        /* The upstream's numbers, pinned: every sum of them below (spend, budget, store) is
         * then far from int64's end. */
        r->usage.prompt = sl_tokens_sane(ev->usage.prompt);
        r->usage.completion = sl_tokens_sane(ev->usage.completion);
        r->usage.cached = ev->usage.cached < 0 ? -1 : sl_tokens_sane(ev->usage.cached);
        r->have_usage = true;
        break;
    case SL_EV_ERROR:
        r->error_status = ev->error.status;
        snprintf(r->finish, sizeof r->finish, "error");
        break;
    default: break;
    }
}

/* Hands an event to the dialect; a terminal one ends the exchange. */
static void deliver(sl_relay_t *r, const sl_event_t *ev)
{
    note(r, ev);
    bool terminal = ev->type == SL_EV_END || ev->type == SL_EV_ERROR;
    if (terminal) {
        r->pstate = NULL; /* the provider frees itself after a terminal event */
        if (!r->finish[0] && ev->type == SL_EV_END)
            snprintf(r->finish, sizeof r->finish, "stop");
        /* Before the dialect ends the response, which writes the access-log line. */
        finalize(r, ev->type == SL_EV_END ? 200 : (ev->error.status ? ev->error.status : 502));
    }
    r->enc->event(r, r->enc_state, ev);
    if (terminal) {
        SL_ASSERT(r->ended); /* every dialect ends the response on a terminal event */
        release(r);
    }
}

static bool try_again(sl_relay_t *r, const sl_event_t *ev);
static bool has_next(const sl_relay_t *r);
static const char *next_provider(const sl_relay_t *r);
static void step(sl_relay_t *r);

static void on_event(void *ud, const sl_event_t *ev)
{
    sl_relay_t *r = ud;
    if (!r->committed) {
        if (ev->type == SL_EV_ERROR) {
            r->pstate = NULL; /* this attempt is over */
            if (try_again(r, ev))
                return; /* nothing reached the client: another attempt will answer */
        } else if (ev->type == SL_EV_DELTA || ev->type == SL_EV_FINISH || ev->type == SL_EV_END) {
            r->committed = true; /* from here on a failure is reported, never replaced */
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
    deliver(r, ev);
}

static bool is_congested(void *ud)
{
    sl_relay_t *r = ud;
    if (r->conn && sl_conn_queued(r->conn) > sl_conn_high_water(r->conn))
        r->paused = true;
    return r->paused;
}

/* ---- events from the connection ---- */

static void on_gone(void *ud)
{
    sl_relay_t *r = ud;
    r->cancelled = true;
    if (r->load_op) {
        sl_store_op_cancel(r->load_op);
        r->load_op = NULL;
    }
    sl_admit_cancel(&r->admit);
    if (r->pstate) {
        r->prov->cancel(r->pstate); /* closes the upstream connection now (§3.4) */
        r->pstate = NULL;
    }
    if (r->probe)
        breaker_report(r, SL_BREAKER_ABANDONED, -1, NULL);
    finalize(r, 499);
    r->conn = NULL;
    release(r);
}

static void on_drained(void *ud)
{
    sl_relay_t *r = ud;
    if (!r->paused || !r->conn || sl_conn_queued(r->conn) > sl_conn_low_water(r->conn))
        return;
    r->paused = false;
    if (r->pstate)
        r->prov->resume(r->pstate);
}

/* Shutdown past timeouts.drain: the answer ends now with the dialect's error event, the
 * upstream call is cancelled, and the usage row and access log say 503 (the server's doing,
 * not the client's 499). */
static void on_cut(void *ud)
{
    sl_relay_t *r = ud;
    if (r->ended || !r->conn)
        return;
    if (r->load_op) {
        sl_store_op_cancel(r->load_op);
        r->load_op = NULL;
    }
    sl_admit_cancel(&r->admit);
    uv_timer_stop(&r->retry);
    if (r->pstate) {
        r->prov->cancel(r->pstate);
        r->pstate = NULL;
    }
    if (r->probe)
        breaker_report(r, SL_BREAKER_ABANDONED, -1, NULL);
    sl_event_t ev = {.type = SL_EV_ERROR};
    ev.error.status = 503;
    ev.error.type = "server_error";
    ev.error.code = "server_shutting_down";
    ev.error.message = "sluice is shutting down: the answer was cut off; send the request again";
    ev.error.retry_after = 1;
    deliver(r, &ev);
}

static const sl_conn_hooks_t hooks = {.gone = on_gone, .drained = on_drained, .cut = on_cut};

static void on_keepalive(uv_timer_t *t)
{
    sl_relay_t *r = t->data;
    if (!r->conn || r->ended || sl_conn_is_ws(r->conn))
        return; /* WebSocket clients need no SSE comments */
    /* Only on a silent connection: queued bytes already show the stream is alive. */
    if (sl_conn_queued(r->conn) == 0 &&
        (double)uv_now(&r->x->loop) - r->t_last_write + 1 >= (double)r->cfg->keepalive_ms) {
        /* Commits to 200: from here on errors travel in the stream (§3.5, §3.7). */
        sl_relay_stream_head(r, NULL);
        sl_relay_send(r, ": keepalive\n\n", 13);
    }
}

/* ---- start ---- */

static void fail_early(sl_relay_t *r, int status, const char *type, const char *code,
                       const char *msg)
{
    sl_event_t ev = {.type = SL_EV_ERROR};
    ev.error.status = status;
    ev.error.type = type;
    ev.error.code = code;
    ev.error.message = msg;
    ev.error.retry_after = -1;
    deliver(r, &ev);
}

/* ---- attempts and fallback (DESIGN §5) ---- */

static void on_retry(uv_timer_t *t);
static void admit(sl_relay_t *r);

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
    if (r->cancelled || !r->conn)
        return false;
    bool whole_instead = r->target->fallback_to_non_stream || r->req.fallback_to_non_stream;
    if (r->req.stream && whole_instead && !r->non_stream) {
        r->non_stream = true; /* seed 004: the same target, asked for a whole answer */
        r->nretries++;
        if (r->cfg->metrics)
            sl_metrics_retry(r->x->metrics, r->pcfg->name);
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
        uv_timer_start(&r->retry, on_retry, delay, 0);
        return true;
    }
    if (!has_next(r))
        return false;
    if (r->cfg->metrics)
        sl_metrics_fallback(r->x->metrics, r->pcfg->name, next_provider(r));
    step(r);
    r->nfallbacks++;
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
    if (r->nskipped < SKIPPED_MAX && i <= UINT8_MAX) {
        r->skipped[r->nskipped] = (uint8_t)i;
        r->skipped_failed[r->nskipped++] = chk->last_failure_ms;
    }
}

/* Every target was tried or skipped and none answered: with retry.fail_open the skipped ones
 * are tried after all, least recently failed first (a breaker must never turn a blip into an
 * outage). False when there is nothing more to try. */
static bool begin_fail_open(sl_relay_t *r)
{
    if (r->pass != 0 || !r->nskipped || !r->cfg->fail_open || r->cancelled || !r->conn)
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
        deliver(r, &ev);
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
    deliver(r, &ev);
}

/* Starts the current target: on the first pass skipping those whose breaker says so, on the
 * fail-open pass regardless. */
static void attempt(sl_relay_t *r)
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
        r->t_attempt = sl_now_ms();
        int rc = r->prov->start(&call, &r->pstate);
        r->req.raw = NULL; /* borrowed from the connection's request: the first start only */
        r->req.raw_len = 0;
        if (rc == 0)
            return;
        r->pstate = NULL;
        note_attempt(r, r->pcfg->name, 500, "could not start the upstream call");
        if (r->probe)
            breaker_report(r, SL_BREAKER_ABANDONED, -1, NULL);
        step(r);
    }
    fail_unavailable(r);
}

static void on_retry(uv_timer_t *t)
{
    sl_relay_t *r = t->data;
    if (r->conn && !r->cancelled)
        attempt(r);
}

/* Routes the model and starts the first target. */
static void run(sl_relay_t *r)
{
    r->route = sl_config_route(r->cfg, r->req.model);
    if (r->enc->begin)
        r->enc->begin(r, r->enc_state);
    if (!r->route) {
        sl_buf_t *msg = sl_relay_scratch(r);
        sl_buf_printf(msg, "The model '%.200s' does not exist", r->req.model);
        char *text = sl_strdup(msg->data);
        fail_early(r, 404, "invalid_request_error", "model_not_found", text);
        sl_free(text);
        return;
    }
    if (r->req.stream && r->cfg->keepalive_ms)
        uv_timer_start(&r->keepalive, on_keepalive, r->cfg->keepalive_ms, r->cfg->keepalive_ms);
    attempt(r);
}

/* History arrived from the store thread: splice it in before the new user message. */
static void on_history(void *ud, int err, bool found, json_t *messages)
{
    sl_relay_t *r = ud;
    r->load_op = NULL;
    sl_chat_meta_t *m = &r->req.meta;
    if (err == 0 && found) {
        json_t *msgs = json_object_get(sl_chat_req_json(&r->req), "messages");
        size_t at = json_array_size(msgs) ? json_array_size(msgs) - 1 : 0;
        size_t i;
        json_t *h;
        json_array_foreach (messages, i, h)
            json_array_insert(msgs, at + i, h);
        r->req.prompt_bytes = sl_chat_prompt_bytes(msgs);
    } else if (m->session_named) {
        /* The client names its conversations: this one starts now, under that name (if the
         * name is someone else's, the store never mixes the two: the append is refused). */
    } else {
        /* Unknown, someone else's, or unreadable: a new conversation with a new id. */
        char id[64];
        sl_random_id(id, sizeof id, "sess_");
        sl_free(m->session_id);
        m->session_id = sl_strdup(id);
        if (err)
            sl_log(SL_LOG_WARN, "session history unavailable (%s): starting a new session",
                   sl_strerror(err));
    }
    json_decref(messages);
    run(r);
}

void sl_relay_start(sl_conn_t *c, sl_chat_req_t *req, const sl_dialect_enc_t *enc)
{
    sl_relay_t *r = sl_calloc(1, sizeof *r);
    sl_ctx_t *x = sl_conn_ctx(c);
    if (req->stream && x->cfg->metrics)
        sl_metrics_active(x->metrics, +1); /* -1 in count(), once the exchange is over */
    r->conn = c;
    r->x = x;
    r->cfg = sl_config_ref(x->cfg);
    r->enc = enc;
    r->enc_state = sl_calloc(1, enc->state_size ? enc->state_size : 1);
    r->req = *req;
    memset(req, 0, sizeof *req);
    r->model = sl_strdup(r->req.model);
    r->req.model = r->model;
    r->t_start = sl_now_ms();
    r->t_last_write = (double)uv_now(&r->x->loop);
    uv_timer_init(&r->x->loop, &r->keepalive);
    r->keepalive.data = r;
    uv_timer_init(&r->x->loop, &r->retry);
    r->retry.data = r;
    r->closes = 2;
    sl_conn_set_hooks(c, &hooks, r);
    admit(r);
}

/* Admitted: load the conversation's history if there is one, then run. */
static void proceed(sl_relay_t *r)
{
    const sl_chat_meta_t *m = &r->req.meta;
    if (m->session_id && !m->session_new && m->history_turns && r->x->store) {
        r->load_op = sl_store_session_load(r->x->store, m->session_id, m->session_owner,
                                           m->history_turns, on_history, r);
        return;
    }
    run(r);
}

static void decided(sl_relay_t *r)
{
    sl_limit_result_t *res = &r->admit.result;
    if (r->conn)
        sl_limit_headers(res, sl_conn_head_extra(r->conn));
    if (res->allowed) {
        proceed(r);
        return;
    }
    if (r->cfg->metrics)
        sl_metrics_ratelimited(r->x->metrics, r->enc->name, res->scope ? res->scope : "");
    bool budget = res->scope && !strcmp(res->scope, "budget");
    if (r->conn && res->retry_after_s >= 0 && !budget) /* a spent budget does not come back */
        sl_buf_printf(sl_conn_head_extra(r->conn), "Retry-After: %d\r\n", res->retry_after_s);
    sl_buf_t *msg = sl_relay_scratch(r);
    if (budget && res->budget_left > 0)
        sl_buf_printf(msg,
                      "This request may use up to %lld tokens (its prompt and max_tokens), more "
                      "than the %lld left of this key's token budget.",
                      (long long)r->admit.budget.worst, (long long)res->budget_left);
    else if (budget)
        sl_buf_puts(msg, "You exceeded your token budget for this key.");
    else
        sl_buf_printf(msg, "Rate limit reached for %s: retry after %d s.",
                      res->scope ? res->scope : "requests", res->retry_after_s);
    char *text = sl_strdup(msg->data);
    /* Refused before anything is sent upstream (nothing is, and nothing was). */
    fail_early(r, 429, budget ? "insufficient_quota" : "rate_limit_error",
               budget ? "insufficient_quota" : "rate_limit_exceeded", text);
    sl_free(text);
}

static void on_redis_decision(void *ud, int err, const sl_limit_result_t *res)
{
    sl_relay_t *r = ud;
    sl_admit_env_t env;
    admit_env(r, &env);
    sl_admit_decided(&r->admit, &env, err, res); /* on err this process decides instead */
    decided(r);
}

/* DESIGN §6: who may (the key's models), how much (limits, budget) — before any upstream call. */
static void admit(sl_relay_t *r)
{
    const sl_chat_meta_t *m = &r->req.meta;
    if (m->key.present && m->key.models[0] && !sl_key_models_allow(m->key.models, r->req.model)) {
        sl_buf_t *msg = sl_relay_scratch(r);
        sl_buf_printf(msg, "This API key may not use the model '%.200s'.", r->req.model);
        char *text = sl_strdup(msg->data);
        fail_early(r, 403, "invalid_request_error", "model_not_allowed", text);
        sl_free(text);
        return;
    }
    char ip[64] = "";
    if (r->conn && (r->cfg->rl_ip.rpm || r->cfg->rl_ip.tpm))
        sl_conn_peer(r->conn, ip, sizeof ip); /* trusted_proxies applied; cached per request */
    sl_admit_prepare(&r->admit, r->cfg, m, ip, r->req.prompt_bytes,
                     sl_chat_req_max_tokens(&r->req));
    if (sl_admit_none(&r->admit) || !r->x->limiter) {
        proceed(r);
        return;
    }
    sl_admit_env_t env;
    admit_env(r, &env);
    if (sl_admit_take(&r->admit, &env, on_redis_decision, r) == 0)
        decided(r);
}

void sl_relay_info(const sl_relay_t *r, sl_relay_info_t *out)
{
    out->model = r->req.model;
    out->provider = r->pcfg ? r->pcfg->name : NULL;
    out->upstream_model = r->target && r->target->model ? r->target->model : r->req.model;
    out->finish = r->finish;
    usage_now(r, &out->usage, &out->usage_estimated);
    out->ttft_ms = r->t_first ? r->t_first - r->t_start : -1.0;
}

const char *sl_relay_text(const sl_relay_t *r, size_t *len)
{
    *len = r->text.len;
    return r->text.data ? r->text.data : "";
}

/* ---- output, for dialects ---- */

const sl_chat_req_t *sl_relay_req(const sl_relay_t *r)
{
    return &r->req;
}

bool sl_relay_head_sent(const sl_relay_t *r)
{
    return r->conn && sl_conn_head_sent(r->conn);
}

void sl_relay_stream_head(sl_relay_t *r, const char *extra)
{
    if (!r->conn || sl_conn_head_sent(r->conn))
        return;
    sl_buf_t h;
    sl_buf_init(&h);
    sl_buf_puts(&h, "Cache-Control: no-cache\r\nX-Accel-Buffering: no\r\n");
    if (extra)
        sl_buf_puts(&h, extra);
    sl_conn_head(r->conn, 200, "text/event-stream; charset=utf-8", -1, h.data);
    sl_buf_dispose(&h);
}

void sl_relay_send(sl_relay_t *r, const void *p, size_t n)
{
    if (!r->conn)
        return;
    r->t_last_write =
        (double)uv_now(&r->x->loop); /* the loop's cached clock: no syscall per chunk */
    sl_conn_body(r->conn, p, n);
}

void sl_relay_respond(sl_relay_t *r, int status, const char *content_type, const char *body,
                      size_t len, const char *extra)
{
    if (!r->conn)
        return;
    sl_conn_head(r->conn, status, content_type, (long)len, extra);
    sl_conn_body(r->conn, body, len);
}

void sl_relay_respond_error(sl_relay_t *r, const sl_error_info_t *e)
{
    if (!r->conn)
        return;
    char extra[128] = "";
    if (e->retry_after >= 0)
        snprintf(extra, sizeof extra, "Retry-After: %d\r\n", e->retry_after);
    else if (e->status >= 400 && e->status < 500 && e->status != 408 && e->status != 409 &&
             e->status != 429)
        snprintf(extra, sizeof extra, "x-should-retry: false\r\n"); /* a retry cannot fix it */
    sl_conn_respond_error(r->conn, e->status ? e->status : 502, e->type ? e->type : "server_error",
                          e->code, e->param, e->message ? e->message : "error",
                          extra[0] ? extra : NULL);
    r->ended = true;
}

void sl_relay_end(sl_relay_t *r, bool close)
{
    if (r->ended || !r->conn) {
        r->ended = true;
        return;
    }
    r->ended = true;
    sl_conn_end(r->conn, close);
}

sl_buf_t *sl_relay_scratch(sl_relay_t *r)
{
    sl_buf_reset(&r->scratch);
    return &r->scratch;
}
