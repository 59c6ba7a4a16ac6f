/* core/buf: the printf-free number writers must print what printf prints. */
#include <inttypes.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/buf.h"

static void test_integers_match_printf_at_every_edge(void **state)
{
    (void)state;
    static const int64_t cases[] = {0,         1,         9,         10,        99,
                                    100,       -1,        -10,       123456789, -987654321,
                                    INT64_MAX, INT64_MIN, INT32_MAX, INT32_MIN, 1000000000000};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sl_buf_t b;
        sl_buf_init(&b);
        sl_buf_put_i64(&b, cases[i]);
        char want[32];
        snprintf(want, sizeof want, "%" PRId64, cases[i]);
        assert_string_equal(b.data, want);
        sl_buf_dispose(&b);
    }
    sl_buf_t b;
    sl_buf_init(&b);
    sl_buf_put_u64(&b, UINT64_MAX);
    assert_string_equal(b.data, "18446744073709551615");
    sl_buf_dispose(&b);
}

/* Equal to "%.3f", or (on a tie printf breaks the other way) one thousandth apart. */
static void assert_ms_like_printf(double v)
{
    sl_buf_t b;
    sl_buf_init(&b);
    sl_buf_puts(&b, "x=");
    sl_buf_put_ms(&b, v);
    char want[64];
    snprintf(want, sizeof want, "x=%.3f", v);
    if (strcmp(b.data, want) != 0) {
        double got = strtod(b.data + 2, NULL), exp = strtod(want + 2, NULL);
        if (fabs(got - exp) > 0.0011 || strlen(b.data) > strlen(want) + 1)
            fail_msg("put_ms(%.17g) = %s, printf gives %s", v, b.data, want);
        assert_non_null(strchr(b.data, '.'));
        assert_int_equal(strlen(strchr(b.data, '.')), 4);
    }
    sl_buf_dispose(&b);
}

static void test_ms_matches_printf(void **state)
{
    (void)state;
    static const double cases[] = {0.0,     -0.0,     0.0004, 0.0005,     0.9995,  1.0,     -1.0,
                                   12.3456, 999.9999, 1e6,    123456.789, -0.0004, -2.5e-4, 8.9e12,
                                   -8.9e12, 1e13,     -1e13,  NAN,        INFINITY};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        assert_ms_like_printf(cases[i]);
    srand(7);
    for (int i = 0; i < 100000; i++) {
        double v = (double)rand() / RAND_MAX * pow(10, rand() % 9) * (rand() % 5 ? 1 : -1);
        assert_ms_like_printf(v);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_integers_match_printf_at_every_edge),
        cmocka_unit_test(test_ms_matches_printf),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
