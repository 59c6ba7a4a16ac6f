/* codec/sse: the incremental parser fed the same bytes whole and in pieces must dispatch the same
 * events and end with the same result (0, SL_ETOOBIG or the callback's stop value); every event
 * keeps the header's promises; data encoded with sl_sse_encode_data parses back to itself.
 *
 * Input: [cap][stop][4 piece lengths][stream bytes]. cap 0 = no max_event, else cap * 8 bytes;
 * stop 0 = never, else the callback stops at that event. */
#include "fuzz.h"

#include "codec/sse.h"
#include "core/buf.h"

#define STOP_RC 7

typedef struct rec {
    sl_buf_t log; /* each event as lengths and bytes: equal logs mean equal events */
    size_t events, stop_at, max_event;
} rec_t;

static void put_field(sl_buf_t *b, const char *s, size_t n)
{
    sl_buf_printf(b, "%zu:", n);
    sl_buf_append(b, s, n);
}

static int on_event(void *ud, const sl_sse_event_t *ev)
{
    rec_t *r = ud;
    FUZZ_CHECK(ev->event && ev->id && ev->data);
    FUZZ_CHECK(ev->data_len <= r->max_event);
    /* Lines end at \r or \n: no field value can hold one, and data lines join with \n only. */
    FUZZ_CHECK(!memchr(ev->data, '\r', ev->data_len));
    FUZZ_CHECK(!memchr(ev->event, '\r', ev->event_len) && !memchr(ev->event, '\n', ev->event_len));
    FUZZ_CHECK(!memchr(ev->id, '\r', ev->id_len) && !memchr(ev->id, '\n', ev->id_len));
    FUZZ_CHECK(!memchr(ev->id, '\0', ev->id_len)); /* the spec ignores such ids */
    put_field(&r->log, ev->event, ev->event_len);
    put_field(&r->log, ev->id, ev->id_len);
    put_field(&r->log, ev->data, ev->data_len);
    r->events++;
    return r->events == r->stop_at ? STOP_RC : 0;
}

/* Parses in[0..n) in pieces (cuts NULL: whole); returns the first nonzero result, after which
 * the parser is fed no more, as the header asks. */
static int parse(const char *in, size_t n, size_t max_event, const fz_cuts_t *cuts, rec_t *r)
{
    sl_sse_parser_t p;
    sl_sse_parser_init(&p, max_event);
    int rc = 0;
    size_t at = 0;
    for (size_t k = 0; !rc && at < n; k++) {
        size_t len = cuts ? fz_cut(cuts, k, n - at) : n;
        /* a buffer of its own, scribbled over and freed once fed, as a transport reuses its read
         * buffer: anything the parser still points into afterwards is caught */
        char *piece = malloc(len ? len : 1);
        FUZZ_CHECK(piece != NULL);
        memcpy(piece, in + at, len);
        rc = sl_sse_parser_feed(&p, piece, len, on_event, r);
        memset(piece, 'X', len);
        free(piece);
        at += len;
    }
    sl_sse_parser_dispose(&p);
    FUZZ_CHECK(rc == 0 || rc == SL_ETOOBIG || rc == STOP_RC);
    return rc;
}

static void rec_init(rec_t *r, size_t stop_at, size_t max_event)
{
    sl_buf_init(&r->log);
    r->events = 0;
    r->stop_at = stop_at;
    r->max_event = max_event ? max_event : SIZE_MAX;
}

/* What the parser must give back for data it was handed through the encoder: the same bytes,
 * with each \r\n or lone \r read as the \n it is. */
static void check_round_trip(const char *data, size_t n)
{
    sl_buf_t enc, want;
    sl_buf_init(&enc);
    sl_buf_init(&want);
    sl_sse_encode_data(&enc, data, n);
    for (size_t i = 0; i < n; i++) {
        if (data[i] == '\r' && i + 1 < n && data[i + 1] == '\n')
            continue;
        sl_buf_putc(&want, data[i] == '\r' ? '\n' : data[i]);
    }
    rec_t r;
    rec_init(&r, 0, 0);
    FUZZ_CHECK(parse(enc.data, enc.len, 0, NULL, &r) == 0);
    FUZZ_CHECK(r.events == 1);
    sl_buf_t one;
    sl_buf_init(&one);
    put_field(&one, "", 0);
    put_field(&one, "", 0);
    put_field(&one, want.data ? want.data : "", want.len);
    FUZZ_CHECK(r.log.len == one.len && memcmp(r.log.data, one.data, one.len) == 0);
    sl_buf_dispose(&one);
    sl_buf_dispose(&r.log);
    sl_buf_dispose(&enc);
    sl_buf_dispose(&want);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_t f = {data, size};
    size_t max_event = (size_t)fz_u8(&f) * 8;
    size_t stop_at = fz_u8(&f);
    fz_cuts_t cuts;
    fz_cuts_read(&f, &cuts);
    const char *in = (const char *)f.p;
    size_t n = f.n;

    rec_t whole, pieces;
    rec_init(&whole, stop_at, max_event);
    rec_init(&pieces, stop_at, max_event);
    int rc_whole = parse(in, n, max_event, NULL, &whole);
    int rc_pieces = parse(in, n, max_event, &cuts, &pieces);
    FUZZ_CHECK(rc_whole == rc_pieces);
    FUZZ_CHECK(whole.events == pieces.events);
    FUZZ_CHECK(whole.log.len == pieces.log.len);
    FUZZ_CHECK(whole.log.len == 0 || memcmp(whole.log.data, pieces.log.data, whole.log.len) == 0);
    sl_buf_dispose(&whole.log);
    sl_buf_dispose(&pieces.log);

    check_round_trip(in, n);
    return 0;
}
