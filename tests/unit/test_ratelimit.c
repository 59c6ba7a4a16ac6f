/* Unit tests for policy/ratelimit: bucket arithmetic on a fake clock (now_ms is passed in),
 * all-or-nothing checks, settling, the x-ratelimit-* headers, the table bound and two
 * threads sharing one bucket. */
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
#include "policy/ratelimit.h"

#define T0 1000000 /* any start: the clock is ours */

static int setup(void **state)
{
    *state = sl_limiter_new();
    return 0;
}

static int teardown(void **state)
{
    sl_limiter_free(*state);
    return 0;
}

static sl_limit_result_t take1(sl_limiter_t *l, sl_limit_t lim, int64_t est, int64_t now)
{
    sl_limit_result_t r;
    sl_limiter_take(l, &lim, 1, est, now, &r);
    return r;
}

static void test_ratelimit_ten_rpm_allows_ten_then_refuses(void **state)
{
    sl_limiter_t *l = *state;
    sl_limit_t k = {"key", "k1", 10, 0};
    for (int i = 0; i < 10; i++) {
        sl_limit_result_t r = take1(l, k, 0, T0);
        assert_true(r.allowed);
        assert_int_equal(r.remaining_requests, 9 - i);
        assert_string_equal(r.scope, "key");
    }
    sl_limit_result_t r = take1(l, k, 0, T0);
    assert_false(r.allowed);
    assert_string_equal(r.scope, "key");
    assert_int_equal(r.retry_after_s, 6); /* one request every 6 s at 10 rpm */
    assert_int_equal(r.limit_requests, 10);
    assert_int_equal(r.remaining_requests, 0);
    assert_int_equal(r.reset_requests_ms, 60000);
}

static void test_ratelimit_refill_after_six_seconds_gives_one_more(void **state)
{
    sl_limiter_t *l = *state;
    sl_limit_t k = {"key", "k1", 10, 0};
    for (int i = 0; i < 10; i++)
        assert_true(take1(l, k, 0, T0).allowed);
    sl_limit_result_t r = take1(l, k, 0, T0 + 5999);
    assert_false(r.allowed);
    assert_int_equal(r.retry_after_s, 1); /* 1 ms left rounds up to a second */
    assert_true(take1(l, k, 0, T0 + 6000).allowed);
    assert_false(take1(l, k, 0, T0 + 6000).allowed);
    /* A clock a little behind (another worker's) neither refills nor breaks anything. */
    assert_false(take1(l, k, 0, T0 + 3000).allowed);
    assert_true(take1(l, k, 0, T0 + 12000).allowed);
}

static void test_ratelimit_tpm_counts_the_estimates(void **state)
{
    sl_limiter_t *l = *state;
    sl_limit_t k = {"key", "k1", 0, 1000};
    sl_limit_result_t r = take1(l, k, 400, T0);
    assert_true(r.allowed);
    assert_int_equal(r.remaining_tokens, 600);
    assert_int_equal(r.limit_tokens, 1000);
    assert_int_equal(r.limit_requests, 0); /* no rpm: no request headers */
    assert_true(take1(l, k, 400, T0).allowed);
    r = take1(l, k, 400, T0);
    assert_false(r.allowed);
    assert_int_equal(r.remaining_tokens, 200);
    /* 200 tokens short at 1000 a minute: 12 s. */
    assert_int_equal(r.retry_after_s, 12);
    assert_int_equal(r.reset_tokens_ms, 48000);
    assert_true(take1(l, k, 400, T0 + 12000).allowed);
}

static void test_ratelimit_all_or_nothing_across_scopes(void **state)
{
    sl_limiter_t *l = *state;
    sl_limit_t both[] = {{"key", "k1", 100, 0}, {"user", "alice", 2, 0}};
    sl_limit_result_t r;
    for (int i = 0; i < 2; i++) {
        sl_limiter_take(l, both, 2, 0, T0, &r);
        assert_true(r.allowed);
    }
    sl_limiter_take(l, both, 2, 0, T0, &r);
    assert_false(r.allowed);
    assert_string_equal(r.scope, "user");
    /* The refused check took nothing from the key's bucket. */
    r = take1(l, both[0], 0, T0);
    assert_true(r.allowed);
    assert_int_equal(r.remaining_requests, 97);
}

static void test_ratelimit_headers_come_from_the_tightest_scope(void **state)
{
    sl_limiter_t *l = *state;
    sl_limit_t lims[] = {{"key", "k1", 100, 0}, {"ip", "10.0.0.1", 10, 0}, {"user", "u", 0, 0}};
    sl_limit_result_t r;
    sl_limiter_take(l, lims, 3, 0, T0, &r);
    assert_true(r.allowed);
    assert_string_equal(r.scope, "ip");
    assert_int_equal(r.limit_requests, 10);
    assert_int_equal(r.remaining_requests, 9);
    assert_int_equal(r.reset_requests_ms, 6000);
}

static void test_ratelimit_settle_refunds_and_charges(void **state)
{
    sl_limiter_t *l = *state;
    sl_limit_t k = {"key", "k1", 0, 1000};
    assert_int_equal(take1(l, k, 500, T0).remaining_tokens, 500);
    sl_limiter_settle(l, &k, 1, 500, 200, T0); /* used less: 300 back */
    assert_int_equal(take1(l, k, 100, T0).remaining_tokens, 700);
    sl_limiter_settle(l, &k, 1, 100, 1000, T0); /* used more: 900 more, 200 in debt */
    sl_limit_result_t r = take1(l, k, 0, T0);
    assert_false(r.allowed);
    assert_int_equal(r.remaining_tokens, 0);
    assert_int_equal(r.retry_after_s, 12); /* 200 tokens of debt at 1000 a minute */
    assert_true(take1(l, k, 0, T0 + 12000).allowed);
    /* A refund never lifts a bucket above its capacity. */
    sl_limiter_settle(l, &k, 1, 1000, 0, T0 + 12000);
    assert_int_equal(take1(l, k, 0, T0 + 12000).remaining_tokens, 1000);
}

static void test_ratelimit_debt_is_capped_at_one_window(void **state)
{
    sl_limiter_t *l = *state;
    sl_limit_t k = {"key", "k1", 0, 1000};
    assert_true(take1(l, k, 10, T0).allowed);
    sl_limiter_settle(l, &k, 1, 10, 1000000, T0);
    assert_int_equal(take1(l, k, 0, T0).retry_after_s, 60);
    assert_int_equal(take1(l, k, 0, T0 + 120000).remaining_tokens, 1000);
}

static void test_ratelimit_estimate_above_capacity_waits_for_a_full_bucket(void **state)
{
    sl_limiter_t *l = *state;
    sl_limit_t k = {"key", "k1", 0, 100};
    sl_limit_result_t r = take1(l, k, 5000, T0);
    assert_true(r.allowed); /* a full bucket is enough, or it would never pass */
    assert_int_equal(r.remaining_tokens, 0);
    r = take1(l, k, 5000, T0);
    assert_false(r.allowed);
    assert_int_equal(r.retry_after_s, 60);
    assert_true(take1(l, k, 5000, T0 + 60000).allowed);
    /* Settling corrects what was taken (the capacity), not the raw estimate: 50 back. */
    sl_limiter_settle(l, &k, 1, 5000, 50, T0 + 60000);
    assert_int_equal(take1(l, k, 0, T0 + 60000).remaining_tokens, 50);
}

static void test_ratelimit_no_limit_allows_without_headers(void **state)
{
    sl_limiter_t *l = *state;
    sl_limit_t k = {"key", "k1", 0, 0};
    sl_limit_result_t r = take1(l, k, 100, T0);
    assert_true(r.allowed);
    assert_null(r.scope);
    sl_limiter_take(l, NULL, 0, 0, T0, &r);
    assert_true(r.allowed);
    sl_buf_t b;
    sl_buf_init(&b);
    sl_limit_headers(&r, &b);
    assert_int_equal(b.len, 0);
    sl_buf_dispose(&b);
    assert_int_equal(sl_limiter_size(l), 0); /* nothing to track either */
}

static void assert_headers(const sl_limit_result_t *r, const char *want)
{
    sl_buf_t b;
    sl_buf_init(&b);
    sl_limit_headers(r, &b);
    assert_string_equal(b.data ? b.data : "", want);
    sl_buf_dispose(&b);
}

static void test_ratelimit_headers_use_openai_durations(void **state)
{
    sl_limit_result_t r = {.allowed = true,
                           .limit_requests = 10,
                           .remaining_requests = 9,
                           .reset_requests_ms = 6000,
                           .limit_tokens = 1000,
                           .remaining_tokens = 400,
                           .reset_tokens_ms = 61500};
    assert_headers(&r, "x-ratelimit-limit-requests: 10\r\n"
                       "x-ratelimit-remaining-requests: 9\r\n"
                       "x-ratelimit-reset-requests: 6s\r\n"
                       "x-ratelimit-limit-tokens: 1000\r\n"
                       "x-ratelimit-remaining-tokens: 400\r\n"
                       "x-ratelimit-reset-tokens: 1m1.5s\r\n");
    static const struct {
        int64_t ms;
        const char *text;
    } durations[] = {{0, "0s"},       {120, "120ms"},      {1000, "1s"},    {1005, "1.005s"},
                     {60000, "1m0s"}, {3600000, "1h0m0s"}, {8640, "8.64s"}, {3723400, "1h2m3.4s"}};
    for (size_t i = 0; i < sizeof durations / sizeof durations[0]; i++) {
        sl_limit_result_t t = {.limit_tokens = 5, .reset_tokens_ms = durations[i].ms};
        char want[256];
        (void)snprintf(want, sizeof want,
                       "x-ratelimit-limit-tokens: 5\r\nx-ratelimit-remaining-tokens: 0\r\n"
                       "x-ratelimit-reset-tokens: %s\r\n",
                       durations[i].text);
        assert_headers(&t, want);
    }
}

static void test_ratelimit_idle_buckets_are_evicted(void **state)
{
    sl_limiter_t *l = *state;
    char id[32];
    for (int i = 0; i < 1000; i++) {
        (void)snprintf(id, sizeof id, "old-%d", i);
        assert_true(take1(l, (sl_limit_t){"ip", id, 10, 1000}, 50, T0).allowed);
    }
    assert_int_equal(sl_limiter_size(l), 1000);
    /* Two idle minutes later every old bucket is full again: checks on new ids drop them. */
    for (int i = 0; i < 2000; i++) {
        (void)snprintf(id, sizeof id, "new-%d", i);
        assert_true(take1(l, (sl_limit_t){"ip", id, 10, 1000}, 50, T0 + 120000).allowed);
    }
    assert_int_equal(sl_limiter_size(l), 2000);
    /* And an evicted id comes back full, as if never seen. */
    assert_int_equal(
        take1(l, (sl_limit_t){"ip", "old-1", 10, 0}, 0, T0 + 120000).remaining_requests, 9);
}

static void test_ratelimit_table_size_is_bounded(void **state)
{
    sl_limiter_t *l = *state;
    char id[32];
    for (int i = 0; i < SL_LIMITER_MAX_BUCKETS + 20000; i++) {
        (void)snprintf(id, sizeof id, "%d", i);
        sl_limit_result_t r;
        sl_limit_t lim = {"ip", id, 5, 0};
        sl_limiter_take(l, &lim, 1, 0, T0, &r); /* all at once: nothing is idle */
        assert_true(r.allowed);
    }
    size_t n = sl_limiter_size(l);
    assert_true(n <= SL_LIMITER_MAX_BUCKETS);
    assert_true(n > SL_LIMITER_MAX_BUCKETS * 9 / 10);
}

typedef struct hammer {
    sl_limiter_t *l;
    int allowed;
} hammer_t;

static void *hammer(void *arg)
{
    hammer_t *h = arg;
    sl_limit_t lims[] = {{"key", "shared", 20000, 0}, {"ip", "1.2.3.4", 0, 0}};
    for (int i = 0; i < 20000; i++) {
        sl_limit_result_t r;
        sl_limiter_take(h->l, lims, 2, 0, T0, &r);
        h->allowed += r.allowed;
    }
    return NULL;
}

static void test_ratelimit_two_threads_keep_the_exact_count(void **state)
{
    hammer_t a = {*state, 0}, b = {*state, 0};
    pthread_t ta, tb;
    assert_int_equal(pthread_create(&ta, NULL, hammer, &a), 0);
    assert_int_equal(pthread_create(&tb, NULL, hammer, &b), 0);
    assert_int_equal(pthread_join(ta, NULL), 0);
    assert_int_equal(pthread_join(tb, NULL), 0);
    assert_int_equal(a.allowed + b.allowed, 20000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_ratelimit_ten_rpm_allows_ten_then_refuses, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_ratelimit_refill_after_six_seconds_gives_one_more,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_ratelimit_tpm_counts_the_estimates, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ratelimit_all_or_nothing_across_scopes, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_ratelimit_headers_come_from_the_tightest_scope, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_ratelimit_settle_refunds_and_charges, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ratelimit_debt_is_capped_at_one_window, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_ratelimit_estimate_above_capacity_waits_for_a_full_bucket, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ratelimit_no_limit_allows_without_headers, setup,
                                        teardown),
        cmocka_unit_test(test_ratelimit_headers_use_openai_durations),
        cmocka_unit_test_setup_teardown(test_ratelimit_idle_buckets_are_evicted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ratelimit_table_size_is_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ratelimit_two_threads_keep_the_exact_count, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
