/* One chat exchange from its start to its first attempt: admission (the key's models, then
 * limits and budget, locally or through Redis), the session's history, routing; and what the
 * connection tells the exchange (the client left, output drained, shutdown cut). The attempts
 * themselves are relay_attempt.c's; how the parts fit is in relay_int.h. */
#include "relay/relay.h"

#include <string.h>

#include "core/alloc.h"
#include "core/ctx.h"
#include "core/err.h"
#include "core/id.h"
#include "core/log.h"
#include "net/conn.h"
#include "obs/metrics.h"
#include "policy/admit.h"
#include "relay/relay_int.h"
#include "store/keys.h"
#include "store/store.h"

/* ---- start: admission, history, routing ---- */

static void fail_early(sl_relay_t *r, int status, const char *type, const char *code,
                       const char *msg)
{
    sl_event_t ev = {.type = SL_EV_ERROR};
    ev.error.status = status;
    ev.error.type = type;
    ev.error.code = code;
    ev.error.message = msg;
    ev.error.retry_after = -1;
    relay_deliver(r, &ev);
}

/* Routes the model and starts the first target. */
static void run(sl_relay_t *r)
{
    relay_set_state(r, SL_RELAY_ROUTING, "admitted");
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
        uv_timer_start(&r->keepalive, relay_keepalive_cb, r->cfg->keepalive_ms,
                       r->cfg->keepalive_ms);
    relay_attempt(r);
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

/* Admitted: load the conversation's history if there is one, then run. */
static void proceed(sl_relay_t *r)
{
    const sl_chat_meta_t *m = &r->req.meta;
    if (m->session_id && !m->session_new && m->history_turns && r->x->store) {
        relay_set_state(r, SL_RELAY_LOADING_HISTORY, "session history");
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
    relay_admit_env(r, &env);
    sl_admit_decided(&r->admit, &env, err, res); /* on err this process decides instead */
    decided(r);
}

/* DESIGN §6: who may (the key's models), how much (limits, budget) — before any upstream call. */
static void admit(sl_relay_t *r)
{
    const sl_chat_meta_t *m = &r->req.meta;
    if (m->key.present && m->key.models && !sl_key_models_allow(m->key.models, r->req.model)) {
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
    relay_admit_env(r, &env);
    if (sl_admit_take(&r->admit, &env, on_redis_decision, r) == 0)
        decided(r);
}

/* ---- events from the connection ---- */

static void on_gone(void *ud)
{
    sl_relay_t *r = ud;
    relay_set_state(r, SL_RELAY_GONE, "client left");
    if (r->load_op) {
        sl_store_op_cancel(r->load_op);
        r->load_op = NULL;
    }
    sl_admit_cancel(&r->admit);
    if (r->pstate) {
        r->prov->cancel(r->pstate); /* closes the upstream connection now (§3.4) */
        r->pstate = NULL;
    }
    relay_abandon_probe(r);
    relay_finalize(r, 499);
    r->conn = NULL;
    relay_release(r);
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
    if (r->state == SL_RELAY_ENDED || !r->conn)
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
    relay_abandon_probe(r);
    sl_event_t ev = {.type = SL_EV_ERROR};
    ev.error.status = 503;
    ev.error.type = "server_error";
    ev.error.code = "server_shutting_down";
    ev.error.message = "sluice is shutting down: the answer was cut off; send the request again";
    ev.error.retry_after = 1;
    relay_deliver(r, &ev);
}

static const sl_conn_hooks_t hooks = {.gone = on_gone, .drained = on_drained, .cut = on_cut};

void sl_relay_start(sl_conn_t *c, sl_chat_req_t *req, const sl_dialect_enc_t *enc)
{
    sl_relay_t *r = sl_calloc(1, sizeof *r);
    sl_ctx_t *x = sl_conn_ctx(c);
    if (req->stream && x->cfg->metrics)
        sl_metrics_active(x->metrics, +1); /* -1 in relay_finalize, once it is over */
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
    sl_closer_init(&r->closer, relay_free, r);
    sl_conn_set_hooks(c, &hooks, r);
    admit(r);
}
