/* Unit tests for policy/budget: reservations against a budget, strict (max_tokens sent) and
 * not, the records' floor, settling, and many threads reserving one budget at once. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <pthread.h>

#include "policy/budget.h"

static int setup(void **state)
{
    *state = sl_budgets_new();
    return 0;
}

static int teardown(void **state)
{
    sl_budgets_free(*state);
    return 0;
}

static sl_budget_grant_t reserve(sl_budgets_t *b, int64_t floor, int64_t worst, bool strict)
{
    sl_budget_grant_t g;
    sl_budgets_reserve(b, "k", 100, floor, worst, strict, &g);
    return g;
}

static void test_budget_strict_reservations_never_exceed_it(void **state)
{
    sl_budgets_t *b = *state;
    int allowed = 0;
    for (int i = 0; i < 20; i++)
        allowed += reserve(b, 0, 30, true).allowed;
    assert_int_equal(allowed, 3); /* 90 of 100 held; a 4th would make 120 */
    int64_t spent, reserved;
    sl_budgets_peek(b, "k", &spent, &reserved);
    assert_int_equal(reserved, 90);
    /* They used less than they reserved: the rest comes back. */
    for (int i = 0; i < 3; i++)
        sl_budgets_settle(b, "k", 30, 20);
    sl_budgets_peek(b, "k", &spent, &reserved);
    assert_int_equal(spent, 60);
    assert_int_equal(reserved, 0);
    sl_budget_grant_t g = reserve(b, 0, 41, true);
    assert_false(g.allowed);
    assert_int_equal(g.left, 40);
    assert_true(reserve(b, 0, 40, true).allowed);
}

static void test_budget_without_max_tokens_takes_at_most_what_is_left(void **state)
{
    sl_budgets_t *b = *state;
    sl_budget_grant_t g = reserve(b, 70, 4096, false);
    assert_true(g.allowed);
    assert_int_equal(g.granted, 30);
    /* The remainder is held: a parallel request has nothing left to run on. */
    g = reserve(b, 70, 4096, false);
    assert_false(g.allowed);
    assert_int_equal(g.left, 0);
    /* A failure releases its reservation whole. */
    sl_budgets_settle(b, "k", 30, 0);
    assert_true(reserve(b, 70, 10, false).allowed);
}

static void test_budget_floor_is_never_counted_twice(void **state)
{
    sl_budgets_t *b = *state;
    sl_budget_grant_t g = reserve(b, 10, 20, true);
    assert_true(g.allowed);
    sl_budgets_settle(b, "k", 20, 15); /* spent 25 here: ahead of the records (10) */
    int64_t spent, reserved;
    reserve(b, 10, 1, true);
    sl_budgets_peek(b, "k", &spent, &reserved);
    assert_int_equal(spent, 25); /* max(records, ledger), not their sum */
    /* The records caught up and another instance spent 50 meanwhile: they lead now. */
    g = reserve(b, 75, 30, true);
    assert_false(g.allowed);
    assert_int_equal(g.left, 100 - 75 - 1);
}

typedef struct arg {
    sl_budgets_t *b;
    int64_t charged;
} arg_t;

#define THREADS 4
#define ROUNDS  5000

/* Each round: reserve 7 (strict), use 5 of it. */
static void *spend(void *p)
{
    arg_t *a = p;
    for (int i = 0; i < ROUNDS; i++) {
        sl_budget_grant_t g;
        sl_budgets_reserve(a->b, "shared", 10000, 0, 7, true, &g);
        if (g.allowed) {
            sl_budgets_settle(a->b, "shared", g.granted, 5);
            a->charged += 5;
        }
    }
    return NULL;
}

static void test_budget_threads_never_overspend(void **state)
{
    sl_budgets_t *b = *state;
    pthread_t t[THREADS];
    arg_t a[THREADS];
    for (int i = 0; i < THREADS; i++) {
        a[i] = (arg_t){.b = b};
        assert_int_equal(pthread_create(&t[i], NULL, spend, &a[i]), 0);
    }
    int64_t total = 0;
    for (int i = 0; i < THREADS; i++) {
        assert_int_equal(pthread_join(t[i], NULL), 0);
        total += a[i].charged;
    }
    int64_t spent, reserved;
    sl_budgets_peek(b, "shared", &spent, &reserved);
    assert_int_equal(spent, total);
    assert_int_equal(reserved, 0);
    assert_true(spent <= 10000);
    assert_true(spent >= 10000 - 7); /* and it was used up, not refused early */
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_budget_strict_reservations_never_exceed_it),
        T(test_budget_without_max_tokens_takes_at_most_what_is_left),
        T(test_budget_floor_is_never_counted_twice),
        T(test_budget_threads_never_overspend),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
