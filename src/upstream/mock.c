/* The built-in mock provider: a deterministic answer streamed on the worker's timers, exactly
 * like a real upstream would (time to first token, tokens per second, length), so sluice runs
 * with no key and no network. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/alloc.h"
#include "core/closer.h"
#include "core/log.h"
#include "upstream/provider.h"

/* The answer's words; tokens are taken from it in order, wrapping around. */
static const char *const words[] = {
    "Hello",      "!",        " I'm",    " the",     " sluice",   " mock",    " provider", ",",
    " streaming", " this",    " answer", " token",   " by",       " token",   " so",       " you",
    " can",       " try",     " the",    " gateway", " without",  " a",       " key",      " or",
    " a",         " network", ".",       " Each",    " token",    " arrives", " on",       " a",
    " timer",     ",",        " the",    " way",     " a",        " real",    " model",    " would",
    " send",      " it",      ":",       " first",   " after",    " a",       " pause",    ",",
    " then",      " at",      " a",      " steady",  " pace",     ".",        " Point",    " a",
    " model",     " at",      " a",      " real",    " provider", " in",      " sluice",   ".yaml",
    " when",      " you",     " are",    " ready",   ".",
};
#define NWORDS (sizeof words / sizeof words[0])

typedef struct mock {
    uv_timer_t timer;
    sl_closer_t closer; /* frees m once the timer has closed */
    sl_upstream_sink_t sink;
    unsigned sent, total;
    uint64_t interval_ms;
    int64_t prompt_tokens;
    char id[48];
    char model[128];
    int64_t created;
    bool started, paused, done;
    bool capped; /* max_tokens cut the answer short: finish_reason "length" */
} mock_t;

/* The answer is over (ended or cancelled): m goes once its timer has closed. */
static void release(mock_t *m)
{
    sl_closer_init(&m->closer, sl_free, m);
    sl_closer_close(&m->closer, (uv_handle_t *)&m->timer);
    sl_closer_finish(&m->closer);
}

static void finish(mock_t *m)
{
    m->done = true;
    sl_event_t ev = {.type = SL_EV_USAGE};
    ev.usage.prompt = m->prompt_tokens;
    ev.usage.completion = m->total;
    ev.usage.cached = -1;
    m->sink.emit(m->sink.ud, &ev);
    sl_event_t end = {.type = SL_EV_END};
    m->sink.emit(m->sink.ud, &end);
    release(m);
}

static void on_tick(uv_timer_t *t)
{
    mock_t *m = t->data;
    if (m->sink.congested(m->sink.ud)) {
        m->paused = true;
        uv_timer_stop(&m->timer);
        return;
    }
    if (!m->started) {
        m->started = true;
        sl_event_t ev = {
            .type = SL_EV_START, .id = m->id, .model = m->model, .created = m->created};
        m->sink.emit(m->sink.ud, &ev);
    }
    const char *w = words[m->sent % NWORDS];
    sl_event_t ev = {.type = SL_EV_DELTA, .content = w, .content_len = strlen(w)};
    if (m->sent == 0)
        ev.role = "assistant";
    m->sent++;
    if (m->sent == m->total)
        ev.finish_reason = m->capped ? "length" : "stop";
    m->sink.emit(m->sink.ud, &ev);
    if (m->sent == m->total) {
        uv_timer_stop(&m->timer);
        finish(m);
        return;
    }
    uv_timer_start(&m->timer, on_tick, m->interval_ms, 0);
}

static int mock_start(const sl_upstream_call_t *call, void **state)
{
    static __thread uint64_t seq;
    mock_t *m = sl_calloc(1, sizeof *m);
    m->sink = call->sink;
    m->total = call->provider->tokens;
    /* As a real model does: max_tokens ends the answer early, with finish_reason "length". */
    int64_t max = sl_chat_req_max_tokens(call->req);
    if (max > 0 && (uint64_t)max < m->total) {
        m->total = (unsigned)max;
        m->capped = true;
    }
    double iv = 1000.0 / call->provider->tokens_per_s;
    m->interval_ms = iv < 1 ? 1 : (uint64_t)(iv + 0.5);
    m->prompt_tokens = (int64_t)(call->req->prompt_bytes + 3) / 4 + 1;
    snprintf(m->id, sizeof m->id, "chatcmpl-mock%" PRIx64 "%" PRIx64, uv_hrtime() & 0xffffff,
             ++seq);
    const char *model = call->target->model ? call->target->model : call->req->model;
    snprintf(m->model, sizeof m->model, "%s", model);
    m->created = (int64_t)time(NULL);
    uv_timer_init(call->loop, &m->timer);
    m->timer.data = m;
    uv_timer_start(&m->timer, on_tick, call->provider->ttft_ms, 0);
    *state = m;
    return 0;
}

static void mock_cancel(void *state)
{
    mock_t *m = state;
    if (m->done)
        return;
    m->done = true;
    release(m);
}

static void mock_resume(void *state)
{
    mock_t *m = state;
    if (m->done || !m->paused)
        return;
    m->paused = false;
    uv_timer_start(&m->timer, on_tick, 0, 0);
}

const sl_provider_ops_t sl_provider_mock = {
    .type = "mock",
    .start = mock_start,
    .cancel = mock_cancel,
    .resume = mock_resume,
};
