/* Unit tests for codec/sse: table tests fed whole, split at every offset and byte by byte. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "codec/sse.h"
#include "core/alloc.h"

/* Records each event as "event|id|data;" with \n in data written as the two characters \n,
 * so expectations read like the stream they come from. */
typedef struct rec {
    sl_buf_t log;
    int events;
    int stop_at; /* return stop_rc from the stop_at-th event (1-based); 0 = never */
    int stop_rc;
} rec_t;

static void rec_init(rec_t *r)
{
    sl_buf_init(&r->log);
    sl_buf_append(&r->log, "", 0);
    r->events = 0;
    r->stop_at = 0;
    r->stop_rc = 0;
}

static void put_escaped(sl_buf_t *b, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\n')
            sl_buf_append(b, "\\n", 2);
        else if (s[i] == '\0')
            sl_buf_append(b, "\\0", 2);
        else
            sl_buf_putc(b, s[i]);
    }
}

static int on_event(void *ud, const sl_sse_event_t *ev)
{
    rec_t *r = ud;
    /* The header promises non-NULL strings. */
    assert_non_null(ev->event);
    assert_non_null(ev->id);
    assert_non_null(ev->data);
    put_escaped(&r->log, ev->event, ev->event_len);
    sl_buf_putc(&r->log, '|');
    put_escaped(&r->log, ev->id, ev->id_len);
    sl_buf_putc(&r->log, '|');
    put_escaped(&r->log, ev->data, ev->data_len);
    sl_buf_putc(&r->log, ';');
    r->events++;
    return r->events == r->stop_at ? r->stop_rc : 0;
}

/* Feeds in[0..n) cut at the given offsets (ascending) and returns the last feed's result. Each
 * piece is a buffer of its own, scribbled over and freed once fed, as a transport reuses its
 * read buffer: whatever the parser keeps past a feed must be its own copy. */
static int feed_cuts(sl_sse_parser_t *p, rec_t *r, const char *in, size_t n, const size_t *cuts,
                     size_t ncuts)
{
    size_t at = 0;
    for (size_t k = 0; k <= ncuts; k++) {
        size_t end = k < ncuts ? cuts[k] : n;
        char *piece = sl_malloc(end - at + 1);
        memcpy(piece, in + at, end - at);
        int rc = sl_sse_parser_feed(p, piece, end - at, on_event, r);
        memset(piece, 'X', end - at);
        sl_free(piece);
        if (rc != 0)
            return rc;
        at = end;
    }
    return 0;
}

/* Parses in with max_event, cut as given, and checks the events and the final result. */
static void check_cuts(const char *in, size_t n, size_t max_event, const size_t *cuts, size_t ncuts,
                       const char *want, int want_rc)
{
    sl_sse_parser_t p;
    rec_t r;
    sl_sse_parser_init(&p, max_event);
    rec_init(&r);
    int rc = feed_cuts(&p, &r, in, n, cuts, ncuts);
    assert_string_equal(r.log.data, want);
    assert_int_equal(rc, want_rc);
    sl_buf_dispose(&r.log);
    sl_sse_parser_dispose(&p);
}

/* The same stream whole, in two reads split at every offset, in three reads split at every
 * pair of offsets, and byte by byte must all give the same events. */
static void check_all_splits(const char *in, size_t n, size_t max_event, const char *want,
                             int want_rc)
{
    check_cuts(in, n, max_event, NULL, 0, want, want_rc);
    for (size_t i = 0; i <= n; i++) {
        size_t one[1] = {i};
        check_cuts(in, n, max_event, one, 1, want, want_rc);
        for (size_t j = i; j <= n && n <= 200; j++) {
            size_t two[2] = {i, j};
            check_cuts(in, n, max_event, two, 2, want, want_rc);
        }
    }
    size_t *bytes = sl_malloc((n ? n : 1) * sizeof *bytes);
    for (size_t i = 0; i < n; i++)
        bytes[i] = i;
    check_cuts(in, n, max_event, bytes, n, want, want_rc);
    sl_free(bytes);
}

static void check_stream(const char *in, const char *want)
{
    check_all_splits(in, strlen(in), 0, want, 0);
}

struct sse_case {
    const char *name;
    const char *in;
    const char *want;
};

static const struct sse_case cases[] = {
    {"lf", "data: hello\n\n", "||hello;"},
    {"crlf", "data: hello\r\n\r\n", "||hello;"},
    {"cr", "data: hello\r\r", "||hello;"},
    {"mixed line ends", "data: a\r\ndata: b\rdata: c\n\r\n", "||a\\nb\\nc;"},
    {"multi-line data", "data: one\ndata: two\ndata: three\n\n", "||one\\ntwo\\nthree;"},
    {"two events", "data: a\n\ndata: b\n\n", "||a;||b;"},
    {"comments ignored", ": keepalive\n\ndata: x\n: between\ndata: y\n\n", "||x\\ny;"},
    {"event and id", "event: delta\nid: 7\ndata: {}\n\n", "delta|7|{};"},
    {"id persists, event resets", "event: e\nid: 1\ndata: a\n\ndata: b\n\n", "e|1|a;|1|b;"},
    {"empty id clears", "id: 5\ndata: a\n\nid\ndata: b\n\n", "|5|a;||b;"},
    {"no data is not dispatched", "event: ping\nid: 3\n\ndata: x\n\n", "|3|x;"},
    {"field without colon", "data\n\n", "||;"},
    {"two empty data lines", "data\ndata:\n\n", "||\\n;"},
    {"only one space stripped", "data:  two\n\n", "|| two;"},
    {"no space after colon", "data:tight\n\n", "||tight;"},
    {"colons in value", "data: a:b: c\n\n", "||a:b: c;"},
    {"unknown fields ignored", "foo: bar\nretry: 10\nData: no\ndata: x\n\n", "||x;"},
    {"unfinished event not dispatched", "data: a\n\ndata: b\n", "||a;"},
    {"unfinished line not dispatched", "data: a\n\ndata: b", "||a;"},
    {"blank lines around", "\n\r\n\rdata: a\n\n\n\n", "||a;"},
    {"openai chunks", "data: {\"x\":1}\n\ndata: [DONE]\n\n", "||{\"x\":1};||[DONE];"},
    {"trailing spaces kept", "data: a  \n\n", "||a  ;"},
    {"empty stream", "", ""},
};

static void test_sse_table_whole_split_and_bytewise(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        print_message("case: %s\n", cases[i].name);
        check_stream(cases[i].in, cases[i].want);
    }
}

static void test_sse_crlf_split_between_reads_is_one_line_end(void **state)
{
    (void)state;
    /* Were the \n seen as a second line end, the event would go out after "a" alone. */
    static const char in[] = "data: a\r\ndata: b\r\n\r\n";
    size_t cut[1] = {8}; /* right after the first \r */
    check_cuts(in, strlen(in), 0, cut, 1, "||a\\nb;", 0);
}

static void test_sse_event_bigger_than_one_read(void **state)
{
    (void)state;
    sl_buf_t in, want;
    sl_buf_init(&in);
    sl_buf_init(&want);
    sl_buf_puts(&in, "event: big\ndata: ");
    sl_buf_puts(&want, "big||");
    for (int i = 0; i < 10000; i++) {
        char c = (char)('a' + i % 26);
        sl_buf_putc(&in, c);
        sl_buf_putc(&want, c);
    }
    sl_buf_puts(&in, "\r\ndata: tail\r\n\r\ndata: next\n\n");
    sl_buf_puts(&want, "\\ntail;||next;");

    sl_sse_parser_t p;
    rec_t r;
    sl_sse_parser_init(&p, 1 << 20);
    rec_init(&r);
    for (size_t at = 0; at < in.len; at += 97) {
        size_t n = in.len - at < 97 ? in.len - at : 97;
        assert_int_equal(sl_sse_parser_feed(&p, in.data + at, n, on_event, &r), 0);
    }
    assert_string_equal(r.log.data, want.data);
    assert_int_equal(r.events, 2);
    sl_buf_dispose(&r.log);
    sl_sse_parser_dispose(&p);
    sl_buf_dispose(&in);
    sl_buf_dispose(&want);
}

static void test_sse_utf8_split_across_reads_is_byte_exact(void **state)
{
    (void)state;
    /* 2-, 3- and 4-byte sequences, so some cut falls inside each of them. */
    check_stream("data: h\xc3\xa9llo \xe4\xb8\x96\xe7\x95\x8c \xf0\x9f\x8e\x89\r\n"
                 "event: \xc3\xbc\n\n",
                 "\xc3\xbc||h\xc3\xa9llo \xe4\xb8\x96\xe7\x95\x8c \xf0\x9f\x8e\x89;");
}

static void test_sse_nul_byte_in_data_passes_through(void **state)
{
    (void)state;
    static const char in[] = "data: a\0b\n\n";
    check_all_splits(in, sizeof in - 1, 0, "||a\\0b;", 0);
}

static void test_sse_id_with_nul_is_ignored(void **state)
{
    (void)state;
    static const char in[] = "id: 1\ndata: a\n\nid: 2\0x\ndata: b\n\n";
    check_all_splits(in, sizeof in - 1, 0, "|1|a;|1|b;", 0);
}

static void test_sse_line_over_max_event_is_too_big(void **state)
{
    (void)state;
    /* The cap counts the data so far plus the line being read: 32 bytes fit, 33 do not. */
    check_all_splits("data: 12345678901234567890123456\n\n", 34, 32,
                     "||12345678901234567890123456;", 0);
    static const char big[] = "data: ok\n\ndata: 123456789012345678901234567\n\n";
    check_all_splits(big, strlen(big), 32, "||ok;", SL_ETOOBIG);
}

static void test_sse_data_lines_over_max_event_are_too_big(void **state)
{
    (void)state;
    /* Lines of 16 bytes: data grows by 11 per line, so the third (16 + 22) no longer fits. */
    static const char in[] = "data: 0123456789\ndata: 0123456789\ndata: 0123456789\n\n";
    check_all_splits(in, strlen(in), 37, "", SL_ETOOBIG);
    /* A new event starts from zero again. */
    static const char ok[] = "data: 0123456789\n\ndata: 0123456789\n\ndata: 0123456789\n\n";
    check_all_splits(ok, strlen(ok), 37, "||0123456789;||0123456789;||0123456789;", 0);
}

static void test_sse_unfinished_line_over_max_event_fails_early(void **state)
{
    (void)state;
    /* A peer that never ends its line must not make us buffer without bound. */
    sl_sse_parser_t p;
    rec_t r;
    sl_sse_parser_init(&p, 64);
    rec_init(&r);
    char chunk[40];
    memset(chunk, 'x', sizeof chunk);
    assert_int_equal(sl_sse_parser_feed(&p, chunk, sizeof chunk, on_event, &r), 0);
    assert_int_equal(sl_sse_parser_feed(&p, chunk, sizeof chunk, on_event, &r), SL_ETOOBIG);
    sl_buf_dispose(&r.log);
    sl_sse_parser_dispose(&p);
}

static void test_sse_callback_nonzero_stops_feed(void **state)
{
    (void)state;
    sl_sse_parser_t p;
    rec_t r;
    sl_sse_parser_init(&p, 0);
    rec_init(&r);
    r.stop_at = 2;
    r.stop_rc = 7;
    static const char in[] = "data: a\n\ndata: b\n\ndata: c\n\n";
    assert_int_equal(sl_sse_parser_feed(&p, in, strlen(in), on_event, &r), 7);
    assert_string_equal(r.log.data, "||a;||b;");
    assert_int_equal(r.events, 2);
    sl_buf_dispose(&r.log);
    sl_sse_parser_dispose(&p);
}

static void check_encode(const char *data, const char *want)
{
    sl_buf_t out;
    sl_buf_init(&out);
    sl_sse_encode_data(&out, data, strlen(data));
    assert_string_equal(out.data, want);
    sl_buf_dispose(&out);
}

static void test_sse_encode_data_one_field_per_line(void **state)
{
    (void)state;
    check_encode("{\"a\":1}", "data: {\"a\":1}\n\n");
    check_encode("a\nb", "data: a\ndata: b\n\n");
    check_encode("", "data: \n\n");
    check_encode("a\n", "data: a\ndata: \n\n");
    /* A bare \r would end the line at the client: it is a line break like \n. */
    check_encode("x\r\ny\rz", "data: x\ndata: y\ndata: z\n\n");
}

static void test_sse_encode_then_parse_round_trips(void **state)
{
    (void)state;
    static const char *const datas[] = {"plain", "two\nlines", "", "\n", "\n\nx\n", " lead", ":c"};
    for (size_t i = 0; i < sizeof datas / sizeof datas[0]; i++) {
        sl_buf_t out, want;
        sl_buf_init(&out);
        sl_buf_init(&want);
        sl_sse_encode_data(&out, datas[i], strlen(datas[i]));
        sl_buf_puts(&want, "||");
        put_escaped(&want, datas[i], strlen(datas[i]));
        sl_buf_putc(&want, ';');
        check_all_splits(out.data, out.len, 0, want.data, 0);
        sl_buf_dispose(&out);
        sl_buf_dispose(&want);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sse_table_whole_split_and_bytewise),
        cmocka_unit_test(test_sse_crlf_split_between_reads_is_one_line_end),
        cmocka_unit_test(test_sse_event_bigger_than_one_read),
        cmocka_unit_test(test_sse_utf8_split_across_reads_is_byte_exact),
        cmocka_unit_test(test_sse_nul_byte_in_data_passes_through),
        cmocka_unit_test(test_sse_id_with_nul_is_ignored),
        cmocka_unit_test(test_sse_line_over_max_event_is_too_big),
        cmocka_unit_test(test_sse_data_lines_over_max_event_are_too_big),
        cmocka_unit_test(test_sse_unfinished_line_over_max_event_fails_early),
        cmocka_unit_test(test_sse_callback_nonzero_stops_feed),
        cmocka_unit_test(test_sse_encode_data_one_field_per_line),
        cmocka_unit_test(test_sse_encode_then_parse_round_trips),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
