/* Unit tests for relay/breaker: the per-target state machine on a fake clock (now_ms is passed
 * in), what counts and what does not, 429 cooldowns, doubling cooldowns, one probe per
 * process under threads, the table bound, and the metrics text. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <pthread.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "relay/breaker.h"

#define T0 5000000 /* any start: the clock is ours */

static const sl_breaker_policy_t POLICY = {
    .failures = 3, .cooldown_ms = 1000, .max_cooldown_ms = 4000, .max_rate_limit_ms = 10000};

static int setup(void **state)
{
    *state = sl_breakers_new();
    return 0;
}

static int teardown(void **state)
{
    sl_breakers_free(*state);
    return 0;
}

static sl_breaker_check_t check(sl_breakers_t *b, const char *model, uint64_t now)
{
    sl_breaker_check_t c;
    sl_breakers_check(b, "p", model, &POLICY, now, &c);
    return c;
}

static void report(sl_breakers_t *b, const char *model, sl_breaker_outcome_t o, bool probe,
                   uint64_t now)
{
    sl_breakers_report(b, "p", model, &POLICY, o, -1, probe, "upstream_timeout", now);
}

static void fail_n(sl_breakers_t *b, const char *model, int n, uint64_t now)
{
    for (int i = 0; i < n; i++)
        report(b, model, SL_BREAKER_FAILED, false, now);
}

static void test_breaker_opens_after_failures_in_a_row_then_probes_once(void **state)
{
    sl_breakers_t *b = *state;
    assert_int_equal(check(b, "m", T0).verdict, SL_BREAKER_GO);
    fail_n(b, "m", 2, T0);
    assert_int_equal(check(b, "m", T0).verdict, SL_BREAKER_GO);
    fail_n(b, "m", 1, T0 + 10);
    sl_breaker_check_t c = check(b, "m", T0 + 20);
    assert_int_equal(c.verdict, SL_BREAKER_SKIP);
    assert_string_equal(c.why, "circuit_open");
    assert_int_equal(c.available_ms, T0 + 10 + 1000);
    assert_int_equal(c.last_failure_ms, T0 + 10);
    assert_int_equal(sl_breakers_state(b, "p", "m"), SL_BREAKER_OPEN);
    /* Another target of the same provider is not affected. */
    assert_int_equal(check(b, "other", T0 + 20).verdict, SL_BREAKER_GO);
    /* Cooldown over: exactly one probe, then the others wait for it. */
    assert_int_equal(check(b, "m", T0 + 1010).verdict, SL_BREAKER_PROBE);
    c = check(b, "m", T0 + 1011);
    assert_int_equal(c.verdict, SL_BREAKER_SKIP);
    assert_string_equal(c.why, "probe_in_flight");
    report(b, "m", SL_BREAKER_ANSWERED, true, T0 + 1200);
    assert_int_equal(sl_breakers_state(b, "p", "m"), SL_BREAKER_CLOSED);
    assert_int_equal(check(b, "m", T0 + 1201).verdict, SL_BREAKER_GO);
}

static void test_breaker_failed_probe_doubles_the_cooldown_up_to_the_cap(void **state)
{
    sl_breakers_t *b = *state;
    uint64_t now = T0;
    fail_n(b, "m", 3, now);
    uint64_t expect[] = {2000, 4000, 4000};
    for (int i = 0; i < 3; i++) {
        now = check(b, "m", now).available_ms;
        assert_int_equal(check(b, "m", now).verdict, SL_BREAKER_PROBE);
        report(b, "m", SL_BREAKER_FAILED, true, now);
        sl_breaker_check_t c = check(b, "m", now);
        assert_int_equal(c.verdict, SL_BREAKER_SKIP);
        assert_int_equal(c.available_ms - now, expect[i]);
    }
    /* A success resets the doubling: the next open is back to the base cooldown. */
    now += 4000;
    assert_int_equal(check(b, "m", now).verdict, SL_BREAKER_PROBE);
    report(b, "m", SL_BREAKER_SUCCEEDED, true, now);
    fail_n(b, "m", 3, now);
    assert_int_equal(check(b, "m", now).available_ms - now, 1000);
}

static void test_breaker_failures_while_open_do_not_extend_it(void **state)
{
    sl_breakers_t *b = *state;
    fail_n(b, "m", 3, T0);
    /* Requests that started before it opened fail later: still one open period. */
    fail_n(b, "m", 20, T0 + 900);
    assert_int_equal(check(b, "m", T0 + 999).verdict, SL_BREAKER_SKIP);
    assert_int_equal(check(b, "m", T0 + 1000).verdict, SL_BREAKER_PROBE);
    /* A failure in half-open from an attempt that is not the probe does not reopen it. */
    report(b, "m", SL_BREAKER_FAILED, false, T0 + 1001);
    assert_int_equal(sl_breakers_state(b, "p", "m"), SL_BREAKER_HALF_OPEN);
}

static void test_breaker_refusals_and_successes_reset_the_count(void **state)
{
    sl_breakers_t *b = *state;
    fail_n(b, "m", 2, T0);
    report(b, "m", SL_BREAKER_SUCCEEDED, false, T0); /* a 4xx: the upstream answered */
    fail_n(b, "m", 2, T0);
    assert_int_equal(check(b, "m", T0).verdict, SL_BREAKER_GO);
    /* A stream that starts and then drops keeps counting: answered does not reset. */
    for (int i = 0; i < 3; i++) {
        report(b, "x", SL_BREAKER_ANSWERED, false, T0);
        report(b, "x", SL_BREAKER_FAILED, false, T0);
    }
    assert_int_equal(check(b, "x", T0).verdict, SL_BREAKER_SKIP);
}

static void test_breaker_429_cools_down_for_retry_after_without_opening(void **state)
{
    sl_breakers_t *b = *state;
    for (int i = 0; i < 10; i++)
        sl_breakers_report(b, "p", "m", &POLICY, SL_BREAKER_LIMITED, 2, false, "rate", T0);
    sl_breaker_check_t c = check(b, "m", T0 + 100);
    assert_int_equal(c.verdict, SL_BREAKER_SKIP);
    assert_string_equal(c.why, "rate_limited");
    assert_int_equal(c.available_ms, T0 + 2000);
    assert_int_equal(sl_breakers_state(b, "p", "m"), SL_BREAKER_CLOSED);
    assert_int_equal(check(b, "m", T0 + 2000).verdict, SL_BREAKER_GO);
    /* No Retry-After: one second; a huge one: capped at max_rate_limit. */
    sl_breakers_report(b, "p", "n", &POLICY, SL_BREAKER_LIMITED, -1, false, "rate", T0);
    assert_int_equal(check(b, "n", T0).available_ms, T0 + 1000);
    sl_breakers_report(b, "p", "k", &POLICY, SL_BREAKER_LIMITED, 86000, false, "rate", T0);
    assert_int_equal(check(b, "k", T0).available_ms, T0 + 10000);
}

static void test_breaker_zero_failures_never_opens(void **state)
{
    sl_breakers_t *b = *state;
    sl_breaker_policy_t p = POLICY;
    p.failures = 0;
    for (int i = 0; i < 100; i++)
        sl_breakers_report(b, "p", "m", &p, SL_BREAKER_FAILED, -1, false, "x", T0);
    sl_breaker_check_t c;
    sl_breakers_check(b, "p", "m", &p, T0, &c);
    assert_int_equal(c.verdict, SL_BREAKER_GO);
}

static void test_breaker_abandoned_probe_lets_another_try(void **state)
{
    sl_breakers_t *b = *state;
    fail_n(b, "m", 3, T0);
    assert_int_equal(check(b, "m", T0 + 1000).verdict, SL_BREAKER_PROBE);
    report(b, "m", SL_BREAKER_ABANDONED, true, T0 + 1001);
    assert_int_equal(check(b, "m", T0 + 1002).verdict, SL_BREAKER_PROBE);
    /* A probe that never reports expires, so half-open cannot stick. */
    assert_int_equal(check(b, "m", T0 + 1003).verdict, SL_BREAKER_SKIP);
    assert_int_equal(check(b, "m", T0 + 1002 + 120000).verdict, SL_BREAKER_PROBE);
}

static void test_breaker_table_is_bounded(void **state)
{
    sl_breakers_t *b = *state;
    char model[32];
    /* Good news creates nothing; failures fill the table, then further targets go
     * untracked (always tried) rather than grow it. */
    for (int i = 0; i < 3 * SL_BREAKERS_MAX; i++) {
        (void)snprintf(model, sizeof model, "ok-%d", i);
        report(b, model, SL_BREAKER_SUCCEEDED, false, T0);
    }
    for (int i = 0; i < SL_BREAKERS_MAX + 10; i++) {
        (void)snprintf(model, sizeof model, "bad-%d", i);
        fail_n(b, model, 3, T0);
    }
    assert_int_equal(check(b, "bad-0", T0).verdict, SL_BREAKER_SKIP);
    assert_int_equal(check(b, "bad-511", T0).verdict, SL_BREAKER_SKIP);
    assert_int_equal(check(b, "bad-515", T0).verdict, SL_BREAKER_GO);
    /* Once closed with nothing to remember, an entry makes room for another target. */
    assert_int_equal(check(b, "bad-0", T0 + 1000).verdict, SL_BREAKER_PROBE);
    report(b, "bad-0", SL_BREAKER_SUCCEEDED, true, T0 + 1000);
    fail_n(b, "bad-515", 3, T0 + 1000);
    assert_int_equal(check(b, "bad-515", T0 + 1000).verdict, SL_BREAKER_SKIP);
}

static void test_breaker_metrics_text(void **state)
{
    sl_breakers_t *b = *state;
    fail_n(b, "gpt\"x", 3, T0);
    sl_breakers_report(b, "q", "m", &POLICY, SL_BREAKER_FAILED, -1, false, "x", T0);
    const char *providers[] = {"p", "q", "idle"};
    sl_buf_t out;
    sl_buf_init(&out);
    sl_breakers_render(b, providers, 3, &out);
    const char *t = out.data;
    assert_non_null(strstr(t, "# TYPE sluice_breaker_state gauge\n"));
    assert_non_null(strstr(t, "\nsluice_breaker_state{provider=\"p\"} 1\n"));
    assert_non_null(strstr(t, "\nsluice_breaker_state{provider=\"q\"} 0\n"));
    assert_non_null(strstr(t, "\nsluice_breaker_state{provider=\"idle\"} 0\n"));
    assert_non_null(
        strstr(t, "\nsluice_breaker_target_state{provider=\"p\",model=\"gpt\\\"x\"} 1\n"));
    assert_null(strstr(t, "sluice_breaker_target_state{provider=\"q\""));
    assert_non_null(strstr(t, "\nsluice_breaker_opened_total{provider=\"p\"} 1\n"));
    assert_non_null(strstr(t, "\nsluice_breaker_opened_total{provider=\"q\"} 0\n"));
    sl_buf_dispose(&out);
}

/* ---- threads: one process, many workers ---- */

#define THREADS 4
#define ROUNDS  2000

typedef struct arg {
    sl_breakers_t *b;
    uint64_t now;
    int probes;
} arg_t;

static void *check_all(void *p)
{
    arg_t *a = p;
    for (int i = 0; i < ROUNDS; i++)
        if (check(a->b, "m", a->now).verdict == SL_BREAKER_PROBE)
            a->probes++;
    return NULL;
}

static void *fail_all(void *p)
{
    arg_t *a = p;
    for (int i = 0; i < ROUNDS; i++) {
        report(a->b, "m", SL_BREAKER_FAILED, false, a->now);
        (void)check(a->b, "m", a->now);
    }
    return NULL;
}

static void test_breaker_threads_share_one_threshold_and_one_probe(void **state)
{
    sl_breakers_t *b = *state;
    pthread_t t[THREADS];
    arg_t a[THREADS];
    for (int i = 0; i < THREADS; i++) {
        a[i] = (arg_t){.b = b, .now = T0};
        assert_int_equal(pthread_create(&t[i], NULL, fail_all, &a[i]), 0);
    }
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_join(t[i], NULL), 0);
    assert_int_equal(sl_breakers_state(b, "p", "m"), SL_BREAKER_OPEN);
    /* After the cooldown, of THREADS * ROUNDS concurrent checks exactly one is the probe. */
    int probes = 0;
    for (int i = 0; i < THREADS; i++) {
        a[i] = (arg_t){.b = b, .now = T0 + 1000};
        assert_int_equal(pthread_create(&t[i], NULL, check_all, &a[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        assert_int_equal(pthread_join(t[i], NULL), 0);
        probes += a[i].probes;
    }
    assert_int_equal(probes, 1);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_breaker_opens_after_failures_in_a_row_then_probes_once),
        T(test_breaker_failed_probe_doubles_the_cooldown_up_to_the_cap),
        T(test_breaker_failures_while_open_do_not_extend_it),
        T(test_breaker_refusals_and_successes_reset_the_count),
        T(test_breaker_429_cools_down_for_retry_after_without_opening),
        T(test_breaker_zero_failures_never_opens),
        T(test_breaker_abandoned_probe_lets_another_try),
        T(test_breaker_table_is_bounded),
        T(test_breaker_metrics_text),
        T(test_breaker_threads_share_one_threshold_and_one_probe),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
