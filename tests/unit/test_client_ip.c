/* Unit tests for http/client_ip: CIDR parsing and matching, the X-Forwarded-For and Forwarded
 * walks (table tests), and hostile input: huge headers, many hops, garbage, NUL bytes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "http/client_ip.h"

/* The trusted set every walk below uses: 10/8, 127.0.0.1, ::1, fd00::/8. */
static const char *const trusted_text[] = {"10.0.0.0/8", "127.0.0.1/32", "::1/128", "fd00::/8"};
static sl_cidr_t trusted[4];

static int setup(void **state)
{
    for (size_t i = 0; i < 4; i++) {
        const char *why;
        if (sl_cidr_parse(trusted_text[i], &trusted[i], &why) != 0)
            return -1;
    }
    return 0;
}

static bool in_set(const char *cidr, const char *ip)
{
    sl_cidr_t c;
    const char *why = NULL;
    assert_int_equal(sl_cidr_parse(cidr, &c, &why), 0);
    uint8_t a[16];
    assert_true(sl_ip_parse(ip, strlen(ip), a));
    return sl_cidr_match(&c, 1, a);
}

static void test_cidr_parse_accepts_v4_v6_and_bare_hosts(void **state)
{
    static const struct {
        const char *cidr, *inside, *outside;
    } cases[] = {
        {"10.0.0.0/8", "10.255.1.2", "11.0.0.1"},
        {"127.0.0.1/32", "127.0.0.1", "127.0.0.2"},
        {"127.0.0.1", "127.0.0.1", "127.0.0.2"}, /* bare: one host */
        {"0.0.0.0/0", "203.0.113.9", "::1"},     /* every IPv4, no IPv6 */
        {"192.168.0.0/23", "192.168.1.255", "192.168.2.0"},
        {"::1/128", "::1", "::2"},
        {"::1", "::1", "::"},
        {"2001:db8::/32", "2001:db8:ffff::1", "2001:db9::1"},
        {"fd00::/8", "fdab::1", "fe80::1"},
        {"::/0", "2001:db8::1", "2001:db8::1"}, /* (outside unused below) */
        /* v4-mapped: a dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d */
        {"10.0.0.0/8", "::ffff:10.1.2.3", "::ffff:11.1.2.3"},
        {"::ffff:0:0/96", "8.8.8.8", "2001:db8::1"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_true(in_set(cases[i].cidr, cases[i].inside));
        if (strcmp(cases[i].cidr, "::/0") != 0)
            assert_false(in_set(cases[i].cidr, cases[i].outside));
    }
}

static void test_cidr_parse_refuses_garbage_with_a_reason(void **state)
{
    static const char *const bad[] = {
        "",
        "/8",
        "10.0.0.0/",
        "10.0.0.0/33",
        "::/129",
        "10.0.0.0/8/8",
        "10.0.0/8",
        "10.0.0.0.0",
        "300.0.0.0/8",
        "10.0.0.0/-1",
        "10.0.0.0/ 8",
        " 10.0.0.0/8",
        "10.0.0.1/8",
        "fe80::1%eth0",
        "[::1]/128",
        "::1/0128",
        "localhost",
        "10.0.0.0/8 ",
        "2001:db8::1/32",
        "0x0a.0.0.0/8",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sl_cidr_t c;
        const char *why = NULL;
        if (sl_cidr_parse(bad[i], &c, &why) == 0)
            fail_msg("accepted \"%s\"", bad[i]);
        assert_non_null(why);
    }
    sl_cidr_t c;
    const char *why = NULL;
    assert_int_equal(sl_cidr_parse("10.1.0.0/8", &c, &why), SL_EINVAL);
    assert_non_null(strstr(why, "below the prefix"));
}

static void test_ip_format_is_canonical(void **state)
{
    static const char *const in[][2] = {
        {"10.1.2.3", "10.1.2.3"},
        {"::ffff:10.1.2.3", "10.1.2.3"},
        {"2001:DB8:0:0:0:0:0:1", "2001:db8::1"},
        {"::1", "::1"},
    };
    for (size_t i = 0; i < sizeof in / sizeof in[0]; i++) {
        uint8_t a[16];
        char out[SL_IP_TEXT];
        assert_true(sl_ip_parse(in[i][0], strlen(in[i][0]), a));
        sl_ip_format(a, out);
        assert_string_equal(out, in[i][1]);
    }
    uint8_t a[16];
    assert_false(sl_ip_parse("1.2.3.4\0junk", 12, a)); /* an embedded NUL is not an address */
    assert_false(sl_ip_parse("", 0, a));
}

static void test_loopback(void **state)
{
    assert_true(sl_ip_is_loopback("127.0.0.1"));
    assert_true(sl_ip_is_loopback("127.8.9.10"));
    assert_true(sl_ip_is_loopback("::1"));
    assert_true(sl_ip_is_loopback("::ffff:127.0.0.1"));
    assert_false(sl_ip_is_loopback("10.0.0.1"));
    assert_false(sl_ip_is_loopback("::"));
    assert_false(sl_ip_is_loopback(""));
    assert_false(sl_ip_is_loopback(NULL));
    assert_false(sl_ip_is_loopback("localhost"));
}

typedef struct walk_case {
    const char *peer, *xff, *fwd;
    const char *want; /* the client */
    bool forwarded;   /* taken from a header */
} walk_case_t;

static void run_walks(const walk_case_t *cases, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char out[SL_IP_TEXT];
        bool fw = sl_client_ip(trusted, 4, cases[i].peer, cases[i].xff, cases[i].fwd, out);
        if (strcmp(out, cases[i].want) != 0 || fw != cases[i].forwarded)
            fail_msg("case %zu (peer %s, xff %s, fwd %s): got %s (%d), want %s (%d)", i,
                     cases[i].peer, cases[i].xff ? cases[i].xff : "-",
                     cases[i].fwd ? cases[i].fwd : "-", out, fw, cases[i].want, cases[i].forwarded);
    }
}

static void test_xff_rightmost_untrusted_wins(void **state)
{
    static const walk_case_t cases[] = {
        /* untrusted peers: headers never read */
        {"203.0.113.5", "1.2.3.4", NULL, "203.0.113.5", false},
        {"203.0.113.5", NULL, "for=1.2.3.4", "203.0.113.5", false},
        {"11.0.0.1", "1.2.3.4", NULL, "11.0.0.1", false},
        /* trusted peer, no header */
        {"127.0.0.1", NULL, NULL, "127.0.0.1", false},
        {"127.0.0.1", "1.2.3.4", NULL, "1.2.3.4", true},
        {"127.0.0.1", " 1.2.3.4 ", NULL, "1.2.3.4", true},
        /* the client's own claims sit left of the proxy's entry: ignored */
        {"127.0.0.1", "6.6.6.6, 1.2.3.4", NULL, "1.2.3.4", true},
        /* trusted hops are skipped */
        {"127.0.0.1", "6.6.6.6, 1.2.3.4, 10.0.0.7, 10.9.9.9", NULL, "1.2.3.4", true},
        {"10.0.0.2", "1.2.3.4,10.0.0.7", NULL, "1.2.3.4", true},
        /* every hop trusted: the leftmost */
        {"127.0.0.1", "10.0.0.9, 10.0.0.7", NULL, "10.0.0.9", true},
        /* ports, brackets, IPv6, v4-mapped */
        {"127.0.0.1", "1.2.3.4:5678", NULL, "1.2.3.4", true},
        {"127.0.0.1", "2001:db8::1", NULL, "2001:db8::1", true},
        {"127.0.0.1", "[2001:db8::1]:443", NULL, "2001:db8::1", true},
        {"127.0.0.1", "[2001:DB8::1]", NULL, "2001:db8::1", true},
        {"127.0.0.1", "::ffff:1.2.3.4", NULL, "1.2.3.4", true},
        {"127.0.0.1", "1.2.3.4, ::ffff:10.0.0.1", NULL, "1.2.3.4", true},
        {"::1", "1.2.3.4, fd00::5", NULL, "1.2.3.4", true},
        {"::ffff:127.0.0.1", "1.2.3.4", NULL, "1.2.3.4", true}, /* mapped peer is trusted */
        /* empty list elements do not count */
        {"127.0.0.1", ",, 1.2.3.4 ,,", NULL, "1.2.3.4", true},
        {"127.0.0.1", "", NULL, "127.0.0.1", false},
        {"127.0.0.1", " , ", NULL, "127.0.0.1", false},
        /* garbage or unknown where the walk looks: the peer */
        {"127.0.0.1", "unknown", NULL, "127.0.0.1", false},
        {"127.0.0.1", "1.2.3.4, garbage", NULL, "127.0.0.1", false},
        {"127.0.0.1", "1.2.3.4, 10.0.0.1, _hidden", NULL, "127.0.0.1", false},
        {"127.0.0.1", "1.2.3.4:99999", NULL, "127.0.0.1", false},
        {"127.0.0.1", "1.2.3.4:", NULL, "127.0.0.1", false},
        {"127.0.0.1", "[1.2.3.4]", NULL, "127.0.0.1", false},
        {"127.0.0.1", "[2001:db8::1", NULL, "127.0.0.1", false},
        {"127.0.0.1", "[2001:db8::1]x", NULL, "127.0.0.1", false},
        {"127.0.0.1", "1.2.3.4 5.6.7.8", NULL, "127.0.0.1", false},
        {"127.0.0.1", "1.2.3.4;5.6.7.8", NULL, "127.0.0.1", false},
        {"127.0.0.1", "\"1.2.3.4\"", NULL, "127.0.0.1", false},
        /* ...but garbage left of the answer does not matter */
        {"127.0.0.1", "garbage, 1.2.3.4", NULL, "1.2.3.4", true},
        /* X-Forwarded-For wins over Forwarded */
        {"127.0.0.1", "1.2.3.4", "for=5.6.7.8", "1.2.3.4", true},
        /* a peer that is not an address (unknown): itself, never a header */
        {"", "1.2.3.4", NULL, "", false},
    };
    run_walks(cases, sizeof cases / sizeof cases[0]);
}

static void test_forwarded_rfc7239(void **state)
{
    static const walk_case_t cases[] = {
        {"127.0.0.1", NULL, "for=192.0.2.60", "192.0.2.60", true},
        {"127.0.0.1", NULL, "For=192.0.2.60;proto=http;by=203.0.113.43", "192.0.2.60", true},
        {"127.0.0.1", NULL, "for=\"192.0.2.60:4711\"", "192.0.2.60", true},
        {"127.0.0.1", NULL, "for=192.0.2.60:4711", "192.0.2.60", true}, /* port, unquoted */
        {"127.0.0.1", NULL, "for=\"[2001:db8:cafe::17]:4711\"", "2001:db8:cafe::17", true},
        {"127.0.0.1", NULL, "for=\"[2001:db8:cafe::17]\"", "2001:db8:cafe::17", true},
        {"127.0.0.1", NULL, "for=\"\\[2001:db8::17\\]\"", "2001:db8::17", true}, /* escapes */
        {"127.0.0.1", NULL, "for=192.0.2.43, for=198.51.100.17", "198.51.100.17", true},
        {"127.0.0.1", NULL, "for=192.0.2.43, for=10.0.0.1", "192.0.2.43", true},
        {"127.0.0.1", NULL, "for=192.0.2.43,for=\"[::1]\";proto=https", "192.0.2.43", true},
        {"127.0.0.1", NULL, "proto=https;for=192.0.2.43", "192.0.2.43", true},
        /* elements without for= add no hop */
        {"127.0.0.1", NULL, "for=192.0.2.43, proto=https", "192.0.2.43", true},
        {"127.0.0.1", NULL, "proto=https", "127.0.0.1", false},
        {"127.0.0.1", NULL, "for=192.0.2.43 ; proto=https", "192.0.2.43", true},
        /* quoted commas and semicolons do not split */
        {"127.0.0.1", NULL, "for=192.0.2.43;ext=\"a,b;c\"", "192.0.2.43", true},
        /* unknown and obfuscated identifiers are not addresses: the peer */
        {"127.0.0.1", NULL, "for=unknown", "127.0.0.1", false},
        {"127.0.0.1", NULL, "for=_hidden", "127.0.0.1", false},
        {"127.0.0.1", NULL, "for=\"_gazonk\"", "127.0.0.1", false},
        {"127.0.0.1", NULL, "for=192.0.2.1, for=_hidden, for=10.0.0.1", "127.0.0.1", false},
        /* ...and left of the answer they do not matter */
        {"127.0.0.1", NULL, "for=_hidden, for=192.0.2.9", "192.0.2.9", true},
        /* malformed */
        {"127.0.0.1", NULL, "for=", "127.0.0.1", false},
        {"127.0.0.1", NULL, "for", "127.0.0.1", false},
        {"127.0.0.1", NULL, "for=\"192.0.2.1", "127.0.0.1", false},
        {"127.0.0.1", NULL, "for=192.0.2.1;for=192.0.2.2", "127.0.0.1", false},
        {"127.0.0.1", NULL, "for=192.0.2.1 junk", "127.0.0.1", false},
        {"127.0.0.1", NULL, "=192.0.2.1", "127.0.0.1", false},
        {"127.0.0.1", NULL, "for=[2001:db8::1]:80", "2001:db8::1", true}, /* lenient */
        {"127.0.0.1", NULL, "for=192.0.2.1 ,@@@", "127.0.0.1", false},
        /* a malformed element left of the answer does not matter */
        {"127.0.0.1", NULL, "for=\"oops;x, for=198.51.100.1\", for=192.0.2.5", "192.0.2.5", true},
        {"127.0.0.1", NULL, "@@@, for=192.0.2.5", "192.0.2.5", true},
    };
    run_walks(cases, sizeof cases / sizeof cases[0]);
}

/* Builds "prefix, 10.0.0.1, 10.0.0.1, ..." (n trusted hops) and walks it. */
static void walk_many(size_t n, const char *prefix, const char *want, bool forwarded)
{
    sl_buf_t b;
    sl_buf_init(&b);
    sl_buf_puts(&b, prefix);
    for (size_t i = 0; i < n; i++)
        sl_buf_puts(&b, ", 10.0.0.1");
    char out[SL_IP_TEXT];
    assert_int_equal(sl_client_ip(trusted, 4, "127.0.0.1", b.data, NULL, out), forwarded);
    assert_string_equal(out, want);
    sl_buf_dispose(&b);
}

static void test_many_hops_and_huge_headers(void **state)
{
    /* within the window: the untrusted one is found behind the trusted hops */
    walk_many(SL_CLIENT_IP_MAX_HOPS - 1, "1.2.3.4", "1.2.3.4", true);
    /* beyond it: the chain cannot be followed to its end, so nobody is believed */
    walk_many(SL_CLIENT_IP_MAX_HOPS, "1.2.3.4", "127.0.0.1", false);
    walk_many(100000, "1.2.3.4", "127.0.0.1", false);
    /* a client's long forged prefix left of the proxy's entry is harmless */
    sl_buf_t b;
    sl_buf_init(&b);
    for (size_t i = 0; i < 100000; i++)
        sl_buf_puts(&b, "6.6.6.6, ");
    sl_buf_puts(&b, "1.2.3.4");
    char out[SL_IP_TEXT];
    assert_true(sl_client_ip(trusted, 4, "127.0.0.1", b.data, NULL, out));
    assert_string_equal(out, "1.2.3.4");
    /* the same as Forwarded elements */
    sl_buf_reset(&b);
    for (size_t i = 0; i < 50000; i++)
        sl_buf_puts(&b, "for=6.6.6.6;proto=http, ");
    sl_buf_puts(&b, "for=\"[2001:db8::5]:1\"");
    assert_true(sl_client_ip(trusted, 4, "127.0.0.1", NULL, b.data, out));
    assert_string_equal(out, "2001:db8::5");
    /* one megabyte of junk in one element; an unterminated quote swallowing the rest */
    sl_buf_reset(&b);
    for (size_t i = 0; i < (1u << 20); i++)
        sl_buf_putc(&b, (char)('!' + i % 90));
    assert_false(sl_client_ip(trusted, 4, "127.0.0.1", b.data, NULL, out));
    assert_string_equal(out, "127.0.0.1");
    assert_false(sl_client_ip(trusted, 4, "127.0.0.1", NULL, b.data, out));
    assert_string_equal(out, "127.0.0.1");
    sl_buf_reset(&b);
    sl_buf_puts(&b, "for=\"");
    for (size_t i = 0; i < 100000; i++)
        sl_buf_puts(&b, "\\\\, for=1.2.3.4");
    assert_false(sl_client_ip(trusted, 4, "127.0.0.1", NULL, b.data, out));
    sl_buf_dispose(&b);
}

static void test_every_byte_value_is_survived(void **state)
{
    /* each byte, alone and around an address: never a crash, and out is always an address
     * or the peer */
    char s[32], out[SL_IP_TEXT];
    for (int ch = 1; ch < 256; ch++) {
        snprintf(s, sizeof s, "1.2.3.4%c, 5.6.7.8%c", ch, ch);
        (void)sl_client_ip(trusted, 4, "127.0.0.1", s, NULL, out);
        uint8_t a[16];
        assert_true(sl_ip_parse(out, strlen(out), a));
        snprintf(s, sizeof s, "for=%c1.2.3.4%c", ch, ch);
        (void)sl_client_ip(trusted, 4, "127.0.0.1", NULL, s, out);
        assert_true(sl_ip_parse(out, strlen(out), a));
    }
}

static void test_no_trusted_proxies_trusts_nobody(void **state)
{
    char out[SL_IP_TEXT];
    assert_false(sl_client_ip(NULL, 0, "127.0.0.1", "1.2.3.4", "for=1.2.3.4", out));
    assert_string_equal(out, "127.0.0.1");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cidr_parse_accepts_v4_v6_and_bare_hosts),
        cmocka_unit_test(test_cidr_parse_refuses_garbage_with_a_reason),
        cmocka_unit_test(test_ip_format_is_canonical),
        cmocka_unit_test(test_loopback),
        cmocka_unit_test(test_xff_rightmost_untrusted_wins),
        cmocka_unit_test(test_forwarded_rfc7239),
        cmocka_unit_test(test_many_hops_and_huge_headers),
        cmocka_unit_test(test_every_byte_value_is_survived),
        cmocka_unit_test(test_no_trusted_proxies_trusts_nobody),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
