/* The access-log writer thread (logq.h). Workers append under a mutex into `pending`; the
 * writer swaps it for an empty buffer and writes outside the lock, so a push never waits for
 * the disk. The writer lingers briefly after waking so a busy process writes in large batches
 * (a few writes per second per MiB rather than one per loop turn). */
#include "obs/logq.h"

#include <stdbool.h>
#include <string.h>
#include <uv.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/log.h"

#define LINGER_NS         (5ull * 1000000) /* gather this long after waking, unless full */
#define FLUSH_AT          ((size_t)256 << 10)
#define DROP_LOG_INTERVAL 10000.0 /* ms between "dropped" reports */

struct sl_logq {
    int fd;
    size_t cap;
    uv_thread_t thread;
    uv_mutex_t mu;
    uv_cond_t cond;
    sl_buf_t pending;  /* under mu */
    bool idle;         /* under mu: the writer waits for work (a push must wake it) */
    bool stopping;     /* under mu */
    uint64_t dropped;  /* atomic */
    uint64_t written;  /* atomic */
    uint64_t reported; /* writer only: dropped count last reported */
    double reported_at;
};

static size_t count_lines(const char *p, size_t n)
{
    size_t k = 0;
    for (const char *e = p + n; (p = memchr(p, '\n', (size_t)(e - p))); p++)
        k++;
    return k;
}

static void report_drops(sl_logq_t *q, bool final)
{
    uint64_t d = __atomic_load_n(&q->dropped, __ATOMIC_RELAXED);
    double now = sl_now_ms();
    if (d == q->reported || (!final && now - q->reported_at < DROP_LOG_INTERVAL))
        return;
    sl_log(SL_LOG_WARN,
           "access log: %llu lines dropped (the writer fell behind and its %zu-byte buffer was "
           "full); %llu in all",
           (unsigned long long)(d - q->reported), q->cap, (unsigned long long)d);
    q->reported = d;
    q->reported_at = now;
}

static void writer(void *arg)
{
    sl_logq_t *q = arg;
    sl_buf_t out;
    sl_buf_init(&out);
    uv_mutex_lock(&q->mu);
    for (;;) {
        while (!q->pending.len && !q->stopping) {
            q->idle = true;
            uv_cond_wait(&q->cond, &q->mu);
        }
        q->idle = false;
        if (!q->pending.len && q->stopping)
            break;
        if (!q->stopping && q->pending.len < FLUSH_AT)
            (void)uv_cond_timedwait(&q->cond, &q->mu, LINGER_NS); /* more may come: share a write */
        sl_buf_t t = q->pending;
        q->pending = out;
        out = t;
        uv_mutex_unlock(&q->mu);
        size_t lines = count_lines(out.data, out.len);
        sl_log_lines_fd(q->fd, out.data, out.len);
        __atomic_add_fetch(&q->written, lines, __ATOMIC_RELAXED);
        sl_buf_reset(&out);
        sl_buf_shrink(&out, FLUSH_AT);
        report_drops(q, false);
        uv_mutex_lock(&q->mu);
    }
    uv_mutex_unlock(&q->mu);
    report_drops(q, true);
    sl_buf_dispose(&out);
}

sl_logq_t *sl_logq_start(int fd, size_t cap)
{
    sl_logq_t *q = sl_calloc(1, sizeof *q);
    q->fd = fd;
    q->cap = cap;
    q->reported_at = sl_now_ms();
    sl_buf_init(&q->pending);
    if (uv_mutex_init(&q->mu) != 0) {
        sl_free(q);
        return NULL;
    }
    if (uv_cond_init(&q->cond) != 0) {
        uv_mutex_destroy(&q->mu);
        sl_free(q);
        return NULL;
    }
    if (uv_thread_create(&q->thread, writer, q) != 0) {
        uv_cond_destroy(&q->cond);
        uv_mutex_destroy(&q->mu);
        sl_free(q);
        return NULL;
    }
    return q;
}

void sl_logq_push(sl_logq_t *q, const char *lines, size_t len)
{
    if (!len)
        return;
    uv_mutex_lock(&q->mu);
    bool fits = q->pending.len + len <= q->cap;
    if (fits)
        sl_buf_append(&q->pending, lines, len);
    /* One wakeup per batch, not per push: when the writer is idle, or when this push fills
     * the batch it is lingering over. */
    bool wake =
        fits && (q->idle || (q->pending.len >= FLUSH_AT && q->pending.len - len < FLUSH_AT));
    q->idle = q->idle && !wake;
    uv_mutex_unlock(&q->mu);
    if (!fits)
        __atomic_add_fetch(&q->dropped, count_lines(lines, len), __ATOMIC_RELAXED);
    if (wake)
        uv_cond_signal(&q->cond);
}

uint64_t sl_logq_dropped(sl_logq_t *q)
{
    return q ? __atomic_load_n(&q->dropped, __ATOMIC_RELAXED) : 0;
}

uint64_t sl_logq_written(sl_logq_t *q)
{
    return q ? __atomic_load_n(&q->written, __ATOMIC_RELAXED) : 0;
}

void sl_logq_stop(sl_logq_t *q)
{
    if (!q)
        return;
    uv_mutex_lock(&q->mu);
    q->stopping = true;
    uv_cond_signal(&q->cond);
    uv_mutex_unlock(&q->mu);
    uv_thread_join(&q->thread);
    uv_cond_destroy(&q->cond);
    uv_mutex_destroy(&q->mu);
    sl_buf_dispose(&q->pending);
    sl_free(q);
}
