/* The exchange's end: what it reports once it is over (the access log's fields, the metrics,
 * the usage record and the finished turn's session write), the settling of its limits and
 * budget reservation, and its release once both ends are done with it. */
#include <string.h>

#include "core/alloc.h"
#include "core/err.h"
#include "core/log.h"
#include "core/tokens.h"
#include "net/conn.h"
#include "obs/metrics.h"
#include "relay/relay_int.h"

void relay_free(void *owner)
{
    sl_relay_t *r = owner;
    sl_buf_dispose(&r->attempts);
    sl_free((char *)r->last_err.type);
    sl_free((char *)r->last_err.code);
    sl_free((char *)r->last_err.message);
    if (r->enc->dispose)
        r->enc->dispose(r->enc_state);
    sl_free(r->enc_state);
    sl_chat_req_dispose(&r->req);
    sl_free(r->model);
    sl_buf_dispose(&r->text);
    sl_config_unref(r->cfg);
    sl_free(r);
}

/* Both ends are done with r (the provider ended or was cancelled, and the response ended or the
 * client left): release it once the timer has closed. */
void relay_release(sl_relay_t *r)
{
    uv_timer_stop(&r->keepalive);
    uv_timer_stop(&r->retry);
    sl_closer_close(&r->closer, (uv_handle_t *)&r->keepalive);
    sl_closer_close(&r->closer, (uv_handle_t *)&r->retry);
    sl_closer_finish(&r->closer);
}

void relay_usage_now(const sl_relay_t *r, sl_usage_t *u, bool *estimated)
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
    sl_buf_puts(b, relay_gone(r) ? "\",\"cancelled\":true" : "\",\"cancelled\":false");
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

/* The request's metrics, and the inter-token gaps not handed over yet. */
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
        .cancelled = relay_gone(r),
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

/* The exchange is over (answered, failed or abandoned): access-log fields, the usage record
 * and, for a finished conversation turn, the session write. Runs once. */
void relay_finalize(sl_relay_t *r, int status)
{
    SL_ASSERT(r->state == SL_RELAY_ENDING || r->state == SL_RELAY_GONE);
    sl_usage_t u;
    bool estimated;
    relay_usage_now(r, &u, &estimated);
    count(r, status, &u);
    sl_admit_cancel(&r->admit);
    /* Nothing answered and nothing was reported: an upstream failure spent nothing (its
     * reservation comes back whole); a client that left while the upstream was reading its
     * prompt is charged the prompt (providers bill it). */
    int64_t spent = r->committed || r->have_usage   ? sl_tokens_add(u.prompt, u.completion)
                    : relay_gone(r) && r->t_attempt ? u.prompt
                                                    : 0;
    sl_admit_env_t env;
    relay_admit_env(r, &env);
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
        .cancelled = relay_gone(r),
        .tags = m->tags,
    };
    sl_store_usage(store, &rec);
    if (status == 200 && m->session_id && m->user_message)
        sl_store_session_append(store, m->session_id, m->session_owner, m->user_message,
                                r->text.data ? r->text.data : "");
}
