/* Unit tests for obs/metrics: observations recorded on two shards, merged by one render, and
 * asserted line by line; concurrent writers against a scraper; promtool on the whole output. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include <cmocka.h>

#include "core/alloc.h"
#include "obs/metrics.h"

#define PROMTOOL_SCRIPT "tests/unit/promtool_check.sh"

typedef struct fixture {
    sl_metrics_t *shard[2];
    sl_buf_t out;
} fixture_t;

static int setup(void **state)
{
    fixture_t *fx = sl_calloc(1, sizeof *fx);
    fx->shard[0] = sl_metrics_new();
    fx->shard[1] = sl_metrics_new();
    sl_buf_init(&fx->out);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *fx = *state;
    sl_metrics_free(fx->shard[0]);
    sl_metrics_free(fx->shard[1]);
    sl_buf_dispose(&fx->out);
    sl_free(fx);
    return 0;
}

/* Renders both shards; the output starts with a newline so every line, the first included,
 * can be found as "\n<line>\n". */
static const char *render(fixture_t *fx, const sl_metrics_process_t *p)
{
    sl_buf_reset(&fx->out);
    sl_buf_putc(&fx->out, '\n');
    sl_metrics_render(fx->shard, 2, p, &fx->out);
    return fx->out.data;
}

static void assert_line_at(const char *text, const char *line, const char *file, int at)
{
    char want[1024];
    (void)snprintf(want, sizeof want, "\n%s\n", line);
    if (!strstr(text, want)) {
        print_error("missing line: %s\n--- in output ---\n%s", line, text);
        _fail(file, at);
    }
}
#define assert_line(text, line) assert_line_at((text), (line), __FILE__, __LINE__)

static size_t count_prefix(const char *text, const char *prefix)
{
    char want[256];
    (void)snprintf(want, sizeof want, "\n%s", prefix);
    size_t n = 0;
    for (const char *p = strstr(text, want); p; p = strstr(p + 1, want))
        n++;
    return n;
}

static sl_metrics_req_t req(const char *dialect, const char *model, const char *provider,
                            int status)
{
    sl_metrics_req_t r = {.dialect = dialect,
                          .model = model,
                          .provider = provider,
                          .status = status,
                          .stream = true,
                          .total_ms = -1,
                          .ttft_ms = -1,
                          .upstream_ms = -1,
                          .added_ms = -1};
    return r;
}

static void test_metrics_counters_are_summed_across_shards(void **state)
{
    fixture_t *fx = *state;
    sl_metrics_req_t r = req("openai", "gpt-4*", "mock", 200);
    r.prompt_tokens = 10;
    r.completion_tokens = 5;
    sl_metrics_request(fx->shard[0], &r);
    sl_metrics_request(fx->shard[0], &r);
    sl_metrics_request(fx->shard[1], &r);
    r.status = 502;
    r.stream = false;
    r.cancelled = true;
    r.completion_tokens = 0;
    sl_metrics_request(fx->shard[1], &r);
    sl_metrics_http(fx->shard[0], "", 404);
    sl_metrics_http(fx->shard[1], NULL, 404);
    sl_metrics_http(fx->shard[1], "openai", 401);
    sl_metrics_fallback(fx->shard[0], "a", "b");
    sl_metrics_fallback(fx->shard[1], "a", "b");
    sl_metrics_ratelimited(fx->shard[1], "chat", "key");
    sl_metrics_active(fx->shard[0], 1);
    sl_metrics_active(fx->shard[0], 1);
    sl_metrics_active(fx->shard[1], 1);
    sl_metrics_active(fx->shard[0], -1);

    const char *t = render(fx, NULL);
    assert_line(t, "sluice_requests_total{dialect=\"openai\",model=\"gpt-4*\",provider=\"mock\","
                   "status=\"200\",stream=\"true\"} 3");
    assert_line(t, "sluice_requests_total{dialect=\"openai\",model=\"gpt-4*\",provider=\"mock\","
                   "status=\"502\",stream=\"false\"} 1");
    assert_line(t, "sluice_http_requests_total{dialect=\"none\",status=\"404\"} 2");
    assert_line(t, "sluice_http_requests_total{dialect=\"openai\",status=\"401\"} 1");
    assert_line(t,
                "sluice_tokens_total{direction=\"prompt\",model=\"gpt-4*\",provider=\"mock\"} 40");
    assert_line(
        t, "sluice_tokens_total{direction=\"completion\",model=\"gpt-4*\",provider=\"mock\"} 15");
    assert_line(t, "sluice_cancellations_total{dialect=\"openai\"} 1");
    assert_line(t, "sluice_fallbacks_total{from=\"a\",to=\"b\"} 2");
    assert_line(t, "sluice_rate_limited_total{dialect=\"chat\",scope=\"key\"} 1");
    assert_line(t, "sluice_active_streams 2");
    assert_line(t, "sluice_metrics_series_dropped_total 0");
}

static void test_metrics_absent_model_and_provider_render_as_none(void **state)
{
    fixture_t *fx = *state;
    sl_metrics_req_t r = req("chat", "", NULL, 404);
    sl_metrics_request(fx->shard[0], &r);
    const char *t = render(fx, NULL);
    assert_line(t, "sluice_requests_total{dialect=\"chat\",model=\"none\",provider=\"none\","
                   "status=\"404\",stream=\"true\"} 1");
}

/* 250 ms sits exactly on the 0.25 bound (le is inclusive); 100 s is beyond every bound. The
 * values are exact in binary, so the sum is too. */
static void test_metrics_histogram_buckets_are_cumulative_across_shards(void **state)
{
    fixture_t *fx = *state;
    sl_metrics_req_t r = req("openai", "m", "p", 200);
    r.total_ms = 250;
    sl_metrics_request(fx->shard[0], &r);
    r.total_ms = 2000;
    sl_metrics_request(fx->shard[0], &r);
    r.total_ms = 125;
    sl_metrics_request(fx->shard[1], &r);
    r.total_ms = 100000;
    sl_metrics_request(fx->shard[1], &r);

    const char *t = render(fx, NULL);
    static const char *const zero[] = {"0.005", "0.01", "0.025", "0.05", "0.1"};
    char line[256];
    for (size_t i = 0; i < sizeof zero / sizeof zero[0]; i++) {
        (void)snprintf(line, sizeof line,
                       "sluice_request_duration_seconds_bucket{dialect=\"openai\",le=\"%s\"} 0",
                       zero[i]);
        assert_line(t, line);
    }
    const char *p = "sluice_request_duration_seconds_bucket{dialect=\"openai\",le=";
    static const char *const rest[][2] = {{"0.25", "2"}, {"0.5", "2"}, {"1", "2"},
                                          {"2.5", "3"},  {"5", "3"},   {"10", "3"},
                                          {"30", "3"},   {"60", "3"},  {"+Inf", "4"}};
    for (size_t i = 0; i < sizeof rest / sizeof rest[0]; i++) {
        (void)snprintf(line, sizeof line, "%s\"%s\"} %s", p, rest[i][0], rest[i][1]);
        assert_line(t, line);
    }
    assert_line(t, "sluice_request_duration_seconds_sum{dialect=\"openai\"} 102.375");
    assert_line(t, "sluice_request_duration_seconds_count{dialect=\"openai\"} 4");
    assert_int_equal(count_prefix(t, "sluice_request_duration_seconds_bucket{"), 14);
}

static void test_metrics_bound_is_inclusive_and_sum_is_shortest(void **state)
{
    fixture_t *fx = *state;
    sl_metrics_gap(fx->shard[0], 5);
    const char *t = render(fx, NULL);
    assert_line(t, "sluice_inter_token_gap_seconds_bucket{le=\"0.005\"} 1");
    assert_line(t, "sluice_inter_token_gap_seconds_bucket{le=\"+Inf\"} 1");
    assert_line(t, "sluice_inter_token_gap_seconds_sum 0.005");
    assert_line(t, "sluice_inter_token_gap_seconds_count 1");
}

static void test_metrics_added_latency_uses_fine_buckets(void **state)
{
    fixture_t *fx = *state;
    sl_metrics_req_t r = req("openai", "m", "p", 200);
    r.added_ms = 0.04; /* 40 microseconds */
    sl_metrics_request(fx->shard[0], &r);
    r.added_ms = 50;
    sl_metrics_request(fx->shard[1], &r);
    const char *t = render(fx, NULL);
    const char *p = "sluice_added_latency_seconds_bucket{dialect=\"openai\",le=";
    static const char *const want[][2] = {{"0.00001", "0"}, {"0.000025", "0"}, {"0.00005", "1"},
                                          {"0.025", "1"},   {"0.05", "2"},     {"0.1", "2"},
                                          {"+Inf", "2"}};
    char line[256];
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        (void)snprintf(line, sizeof line, "%s\"%s\"} %s", p, want[i][0], want[i][1]);
        assert_line(t, line);
    }
    assert_line(t, "sluice_added_latency_seconds_count{dialect=\"openai\"} 2");
}

static void test_metrics_ttft_and_upstream_histograms_carry_their_labels(void **state)
{
    fixture_t *fx = *state;
    sl_metrics_req_t r = req("monoai", "claude*", "anthropic", 200);
    r.ttft_ms = 500;
    r.upstream_ms = 250;
    sl_metrics_request(fx->shard[0], &r);
    sl_metrics_request(fx->shard[1], &r);
    const char *t = render(fx, NULL);
    assert_line(t, "sluice_time_to_first_token_seconds_bucket{dialect=\"monoai\",model=\"claude*\","
                   "provider=\"anthropic\",le=\"0.5\"} 2");
    assert_line(t, "sluice_time_to_first_token_seconds_sum{dialect=\"monoai\",model=\"claude*\","
                   "provider=\"anthropic\"} 1");
    assert_line(t,
                "sluice_upstream_first_byte_seconds_bucket{provider=\"anthropic\",le=\"0.1\"} 0");
    assert_line(t,
                "sluice_upstream_first_byte_seconds_bucket{provider=\"anthropic\",le=\"0.25\"} 2");
    assert_line(t, "sluice_upstream_first_byte_seconds_count{provider=\"anthropic\"} 2");
}

static void test_metrics_negative_values_are_skipped(void **state)
{
    fixture_t *fx = *state;
    sl_metrics_req_t r = req("openai", "m", "p", 200);
    r.total_ms = 100;
    r.prompt_tokens = -1;
    r.completion_tokens = -1;
    sl_metrics_request(fx->shard[0], &r); /* ttft, upstream, added unknown (-1) */
    sl_metrics_gap(fx->shard[1], -1);
    const char *t = render(fx, NULL);
    assert_line(t, "sluice_request_duration_seconds_count{dialect=\"openai\"} 1");
    assert_int_equal(count_prefix(t, "sluice_time_to_first_token_seconds"), 0);
    assert_int_equal(count_prefix(t, "sluice_upstream_first_byte_seconds"), 0);
    assert_int_equal(count_prefix(t, "sluice_added_latency_seconds"), 0);
    assert_int_equal(count_prefix(t, "sluice_tokens_total{"), 0);
    assert_line(t, "sluice_inter_token_gap_seconds_count 0");
    assert_line(t, "sluice_inter_token_gap_seconds_bucket{le=\"+Inf\"} 0");
}

static void test_metrics_label_values_are_escaped(void **state)
{
    fixture_t *fx = *state;
    sl_metrics_retry(fx->shard[0], "we\"ird\\path\nx");
    sl_metrics_retry(fx->shard[1], "we\"ird\\path\nx");
    const char *t = render(fx, NULL);
    assert_line(t, "sluice_upstream_retries_total{provider=\"we\\\"ird\\\\path\\nx\"} 2");
}

static void test_metrics_series_cap_counts_overflow(void **state)
{
    fixture_t *fx = *state;
    char name[32];
    for (int i = 0; i < 2005; i++) {
        (void)snprintf(name, sizeof name, "p%04d", i);
        sl_metrics_retry(fx->shard[0], name);
    }
    sl_metrics_retry(fx->shard[0], "p0000"); /* an existing series still counts at the cap */
    sl_metrics_retry(fx->shard[1], "p1999");
    sl_metrics_retry(fx->shard[1], "other"); /* the cap is per shard */
    const char *t = render(fx, NULL);
    assert_int_equal(count_prefix(t, "sluice_upstream_retries_total{"), 2001);
    assert_line(t, "sluice_upstream_retries_total{provider=\"p0000\"} 2");
    assert_line(t, "sluice_upstream_retries_total{provider=\"p1999\"} 2");
    assert_line(t, "sluice_upstream_retries_total{provider=\"other\"} 1");
    assert_int_equal(count_prefix(t, "sluice_upstream_retries_total{provider=\"p2000\"}"), 0);
    assert_line(t, "sluice_metrics_series_dropped_total 5");
}

static void test_metrics_empty_shards_render_every_family(void **state)
{
    fixture_t *fx = *state;
    const char *t = render(fx, NULL);
    static const char *const names[] = {
        "sluice_requests_total counter",
        "sluice_http_requests_total counter",
        "sluice_request_duration_seconds histogram",
        "sluice_time_to_first_token_seconds histogram",
        "sluice_upstream_first_byte_seconds histogram",
        "sluice_added_latency_seconds histogram",
        "sluice_inter_token_gap_seconds histogram",
        "sluice_tokens_total counter",
        "sluice_cancellations_total counter",
        "sluice_upstream_retries_total counter",
        "sluice_fallbacks_total counter",
        "sluice_rate_limited_total counter",
        "sluice_active_streams gauge",
        "sluice_metrics_series_dropped_total counter",
    };
    char line[256];
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        (void)snprintf(line, sizeof line, "# TYPE %s", names[i]);
        assert_line(t, line);
    }
    assert_int_equal(count_prefix(t, "# HELP "), 14);
    assert_line(t, "sluice_active_streams 0");
    assert_int_equal(count_prefix(t, "sluice_config_reloads_total"), 0);
}

static void test_metrics_process_values_are_rendered(void **state)
{
    fixture_t *fx = *state;
    sl_metrics_process_t p = {.reloads_ok = 3,
                              .reloads_failed = 1,
                              .store_dropped = 7,
                              .access_log_dropped = 5,
                              .workers = 4,
                              .start_time_s = 1700000000.5};
    const char *t = render(fx, &p);
    assert_line(t, "# TYPE sluice_config_reloads_total counter");
    assert_line(t, "sluice_config_reloads_total{result=\"ok\"} 3");
    assert_line(t, "sluice_config_reloads_total{result=\"failed\"} 1");
    assert_line(t, "sluice_store_dropped_total 7");
    assert_line(t, "sluice_access_log_dropped_total 5");
    assert_line(t, "sluice_workers 4");
    assert_line(t, "sluice_start_time_seconds 1700000000.5");
}

/* ---- concurrency: two workers write their own shard while a third thread scrapes ---- */

#define WRITES 20000

typedef struct writer {
    sl_metrics_t *m;
    const char *provider;
} writer_t;

static void write_many(void *arg)
{
    writer_t *w = arg;
    char model[16];
    for (int i = 0; i < WRITES; i++) {
        sl_metrics_active(w->m, 1);
        /* A few distinct series so the shard's table grows while being scraped. */
        (void)snprintf(model, sizeof model, "m%d", i % 97);
        sl_metrics_req_t r = req("openai", model, w->provider, 200);
        r.total_ms = 10;
        r.completion_tokens = 2;
        sl_metrics_request(w->m, &r);
        sl_metrics_gap(w->m, 1);
        sl_metrics_active(w->m, -1);
    }
}

typedef struct scraper {
    sl_metrics_t *const *shards;
    atomic_int *stop;
    int renders;
} scraper_t;

static void scrape_until_stopped(void *arg)
{
    scraper_t *s = arg;
    sl_buf_t out;
    sl_buf_init(&out);
    /* At least one render even if both writers finish first. */
    do {
        sl_buf_reset(&out);
        sl_metrics_render(s->shards, 2, NULL, &out);
        s->renders++;
    } while (!atomic_load(s->stop));
    sl_buf_dispose(&out);
}

static void test_metrics_concurrent_writers_and_scraper_keep_exact_totals(void **state)
{
    fixture_t *fx = *state;
    atomic_int stop = 0;
    writer_t w[2] = {{fx->shard[0], "pa"}, {fx->shard[1], "pb"}};
    scraper_t sc = {.shards = fx->shard, .stop = &stop};
    uv_thread_t tw[2], ts;
    assert_int_equal(uv_thread_create(&ts, scrape_until_stopped, &sc), 0);
    assert_int_equal(uv_thread_create(&tw[0], write_many, &w[0]), 0);
    assert_int_equal(uv_thread_create(&tw[1], write_many, &w[1]), 0);
    assert_int_equal(uv_thread_join(&tw[0]), 0);
    assert_int_equal(uv_thread_join(&tw[1]), 0);
    atomic_store(&stop, 1);
    assert_int_equal(uv_thread_join(&ts), 0);
    assert_true(sc.renders >= 1);

    const char *t = render(fx, NULL);
    /* i % 97 == 0 for i in [0, 20000): 207 writes per writer. */
    assert_line(t, "sluice_requests_total{dialect=\"openai\",model=\"m0\",provider=\"pa\","
                   "status=\"200\",stream=\"true\"} 207");
    assert_line(t,
                "sluice_tokens_total{direction=\"completion\",model=\"m96\",provider=\"pb\"} 412");
    assert_line(t, "sluice_request_duration_seconds_count{dialect=\"openai\"} 40000");
    assert_line(t, "sluice_request_duration_seconds_bucket{dialect=\"openai\",le=\"0.005\"} 0");
    assert_line(t, "sluice_request_duration_seconds_bucket{dialect=\"openai\",le=\"0.01\"} 40000");
    assert_line(t, "sluice_inter_token_gap_seconds_count 40000");
    assert_line(t, "sluice_active_streams 0");
    assert_line(t, "sluice_metrics_series_dropped_total 0");
}

/* ---- the whole exposition, checked by Prometheus' own linter ---- */

static void test_metrics_output_passes_promtool(void **state)
{
    fixture_t *fx = *state;
    if (access(PROMTOOL_SCRIPT, X_OK) != 0 || system("command -v promtool >/dev/null") != 0) {
        print_message("promtool not installed; skipping\n");
        skip();
    }
    sl_metrics_req_t r = req("openai", "gpt-4*", "mock", 200);
    r.total_ms = 1234;
    r.ttft_ms = 300;
    r.upstream_ms = 280;
    r.added_ms = 0.2;
    r.prompt_tokens = 3;
    r.completion_tokens = 4;
    r.cancelled = true;
    sl_metrics_request(fx->shard[0], &r);
    sl_metrics_http(fx->shard[1], "", 404);
    sl_metrics_gap(fx->shard[1], 12);
    sl_metrics_retry(fx->shard[0], "q\"uo\\te\nd");
    sl_metrics_fallback(fx->shard[0], "a", "b");
    sl_metrics_ratelimited(fx->shard[1], "chat", "ip");
    sl_metrics_active(fx->shard[0], 1);
    sl_metrics_process_t p = {.reloads_ok = 1, .workers = 2, .start_time_s = 1700000000.25};
    const char *t = render(fx, &p);
    FILE *f = popen(PROMTOOL_SCRIPT, "w");
    assert_non_null(f);
    assert_int_equal(fputs(t + 1, f) >= 0, 1);
    assert_int_equal(pclose(f), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
        T(test_metrics_counters_are_summed_across_shards),
        T(test_metrics_absent_model_and_provider_render_as_none),
        T(test_metrics_histogram_buckets_are_cumulative_across_shards),
        T(test_metrics_bound_is_inclusive_and_sum_is_shortest),
        T(test_metrics_added_latency_uses_fine_buckets),
        T(test_metrics_ttft_and_upstream_histograms_carry_their_labels),
        T(test_metrics_negative_values_are_skipped),
        T(test_metrics_label_values_are_escaped),
        T(test_metrics_series_cap_counts_overflow),
        T(test_metrics_empty_shards_render_every_family),
        T(test_metrics_process_values_are_rendered),
        T(test_metrics_concurrent_writers_and_scraper_keep_exact_totals),
        T(test_metrics_output_passes_promtool),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
