/* HTTP request reading: limits while reading, pipelining, header lookup, JSON escaping and the
 * constant-time key compare that guard the front door. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "core/buf.h"
#include "core/err.h"
#include "http/request.h"
#include "policy/auth.h"

static size_t feed_all(sl_http_req_t *r, const char *s)
{
    return sl_http_req_feed(r, s, strlen(s));
}

static void test_request_parsed_byte_by_byte(void **st)
{
    const char *in = "POST /v1/chat/completions?x=1 HTTP/1.1\r\nHost: a\r\nX-Request-Id: abc\r\n"
                     "Content-Length: 5\r\n\r\nhello";
    sl_http_req_t r;
    sl_http_req_init(&r, 16384, 1024);
    for (size_t i = 0; in[i]; i++)
        assert_int_equal(sl_http_req_feed(&r, in + i, 1), 1);
    assert_true(r.complete);
    size_t len;
    const char *path = sl_http_req_path(&r, &len);
    assert_int_equal(len, strlen("/v1/chat/completions"));
    assert_memory_equal(path, "/v1/chat/completions", len);
    assert_string_equal(sl_http_req_header(&r, "x-request-id"), "abc");
    assert_string_equal(sl_http_req_header(&r, "host"), "a");
    assert_null(sl_http_req_header(&r, "accept"));
    assert_int_equal(r.body.len, 5);
    assert_string_equal(sl_http_req_method(&r), "POST");
    sl_http_req_dispose(&r);
}

static void test_pipelined_requests_stop_after_the_first(void **st)
{
    const char *in = "GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n";
    sl_http_req_t r;
    sl_http_req_init(&r, 16384, 1024);
    size_t used = feed_all(&r, in);
    assert_true(r.complete);
    assert_int_equal(used, strlen("GET /a HTTP/1.1\r\nHost: a\r\n\r\n"));
    assert_string_equal(r.url.data, "/a");
    sl_http_req_reset(&r);
    size_t used2 = sl_http_req_feed(&r, in + used, strlen(in) - used);
    assert_int_equal(used + used2, strlen(in));
    assert_true(r.complete);
    assert_string_equal(r.url.data, "/b");
    sl_http_req_dispose(&r);
}

static void test_declared_oversize_body_refused_before_reading(void **st)
{
    sl_http_req_t r;
    sl_http_req_init(&r, 16384, 100);
    feed_all(&r, "POST /x HTTP/1.1\r\nContent-Length: 50000000\r\n\r\n");
    assert_int_equal(r.error, SL_ETOOBIG);
    assert_int_equal(r.body.len, 0);
    sl_http_req_reset(&r); /* a parser in error state must be reusable after reset */
    feed_all(&r, "GET /y HTTP/1.1\r\n\r\n");
    assert_true(r.complete);
    sl_http_req_dispose(&r);
}

static void test_chunked_oversize_body_refused_while_reading(void **st)
{
    sl_http_req_t r;
    sl_http_req_init(&r, 16384, 10);
    feed_all(&r, "POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n12345678\r\n");
    assert_int_equal(r.error, 0);
    feed_all(&r, "8\r\n12345678\r\n");
    assert_int_equal(r.error, SL_ETOOBIG);
    assert_true(r.body.len <= 10);
    sl_http_req_dispose(&r);
}

static void test_oversize_headers_are_431(void **st)
{
    sl_http_req_t r;
    sl_http_req_init(&r, 64, 1024);
    feed_all(&r,
             "GET /x HTTP/1.1\r\nX-Long: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
             "aaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n");
    assert_int_equal(r.error, SL_EHEADERS);
    assert_int_equal(sl_err_status(r.error), 431);
    sl_http_req_dispose(&r);
}

static void test_garbage_is_400(void **st)
{
    sl_http_req_t r;
    sl_http_req_init(&r, 16384, 1024);
    feed_all(&r, "\x01\x02\x03 garbage\r\n\r\n");
    assert_int_equal(r.error, SL_EINVAL);
    assert_int_equal(sl_err_status(r.error), 400);
    sl_http_req_dispose(&r);
}

static void test_expect_continue_and_empty_header_value(void **st)
{
    sl_http_req_t r;
    sl_http_req_init(&r, 16384, 1024);
    feed_all(&r,
             "POST /x HTTP/1.1\r\nX-Empty:\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n");
    assert_true(r.headers_done);
    assert_true(r.expect_continue);
    assert_string_equal(sl_http_req_header(&r, "x-empty"), "");
    assert_string_equal(sl_http_req_header(&r, "content-length"), "3");
    sl_http_req_dispose(&r);
}

static void test_json_escape_keeps_utf8_and_escapes_controls(void **st)
{
    sl_buf_t b;
    sl_buf_init(&b);
    const char in[] = "a\"b\\c\n\x01\xe2\x82\xac";
    sl_buf_json_escape(&b, in, sizeof in - 1);
    assert_string_equal(b.data, "a\\\"b\\\\c\\n\\u0001\xe2\x82\xac");
    sl_buf_dispose(&b);
}

static void test_key_compare_is_exact(void **st)
{
    assert_true(sl_auth_equal("sk-abc", 6, "sk-abc", 6));
    assert_false(sl_auth_equal("sk-abc", 6, "sk-abd", 6));
    assert_false(sl_auth_equal("sk-ab", 5, "sk-abc", 6));
    assert_false(sl_auth_equal("", 0, "x", 1));
    assert_true(sl_auth_equal("", 0, "", 0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_parsed_byte_by_byte),
        cmocka_unit_test(test_pipelined_requests_stop_after_the_first),
        cmocka_unit_test(test_declared_oversize_body_refused_before_reading),
        cmocka_unit_test(test_chunked_oversize_body_refused_while_reading),
        cmocka_unit_test(test_oversize_headers_are_431),
        cmocka_unit_test(test_garbage_is_400),
        cmocka_unit_test(test_expect_continue_and_empty_header_value),
        cmocka_unit_test(test_json_escape_keeps_utf8_and_escapes_controls),
        cmocka_unit_test(test_key_compare_is_exact),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
