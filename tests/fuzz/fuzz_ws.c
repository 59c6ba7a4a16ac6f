/* codec/ws: a client's bytes fed whole and in pieces must deliver the same messages and close,
 * queue the same frames and reach the same verdict; every message is within the limit and valid
 * UTF-8; what the server writes is well-formed server frames (unmasked, shortest length form,
 * control frames of at most 125 bytes, a close code that may be sent), and nothing follows a
 * close. Also the handshake key: accepted keys give 28 characters of base64.
 *
 * Input: [mode][max][4 piece lengths][body]. mode bit 0: the body is raw bytes; else it is a
 * list of frames [b0][len][payload] that are masked here, so the fuzzer reaches wslay's message
 * logic instead of failing on the mask bit (len 126/127: a 16-bit length follows). bit 1: answer
 * each text from on_text. bit 2: end with our own close. bit 3: ping before and after the input.
 * max 0 = wslay's cap, else 4 * max. Every whole frame (on_frame) is logged too, so both feeds
 * must also report the same frames, in the same places among the messages. */
#include "fuzz.h"

#include "codec/ws.h"
#include "core/buf.h"

typedef struct peer {
    sl_buf_t out, log;
    sl_ws_t *ws;
    size_t max;
    int closes;
    bool echo;
} peer_t;

static bool utf8_ok(const uint8_t *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        uint8_t c = s[i];
        size_t k = c < 0x80 ? 0 : (c & 0xe0) == 0xc0 ? 1 : (c & 0xf0) == 0xe0 ? 2 : 3;
        if (c >= 0x80 && (c < 0xc2 || c > 0xf4))
            return false;
        uint32_t cp = k == 0 ? c : k == 1 ? c & 0x1f : k == 2 ? c & 0x0f : c & 0x07;
        for (size_t j = 1; j <= k; j++) {
            if (i + j >= n || (s[i + j] & 0xc0) != 0x80)
                return false;
            cp = cp << 6 | (s[i + j] & 0x3f);
        }
        if ((k == 2 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
            (k == 3 && (cp < 0x10000 || cp > 0x10ffff)))
            return false;
        i += k + 1;
    }
    return true;
}

static void on_text(void *ud, const char *msg, size_t len)
{
    peer_t *p = ud;
    FUZZ_CHECK(msg != NULL);
    FUZZ_CHECK(p->max == 0 || len <= p->max);
    FUZZ_CHECK(utf8_ok((const uint8_t *)msg, len));
    FUZZ_CHECK(p->closes == 0);
    sl_buf_printf(&p->log, "T%zu:", len);
    sl_buf_append(&p->log, msg, len);
    if (p->echo)
        sl_ws_send_text(p->ws, msg, len);
}

static void on_close(void *ud, uint16_t code)
{
    peer_t *p = ud;
    p->closes++;
    FUZZ_CHECK(p->closes == 1);
    sl_buf_printf(&p->log, "C%u;", code);
}

static void on_frame(void *ud)
{
    peer_t *p = ud;
    FUZZ_CHECK(p->closes == 0); /* nothing is read after the peer's close */
    sl_buf_putc(&p->log, 'F');
}

static const sl_ws_callbacks_t callbacks = {
    .on_text = on_text, .on_close = on_close, .on_frame = on_frame};

/* Close codes an endpoint may put on the wire (RFC 6455 §7.4). */
static bool sendable_code(unsigned code)
{
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1011) ||
           (code >= 3000 && code <= 4999);
}

/* out must be a sequence of well-formed server frames, with nothing after a close. */
static void check_out(const sl_buf_t *out)
{
    const uint8_t *s = (const uint8_t *)out->data;
    size_t off = 0;
    bool closed = false;
    while (off < out->len) {
        FUZZ_CHECK(!closed);
        size_t left = out->len - off, hl = 2;
        FUZZ_CHECK(left >= 2);
        uint8_t b0 = s[off], b1 = s[off + 1];
        FUZZ_CHECK((b1 & 0x80) == 0); /* a server never masks */
        FUZZ_CHECK((b0 & 0x70) == 0); /* no RSV bits */
        uint64_t len = b1 & 0x7f;
        if (len >= 126) {
            size_t ext = len == 126 ? 2 : 8;
            FUZZ_CHECK(left >= 2 + ext);
            len = 0;
            for (size_t i = 0; i < ext; i++)
                len = len << 8 | s[off + 2 + i];
            FUZZ_CHECK(len >= (ext == 2 ? 126u : 65536u));
            hl += ext;
        }
        FUZZ_CHECK(left - hl >= len);
        unsigned op = b0 & 0x0f;
        FUZZ_CHECK(op == 0x1 || op == 0x8 || op == 0x9 || op == 0xa);
        if (op >= 0x8)
            FUZZ_CHECK((b0 & 0x80) && len <= 125);
        if (op == 0x8) {
            FUZZ_CHECK(len != 1);
            if (len >= 2) {
                unsigned code = (unsigned)s[off + hl] << 8 | s[off + hl + 1];
                FUZZ_CHECK(sendable_code(code));
                FUZZ_CHECK(utf8_ok(s + off + hl + 2, (size_t)len - 2));
            }
            closed = true;
        }
        off += hl + (size_t)len;
    }
}

/* The body as client frames, masked with a fixed key. */
static void build_frames(fz_t *f, sl_buf_t *b)
{
    static const uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};
    while (f->n) {
        uint8_t b0 = fz_u8(f);
        size_t len = fz_u8(f);
        if (len == 126 || len == 127)
            len = fz_u16(f);
        uint8_t h[8];
        size_t hl = 0;
        h[hl++] = b0;
        if (len < 126) {
            h[hl++] = (uint8_t)(0x80 | len);
        } else {
            h[hl++] = 0x80 | 126;
            h[hl++] = (uint8_t)(len >> 8);
            h[hl++] = (uint8_t)len;
        }
        sl_buf_append(b, h, hl);
        sl_buf_append(b, key, 4);
        size_t got;
        const char *p = fz_take(f, len, &got);
        for (size_t i = 0; i < got; i++)
            sl_buf_putc(b, (char)(p[i] ^ key[i % 4]));
    }
}

/* One session over in, cut as given (NULL: whole); fed until it fails. */
static int session(const sl_buf_t *in, size_t max, bool echo, bool close_last, bool ping,
                   const fz_cuts_t *cuts, peer_t *p)
{
    memset(p, 0, sizeof *p);
    sl_buf_init(&p->out);
    sl_buf_init(&p->log);
    p->max = max;
    p->echo = echo;
    p->ws = sl_ws_new(max, &callbacks, p, &p->out);
    if (ping)
        sl_ws_ping(p->ws);
    int rc = 0;
    size_t at = 0;
    for (size_t k = 0; !rc && at < in->len; k++) {
        size_t len = cuts ? fz_cut(cuts, k, in->len - at) : in->len - at;
        rc = sl_ws_feed(p->ws, in->data + at, len);
        FUZZ_CHECK(rc == 0 || rc == SL_EINVAL);
        at += len;
    }
    bool reading = sl_ws_reading(p->ws);
    if (rc) {
        FUZZ_CHECK(!reading);
        FUZZ_CHECK(sl_ws_done(p->ws)); /* a failed session is over */
        FUZZ_CHECK(sl_ws_feed(p->ws, "\x81", 1) == SL_EINVAL);
    }
    if (p->closes)
        FUZZ_CHECK(!reading); /* the peer's close ends reading */
    if (ping)
        sl_ws_ping(p->ws); /* dropped once a close is queued */
    if (close_last)
        sl_ws_close(p->ws, 1000, "bye \xc3\xa9");
    check_out(&p->out);
    bool done = sl_ws_done(p->ws);
    sl_ws_free(p->ws);
    return rc * 4 + reading * 2 + done;
}

static void check_accept_key(const uint8_t *data, size_t size)
{
    char key[32], out[29];
    size_t n = size < sizeof key - 1 ? size : sizeof key - 1;
    memcpy(key, data, n);
    key[n] = '\0';
    if (sl_ws_accept_key(key, out) == 0) {
        FUZZ_CHECK(strlen(out) == 28 && out[27] == '=');
        FUZZ_CHECK(strlen(key) == 24);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_accept_key(data, size);
    fz_t f = {data, size};
    uint8_t mode = fz_u8(&f);
    size_t max = 4 * (size_t)fz_u8(&f);
    fz_cuts_t cuts;
    fz_cuts_read(&f, &cuts);
    sl_buf_t in;
    sl_buf_init(&in);
    if (mode & 1)
        sl_buf_append(&in, f.p, f.n);
    else
        build_frames(&f, &in);
    bool echo = mode & 2, close_last = mode & 4, ping = mode & 8;

    peer_t whole, pieces;
    int v_whole = session(&in, max, echo, close_last, ping, NULL, &whole);
    int v_pieces = session(&in, max, echo, close_last, ping, &cuts, &pieces);
    if (v_whole != v_pieces || whole.log.len != pieces.log.len || whole.out.len != pieces.out.len)
        fprintf(stderr, "whole %d log %zu out %zu; pieces %d log %zu out %zu\n", v_whole,
                whole.log.len, whole.out.len, v_pieces, pieces.log.len, pieces.out.len);
    FUZZ_CHECK(v_whole == v_pieces);
    FUZZ_CHECK(whole.log.len == pieces.log.len);
    FUZZ_CHECK(!whole.log.len || memcmp(whole.log.data, pieces.log.data, whole.log.len) == 0);
    FUZZ_CHECK(whole.out.len == pieces.out.len);
    FUZZ_CHECK(!whole.out.len || memcmp(whole.out.data, pieces.out.data, whole.out.len) == 0);
    sl_buf_dispose(&whole.out);
    sl_buf_dispose(&whole.log);
    sl_buf_dispose(&pieces.out);
    sl_buf_dispose(&pieces.log);
    sl_buf_dispose(&in);
    return 0;
}
