/* Unit tests for upstream/headers: the lines a provider's headers become, the omit list, and
 * values that could break a line (CR, LF, other controls) refused with nothing added. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "upstream/headers.h"

static const char *text(const sl_buf_t *b)
{
    return b->data ? b->data : "";
}

static void test_headers_add_makes_request_head_lines_in_order(void **state)
{
    sl_headers_t h;
    sl_headers_init(&h);
    assert_int_equal(sl_headers_add(&h, "Authorization", "Bearer sk-1"), 0);
    assert_int_equal(sl_headers_add(&h, "X-Request-Id", "req_1"), 0);
    assert_int_equal(sl_headers_add(&h, "x-tab", "a\tb \xc3\xa9"), 0); /* tab, UTF-8: text */
    assert_string_equal(
        text(&h.send),
        "Authorization: Bearer sk-1\r\nX-Request-Id: req_1\r\nx-tab: a\tb \xc3\xa9\r\n");
    assert_string_equal(text(&h.omit), "");
    sl_headers_dispose(&h);
}

/* "Name:" is how curl is told to leave a header out: an empty or blank value means the same
 * on both transports, never an empty header on one of them. */
static void test_headers_empty_value_omits_the_header(void **state)
{
    sl_headers_t h;
    sl_headers_init(&h);
    sl_headers_omit(&h, "Expect");
    assert_int_equal(sl_headers_add(&h, "Accept", ""), 0);
    assert_int_equal(sl_headers_add(&h, "Content-Type", " \t "), 0);
    assert_string_equal(text(&h.send), "");
    assert_string_equal(text(&h.omit), "Expect:\r\nAccept:\r\nContent-Type:\r\n");
    sl_headers_dispose(&h);
}

static void test_headers_value_that_could_break_a_line_is_refused(void **state)
{
    static const char *const bad[] = {
        "key\r\nX-Injected: 1",
        "key\nX-Injected: 1",
        "key\rX-Injected: 1",
        "\r\n",
        "key\r\n",
        "\nkey",
        "a\x01z",
        "a\x1bz",
        "a\x7fz",
        "a\x0bz",
    };
    sl_headers_t h;
    sl_headers_init(&h);
    assert_int_equal(sl_headers_add(&h, "A", "1"), 0);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(sl_headers_add(&h, "x-api-key", bad[i]), SL_EINVAL);
    /* nothing of them was added */
    assert_string_equal(text(&h.send), "A: 1\r\n");
    assert_string_equal(text(&h.omit), "");
    sl_headers_dispose(&h);
}

static void test_headers_dispose_of_empty_is_harmless(void **state)
{
    sl_headers_t h;
    sl_headers_init(&h);
    sl_headers_dispose(&h);
    sl_headers_dispose(&h);
    assert_int_equal(h.send.len + h.omit.len, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_headers_add_makes_request_head_lines_in_order),
        cmocka_unit_test(test_headers_empty_value_omits_the_header),
        cmocka_unit_test(test_headers_value_that_could_break_a_line_is_refused),
        cmocka_unit_test(test_headers_dispose_of_empty_is_harmless),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
