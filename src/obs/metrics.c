/* Prometheus metrics: per-worker shards of counters, gauges and histograms keyed by label tuple,
 * merged across workers and rendered as text exposition (0.0.4) when /metrics is scraped. */
#include "obs/metrics.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "core/alloc.h"
#include "core/err.h"

/* A family stops growing at this many series per shard. Label values come from config, so
 * reaching it means something is minting labels; memory must stay bounded regardless, and the
 * loss is visible as sluice_metrics_series_dropped_total. */
#define MAX_SERIES  2000
#define MAX_LABELS  5
#define COUNT_OF(a) (sizeof(a) / sizeof((a)[0]))

/* The label values of a family that has none. */
static const char *const no_labels[MAX_LABELS] = {"", "", "", "", ""};

/* How a family's series combine across shards (and which fields of a series it uses). */
typedef enum kind {
    K_COUNTER,   /* count, summed */
    K_GAUGE_SUM, /* gauge, summed */
    K_HISTOGRAM, /* buckets, count and sum, each summed */
} kind_t;

typedef struct family {
    const char *name, *help;
    kind_t kind;
    int nlabels;
    const char *labels[MAX_LABELS];
    /* Histograms only: upper bounds in seconds, and the same bounds as written in le="" so the
     * text is stable whatever printf would make of the double. +Inf is implicit (== _count). */
    const double *bounds;
    const char *const *le;
    int nbounds;
} family_t;

static const double lat_bounds[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                    1,     2.5,  5,     10,   30,  60};
static const char *const lat_le[] = {"0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5",
                                     "1",     "2.5",  "5",     "10",   "30",  "60"};
/* sluice's own overhead should sit between tens of microseconds and a few milliseconds; the
 * latency buckets above would put all of it in the first one. */
static const double fine_bounds[] = {0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001,
                                     0.0025,  0.005,    0.01,    0.025,  0.05,    0.1};
static const char *const fine_le[] = {"0.00001", "0.000025", "0.00005", "0.0001", "0.00025",
                                      "0.0005",  "0.001",    "0.0025",  "0.005",  "0.01",
                                      "0.025",   "0.05",     "0.1"};
#define LAT  lat_bounds, lat_le, (int)COUNT_OF(lat_bounds)
#define FINE fine_bounds, fine_le, (int)COUNT_OF(fine_bounds)

enum {
    F_REQUESTS,
    F_HTTP,
    F_DURATION,
    F_TTFT,
    F_UPSTREAM,
    F_ADDED,
    F_GAP,
    F_TOKENS,
    F_CANCEL,
    F_RETRIES,
    F_FALLBACKS,
    F_RATELIMITED,
    F_ACTIVE,
    F_COUNT
};

/* The names, label names and meanings are a contract with dashboards: change them only with a
 * note in the changelog. */
static const family_t fams[F_COUNT] = {
    [F_REQUESTS] = {"sluice_requests_total",
                    "Exchanges finished (answered, failed or cancelled).",
                    K_COUNTER,
                    5,
                    {"dialect", "model", "provider", "status", "stream"}},
    [F_HTTP] = {"sluice_http_requests_total",
                "Requests answered outside any exchange (errors, health, metrics).",
                K_COUNTER,
                2,
                {"dialect", "status"}},
    [F_DURATION] = {"sluice_request_duration_seconds",
                    "Whole exchange, request received to last byte.",
                    K_HISTOGRAM,
                    1,
                    {"dialect"},
                    LAT},
    [F_TTFT] = {"sluice_time_to_first_token_seconds",
                "Request received to first token sent to the client.",
                K_HISTOGRAM,
                3,
                {"dialect", "model", "provider"},
                LAT},
    [F_UPSTREAM] = {"sluice_upstream_first_byte_seconds",
                    "Upstream call start to its first byte.",
                    K_HISTOGRAM,
                    1,
                    {"provider"},
                    LAT},
    [F_ADDED] = {"sluice_added_latency_seconds",
                 "sluice's own share of time to first token (ttft minus upstream first byte).",
                 K_HISTOGRAM,
                 1,
                 {"dialect"},
                 FINE},
    [F_GAP] = {"sluice_inter_token_gap_seconds",
               "Time between two content events of one stream.",
               K_HISTOGRAM,
               0,
               {NULL},
               LAT},
    [F_TOKENS] = {"sluice_tokens_total",
                  "Tokens reported by providers.",
                  K_COUNTER,
                  3,
                  {"direction", "model", "provider"}},
    [F_CANCEL] = {"sluice_cancellations_total",
                  "Exchanges ended because the client went away.",
                  K_COUNTER,
                  1,
                  {"dialect"}},
    [F_RETRIES] =
        {"sluice_upstream_retries_total", "Upstream calls retried.", K_COUNTER, 1, {"provider"}},
    [F_FALLBACKS] = {"sluice_fallbacks_total",
                     "Exchanges moved from one provider to another.",
                     K_COUNTER,
                     2,
                     {"from", "to"}},
    [F_RATELIMITED] = {"sluice_rate_limited_total",
                       "Requests rejected by a rate limit.",
                       K_COUNTER,
                       2,
                       {"dialect", "scope"}},
    [F_ACTIVE] =
        {"sluice_active_streams", "Streams in flight, all workers.", K_GAUGE_SUM, 0, {NULL}},
};

typedef struct series {
    uint64_t hash;
    int fam;
    size_t keylen;
    char *key;         /* owned: the label values in family order, each NUL-terminated */
    uint64_t count;    /* counter value, or histogram observation count */
    double sum;        /* histogram: sum of observations, seconds */
    int64_t gauge;     /* gauges */
    uint64_t *buckets; /* owned, histograms only: per-bucket counts, not cumulative */
} series_t;

/* Open addressing, linear probing; cap is 0 or a power of two and the load stays under 70%,
 * so a probe always ends on an empty slot. */
typedef struct table {
    series_t **slots; /* owned, with every series in it */
    size_t cap, len;
    size_t per_fam[F_COUNT];
} table_t;

struct sl_metrics {
    /* Guards t and dropped. The worker is the only writer, so it never waits except while a
     * scrape copies this shard. */
    uv_mutex_t lock;
    table_t t;
    uint64_t dropped; /* observations lost to MAX_SERIES */
};

/* ---- series table ---- */

static uint64_t key_hash(int fam, const char *const *v, int n)
{
    const uint64_t prime = 1099511628211ULL;
    uint64_t h = (14695981039346656037ULL ^ (uint64_t)fam) * prime;
    for (int i = 0; i < n; i++) {
        /* The NUL is hashed too, so ("ab", "") and ("a", "b") differ, as their keys do. */
        const char *p = v[i];
        do {
            h = (h ^ (unsigned char)*p) * prime;
        } while (*p++);
    }
    return h;
}

static bool key_eq(const series_t *s, int fam, const char *const *v, int n)
{
    if (s->fam != fam)
        return false;
    const char *k = s->key, *end = s->key + s->keylen;
    for (int i = 0; i < n; i++) {
        size_t l = strlen(v[i]) + 1;
        if ((size_t)(end - k) < l || memcmp(k, v[i], l) != 0)
            return false;
        k += l;
    }
    return k == end;
}

/* Points v[i] at the i-th label value inside s->key. */
static void key_split(const series_t *s, const char **v)
{
    const char *k = s->key;
    for (int i = 0; i < fams[s->fam].nlabels; i++) {
        v[i] = k;
        k += strlen(k) + 1;
    }
}

static series_t *series_new(int fam, uint64_t h, const char *const *v)
{
    const family_t *f = &fams[fam];
    series_t *s = sl_calloc(1, sizeof *s);
    s->hash = h;
    s->fam = fam;
    for (int i = 0; i < f->nlabels; i++)
        s->keylen += strlen(v[i]) + 1;
    s->key = sl_malloc(s->keylen + 1);
    char *k = s->key;
    for (int i = 0; i < f->nlabels; i++) {
        size_t l = strlen(v[i]) + 1;
        memcpy(k, v[i], l);
        k += l;
    }
    if (f->kind == K_HISTOGRAM)
        s->buckets = sl_calloc((size_t)f->nbounds, sizeof *s->buckets);
    return s;
}

static void series_free(series_t *s)
{
    sl_free(s->buckets);
    sl_free(s->key);
    sl_free(s);
}

static void table_put(table_t *t, series_t *s)
{
    size_t i = s->hash & (t->cap - 1);
    while (t->slots[i])
        i = (i + 1) & (t->cap - 1);
    t->slots[i] = s;
}

static void table_grow(table_t *t)
{
    series_t **old = t->slots;
    size_t oldcap = t->cap;
    t->cap = oldcap ? oldcap * 2 : 64;
    t->slots = sl_calloc(t->cap, sizeof(series_t *));
    for (size_t i = 0; i < oldcap; i++)
        if (old[i])
            table_put(t, old[i]);
    sl_free(old);
}

/* Finds or creates a series. With a cap, returns NULL instead of creating one past it. */
static series_t *table_get(table_t *t, int fam, const char *const *v, size_t cap)
{
    uint64_t h = key_hash(fam, v, fams[fam].nlabels);
    for (size_t i = t->cap ? h & (t->cap - 1) : 0; t->cap && t->slots[i];
         i = (i + 1) & (t->cap - 1)) {
        series_t *s = t->slots[i];
        if (s->hash == h && key_eq(s, fam, v, fams[fam].nlabels))
            return s;
    }
    if (cap && t->per_fam[fam] >= cap)
        return NULL;
    if ((t->len + 1) * 10 > t->cap * 7)
        table_grow(t);
    series_t *s = series_new(fam, h, v);
    table_put(t, s);
    t->len++;
    t->per_fam[fam]++;
    return s;
}

static void table_dispose(table_t *t)
{
    for (size_t i = 0; i < t->cap; i++)
        if (t->slots[i])
            series_free(t->slots[i]);
    sl_free(t->slots);
    memset(t, 0, sizeof *t);
}

/* ---- recording (the owning worker, under its shard's lock) ---- */

sl_metrics_t *sl_metrics_new(void)
{
    sl_metrics_t *m = sl_calloc(1, sizeof *m);
    /* uv_mutex_init fails only on resource exhaustion; like OOM, that is not recoverable. */
    int rc = uv_mutex_init(&m->lock);
    SL_ASSERT(rc == 0);
    return m;
}

void sl_metrics_free(sl_metrics_t *m)
{
    if (!m)
        return;
    table_dispose(&m->t);
    uv_mutex_destroy(&m->lock);
    sl_free(m);
}

/* An absent value ("" or NULL) is written "none": a dashboard can select it, and Prometheus
 * would otherwise treat an empty value as the label being missing. */
static const char *lv(const char *s)
{
    return s && *s ? s : "none";
}

static series_t *get(sl_metrics_t *m, int fam, const char *const *v)
{
    series_t *s = table_get(&m->t, fam, v, MAX_SERIES);
    if (!s)
        m->dropped++;
    return s;
}

static void add(sl_metrics_t *m, int fam, const char *const *v, uint64_t by)
{
    series_t *s = get(m, fam, v);
    if (s)
        s->count += by;
}

static void observe(sl_metrics_t *m, int fam, const char *const *v, double ms)
{
    /* Negative means unknown; checked before get() so an unknown value mints no series. */
    if (!isfinite(ms) || ms < 0)
        return;
    series_t *s = get(m, fam, v);
    if (!s)
        return;
    const family_t *f = &fams[fam];
    double sec = ms / 1000.0;
    int i = 0;
    while (i < f->nbounds && sec > f->bounds[i])
        i++;
    if (i < f->nbounds)
        s->buckets[i]++;
    s->count++;
    s->sum += sec;
}

static void tokens(sl_metrics_t *m, const char *direction, const char *model, const char *prov,
                   int64_t n)
{
    if (n <= 0)
        return;
    const char *v[] = {direction, model, prov};
    add(m, F_TOKENS, v, (uint64_t)n);
}

void sl_metrics_request(sl_metrics_t *m, const sl_metrics_req_t *r)
{
    char status[16];
    (void)snprintf(status, sizeof status, "%d", r->status); /* an int always fits */
    const char *d = lv(r->dialect), *model = lv(r->model), *prov = lv(r->provider);
    const char *req[] = {d, model, prov, status, r->stream ? "true" : "false"};
    const char *dmp[] = {d, model, prov};
    uv_mutex_lock(&m->lock);
    add(m, F_REQUESTS, req, 1);
    observe(m, F_DURATION, &d, r->total_ms);
    observe(m, F_TTFT, dmp, r->ttft_ms);
    observe(m, F_UPSTREAM, &prov, r->upstream_ms);
    observe(m, F_ADDED, &d, r->added_ms);
    if (r->cancelled)
        add(m, F_CANCEL, &d, 1);
    tokens(m, "prompt", model, prov, r->prompt_tokens);
    tokens(m, "completion", model, prov, r->completion_tokens);
    uv_mutex_unlock(&m->lock);
}

void sl_metrics_http(sl_metrics_t *m, const char *dialect, int status)
{
    char st[16];
    (void)snprintf(st, sizeof st, "%d", status); /* an int always fits */
    const char *v[] = {lv(dialect), st};
    uv_mutex_lock(&m->lock);
    add(m, F_HTTP, v, 1);
    uv_mutex_unlock(&m->lock);
}

void sl_metrics_gap(sl_metrics_t *m, double gap_ms)
{
    sl_metrics_gaps(m, &gap_ms, 1);
}

void sl_metrics_gaps(sl_metrics_t *m, const double *gaps_ms, size_t n)
{
    uv_mutex_lock(&m->lock);
    for (size_t i = 0; i < n; i++)
        observe(m, F_GAP, no_labels, gaps_ms[i]);
    uv_mutex_unlock(&m->lock);
}

void sl_metrics_retry(sl_metrics_t *m, const char *provider)
{
    const char *v[] = {lv(provider)};
    uv_mutex_lock(&m->lock);
    add(m, F_RETRIES, v, 1);
    uv_mutex_unlock(&m->lock);
}

void sl_metrics_fallback(sl_metrics_t *m, const char *from_provider, const char *to_provider)
{
    const char *v[] = {lv(from_provider), lv(to_provider)};
    uv_mutex_lock(&m->lock);
    add(m, F_FALLBACKS, v, 1);
    uv_mutex_unlock(&m->lock);
}

void sl_metrics_active(sl_metrics_t *m, int delta)
{
    uv_mutex_lock(&m->lock);
    series_t *s = get(m, F_ACTIVE, no_labels);
    if (s)
        s->gauge += delta;
    uv_mutex_unlock(&m->lock);
}

void sl_metrics_ratelimited(sl_metrics_t *m, const char *dialect, const char *scope)
{
    const char *v[] = {lv(dialect), lv(scope)};
    uv_mutex_lock(&m->lock);
    add(m, F_RATELIMITED, v, 1);
    uv_mutex_unlock(&m->lock);
}

/* ---- merging (the scraping thread) ---- */

static void merge_series(table_t *agg, const series_t *s)
{
    const char *v[MAX_LABELS] = {"", "", "", "", ""}; /* key_split fills nlabels of them */
    key_split(s, v);
    series_t *d = table_get(agg, s->fam, v, 0);
    switch (fams[s->fam].kind) {
    case K_COUNTER: d->count += s->count; break;
    case K_GAUGE_SUM: d->gauge += s->gauge; break;
    case K_HISTOGRAM:
        for (int i = 0; i < fams[s->fam].nbounds; i++)
            d->buckets[i] += s->buckets[i];
        d->count += s->count;
        d->sum += s->sum;
        break;
    }
}

/* Copies a shard into agg while holding its lock only for the copy. */
static void merge_shard(table_t *agg, uint64_t *dropped, sl_metrics_t *m)
{
    uv_mutex_lock(&m->lock);
    for (size_t i = 0; i < m->t.cap; i++)
        if (m->t.slots[i])
            merge_series(agg, m->t.slots[i]);
    *dropped += m->dropped;
    uv_mutex_unlock(&m->lock);
}

/* Family order first, then the label tuple: memcmp on the NUL-separated keys is tuple order,
 * since NUL sorts before any byte. Stable output keeps diffs and tests readable. */
static int series_cmp(const void *pa, const void *pb)
{
    const series_t *a = *(series_t *const *)pa, *b = *(series_t *const *)pb;
    if (a->fam != b->fam)
        return a->fam < b->fam ? -1 : 1;
    size_t n = a->keylen < b->keylen ? a->keylen : b->keylen;
    int c = memcmp(a->key, b->key, n);
    if (c)
        return c;
    return a->keylen < b->keylen ? -1 : a->keylen > b->keylen;
}

/* ---- exposition ---- */

static void put_escaped(sl_buf_t *out, const char *s)
{
    for (; *s; s++) {
        if (*s == '\\')
            sl_buf_puts(out, "\\\\");
        else if (*s == '"')
            sl_buf_puts(out, "\\\"");
        else if (*s == '\n')
            sl_buf_puts(out, "\\n");
        else
            sl_buf_putc(out, *s);
    }
}

/* Shortest %g form that reads back as the same double, so sums stay exact yet readable. */
static void put_double(sl_buf_t *out, double v)
{
    if (isnan(v)) {
        sl_buf_puts(out, "NaN");
        return;
    }
    if (isinf(v)) {
        sl_buf_puts(out, v > 0 ? "+Inf" : "-Inf");
        return;
    }
    char tmp[40];
    for (int prec = 15; prec <= 17; prec++) {
        (void)snprintf(tmp, sizeof tmp, "%.*g", prec, v); /* 17 digits always fit */
        if (strtod(tmp, NULL) == v)
            break;
    }
    sl_buf_puts(out, tmp);
}

static void put_header(sl_buf_t *out, const char *name, const char *help, const char *type)
{
    sl_buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* Writes name+suffix{labels[,le="..."]}, the part of a sample line before its value. */
static void put_name(sl_buf_t *out, const series_t *s, const char *suffix, const char *le)
{
    const family_t *f = &fams[s->fam];
    sl_buf_puts(out, f->name);
    sl_buf_puts(out, suffix);
    if (f->nlabels == 0 && !le)
        return;
    const char *v[MAX_LABELS] = {"", "", "", "", ""}; /* key_split fills nlabels of them */
    key_split(s, v);
    sl_buf_putc(out, '{');
    for (int i = 0; i < f->nlabels; i++) {
        sl_buf_printf(out, "%s%s=\"", i ? "," : "", f->labels[i]);
        put_escaped(out, v[i]);
        sl_buf_putc(out, '"');
    }
    if (le)
        sl_buf_printf(out, "%sle=\"%s\"", f->nlabels ? "," : "", le);
    sl_buf_putc(out, '}');
}

static void put_histogram(sl_buf_t *out, const series_t *s)
{
    const family_t *f = &fams[s->fam];
    uint64_t cum = 0;
    for (int i = 0; i < f->nbounds; i++) {
        cum += s->buckets[i];
        put_name(out, s, "_bucket", f->le[i]);
        sl_buf_printf(out, " %llu\n", (unsigned long long)cum);
    }
    put_name(out, s, "_bucket", "+Inf");
    sl_buf_printf(out, " %llu\n", (unsigned long long)s->count);
    put_name(out, s, "_sum", NULL);
    sl_buf_putc(out, ' ');
    put_double(out, s->sum);
    sl_buf_putc(out, '\n');
    put_name(out, s, "_count", NULL);
    sl_buf_printf(out, " %llu\n", (unsigned long long)s->count);
}

static void put_series(sl_buf_t *out, const series_t *s)
{
    switch (fams[s->fam].kind) {
    case K_COUNTER:
        put_name(out, s, "", NULL);
        sl_buf_printf(out, " %llu\n", (unsigned long long)s->count);
        break;
    case K_GAUGE_SUM:
        put_name(out, s, "", NULL);
        sl_buf_printf(out, " %lld\n", (long long)s->gauge);
        break;
    case K_HISTOGRAM: put_histogram(out, s); break;
    }
}

/* Every family gets its HELP and TYPE even with no series yet, so the set of names a scrape
 * shows does not depend on traffic; label-less families always show their one series. */
static void put_families(sl_buf_t *out, table_t *agg)
{
    static const char *const types[] = {"counter", "gauge", "histogram"};
    for (int f = 0; f < F_COUNT; f++)
        if (fams[f].nlabels == 0)
            (void)table_get(agg, f, no_labels, 0); /* created for its zero value */
    series_t **all = sl_malloc((agg->len ? agg->len : 1) * sizeof(series_t *));
    size_t n = 0;
    for (size_t i = 0; i < agg->cap; i++)
        if (agg->slots[i])
            all[n++] = agg->slots[i];
    qsort(all, n, sizeof(series_t *), series_cmp);
    size_t j = 0;
    for (int f = 0; f < F_COUNT; f++) {
        put_header(out, fams[f].name, fams[f].help, types[fams[f].kind]);
        for (; j < n && all[j]->fam == f; j++)
            put_series(out, all[j]);
    }
    sl_free(all);
}

static void put_process(sl_buf_t *out, const sl_metrics_process_t *p)
{
    put_header(out, "sluice_config_reloads_total", "Configuration reloads, by result.", "counter");
    sl_buf_printf(out, "sluice_config_reloads_total{result=\"ok\"} %llu\n",
                  (unsigned long long)p->reloads_ok);
    sl_buf_printf(out, "sluice_config_reloads_total{result=\"failed\"} %llu\n",
                  (unsigned long long)p->reloads_failed);
    put_header(out, "sluice_store_dropped_total",
               "Records the store dropped because its queue was full.", "counter");
    sl_buf_printf(out, "sluice_store_dropped_total %llu\n", (unsigned long long)p->store_dropped);
    put_header(out, "sluice_access_log_dropped_total",
               "Access-log lines dropped because the log writer fell behind and its buffer was "
               "full.",
               "counter");
    sl_buf_printf(out, "sluice_access_log_dropped_total %llu\n",
                  (unsigned long long)p->access_log_dropped);
    put_header(out, "sluice_workers", "Worker threads running.", "gauge");
    sl_buf_printf(out, "sluice_workers %u\n", p->workers);
    put_header(out, "sluice_start_time_seconds", "Unix time the process started.", "gauge");
    sl_buf_puts(out, "sluice_start_time_seconds ");
    put_double(out, p->start_time_s);
    sl_buf_putc(out, '\n');
}

/* Shards may be NULL (a worker not started yet); p may be NULL, which leaves out the
 * process-wide families rather than reporting made-up values. */
void sl_metrics_render(sl_metrics_t *const *shards, size_t n, const sl_metrics_process_t *p,
                       sl_buf_t *out)
{
    table_t agg = {0};
    uint64_t dropped = 0;
    for (size_t i = 0; i < n; i++)
        if (shards[i])
            merge_shard(&agg, &dropped, shards[i]);
    put_families(out, &agg);
    if (p)
        put_process(out, p);
    put_header(out, "sluice_metrics_series_dropped_total",
               "Observations not recorded because their family reached its per-worker series "
               "cap.",
               "counter");
    sl_buf_printf(out, "sluice_metrics_series_dropped_total %llu\n", (unsigned long long)dropped);
    table_dispose(&agg);
}
