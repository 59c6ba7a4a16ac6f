/* Unit tests for relay/breaker: the per-target state machine on a fake clock (now_ms is passed
 * in), what counts and what does not, 429 cooldowns, doubling cooldowns, one probe per
 * process under threads, the table bound, and the metrics text. Every edge of breaker.c:
 *   closed    --failures in a row--> open          (opens_after_failures..., answer_while_open...)
 *   open      --cooldown over-->     half-open     (the probe; rate_limited_at_half_open...)
 *   half-open --the probe answers--> closed        (opens_after..., probe_answered_then_dropped)
 *   half-open --the probe fails-->   open, doubled (failed_probe_doubles..., max_cooldown_below...)
 *   half-open --probe abandoned, 429'd or lost--> half-open, probe slot free
 *   any       --an answer or a 4xx--> closed       (answer_while_open...,
 * refusals_and_successes...) 429 (LIMITED): a cooldown, never a failure, never a reset (429_*)
 *   ABANDONED: frees the probe slot, nothing else (abandoned_*) */
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

static void limited(sl_breakers_t *b, const char *model, int retry_after_s, bool probe,
                    uint64_t now)
{
    sl_breakers_report(b, "p", model, &POLICY, SL_BREAKER_LIMITED, retry_after_s, probe, "rate",
                       now);
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
    /* A failure in half-open from an attempt that is not the probe does not reopen it, and
     * does not end the probe either: the others still wait for it. */
    report(b, "m", SL_BREAKER_FAILED, false, T0 + 1001);
    assert_int_equal(sl_breakers_state(b, "p", "m"), SL_BREAKER_HALF_OPEN);
    sl_breaker_check_t c = check(b, "m", T0 + 1002);
    assert_int_equal(c.verdict, SL_BREAKER_SKIP);
    assert_string_equal(c.why, "probe_in_flight");
    assert_int_equal(c.available_ms, 0); /* "when the probe ends" */
    /* The probe's own failure reopens it, for twice the cooldown. */
    report(b, "m", SL_BREAKER_FAILED, true, T0 + 1003);
    assert_int_equal(sl_breakers_state(b, "p", "m"), SL_BREAKER_OPEN);
    assert_int_equal(check(b, "m", T0 + 1004).available_ms, T0 + 1003 + 2000);
}

/* closed -> open -> closed without a probe: an attempt the breaker did not stop (it began
 * before the breaker opened, or every target was open and the relay tried anyway) answers. */
static void test_breaker_an_answer_while_open_closes_it(void **state)
{
    sl_breakers_t *b = *state;
    fail_n(b, "m", 3, T0);
    assert_int_equal(sl_breakers_state(b, "p", "m"), SL_BREAKER_OPEN);
    report(b, "m", SL_BREAKER_SUCCEEDED, false, T0 + 100);
    assert_int_equal(sl_breakers_state(b, "p", "m"), SL_BREAKER_CLOSED);
    assert_int_equal(check(b, "m", T0 + 101).verdict, SL_BREAKER_GO);
    /* The run of failures starts over, and so does the doubling. */
    fail_n(b, "m", 2, T0 + 200);
    assert_int_equal(check(b, "m", T0 + 200).verdict, SL_BREAKER_GO);
    fail_n(b, "m", 1, T0 + 300);
    assert_int_equal(check(b, "m", T0 + 300).available_ms, T0 + 300 + 1000);
    /* A stream that started (ANSWERED) closes it too. */
    fail_n(b, "n", 3, T0);
    report(b, "n", SL_BREAKER_ANSWERED, false, T0 + 100);
    assert_int_equal(sl_breakers_state(b, "p", "n"), SL_BREAKER_CLOSED);
    /* In half-open, an attempt other than the probe that answers closes it; the probe's own
     * failure, reported later, is then one failure of a new run. */
    fail_n(b, "h", 3, T0);
    assert_int_equal(check(b, "h", T0 + 1000).verdict, SL_BREAKER_PROBE);
    report(b, "h", SL_BREAKER_ANSWERED, false, T0 + 1001);
    assert_int_equal(sl_breakers_state(b, "p", "h"), SL_BREAKER_CLOSED);
    report(b, "h", SL_BREAKER_FAILED, true, T0 + 1002);
    assert_int_equal(sl_breakers_state(b, "p", "h"), SL_BREAKER_CLOSED);
    assert_int_equal(check(b, "h", T0 + 1003).verdict, SL_BREAKER_GO);
    fail_n(b, "h", 2, T0 + 1004);
    assert_int_equal(sl_breakers_state(b, "p", "h"), SL_BREAKER_OPEN);
}

/* The probe's stream starts (ANSWERED: closed), then drops (FAILED, no longer the probe): the
 * drop is the first failure of a new run, not a reopening. */
static void test_breaker_probe_answered_then_dropped_is_one_failure(void **state)
{
    sl_breakers_t *b = *state;
    fail_n(b, "m", 3, T0);
    assert_int_equal(check(b, "m", T0 + 1000).verdict, SL_BREAKER_PROBE);
    report(b, "m", SL_BREAKER_ANSWERED, true, T0 + 1100);
    assert_int_equal(sl_breakers_state(b, "p", "m"), SL_BREAKER_CLOSED);
    report(b, "m", SL_BREAKER_FAILED, false, T0 + 1500);
    assert_int_equal(sl_breakers_state(b, "p", "m"), SL_BREAKER_CLOSED);
    sl_breaker_check_t c = check(b, "m", T0 + 1501);
    assert_int_equal(c.verdict, SL_BREAKER_GO);
    assert_int_equal(c.last_failure_ms, T0 + 1500);
    fail_n(b, "m", 1, T0 + 1600);
    assert_int_equal(check(b, "m", T0 + 1600).verdict, SL_BREAKER_GO);
    fail_n(b, "m", 1, T0 + 1700);
    /* Opened afresh: the base cooldown, not a doubled one (the close reset the doubling). */
    c = check(b, "m", T0 + 1700);
    assert_int_equal(c.verdict, SL_BREAKER_SKIP);
    assert_int_equal(c.available_ms, T0 + 1700 + 1000);
}

/* max_cooldown below cooldown: the cooldown is used as is, and a failed probe does not
 * double it. */
static void test_breaker_max_cooldown_below_cooldown_never_doubles(void **state)
{
    sl_breakers_t *b = *state;
    sl_breaker_policy_t p = POLICY;
    p.max_cooldown_ms = 500;
    sl_breaker_check_t c;
    for (int i = 0; i < 3; i++)
        sl_breakers_report(b, "p", "m", &p, SL_BREAKER_FAILED, -1, false, "x", T0);
    sl_breakers_check(b, "p", "m", &p, T0, &c);
    assert_int_equal(c.available_ms, T0 + 1000);
    sl_breakers_check(b, "p", "m", &p, T0 + 1000, &c);
    assert_int_equal(c.verdict, SL_BREAKER_PROBE);
    sl_breakers_report(b, "p", "m", &p, SL_BREAKER_FAILED, -1, true, "x", T0 + 1000);
    sl_breakers_check(b, "p", "m", &p, T0 + 1000, &c);
    assert_int_equal(c.verdict, SL_BREAKER_SKIP);
    assert_int_equal(c.available_ms, T0 + 2000);
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

/* A 429 is not a failure (it does not count towards opening) and not an answer either (it
 * does not end the run of failures). */
static void test_breaker_429_neither_counts_nor_resets_the_run(void **state)
{
    sl_breakers_t *b = *state;
    fail_n(b, "m", 1, T0);
    for (int i = 0; i < 5; i++)
        limited(b, "m", 1, false, T0 + 10);
    sl_breaker_check_t c = check(b, "m", T0 + 1010);
    assert_int_equal(c.verdict, SL_BREAKER_GO);
    assert_int_equal(c.last_failure_ms, T0); /* the 429s are not failures */
    /* Had they counted, this second failure would be the seventh and open it. */
    fail_n(b, "m", 1, T0 + 1010);
    assert_int_equal(sl_breakers_state(b, "p", "m"), SL_BREAKER_CLOSED);
    /* Had they reset the run, this third one would be the second. */
    fail_n(b, "m", 1, T0 + 1020);
    assert_int_equal(sl_breakers_state(b, "p", "m"), SL_BREAKER_OPEN);
    /* A target that only ever saw 429s has never failed. */
    limited(b, "r", 1, false, T0);
    c = check(b, "r", T0);
    assert_int_equal(c.verdict, SL_BREAKER_SKIP);
    assert_int_equal(c.last_failure_ms, 0);
}

/* A later, shorter Retry-After does not shorten the cooldown; a longer one extends it;
 * Retry-After: 0 is no cooldown at all. */
static void test_breaker_429_cooldown_only_grows(void **state)
{
    sl_breakers_t *b = *state;
    limited(b, "m", 5, false, T0);
    limited(b, "m", 1, false, T0 + 100);
    assert_int_equal(check(b, "m", T0 + 100).available_ms, T0 + 5000);
    limited(b, "m", 8, false, T0 + 100);
    assert_int_equal(check(b, "m", T0 + 100).available_ms, T0 + 8100);
    assert_int_equal(check(b, "m", T0 + 8099).verdict, SL_BREAKER_SKIP);
    assert_int_equal(check(b, "m", T0 + 8100).verdict, SL_BREAKER_GO);
    limited(b, "z", 0, false, T0);
    assert_int_equal(check(b, "z", T0).verdict, SL_BREAKER_GO);
}

/* The probe gets a 429: the target stays half-open (neither closed nor opened again), waits
 * out the Retry-After, and the next check after it is a new probe (the 429 ended this one). */
static void test_breaker_rate_limited_probe_frees_the_slot(void **state)
{
    sl_breakers_t *b = *state;
    fail_n(b, "m", 3, T0);
    assert_int_equal(check(b, "m", T0 + 1000).verdict, SL_BREAKER_PROBE);
    limited(b, "m", 2, true, T0 + 1000);
    assert_int_equal(sl_breakers_state(b, "p", "m"), SL_BREAKER_HALF_OPEN);
    sl_breaker_check_t c = check(b, "m", T0 + 1001);
    assert_int_equal(c.verdict, SL_BREAKER_SKIP);
    assert_string_equal(c.why, "rate_limited");
    assert_int_equal(c.available_ms, T0 + 3000);
    assert_int_equal(check(b, "m", T0 + 3000).verdict, SL_BREAKER_PROBE);
}

/* Half-open while a 429's cooldown runs (a 429 came back to an attempt that began before it
 * opened): no probe is admitted, and none is left holding the slot, so once the cooldown is
 * over the next check is the probe, not "probe_in_flight". */
static void test_breaker_rate_limited_at_half_open_admits_no_probe(void **state)
{
    sl_breakers_t *b = *state;
    fail_n(b, "m", 3, T0);
    limited(b, "m", 5, false, T0 + 10);
    for (uint64_t t = T0 + 1000; t < T0 + 1003; t++) {
        sl_breaker_check_t c = check(b, "m", t);
        assert_int_equal(c.verdict, SL_BREAKER_SKIP);
        assert_string_equal(c.why, "rate_limited");
        assert_int_equal(c.available_ms, T0 + 5010);
    }
    assert_int_equal(sl_breakers_state(b, "p", "m"), SL_BREAKER_HALF_OPEN);
    assert_int_equal(check(b, "m", T0 + 5010).verdict, SL_BREAKER_PROBE);
    assert_string_equal(check(b, "m", T0 + 5011).why, "probe_in_flight");
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
    /* A probe that never reports expires (after 120 s), so half-open cannot stick. */
    assert_int_equal(check(b, "m", T0 + 1003).verdict, SL_BREAKER_SKIP);
    assert_int_equal(check(b, "m", T0 + 1002 + 119999).verdict, SL_BREAKER_SKIP);
    assert_int_equal(check(b, "m", T0 + 1002 + 120000).verdict, SL_BREAKER_PROBE);
}

/* ABANDONED (the client left, the call never started) says nothing about the upstream: it
 * frees the probe slot when it was the probe, and changes nothing else. */
static void test_breaker_abandoned_changes_nothing_but_the_probe(void **state)
{
    sl_breakers_t *b = *state;
    fail_n(b, "m", 3, T0);
    assert_int_equal(check(b, "m", T0 + 1000).verdict, SL_BREAKER_PROBE);
    /* Another attempt's abandonment does not free the probe's slot. */
    report(b, "m", SL_BREAKER_ABANDONED, false, T0 + 1001);
    assert_string_equal(check(b, "m", T0 + 1002).why, "probe_in_flight");
    /* The probe's own: half-open still (not closed, not open again), slot free. */
    report(b, "m", SL_BREAKER_ABANDONED, true, T0 + 1003);
    assert_int_equal(sl_breakers_state(b, "p", "m"), SL_BREAKER_HALF_OPEN);
    assert_int_equal(check(b, "m", T0 + 1004).verdict, SL_BREAKER_PROBE);
    /* Not a failure, not a success: the run of failures goes on across it. */
    fail_n(b, "r", 2, T0);
    for (int i = 0; i < 5; i++)
        report(b, "r", SL_BREAKER_ABANDONED, false, T0 + 1);
    assert_int_equal(check(b, "r", T0 + 2).verdict, SL_BREAKER_GO);
    fail_n(b, "r", 1, T0 + 3);
    assert_int_equal(sl_breakers_state(b, "p", "r"), SL_BREAKER_OPEN);
    /* About a target nobody tracks: nothing at all. */
    report(b, "untracked", SL_BREAKER_ABANDONED, true, T0);
    sl_breaker_check_t c = check(b, "untracked", T0);
    assert_int_equal(c.verdict, SL_BREAKER_GO);
    assert_int_equal(c.last_failure_ms, 0);
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

/* The provider's series is its worst target: open over half-open over closed; every opening
 * counts, a failed probe's reopening too. */
static void test_breaker_metrics_half_open_and_reopenings(void **state)
{
    sl_breakers_t *b = *state;
    const char *providers[] = {"p"};
    sl_buf_t out;
    fail_n(b, "a", 3, T0);
    assert_int_equal(check(b, "a", T0 + 1000).verdict, SL_BREAKER_PROBE);
    sl_buf_init(&out);
    sl_breakers_render(b, providers, 1, &out);
    assert_non_null(strstr(out.data, "\nsluice_breaker_state{provider=\"p\"} 2\n"));
    assert_non_null(
        strstr(out.data, "\nsluice_breaker_target_state{provider=\"p\",model=\"a\"} 2\n"));
    sl_buf_dispose(&out);

    fail_n(b, "b", 3, T0 + 1000);
    report(b, "a", SL_BREAKER_FAILED, true, T0 + 1001); /* reopens a */
    sl_buf_init(&out);
    sl_breakers_render(b, providers, 1, &out);
    assert_non_null(strstr(out.data, "\nsluice_breaker_state{provider=\"p\"} 1\n"));
    assert_non_null(strstr(out.data, "\nsluice_breaker_opened_total{provider=\"p\"} 3\n"));
    sl_buf_dispose(&out);

    /* b half-open, a open: open is the worse. */
    assert_int_equal(check(b, "b", T0 + 2000).verdict, SL_BREAKER_PROBE);
    sl_buf_init(&out);
    sl_breakers_render(b, providers, 1, &out);
    assert_non_null(strstr(out.data, "\nsluice_breaker_state{provider=\"p\"} 1\n"));
    assert_non_null(
        strstr(out.data, "\nsluice_breaker_target_state{provider=\"p\",model=\"b\"} 2\n"));
    assert_non_null(
        strstr(out.data, "\nsluice_breaker_target_state{provider=\"p\",model=\"a\"} 1\n"));
    sl_buf_dispose(&out);

    /* Both close: the provider is 0 again, no target line, and the count stays. */
    report(b, "b", SL_BREAKER_SUCCEEDED, true, T0 + 2001);
    report(b, "a", SL_BREAKER_SUCCEEDED, false, T0 + 2002);
    sl_buf_init(&out);
    sl_breakers_render(b, providers, 1, &out);
    assert_non_null(strstr(out.data, "\nsluice_breaker_state{provider=\"p\"} 0\n"));
    assert_null(strstr(out.data, "sluice_breaker_target_state{provider=\"p\""));
    assert_non_null(strstr(out.data, "\nsluice_breaker_opened_total{provider=\"p\"} 3\n"));
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
        T(test_breaker_an_answer_while_open_closes_it),
        T(test_breaker_probe_answered_then_dropped_is_one_failure),
        T(test_breaker_max_cooldown_below_cooldown_never_doubles),
        T(test_breaker_refusals_and_successes_reset_the_count),
        T(test_breaker_429_cools_down_for_retry_after_without_opening),
        T(test_breaker_429_neither_counts_nor_resets_the_run),
        T(test_breaker_429_cooldown_only_grows),
        T(test_breaker_rate_limited_probe_frees_the_slot),
        T(test_breaker_rate_limited_at_half_open_admits_no_probe),
        T(test_breaker_zero_failures_never_opens),
        T(test_breaker_abandoned_probe_lets_another_try),
        T(test_breaker_abandoned_changes_nothing_but_the_probe),
        T(test_breaker_table_is_bounded),
        T(test_breaker_metrics_text),
        T(test_breaker_metrics_half_open_and_reopenings),
        T(test_breaker_threads_share_one_threshold_and_one_probe),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
