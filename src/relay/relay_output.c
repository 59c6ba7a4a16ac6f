/* Towards the dialect and the client: canonical events handed to the dialect's encoder (with
 * the timing, usage and text they carry noted on the way), keepalive comments on a silent
 * stream, and the sl_relay_* calls dialects answer with (relay.h). */
#include <stdio.h>

#include "core/err.h"
#include "core/log.h"
#include "core/tokens.h"
#include "net/conn.h"
#include "obs/metrics.h"
#include "relay/relay_int.h"

/* ---- events to the dialect ---- */

/* What an event tells the exchange's end: the first token's time, inter-token gaps, usage,
 * choice 0's text, the finish reason. */
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

void relay_deliver(sl_relay_t *r, const sl_event_t *ev)
{
    note(r, ev);
    bool terminal = ev->type == SL_EV_END || ev->type == SL_EV_ERROR;
    if (terminal) {
        r->pstate = NULL; /* the provider frees itself after a terminal event */
        relay_set_state(r, SL_RELAY_ENDING,
                        ev->type == SL_EV_END ? "end"
                        : ev->error.code      ? ev->error.code
                                              : "error");
        if (!r->finish[0] && ev->type == SL_EV_END)
            snprintf(r->finish, sizeof r->finish, "stop");
        /* Before the dialect ends the response, which writes the access-log line. */
        relay_finalize(r,
                       ev->type == SL_EV_END ? 200 : (ev->error.status ? ev->error.status : 502));
    }
    r->enc->event(r, r->enc_state, ev);
    if (terminal) {
        /* every dialect ends the response on a terminal event */
        SL_ASSERT(r->state == SL_RELAY_ENDED);
        relay_release(r);
    }
}

void relay_keepalive_cb(uv_timer_t *t)
{
    sl_relay_t *r = t->data;
    if (!r->conn || r->state == SL_RELAY_ENDED || sl_conn_is_ws(r->conn))
        return; /* WebSocket clients need no SSE comments */
    /* Only on a silent connection: queued bytes already show the stream is alive. */
    if (sl_conn_queued(r->conn) == 0 &&
        (double)uv_now(&r->x->loop) - r->t_last_write + 1 >= (double)r->cfg->keepalive_ms) {
        /* Commits to 200: from here on errors travel in the stream (§3.5, §3.7). */
        sl_relay_stream_head(r, NULL);
        sl_relay_send(r, ": keepalive\n\n", 13);
    }
}

void sl_relay_info(const sl_relay_t *r, sl_relay_info_t *out)
{
    out->model = r->req.model;
    out->provider = r->pcfg ? r->pcfg->name : NULL;
    out->upstream_model = r->target && r->target->model ? r->target->model : r->req.model;
    out->finish = r->finish;
    relay_usage_now(r, &out->usage, &out->usage_estimated);
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
    relay_set_state(r, SL_RELAY_ENDED, "error response");
    char extra[128] = "";
    if (e->retry_after >= 0)
        snprintf(extra, sizeof extra, "Retry-After: %d\r\n", e->retry_after);
    else if (e->status >= 400 && e->status < 500 && e->status != 408 && e->status != 409 &&
             e->status != 429)
        snprintf(extra, sizeof extra, "x-should-retry: false\r\n"); /* a retry cannot fix it */
    sl_conn_respond_error(r->conn, e->status ? e->status : 502, e->type ? e->type : "server_error",
                          e->code, e->param, e->message ? e->message : "error",
                          extra[0] ? extra : NULL);
}

void sl_relay_end(sl_relay_t *r, bool close)
{
    if (r->state == SL_RELAY_ENDED)
        return; /* already ended: sl_relay_respond_error, or a second call */
    relay_set_state(r, SL_RELAY_ENDED, close ? "response ended, closing" : "response ended");
    if (r->conn)
        sl_conn_end(r->conn, close);
}

sl_buf_t *sl_relay_scratch(sl_relay_t *r)
{
    /* The worker's: what is formatted in it is copied onto the connection before the caller
     * returns to the loop, so streams need not keep one each. */
    sl_buf_t *b = &r->x->scratch;
    sl_buf_reset(b);
    sl_buf_shrink(b, 1 << 16); /* one huge answer does not pin its memory */
    return b;
}
