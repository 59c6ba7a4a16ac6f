/* Unit tests for codec/ws: client frames built by hand (masked, as browsers send them) fed whole,
 * split at every offset and byte by byte; the server's output parsed back frame by frame. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "codec/ws.h"
#include "core/alloc.h"

#define FIN       0x80
#define RSV1      0x40
#define OP_CONT   0x0
#define OP_TEXT   0x1
#define OP_BINARY 0x2
#define OP_CLOSE  0x8
#define OP_PING   0x9
#define OP_PONG   0xa

/* The mask key from RFC 6455 §5.7's examples. */
static const uint8_t mask_key[4] = {0x37, 0xfa, 0x21, 0x3d};

/* Appends one client frame. b0 is the first byte as sent (FIN, RSV, opcode), so a test can set
 * any bits; the length takes the shortest of the 7/16/64-bit forms. */
static void put_frame(sl_buf_t *b, uint8_t b0, bool masked, const void *payload, size_t n)
{
    uint8_t h[14];
    size_t hl = 0;
    uint8_t m = masked ? 0x80 : 0;
    h[hl++] = b0;
    if (n < 126) {
        h[hl++] = (uint8_t)(m | n);
    } else if (n < 65536) {
        h[hl++] = m | 126;
        h[hl++] = (uint8_t)(n >> 8);
        h[hl++] = (uint8_t)n;
    } else {
        h[hl++] = m | 127;
        for (int i = 7; i >= 0; i--)
            h[hl++] = (uint8_t)((uint64_t)n >> (8 * i));
    }
    if (masked) {
        memcpy(h + hl, mask_key, 4);
        hl += 4;
    }
    sl_buf_append(b, h, hl);
    const uint8_t *s = payload;
    for (size_t i = 0; i < n; i++)
        sl_buf_putc(b, (char)(masked ? s[i] ^ mask_key[i % 4] : s[i]));
}

/* A masked client frame with a string payload. */
static void client(sl_buf_t *b, uint8_t b0, const char *s)
{
    put_frame(b, b0, true, s, strlen(s));
}

static void client_close(sl_buf_t *b, uint16_t code, const char *reason)
{
    char p[125];
    size_t n = strlen(reason);
    p[0] = (char)(code >> 8);
    p[1] = (char)code;
    /* A frame, not a string: no terminator wanted. */
    memcpy(p + 2, reason, n); // NOLINT(bugprone-not-null-terminated-result)
    put_frame(b, FIN | OP_CLOSE, true, p, n + 2);
}

/* One session and what came out of it: texts logged as "msg;", closes counted. */
typedef struct peer {
    sl_buf_t out;
    sl_buf_t log;
    sl_ws_t *ws;
    int texts;
    int closes;
    int frames; /* on_frame calls */
    uint16_t close_code;
    bool echo; /* answer each text from inside on_text */
} peer_t;

static void on_text(void *ud, const char *msg, size_t len)
{
    peer_t *p = ud;
    assert_non_null(msg);
    sl_buf_append(&p->log, msg, len);
    sl_buf_putc(&p->log, ';');
    p->texts++;
    if (p->echo)
        sl_ws_send_text(p->ws, msg, len);
}

static void on_close(void *ud, uint16_t code)
{
    peer_t *p = ud;
    p->closes++;
    p->close_code = code;
}

static void on_frame(void *ud)
{
    ((peer_t *)ud)->frames++;
}

static const sl_ws_callbacks_t callbacks = {
    .on_text = on_text, .on_close = on_close, .on_frame = on_frame};

static void peer_init(peer_t *p, size_t max_message)
{
    memset(p, 0, sizeof *p);
    sl_buf_init(&p->out);
    sl_buf_init(&p->log);
    sl_buf_append(&p->log, "", 0);
    p->ws = sl_ws_new(max_message, &callbacks, p, &p->out);
}

static void peer_dispose(peer_t *p)
{
    sl_ws_free(p->ws);
    sl_buf_dispose(&p->out);
    sl_buf_dispose(&p->log);
}

/* A server frame read back from out. */
typedef struct frame {
    uint8_t b0;
    const char *payload;
    size_t len;
} frame_t;

/* Reads the frame at *off and moves past it. Server frames must be unmasked (RFC 6455 §5.1) and
 * use the shortest length form. */
static void next_frame(const sl_buf_t *out, size_t *off, frame_t *f)
{
    const uint8_t *s = (const uint8_t *)out->data + *off;
    size_t left = out->len - *off;
    size_t hl = 2;
    assert_true(left >= 2);
    assert_int_equal(s[1] & 0x80, 0);
    f->b0 = s[0];
    f->len = s[1] & 0x7f;
    if (f->len >= 126) {
        size_t ext = f->len == 126 ? 2 : 8;
        assert_true(left >= 2 + ext);
        f->len = 0;
        for (size_t i = 0; i < ext; i++)
            f->len = f->len << 8 | s[2 + i];
        assert_true(f->len >= (ext == 2 ? 126u : 65536u));
        hl += ext;
    }
    assert_true(left >= hl + f->len);
    f->payload = (const char *)s + hl;
    *off += hl + f->len;
}

/* Checks that the frame at *off is a close with code (and no reason) and moves past it. */
static void expect_close(const sl_buf_t *out, size_t *off, uint16_t code)
{
    frame_t f;
    next_frame(out, off, &f);
    assert_int_equal(f.b0, FIN | OP_CLOSE);
    assert_int_equal(f.len, 2);
    assert_int_equal((uint8_t)f.payload[0] << 8 | (uint8_t)f.payload[1], code);
}

/* out holds exactly one frame, a close with code. */
static void expect_only_close(const sl_buf_t *out, uint16_t code)
{
    size_t off = 0;
    expect_close(out, &off, code);
    assert_int_equal(off, out->len);
}

static void test_ws_accept_key_matches_rfc_example(void **state)
{
    (void)state;
    char out[29];
    assert_int_equal(sl_ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==", out), 0);
    assert_string_equal(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

static void test_ws_accept_key_rejects_keys_not_16_bytes_of_base64(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "dGhlIHNhbXBsZSBub25jZQ",       /* padding missing */
        "dGhlIHNhbXBsZSBub25jZQ=",      /* half the padding */
        "dGhlIHNhbXBsZSBub25jZQ== ",    /* trailing blank */
        " dGhlIHNhbXBsZSBub25jZQ==",    /* leading blank */
        "dGhlIHNhbXBsZSBub25jZQ==AAAA", /* 19 bytes */
        "dGhlIHNhbXBsZSBub25j",         /* 15 bytes */
        "dGhlIHNhbXBsZSBub25jZ===",     /* padding too early */
        "dGhlIHNhbXBsZSBub2!jZQ==",     /* not the alphabet */
        "dGhlIHNhbXBsZSBub25jZQAA",     /* 18 bytes, no padding */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char out[29];
        assert_int_equal(sl_ws_accept_key(bad[i], out), SL_EINVAL);
    }
    char out[29];
    assert_int_equal(sl_ws_accept_key(NULL, out), SL_EINVAL);
}

static void test_ws_masked_text_frame_is_delivered(void **state)
{
    (void)state;
    peer_t p;
    sl_buf_t in;
    sl_buf_init(&in);
    peer_init(&p, 1024);
    client(&in, FIN | OP_TEXT, "Hello");
    assert_int_equal(sl_ws_feed(p.ws, in.data, in.len), 0);
    assert_string_equal(p.log.data, "Hello;");
    assert_int_equal(p.out.len, 0);
    assert_false(sl_ws_done(p.ws));
    peer_dispose(&p);
    sl_buf_dispose(&in);
}

static void test_ws_empty_text_message_is_delivered(void **state)
{
    (void)state;
    peer_t p;
    sl_buf_t in;
    sl_buf_init(&in);
    peer_init(&p, 1024);
    client(&in, FIN | OP_TEXT, "");
    assert_int_equal(sl_ws_feed(p.ws, in.data, in.len), 0);
    assert_int_equal(p.texts, 1);
    assert_string_equal(p.log.data, ";");
    peer_dispose(&p);
    sl_buf_dispose(&in);
}

/* Feeds in[0..n) cut at a and b (a <= b) into a new session; returns its log and output. */
static void feed_cut(const sl_buf_t *in, size_t a, size_t b, sl_buf_t *log, sl_buf_t *out)
{
    peer_t p;
    peer_init(&p, 1 << 20);
    assert_int_equal(sl_ws_feed(p.ws, in->data, a), 0);
    assert_int_equal(sl_ws_feed(p.ws, in->data + a, b - a), 0);
    assert_int_equal(sl_ws_feed(p.ws, in->data + b, in->len - b), 0);
    sl_buf_append(log, p.log.data, p.log.len);
    sl_buf_append(out, p.out.data, p.out.len);
    assert_true(sl_ws_done(p.ws));
    peer_dispose(&p);
}

static void test_ws_stream_split_anywhere_gives_the_same_messages(void **state)
{
    (void)state;
    sl_buf_t in;
    sl_buf_init(&in);
    char big[300];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    client(&in, FIN | OP_TEXT, "Hello");
    client(&in, OP_TEXT, "caf\xc3"); /* a UTF-8 sequence split across fragments */
    client(&in, FIN | OP_PING, "p");
    client(&in, FIN | OP_CONT, "\xa9!"); /* "café!" */
    client(&in, FIN | OP_TEXT, big);     /* 16-bit length */
    client_close(&in, 1000, "bye");

    sl_buf_t want_log, want_out;
    sl_buf_init(&want_log);
    sl_buf_init(&want_out);
    feed_cut(&in, in.len, in.len, &want_log, &want_out);
    sl_buf_t expect;
    sl_buf_init(&expect);
    sl_buf_printf(&expect, "Hello;caf\xc3\xa9!;%s;", big);
    assert_string_equal(want_log.data, expect.data);
    sl_buf_dispose(&expect);

    /* Two cuts anywhere covers every single split and every byte-pair split. */
    for (size_t a = 0; a <= in.len; a++) {
        for (size_t b = a; b <= in.len; b += (a % 7 == 0) ? 1 : 13) {
            sl_buf_t log, out;
            sl_buf_init(&log);
            sl_buf_init(&out);
            feed_cut(&in, a, b, &log, &out);
            assert_int_equal(log.len, want_log.len);
            assert_memory_equal(log.data, want_log.data, log.len);
            assert_int_equal(out.len, want_out.len);
            assert_memory_equal(out.data, want_out.data, out.len);
            sl_buf_dispose(&log);
            sl_buf_dispose(&out);
        }
    }
    sl_buf_dispose(&want_log);
    sl_buf_dispose(&want_out);
    sl_buf_dispose(&in);
}

static void test_ws_stream_fed_byte_by_byte_gives_the_same_messages(void **state)
{
    (void)state;
    sl_buf_t in;
    sl_buf_init(&in);
    client(&in, FIN | OP_TEXT, "one");
    client(&in, OP_TEXT, "tw");
    client(&in, FIN | OP_CONT, "o");
    client(&in, FIN | OP_PING, "hb");
    client_close(&in, 1001, "");

    peer_t p;
    peer_init(&p, 1024);
    for (size_t i = 0; i < in.len; i++)
        assert_int_equal(sl_ws_feed(p.ws, in.data + i, 1), 0);
    assert_string_equal(p.log.data, "one;two;");
    size_t off = 0;
    frame_t f;
    next_frame(&p.out, &off, &f);
    assert_int_equal(f.b0, FIN | OP_PONG);
    assert_int_equal(f.len, 2);
    assert_memory_equal(f.payload, "hb", 2);
    expect_close(&p.out, &off, 1001);
    assert_int_equal(off, p.out.len);
    assert_int_equal(p.close_code, 1001);
    assert_true(sl_ws_done(p.ws));
    peer_dispose(&p);
    sl_buf_dispose(&in);
}

static void test_ws_fragmented_message_with_ping_between_fragments(void **state)
{
    (void)state;
    peer_t p;
    sl_buf_t in;
    sl_buf_init(&in);
    peer_init(&p, 1024);
    client(&in, OP_TEXT, "Hel");
    assert_int_equal(sl_ws_feed(p.ws, in.data, in.len), 0);
    assert_int_equal(p.texts, 0);

    sl_buf_reset(&in);
    client(&in, FIN | OP_PING, "are you there");
    client(&in, OP_CONT, "lo, ");
    assert_int_equal(sl_ws_feed(p.ws, in.data, in.len), 0);
    /* The pong goes out at once, with the ping's payload, while the message is still open. */
    size_t off = 0;
    frame_t f;
    next_frame(&p.out, &off, &f);
    assert_int_equal(f.b0, FIN | OP_PONG);
    assert_int_equal(f.len, strlen("are you there"));
    assert_memory_equal(f.payload, "are you there", f.len);
    assert_int_equal(off, p.out.len);
    assert_int_equal(p.texts, 0);

    sl_buf_reset(&in);
    client(&in, FIN | OP_CONT, "world");
    assert_int_equal(sl_ws_feed(p.ws, in.data, in.len), 0);
    assert_int_equal(p.texts, 1);
    assert_string_equal(p.log.data, "Hello, world;");
    assert_int_equal(off, p.out.len);
    peer_dispose(&p);
    sl_buf_dispose(&in);
}

/* Feeds one stream to a new session and checks it is failed with a close carrying code. */
static void expect_failure(const sl_buf_t *in, size_t max_message, uint16_t code)
{
    peer_t p;
    peer_init(&p, max_message);
    assert_int_equal(sl_ws_feed(p.ws, in->data, in->len), SL_EINVAL);
    expect_only_close(&p.out, code);
    assert_int_equal(p.texts, 0);
    assert_true(sl_ws_done(p.ws));
    /* A failed session takes no more bytes and sends nothing more. */
    size_t len = p.out.len;
    assert_int_equal(sl_ws_feed(p.ws, in->data, in->len), SL_EINVAL);
    sl_ws_send_text(p.ws, "late", 4);
    assert_int_equal(p.out.len, len);
    peer_dispose(&p);
}

static void test_ws_unmasked_frame_fails_with_1002(void **state)
{
    (void)state;
    sl_buf_t in;
    sl_buf_init(&in);
    put_frame(&in, FIN | OP_TEXT, false, "Hello", 5);
    expect_failure(&in, 1024, 1002);
    sl_buf_dispose(&in);
}

static void test_ws_protocol_violations_fail_with_1002(void **state)
{
    (void)state;
    static const struct {
        uint8_t first_b0, b0;
    } cases[] = {
        {0, FIN | RSV1 | OP_TEXT}, /* reserved bit without an extension */
        {0, FIN | 0x3},            /* reserved data opcode */
        {0, FIN | 0xb},            /* reserved control opcode */
        {0, FIN | OP_CONT},        /* continuation with nothing to continue */
        {OP_TEXT, FIN | OP_TEXT},  /* new message while one is open */
        {OP_TEXT, FIN | 0x3},      /* reserved opcode inside a message */
        {0, OP_PING},              /* fragmented control frame (wslay's frame parser) */
        {0, OP_CLOSE},             /* the same for close */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sl_buf_t in;
        sl_buf_init(&in);
        if (cases[i].first_b0)
            client(&in, cases[i].first_b0, "a");
        client(&in, cases[i].b0, "b");
        expect_failure(&in, 1024, 1002);
        sl_buf_dispose(&in);
    }
}

static void test_ws_control_frame_over_125_bytes_fails_with_1002(void **state)
{
    (void)state;
    char ping[126];
    memset(ping, 'p', sizeof ping);
    sl_buf_t in;
    sl_buf_init(&in);
    put_frame(&in, FIN | OP_PING, true, ping, sizeof ping);
    expect_failure(&in, 1024, 1002);
    sl_buf_dispose(&in);
}

static void test_ws_close_with_invalid_code_fails_with_1002(void **state)
{
    (void)state;
    sl_buf_t in;
    sl_buf_init(&in);
    client_close(&in, 1005, ""); /* reserved: never sent on the wire */
    expect_failure(&in, 1024, 1002);
    sl_buf_dispose(&in);
}

static void test_ws_message_over_max_fails_with_1009(void **state)
{
    (void)state;
    char msg[18]; /* 17 bytes */
    memset(msg, 'm', sizeof msg - 1);
    msg[sizeof msg - 1] = '\0';
    sl_buf_t in;
    sl_buf_init(&in);
    client(&in, FIN | OP_TEXT, msg);
    expect_failure(&in, 16, 1009);

    /* Fragments each under the cap, the message over it. */
    sl_buf_reset(&in);
    client(&in, OP_TEXT, "0123456789");
    client(&in, FIN | OP_CONT, "0123456");
    expect_failure(&in, 16, 1009);

    /* Exactly at the cap is fine. */
    peer_t p;
    peer_init(&p, 16);
    sl_buf_reset(&in);
    client(&in, OP_TEXT, "0123456789");
    client(&in, FIN | OP_CONT, "012345");
    assert_int_equal(sl_ws_feed(p.ws, in.data, in.len), 0);
    assert_string_equal(p.log.data, "0123456789012345;");
    peer_dispose(&p);
    sl_buf_dispose(&in);
}

static void test_ws_huge_announced_length_fails_before_buffering(void **state)
{
    (void)state;
    /* A header claiming 2^40 bytes, with no payload behind it: refused from the header alone. */
    static const uint8_t hdr[] = {FIN | OP_TEXT, 0x80 | 127, 0, 0, 1, 0, 0, 0, 0, 0, 1, 2, 3, 4};
    sl_buf_t in;
    sl_buf_init(&in);
    sl_buf_append(&in, hdr, sizeof hdr);
    sl_buf_putc(&in, 'x'); /* wslay looks at a frame once some payload is there */
    expect_failure(&in, 1 << 20, 1009);
    sl_buf_dispose(&in);
}

static void test_ws_invalid_utf8_fails_with_1007(void **state)
{
    (void)state;
    static const char *const bad[] = {"\xff", "a\xc3", "\xed\xa0\x80", "\xc0\xaf"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sl_buf_t in;
        sl_buf_init(&in);
        client(&in, FIN | OP_TEXT, bad[i]);
        expect_failure(&in, 1024, 1007);
        sl_buf_dispose(&in);
    }
    /* A sequence left open at the last fragment. */
    sl_buf_t in;
    sl_buf_init(&in);
    client(&in, OP_TEXT, "ok");
    client(&in, FIN | OP_CONT, "\xe2\x82");
    expect_failure(&in, 1024, 1007);
    sl_buf_dispose(&in);
}

static void test_ws_binary_message_fails_with_1003(void **state)
{
    (void)state;
    sl_buf_t in;
    sl_buf_init(&in);
    put_frame(&in, FIN | OP_BINARY, true, "\x00\x01\x02", 3);
    expect_failure(&in, 1024, 1003);

    /* Refused at the first fragment: the rest is never read. */
    sl_buf_reset(&in);
    put_frame(&in, OP_BINARY, true, "\x00\x01", 2);
    expect_failure(&in, 1024, 1003);
    sl_buf_dispose(&in);
}

static void test_ws_peer_close_1000_is_answered_and_done(void **state)
{
    (void)state;
    peer_t p;
    sl_buf_t in;
    sl_buf_init(&in);
    peer_init(&p, 1024);
    client_close(&in, 1000, "done");
    assert_int_equal(sl_ws_feed(p.ws, in.data, in.len), 0);
    assert_int_equal(p.closes, 1);
    assert_int_equal(p.close_code, 1000);
    /* The reply echoes the code and reason. */
    size_t off = 0;
    frame_t f;
    next_frame(&p.out, &off, &f);
    assert_int_equal(f.b0, FIN | OP_CLOSE);
    assert_int_equal(f.len, 6);
    assert_memory_equal(f.payload,
                        "\x03\xe8"
                        "done",
                        6);
    assert_int_equal(off, p.out.len);
    assert_true(sl_ws_done(p.ws));

    /* Bytes after a close are ignored, and nothing more is sent. */
    sl_buf_reset(&in);
    client(&in, FIN | OP_TEXT, "late");
    assert_int_equal(sl_ws_feed(p.ws, in.data, in.len), 0);
    sl_ws_send_text(p.ws, "late", 4);
    sl_ws_close(p.ws, 1000, "");
    assert_int_equal(p.texts, 0);
    assert_int_equal(off, p.out.len);
    peer_dispose(&p);
    sl_buf_dispose(&in);
}

/* A peer's close split between reads, at every offset: wslay checked the reason's UTF-8
 * skipping the first two bytes of each piece it was handed, so a valid reason read in two
 * pieces was refused (1007) and an invalid one let through, depending on the split. */
static void test_ws_close_reason_split_across_reads_is_checked_once(void **state)
{
    (void)state;
    sl_buf_t in;
    sl_buf_init(&in);
    client_close(&in, 1000, "ab\xc3\xa9"); /* "abé" */
    for (size_t cut = 0; cut <= in.len; cut++) {
        peer_t p;
        peer_init(&p, 1024);
        assert_int_equal(sl_ws_feed(p.ws, in.data, cut), 0);
        assert_int_equal(sl_ws_feed(p.ws, in.data + cut, in.len - cut), 0);
        assert_int_equal(p.close_code, 1000);
        size_t off = 0;
        frame_t f;
        next_frame(&p.out, &off, &f);
        assert_int_equal(f.b0, FIN | OP_CLOSE);
        assert_int_equal(f.len, 6);
        assert_memory_equal(f.payload,
                            "\x03\xe8"
                            "ab\xc3\xa9",
                            6);
        assert_true(sl_ws_done(p.ws));
        peer_dispose(&p);
    }
    sl_buf_reset(&in);
    client_close(&in, 1000, "\xff\xfe");
    for (size_t cut = 0; cut <= in.len; cut++) {
        peer_t p;
        peer_init(&p, 1024);
        int rc = sl_ws_feed(p.ws, in.data, cut);
        if (rc == 0)
            rc = sl_ws_feed(p.ws, in.data + cut, in.len - cut);
        assert_int_equal(rc, SL_EINVAL);
        expect_only_close(&p.out, 1007);
        assert_int_equal(p.closes, 0);
        peer_dispose(&p);
    }
    sl_buf_dispose(&in);
}

/* A close right behind a long text in the same read sits across wslay's 4 KiB read buffer: the
 * text frame is 4088 bytes, so the close's code ends the first 4096 and its reason starts the
 * next. It is still read as one close. */
static void test_ws_control_frame_across_4k_of_input_is_whole(void **state)
{
    (void)state;
    sl_buf_t in;
    sl_buf_init(&in);
    char big[4081];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    client(&in, FIN | OP_TEXT, big);
    assert_int_equal(in.len, 4088);
    client_close(&in, 1000, "a\xc3\xa9");
    peer_t p;
    peer_init(&p, 1 << 16);
    assert_int_equal(sl_ws_feed(p.ws, in.data, in.len), 0);
    assert_int_equal(p.texts, 1);
    assert_int_equal(p.close_code, 1000);
    size_t off = 0;
    frame_t f;
    next_frame(&p.out, &off, &f);
    assert_int_equal(f.b0, FIN | OP_CLOSE);
    assert_int_equal(f.len, 5);
    peer_dispose(&p);
    sl_buf_dispose(&in);
}

static void test_ws_peer_close_without_code_reports_1005(void **state)
{
    (void)state;
    peer_t p;
    sl_buf_t in;
    sl_buf_init(&in);
    peer_init(&p, 1024);
    client(&in, FIN | OP_CLOSE, "");
    assert_int_equal(sl_ws_feed(p.ws, in.data, in.len), 0);
    assert_int_equal(p.close_code, 1005);
    /* 1005 may not go on the wire: the reply is an empty close too. */
    assert_int_equal(p.out.len, 2);
    assert_memory_equal(p.out.data, "\x88\x00", 2);
    assert_true(sl_ws_done(p.ws));
    peer_dispose(&p);
    sl_buf_dispose(&in);
}

/* Sends n bytes of text and checks the exact frame: FIN text, unmasked, header of hdr_len. */
static void check_send_len(size_t n, const uint8_t *hdr, size_t hdr_len)
{
    peer_t p;
    peer_init(&p, 1024);
    char *msg = sl_malloc(n);
    for (size_t i = 0; i < n; i++)
        msg[i] = (char)('a' + i % 26);
    sl_ws_send_text(p.ws, msg, n);
    assert_int_equal(p.out.len, hdr_len + n);
    assert_memory_equal(p.out.data, hdr, hdr_len);
    assert_memory_equal(p.out.data + hdr_len, msg, n);
    size_t off = 0;
    frame_t f;
    next_frame(&p.out, &off, &f);
    assert_int_equal(off, p.out.len);
    sl_free(msg);
    peer_dispose(&p);
}

static void test_ws_send_text_uses_7_16_and_64_bit_lengths(void **state)
{
    (void)state;
    static const uint8_t h0[] = {0x81, 0};
    static const uint8_t h125[] = {0x81, 125};
    static const uint8_t h126[] = {0x81, 126, 0x00, 0x7e};
    static const uint8_t h65535[] = {0x81, 126, 0xff, 0xff};
    static const uint8_t h65536[] = {0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0};
    check_send_len(0, h0, sizeof h0);
    check_send_len(125, h125, sizeof h125);
    check_send_len(126, h126, sizeof h126);
    check_send_len(65535, h65535, sizeof h65535);
    check_send_len(65536, h65536, sizeof h65536);
}

static void test_ws_send_from_on_text_goes_out_before_the_close_reply(void **state)
{
    (void)state;
    peer_t p;
    sl_buf_t in;
    sl_buf_init(&in);
    peer_init(&p, 1024);
    p.echo = true;
    /* Answers, a pong and the close reply leave in the order their causes arrived, even with
     * the peer's close in the same read. */
    client(&in, FIN | OP_TEXT, "one");
    client(&in, FIN | OP_PING, "hb");
    client(&in, FIN | OP_TEXT, "two");
    client_close(&in, 1000, "");
    assert_int_equal(sl_ws_feed(p.ws, in.data, in.len), 0);
    size_t off = 0;
    frame_t f;
    next_frame(&p.out, &off, &f);
    assert_int_equal(f.b0, FIN | OP_TEXT);
    assert_int_equal(f.len, 3);
    assert_memory_equal(f.payload, "one", 3);
    next_frame(&p.out, &off, &f);
    assert_int_equal(f.b0, FIN | OP_PONG);
    assert_memory_equal(f.payload, "hb", 2);
    next_frame(&p.out, &off, &f);
    assert_int_equal(f.b0, FIN | OP_TEXT);
    assert_memory_equal(f.payload, "two", 3);
    expect_close(&p.out, &off, 1000);
    assert_int_equal(off, p.out.len);
    assert_true(sl_ws_done(p.ws));
    peer_dispose(&p);
    sl_buf_dispose(&in);
}

static void test_ws_our_close_then_peer_close_is_done(void **state)
{
    (void)state;
    peer_t p;
    sl_buf_t in;
    sl_buf_init(&in);
    peer_init(&p, 1024);
    sl_ws_send_text(p.ws, "last", 4);
    sl_ws_close(p.ws, 1001, "going away");
    size_t off = 0;
    frame_t f;
    next_frame(&p.out, &off, &f);
    assert_int_equal(f.b0, FIN | OP_TEXT);
    next_frame(&p.out, &off, &f);
    assert_int_equal(f.b0, FIN | OP_CLOSE);
    assert_int_equal(f.len, 2 + strlen("going away"));
    assert_memory_equal(f.payload,
                        "\x03\xe9"
                        "going away",
                        f.len);
    assert_int_equal(off, p.out.len);
    assert_false(sl_ws_done(p.ws));

    /* Nothing may follow our close; the peer's last messages are still read. */
    sl_ws_send_text(p.ws, "dropped", 7);
    assert_int_equal(off, p.out.len);
    client(&in, FIN | OP_TEXT, "in flight");
    client_close(&in, 1001, "");
    assert_int_equal(sl_ws_feed(p.ws, in.data, in.len), 0);
    assert_string_equal(p.log.data, "in flight;");
    assert_int_equal(p.close_code, 1001);
    assert_int_equal(off, p.out.len); /* no second close */
    assert_true(sl_ws_done(p.ws));
    peer_dispose(&p);
    sl_buf_dispose(&in);
}

/* Keepalive (net/conn): our ping is an empty control frame; every whole frame the peer sends,
 * a pong included, is reported, and a frame still arriving is not. */
static void test_ws_ping_and_every_whole_frame_is_reported(void **state)
{
    (void)state;
    peer_t p;
    sl_buf_t in;
    sl_buf_init(&in);
    peer_init(&p, 1024);
    sl_ws_ping(p.ws);
    assert_int_equal(p.out.len, 2);
    assert_memory_equal(p.out.data, "\x89\x00", 2);

    put_frame(&in, FIN | OP_PONG, true, "", 0);
    client(&in, OP_TEXT, "frag"); /* a fragment: a frame, not yet a message */
    client(&in, FIN | OP_CONT, "ment");
    client(&in, FIN | OP_PING, "hi");
    assert_int_equal(sl_ws_feed(p.ws, in.data, in.len - 1), 0); /* the ping is not whole yet */
    assert_int_equal(p.frames, 3);
    assert_string_equal(p.log.data, "fragment;");
    assert_int_equal(sl_ws_feed(p.ws, in.data + in.len - 1, 1), 0);
    assert_int_equal(p.frames, 4);
    assert_true(sl_ws_reading(p.ws));
    peer_dispose(&p);
    sl_buf_dispose(&in);
}

/* Reading ends with the peer's close (and with a failure), not with ours; a ping after any close
 * is dropped. */
static void test_ws_reading_ends_with_the_peer_close_and_pings_stop(void **state)
{
    (void)state;
    peer_t p;
    sl_buf_t in;
    sl_buf_init(&in);
    peer_init(&p, 1024);
    sl_ws_close(p.ws, 1001, "idle timeout");
    assert_true(sl_ws_reading(p.ws));
    size_t len = p.out.len;
    sl_ws_ping(p.ws);
    assert_int_equal(p.out.len, len);
    client_close(&in, 1001, "");
    assert_int_equal(sl_ws_feed(p.ws, in.data, in.len), 0);
    assert_int_equal(p.frames, 1);
    assert_false(sl_ws_reading(p.ws));
    assert_true(sl_ws_done(p.ws));
    peer_dispose(&p);

    peer_init(&p, 1024);
    sl_buf_reset(&in);
    put_frame(&in, FIN | OP_TEXT, false, "x", 1); /* unmasked: a violation */
    assert_int_equal(sl_ws_feed(p.ws, in.data, in.len), SL_EINVAL);
    assert_false(sl_ws_reading(p.ws));
    assert_int_equal(p.frames, 0);
    peer_dispose(&p);
    sl_buf_dispose(&in);
}

static void test_ws_close_reason_is_cut_on_a_utf8_boundary(void **state)
{
    (void)state;
    char reason[201];
    for (size_t i = 0; i < 200; i += 2)
        memcpy(reason + i, "\xc3\xa9", 2);
    reason[200] = '\0';
    peer_t p;
    peer_init(&p, 1024);
    sl_ws_close(p.ws, 1000, reason);
    size_t off = 0;
    frame_t f;
    next_frame(&p.out, &off, &f);
    /* 123 bytes would split an "é": 122 are kept. */
    assert_int_equal(f.len, 2 + 122);
    assert_memory_equal(f.payload + 2, reason, 122);
    peer_dispose(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ws_accept_key_matches_rfc_example),
        cmocka_unit_test(test_ws_accept_key_rejects_keys_not_16_bytes_of_base64),
        cmocka_unit_test(test_ws_masked_text_frame_is_delivered),
        cmocka_unit_test(test_ws_empty_text_message_is_delivered),
        cmocka_unit_test(test_ws_stream_split_anywhere_gives_the_same_messages),
        cmocka_unit_test(test_ws_stream_fed_byte_by_byte_gives_the_same_messages),
        cmocka_unit_test(test_ws_fragmented_message_with_ping_between_fragments),
        cmocka_unit_test(test_ws_unmasked_frame_fails_with_1002),
        cmocka_unit_test(test_ws_protocol_violations_fail_with_1002),
        cmocka_unit_test(test_ws_control_frame_over_125_bytes_fails_with_1002),
        cmocka_unit_test(test_ws_close_with_invalid_code_fails_with_1002),
        cmocka_unit_test(test_ws_message_over_max_fails_with_1009),
        cmocka_unit_test(test_ws_huge_announced_length_fails_before_buffering),
        cmocka_unit_test(test_ws_invalid_utf8_fails_with_1007),
        cmocka_unit_test(test_ws_binary_message_fails_with_1003),
        cmocka_unit_test(test_ws_peer_close_1000_is_answered_and_done),
        cmocka_unit_test(test_ws_peer_close_without_code_reports_1005),
        cmocka_unit_test(test_ws_close_reason_split_across_reads_is_checked_once),
        cmocka_unit_test(test_ws_control_frame_across_4k_of_input_is_whole),
        cmocka_unit_test(test_ws_send_text_uses_7_16_and_64_bit_lengths),
        cmocka_unit_test(test_ws_send_from_on_text_goes_out_before_the_close_reply),
        cmocka_unit_test(test_ws_our_close_then_peer_close_is_done),
        cmocka_unit_test(test_ws_close_reason_is_cut_on_a_utf8_boundary),
        cmocka_unit_test(test_ws_ping_and_every_whole_frame_is_reported),
        cmocka_unit_test(test_ws_reading_ends_with_the_peer_close_and_pings_stop),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
