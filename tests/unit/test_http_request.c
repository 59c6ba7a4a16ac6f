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
    feed_all(&r, "GET /y HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_true(r.complete);
    sl_http_req_dispose(&r);
}

static void test_chunked_oversize_body_refused_while_reading(void **st)
{
    sl_http_req_t r;
    sl_http_req_init(&r, 16384, 10);
    feed_all(&r,
             "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n12345678\r\n");
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
             "POST /x HTTP/1.1\r\nHost: a\r\nX-Empty:\r\nExpect: 100-continue\r\nContent-Length: "
             "3\r\n\r\n");
    assert_true(r.headers_done);
    assert_true(r.expect_continue);
    assert_string_equal(sl_http_req_header(&r, "x-empty"), "");
    assert_string_equal(sl_http_req_header(&r, "content-length"), "3");
    sl_http_req_dispose(&r);
}

/* Feeds s in pieces of at most `piece` bytes, as net/conn does after each read. */
static void feed_pieces(sl_http_req_t *r, const char *s, size_t piece)
{
    size_t n = strlen(s);
    for (size_t at = 0; at < n && !r->complete && !r->error;) {
        size_t len = n - at < piece ? n - at : piece;
        at += sl_http_req_feed(r, s + at, len);
    }
}

static void test_empty_query_value_is_a_terminated_empty_string(void **st)
{
    sl_http_req_t r;
    sl_http_req_init(&r, 16384, 1024);
    feed_all(&r, "GET /x?message=hi&access_token=&b HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_true(r.complete);
    sl_buf_t v;
    sl_buf_init(&v); /* fresh: its first allocation must be terminated too */
    assert_true(sl_http_req_query(&r, "access_token", &v));
    assert_non_null(v.data);
    assert_int_equal(v.len, 0);
    assert_int_equal(v.data[0], '\0');
    sl_buf_dispose(&v);
    sl_buf_init(&v);
    assert_true(sl_http_req_query(&r, "b", &v)); /* no '=' at all */
    assert_non_null(v.data);
    assert_string_equal(v.data, "");
    assert_true(sl_http_req_query(&r, "message", &v));
    assert_string_equal(v.data, "hi");
    sl_buf_dispose(&v);
    sl_http_req_dispose(&r);
}

static void test_query_value_with_encoded_nul_is_malformed(void **st)
{
    sl_http_req_t r;
    sl_http_req_init(&r, 16384, 1024);
    feed_all(&r, "GET /x?access_token=abc%00junk&ok=a%2Fb HTTP/1.1\r\nHost: a\r\n\r\n");
    sl_buf_t v;
    sl_buf_init(&v);
    assert_false(sl_http_req_query(&r, "access_token", &v));
    assert_true(sl_http_req_query(&r, "ok", &v));
    assert_string_equal(v.data, "a/b");
    sl_buf_dispose(&v);
    sl_http_req_dispose(&r);
}

static void test_control_byte_in_header_value_is_400(void **st)
{
#define HEAD(s)                                                                                    \
    {                                                                                              \
        s, sizeof s - 1                                                                            \
    } /* with the NULs inside */
    static const struct {
        const char *s;
        size_t n;
    } heads[] = {
        HEAD("GET / HTTP/1.1\r\nHost: a\r\nX-Foo: \0x-request-id\r\nChosen-By-Client: v\r\n\r\n"),
        HEAD("GET / HTTP/1.1\r\nHost: a\r\nX-Foo: ab\0cd\r\n\r\n"),
        HEAD("GET / HTTP/1.1\r\nHost: a\r\nX-Foo: ab\x01\r\n\r\n"),
        HEAD("GET / HTTP/1.1\r\nHost: a\r\nX-Foo: ab\x7f\r\n\r\n"),
    };
#undef HEAD
    for (size_t i = 0; i < 4; i++) {
        sl_http_req_t r;
        sl_http_req_init(&r, 16384, 1024);
        sl_http_req_feed(&r, heads[i].s, heads[i].n);
        assert_false(r.complete);
        assert_int_equal(r.error, SL_EINVAL);
        sl_http_req_dispose(&r);
    }
    sl_http_req_t r; /* a tab is a legal value byte */
    sl_http_req_init(&r, 16384, 1024);
    feed_all(&r, "GET / HTTP/1.1\r\nHost: a\r\nX-Foo: a\tb\r\n\r\n");
    assert_true(r.complete);
    assert_string_equal(sl_http_req_header(&r, "x-foo"), "a\tb");
    sl_http_req_dispose(&r);
}

static void test_trailers_never_become_headers(void **st)
{
    const char *in = "POST /x HTTP/1.1\r\nHost: a\r\nA: b\r\n"
                     "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nA: x-request-id\r\n"
                     "Injected-From-Trailer: v\r\nLast-Event-Id: 7\r\n\r\n";
    for (size_t piece = 1; piece <= strlen(in); piece = piece * 2 + 1) {
        sl_http_req_t r;
        sl_http_req_init(&r, 16384, 1024);
        feed_pieces(&r, in, piece);
        assert_true(r.complete);
        assert_string_equal(sl_http_req_header(&r, "a"), "b");
        assert_null(sl_http_req_header_next(&r, "a", sl_http_req_header(&r, "a")));
        assert_null(sl_http_req_header(&r, "x-request-id"));
        assert_null(sl_http_req_header(&r, "injected-from-trailer"));
        assert_null(sl_http_req_header(&r, "last-event-id"));
        assert_int_equal(r.nfields, 3);
        assert_int_equal(r.body.len, 3);
        sl_http_req_dispose(&r);
    }
}

static void test_header_limit_does_not_depend_on_segmentation(void **st)
{
    sl_buf_t in;
    sl_buf_init(&in);
    sl_buf_puts(&in, "GET / HTTP/1.1\r\nHost: a\r\n");
    for (int i = 0; i < 100; i++)
        sl_buf_printf(&in, "X-Header-Number-%03d: %040d\r\n", i, i);
    sl_buf_puts(&in, "\r\n");
    /* Just enough for the head in one piece: the same limit must hold byte by byte. */
    sl_http_req_t whole;
    sl_http_req_init(&whole, 1 << 20, 1024);
    feed_all(&whole, in.data);
    assert_true(whole.complete);
    size_t need = whole.head_bytes;
    sl_http_req_dispose(&whole);
    for (size_t piece = 1; piece <= 7; piece += 3) {
        sl_http_req_t r;
        sl_http_req_init(&r, need, 1024);
        feed_pieces(&r, in.data, piece);
        assert_int_equal(r.error, 0);
        assert_true(r.complete);
        assert_int_equal(r.head_bytes, need);
        sl_http_req_dispose(&r);
        sl_http_req_init(&r, need - 1, 1024);
        feed_pieces(&r, in.data, piece);
        assert_int_equal(r.error, SL_EHEADERS);
        sl_http_req_dispose(&r);
    }
    sl_buf_dispose(&in);
}

static void test_obs_fold_is_400(void **st)
{
    static const char *const heads[] = {
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX-A: one\r\n\ttwo\r\n\r\n",
        "GET / HTTP/1.1\r\n Host: a\r\n\r\n",
        "GET / HTTP/1.1\nHost: a\nX-A: b\n c\n\n",
    };
    for (size_t i = 0; i < 4; i++) {
        for (size_t piece = 1; piece <= 64; piece *= 4) {
            sl_http_req_t r;
            sl_http_req_init(&r, 16384, 1024);
            feed_pieces(&r, heads[i], piece);
            assert_false(r.complete);
            assert_int_equal(r.error, SL_EINVAL);
            sl_http_req_dispose(&r);
        }
    }
    sl_http_req_t r; /* a space inside a body is not a fold */
    sl_http_req_init(&r, 16384, 1024);
    feed_all(&r, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\n\n  \n");
    assert_true(r.complete);
    assert_int_equal(r.body.len, 4);
    sl_http_req_dispose(&r);
}

static void test_host_exactly_once_on_http11(void **st)
{
    static const char *const bad[] = {
        "GET / HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1\r\nX-A: b\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        "GET / HTTP/1.0\r\nHost: a\r\nhost: a\r\n\r\n",
    };
    for (size_t i = 0; i < 4; i++) {
        sl_http_req_t r;
        sl_http_req_init(&r, 16384, 1024);
        feed_all(&r, bad[i]);
        assert_false(r.complete);
        assert_int_equal(r.error, SL_EINVAL);
        sl_http_req_dispose(&r);
    }
    sl_http_req_t r; /* HTTP/1.0 needs none */
    sl_http_req_init(&r, 16384, 1024);
    feed_all(&r, "GET / HTTP/1.0\r\n\r\n");
    assert_true(r.complete);
    sl_http_req_dispose(&r);
}

static void test_long_target_is_414(void **st)
{
    sl_buf_t in;
    sl_buf_init(&in);
    sl_buf_puts(&in, "GET /");
    for (int i = 0; i < 300; i++)
        sl_buf_putc(&in, 'a');
    sl_buf_puts(&in, " HTTP/1.1\r\nHost: a\r\n\r\n");
    sl_http_req_t r;
    sl_http_req_init(&r, 256, 1024);
    feed_pieces(&r, in.data, 7);
    assert_int_equal(r.error, SL_EURI);
    assert_int_equal(sl_err_status(r.error), 414);
    sl_http_req_dispose(&r);
    sl_buf_dispose(&in);
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
        cmocka_unit_test(test_empty_query_value_is_a_terminated_empty_string),
        cmocka_unit_test(test_query_value_with_encoded_nul_is_malformed),
        cmocka_unit_test(test_control_byte_in_header_value_is_400),
        cmocka_unit_test(test_trailers_never_become_headers),
        cmocka_unit_test(test_header_limit_does_not_depend_on_segmentation),
        cmocka_unit_test(test_obs_fold_is_400),
        cmocka_unit_test(test_host_exactly_once_on_http11),
        cmocka_unit_test(test_long_target_is_414),
        cmocka_unit_test(test_json_escape_keeps_utf8_and_escapes_controls),
        cmocka_unit_test(test_key_compare_is_exact),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
