/* http/request: a connection's bytes parsed as pipelined requests, as net/conn does (feed until
 * complete, answer, reset, feed the rest), whole and in pieces. Both must give the same requests
 * and the same final error; every request that parses has a method, a path and header and body
 * sizes within the limits; bytes are consumed only up to a complete request or an error; header
 * and query lookups stay inside what was parsed.
 *
 * Input: [max_header][max_body][4 piece lengths][connection bytes]. max_header 0 = 16 KiB (the
 * default), else 64 + 4 * byte; max_body = 16 * byte. */
#include "fuzz.h"

#include <ctype.h>

#include "core/err.h"
#include "http/request.h"

/* One request's outcome, appended to a log: equal logs mean equal requests. */
static void put(sl_buf_t *b, const char *s, size_t n)
{
    sl_buf_printf(b, "%zu:", n);
    sl_buf_append(b, s, n);
}

/* The header block is "name\0value\0" pairs with lowercase names; every name is found. */
static void check_headers(const sl_http_req_t *r)
{
    if (!r->hdrs.data) { /* no header lines: nothing stored (and no end to compute) */
        FUZZ_CHECK(r->nfields == 0 && !(r->parser.http_major == 1 && r->parser.http_minor >= 1));
        return;
    }
    const char *p = r->hdrs.data, *end = p + r->hdrs.len;
    unsigned pairs = 0;
    FUZZ_CHECK(r->hdrs.len == 0 || end[-1] == '\0');
    while (p && p < end) {
        size_t nl = strlen(p);
        for (size_t i = 0; i < nl; i++)
            FUZZ_CHECK(!isupper((unsigned char)p[i]));
        const char *v = p + nl + 1;
        FUZZ_CHECK(v < end); /* a name always has its value */
        FUZZ_CHECK(sl_http_req_header(r, p) != NULL);
        for (const char *q = v; *q; q++) /* a value holds no control but a tab */
            FUZZ_CHECK((unsigned char)*q >= 0x20 ? *q != 0x7f : *q == '\t');
        p = v + strlen(v) + 1;
        pairs++;
    }
    FUZZ_CHECK(pairs == r->nfields); /* one pair per header line: trailers never added */
    const char *host = sl_http_req_header(r, "host");
    FUZZ_CHECK(!host || !sl_http_req_header_next(r, "host", host)); /* never two */
    if (r->parser.http_major == 1 && r->parser.http_minor >= 1)
        FUZZ_CHECK(host != NULL);
}

static void check_query(const sl_http_req_t *r)
{
    static const char *const names[] = {"message", "history", "access_token", "a", ""};
    sl_buf_t v;
    sl_buf_init(&v);
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (sl_http_req_query(r, names[i], &v)) {
            FUZZ_CHECK(v.data != NULL); /* callers read v.data as a string */
            FUZZ_CHECK(v.data[v.len] == '\0');
            FUZZ_CHECK(v.len <= r->url.len);
            FUZZ_CHECK(strlen(v.data) == v.len); /* no NUL inside: callers use C strings */
        }
    }
    sl_buf_dispose(&v);
}

static void check_complete(const sl_http_req_t *r, sl_buf_t *log)
{
    const char *method = sl_http_req_method(r);
    FUZZ_CHECK(method && *method);
    size_t plen;
    const char *path = sl_http_req_path(r, &plen);
    FUZZ_CHECK(path && r->url.len > 0 && plen <= r->url.len);
    FUZZ_CHECK(r->url.data[r->url.len] == '\0');
    FUZZ_CHECK(r->headers_done);
    FUZZ_CHECK(r->head_bytes <= r->max_header);
    /* Every stored head byte was counted against the limit (a name counts 2 for the NULs). */
    FUZZ_CHECK(r->url.len + r->hdrs.len <= r->head_bytes);
    FUZZ_CHECK(r->body.len <= r->max_body);
    check_headers(r);
    check_query(r);
    put(log, method, strlen(method));
    put(log, r->url.data, r->url.len);
    put(log, r->hdrs.data, r->hdrs.len);
    put(log, r->body.data, r->body.len);
    sl_buf_printf(log, "%d%d;", r->keep_alive, r->expect_continue);
}

/* Parses the connection's bytes; cuts NULL: each read is everything left. Returns the final
 * error (0 when the bytes ran out first). */
static int run(const char *in, size_t n, size_t max_header, size_t max_body, const fz_cuts_t *cuts,
               sl_buf_t *log)
{
    sl_http_req_t r;
    sl_http_req_init(&r, max_header, max_body);
    size_t at = 0, k = 0;
    while (at < n) {
        size_t len = cuts ? fz_cut(cuts, k++, n - at) : n - at;
        size_t used = sl_http_req_feed(&r, in + at, len);
        FUZZ_CHECK(used <= len);
        at += used;
        if (r.error) {
            FUZZ_CHECK(r.error == SL_EINVAL || r.error == SL_ETOOBIG || r.error == SL_EHEADERS ||
                       r.error == SL_EURI);
            FUZZ_CHECK(r.error_msg != NULL);
            break;
        }
        if (r.complete) {
            check_complete(&r, log);
            sl_http_req_reset(&r); /* answered: the next pipelined request */
            continue;
        }
        /* Short of a complete request and without an error, every byte is taken. */
        FUZZ_CHECK(used == len);
        FUZZ_CHECK(r.head_bytes <= r.max_header);
        FUZZ_CHECK(r.body.len <= r.max_body);
    }
    int err = r.error;
    sl_http_req_dispose(&r);
    return err;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_t f = {data, size};
    uint8_t mh = fz_u8(&f);
    size_t max_header = mh ? 64 + 4 * (size_t)mh : 16384;
    size_t max_body = 16 * (size_t)fz_u8(&f);
    fz_cuts_t cuts;
    fz_cuts_read(&f, &cuts);

    sl_buf_t whole, pieces;
    sl_buf_init(&whole);
    sl_buf_init(&pieces);
    int err_whole = run((const char *)f.p, f.n, max_header, max_body, NULL, &whole);
    int err_pieces = run((const char *)f.p, f.n, max_header, max_body, &cuts, &pieces);
    if (err_whole != err_pieces || whole.len != pieces.len ||
        (whole.len && memcmp(whole.data, pieces.data, whole.len) != 0)) {
        fwrite(whole.data, 1, whole.len, stderr);
        fprintf(stderr, " <- whole (%d)\n", err_whole);
        fwrite(pieces.data, 1, pieces.len, stderr);
        fprintf(stderr, " <- pieces (%d)\n", err_pieces);
    }
    FUZZ_CHECK(err_whole == err_pieces);
    FUZZ_CHECK(whole.len == pieces.len);
    FUZZ_CHECK(whole.len == 0 || memcmp(whole.data, pieces.data, whole.len) == 0);
    sl_buf_dispose(&whole);
    sl_buf_dispose(&pieces);
    return 0;
}
