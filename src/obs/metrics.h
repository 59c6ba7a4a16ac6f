/* Metrics (DESIGN §9): one shard per worker, written only by its worker under an uncontended
 * mutex, merged at scrape time into Prometheus text exposition format (version 0.0.4).
 * Label values are bounded by config (dialect names, configured model patterns, provider
 * names), never taken raw from clients. */
#ifndef SL_OBS_METRICS_H
#define SL_OBS_METRICS_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

typedef struct sl_metrics sl_metrics_t;

sl_metrics_t *sl_metrics_new(void);
void sl_metrics_free(sl_metrics_t *m); /* NULL is a no-op */

/* One finished exchange (answered, failed or cancelled). model is the configured pattern that
 * routed it ("" when none did), provider "" when none answered. ttft_ms/upstream_ms/added_ms
 * < 0 when unknown. */
typedef struct sl_metrics_req {
    const char *dialect, *model, *provider;
    int status;
    bool stream;
    bool cancelled;
    double total_ms;    /* whole exchange */
    double ttft_ms;     /* request received → first token sent */
    double upstream_ms; /* upstream call start → its first byte */
    double added_ms;    /* sluice's own share: ttft_ms - upstream time to first byte */
    int64_t prompt_tokens, completion_tokens;
} sl_metrics_req_t;

void sl_metrics_request(sl_metrics_t *m, const sl_metrics_req_t *r);
/* A request answered outside any exchange (404, 401, 413, health...): counted by path class. */
void sl_metrics_http(sl_metrics_t *m, const char *dialect, int status);
/* Time between two content events of one stream. */
void sl_metrics_gap(sl_metrics_t *m, double gap_ms);
/* Several at once, under one lock: a stream hands them over in batches, not per token. */
void sl_metrics_gaps(sl_metrics_t *m, const double *gaps_ms, size_t n);
void sl_metrics_retry(sl_metrics_t *m, const char *provider);
void sl_metrics_fallback(sl_metrics_t *m, const char *from_provider, const char *to_provider);
/* Streams in flight: +1 when one starts, -1 when it ends. */
void sl_metrics_active(sl_metrics_t *m, int delta);
void sl_metrics_ratelimited(sl_metrics_t *m, const char *dialect, const char *scope);

/* Appends the merged exposition of n shards to out. Extra process-wide values are passed in:
 * config reloads (ok/failed), store records dropped, workers up. */
typedef struct sl_metrics_process {
    uint64_t reloads_ok, reloads_failed;
    uint64_t store_dropped;
    uint64_t access_log_dropped;
    unsigned workers;
    double start_time_s; /* unix time the process started */
} sl_metrics_process_t;

void sl_metrics_render(sl_metrics_t *const *shards, size_t n, const sl_metrics_process_t *p,
                       sl_buf_t *out);

#endif
