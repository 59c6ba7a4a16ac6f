/* upstream/h1: the built-in HTTP/1.1 client reading an upstream's response, for real: a TCP
 * server on this loop answers the client's request with the input's bytes, written in pieces
 * on separate loop turns, then closes. The transfer side (xfer.c) is stubbed here: it records
 * what the transport reports and answers body bytes with taken, pause (resumed on the next
 * turn) or stop, as the input says. Whatever the bytes and however they arrive:
 * - done comes exactly once, status before any body byte and before a done(OK);
 * - the status, headers and body bytes taken are those http-parser gives for the same bytes
 *   read in one piece (with a 1xx answer skipped, header section only), the body whole when done is
 * OK and a prefix of it otherwise; bytes answered with pause come again on resume and nothing is
 * lost;
 * - done is OK exactly when that whole-piece parse completes a response (unless we stopped);
 * - the pool and its connections are freed once closed (LeakSanitizer runs per input).
 *
 * Input: [4 piece lengths][pause mask][stop at][response bytes]. Body call k is answered with
 * pause when bit k % 8 of the mask is set (never twice in a row); stop at N > 0 stops at the Nth
 * body call. */
#include "fuzz.h"

#include <http_parser.h>
#include <signal.h>

#include "upstream/h1.h"
#include "upstream/xfer_transport.h"

#define MAX_PIECES 16

/* ---- the stubbed transfer: what the transport told it ---- */

struct sl_xfer {
    void *state; /* the transport's */
    int status, statuses, dones, body_calls;
    sl_xfer_result_t result;
    sl_buf_t headers, body;
    uint8_t pause_mask, stop_at;
    bool paused_last, stopped, resume_pending;
    uv_timer_t resume;
};

static uv_loop_t loop;
static sl_h1_pool_t *pool;

static void on_connected(sl_xfer_t *x)
{
}

static void on_status(sl_xfer_t *x, int status)
{
    FUZZ_CHECK(x->dones == 0 && x->statuses == 0 && x->body_calls == 0);
    x->status = status;
    x->statuses++;
}

static void on_header(sl_xfer_t *x, const char *name, size_t nlen, const char *value, size_t vlen)
{
    FUZZ_CHECK(x->dones == 0 && x->statuses == 0);
    sl_buf_append(&x->headers, name, nlen);
    sl_buf_puts(&x->headers, ": ");
    sl_buf_append(&x->headers, value, vlen);
    sl_buf_putc(&x->headers, '\n');
}

static void on_resume(uv_timer_t *t)
{
    sl_xfer_t *x = t->data;
    x->resume_pending = false;
    if (!x->dones)
        sl_xfer_h1.resume(x->state);
}

static int on_body(sl_xfer_t *x, const char *p, size_t len)
{
    FUZZ_CHECK(x->dones == 0 && x->statuses == 1 && !x->stopped);
    int k = x->body_calls++;
    if (x->stop_at && x->body_calls == x->stop_at) {
        x->stopped = true;
        return SL_XFER_STOP;
    }
    if (!x->paused_last && (x->pause_mask >> (k % 8) & 1)) {
        x->paused_last = true;
        if (!x->resume_pending) {
            x->resume_pending = true;
            uv_timer_start(&x->resume, on_resume, 0, 0);
        }
        return SL_XFER_PAUSE;
    }
    x->paused_last = false;
    sl_buf_append(&x->body, p, len);
    return SL_XFER_TAKEN;
}

static void on_done(sl_xfer_t *x, sl_xfer_result_t res, const char *detail)
{
    FUZZ_CHECK(x->dones == 0);
    x->dones++;
    x->result = res;
    FUZZ_CHECK(res != SL_XFER_OK || x->statuses == 1);
    sl_xfer_h1.stop(x->state); /* as the transfer does: the transport is freed before we return */
    x->state = NULL;
    uv_timer_stop(&x->resume);
}

/* ---- the upstream: answers the first complete request with the input, in pieces ---- */

typedef struct upstream {
    uv_tcp_t conn;
    bool accepted, answered, conn_closing;
    sl_buf_t req;
    const char *resp;
    size_t resp_len, at, piece;
    fz_cuts_t cuts;
    uv_timer_t next;
    uv_write_t w;
} upstream_t;

static void write_next(upstream_t *u);

static void on_next(uv_timer_t *t)
{
    write_next(t->data);
}

static void on_written(uv_write_t *w, int status)
{
    upstream_t *u = w->data;
    if (status < 0 || u->conn_closing) {
        if (!u->conn_closing) {
            u->conn_closing = true;
            uv_close((uv_handle_t *)&u->conn, NULL);
        }
        return;
    }
    uv_timer_start(&u->next, on_next, 0, 0); /* the next piece on a later turn */
}

static void write_next(upstream_t *u)
{
    if (u->conn_closing)
        return;
    if (u->at == u->resp_len) { /* all sent: close, so a close-delimited body ends */
        u->conn_closing = true;
        uv_close((uv_handle_t *)&u->conn, NULL);
        return;
    }
    size_t n = u->piece + 1 >= MAX_PIECES ? u->resp_len - u->at
                                          : fz_cut(&u->cuts, u->piece, u->resp_len - u->at);
    u->piece++;
    uv_buf_t b = uv_buf_init((char *)u->resp + u->at, (unsigned)n);
    u->at += n;
    u->w.data = u;
    if (uv_write(&u->w, (uv_stream_t *)&u->conn, &b, 1, on_written) != 0) {
        u->conn_closing = true;
        uv_close((uv_handle_t *)&u->conn, NULL);
    }
}

static void up_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    static char buf[4096];
    *b = uv_buf_init(buf, sizeof buf);
}

static void up_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    upstream_t *u = s->data;
    if (n < 0) {
        if (!u->conn_closing) {
            u->conn_closing = true;
            uv_close((uv_handle_t *)&u->conn, NULL);
        }
        return;
    }
    sl_buf_append(&u->req, b->base, (size_t)n);
    /* The client sends "POST ... Content-Length: 2\r\n...\r\n\r\n{}". */
    const char *end = u->req.data ? strstr(u->req.data, "\r\n\r\n") : NULL;
    if (!u->answered && end && u->req.len >= (size_t)(end - u->req.data) + 4 + 2) {
        u->answered = true;
        FUZZ_CHECK(strncmp(u->req.data, "POST /v1/chat/completions HTTP/1.1\r\n", 36) == 0);
        write_next(u);
    }
}

/* One listener for the whole run: a port per input would leave each one's TIME_WAIT sockets
 * holding ephemeral ports the rest of the machine binds from. */
static uv_tcp_t listener;
static int listen_port;
static upstream_t *current; /* the input being run: it takes the one connection */

static void on_accept(uv_stream_t *l, int status)
{
    upstream_t *u = current;
    FUZZ_CHECK(status == 0 && u && !u->accepted);
    u->accepted = true;
    uv_tcp_init(&loop, &u->conn);
    u->conn.data = u;
    FUZZ_CHECK(uv_accept(l, (uv_stream_t *)&u->conn) == 0);
    uv_read_start((uv_stream_t *)&u->conn, up_alloc, up_read);
}

static void count_handle(uv_handle_t *h, void *arg)
{
    if (h != (uv_handle_t *)&listener)
        ++*(int *)arg;
}

/* Runs the loop until every handle but the listener is closed and gone. */
static void settle(void)
{
    for (;;) {
        int n = 0;
        uv_walk(&loop, count_handle, &n);
        if (!n)
            return;
        (void)uv_run(&loop, UV_RUN_NOWAIT);
    }
}

/* ---- the reference: http-parser over the whole response at once ---- */

typedef struct refp {
    sl_buf_t headers, body, field;
    size_t name_len;
    bool in_value, complete;
    int status;
} refp_t;

static void ref_flush(http_parser *p)
{
    refp_t *r = p->data;
    if (!r->in_value)
        return;
    r->in_value = false;
    if (p->status_code / 100 != 1) {
        sl_buf_append(&r->headers, r->field.data, r->name_len);
        sl_buf_puts(&r->headers, ": ");
        sl_buf_append(&r->headers, r->field.data + r->name_len, r->field.len - r->name_len);
        sl_buf_putc(&r->headers, '\n');
    }
    sl_buf_reset(&r->field);
}

static int ref_field(http_parser *p, const char *at, size_t n)
{
    ref_flush(p);
    sl_buf_append(&((refp_t *)p->data)->field, at, n);
    return 0;
}

static int ref_value(http_parser *p, const char *at, size_t n)
{
    refp_t *r = p->data;
    if (!r->in_value) {
        r->name_len = r->field.len;
        r->in_value = true;
    }
    sl_buf_append(&r->field, at, n);
    return 0;
}

static int ref_headers_done(http_parser *p)
{
    refp_t *r = p->data;
    ref_flush(p);
    sl_buf_reset(&r->field);
    if (p->status_code / 100 == 1)
        return 1; /* an interim answer has no body (RFC 9110 §15.2) */
    r->status = p->status_code;
    return 0;
}

static int ref_body(http_parser *p, const char *at, size_t n)
{
    sl_buf_append(&((refp_t *)p->data)->body, at, n);
    return 0;
}

static int ref_complete(http_parser *p)
{
    if (p->status_code / 100 == 1)
        return 0;
    ((refp_t *)p->data)->complete = true;
    http_parser_pause(p, 1);
    return 0;
}

static void reference(const char *resp, size_t n, refp_t *r)
{
    static const http_parser_settings s = {
        .on_header_field = ref_field,
        .on_header_value = ref_value,
        .on_headers_complete = ref_headers_done,
        .on_body = ref_body,
        .on_message_complete = ref_complete,
    };
    http_parser p;
    http_parser_init(&p, HTTP_RESPONSE);
    p.data = r;
    size_t used = http_parser_execute(&p, &s, resp, n);
    if (!r->complete && used == n && HTTP_PARSER_ERRNO(&p) == HPE_OK)
        (void)http_parser_execute(&p, &s, NULL, 0); /* the server closed */
}

/* ---- one input ---- */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    signal(SIGPIPE, SIG_IGN);
    static const char *const proxy_vars[] = {"http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY",
                                             "SLUICE_UPSTREAM_CLIENT"};
    for (size_t i = 0; i < sizeof proxy_vars / sizeof proxy_vars[0]; i++)
        unsetenv(proxy_vars[i]);
    FUZZ_CHECK(uv_loop_init(&loop) == 0);
    struct sockaddr_in addr;
    FUZZ_CHECK(uv_ip4_addr("127.0.0.1", 0, &addr) == 0);
    uv_tcp_init(&loop, &listener);
    FUZZ_CHECK(uv_tcp_bind(&listener, (const struct sockaddr *)&addr, 0) == 0);
    FUZZ_CHECK(uv_listen((uv_stream_t *)&listener, 64, on_accept) == 0);
    struct sockaddr_storage bound;
    int blen = sizeof bound;
    FUZZ_CHECK(uv_tcp_getsockname(&listener, (struct sockaddr *)&bound, &blen) == 0);
    listen_port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
    return 0;
}

static bool same(const sl_buf_t *a, const sl_buf_t *b)
{
    return a->len == b->len && (a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_t f = {data, size};
    upstream_t u;
    memset(&u, 0, sizeof u);
    fz_cuts_read(&f, &u.cuts);
    sl_xfer_t x;
    memset(&x, 0, sizeof x);
    x.pause_mask = fz_u8(&f);
    x.stop_at = fz_u8(&f);
    char *resp = sl_malloc(f.n ? f.n : 1);
    memcpy(resp, f.p, f.n);
    u.resp = resp;
    u.resp_len = f.n;

    current = &u;
    uv_timer_init(&loop, &u.next);
    u.next.data = &u;
    uv_timer_init(&loop, &x.resume);
    x.resume.data = &x;

    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/v1/chat/completions", listen_port);
    pool = sl_h1_pool_new(&loop);
    static const sl_xfer_sink_t sink = {
        .connected = on_connected,
        .status = on_status,
        .header = on_header,
        .body = on_body,
        .done = on_done,
    };
    sl_xfer_wire_t w = {.url = url, .loop = &loop, .h1 = pool, .sink = &sink};
    FUZZ_CHECK(sl_headers_add(&w.headers, "Content-Type", "application/json") == 0);
    sl_buf_init(&w.body);
    sl_buf_puts(&w.body, "{}");
    FUZZ_CHECK(sl_xfer_h1.start(&x, &w, &x.state) == 0);

    while (!x.dones)
        (void)uv_run(&loop, UV_RUN_ONCE);
    sl_h1_pool_close(pool);
    pool = NULL;
    if (u.accepted && !u.conn_closing) {
        u.conn_closing = true;
        uv_close((uv_handle_t *)&u.conn, NULL);
    }
    uv_close((uv_handle_t *)&u.next, NULL);
    uv_close((uv_handle_t *)&x.resume, NULL);
    settle(); /* every handle closed: the pool is freed */
    FUZZ_CHECK(u.accepted || x.result != SL_XFER_OK);
    current = NULL;

    refp_t r;
    memset(&r, 0, sizeof r);
    reference(resp, u.resp_len, &r);
    FUZZ_CHECK(x.dones == 1);
    if (x.result == SL_XFER_OK) {
        FUZZ_CHECK(r.complete && !x.stopped);
        FUZZ_CHECK(same(&x.body, &r.body));
    } else {
        FUZZ_CHECK(!r.complete || x.stopped || !u.accepted);
        FUZZ_CHECK(x.body.len <= r.body.len &&
                   (x.body.len == 0 || memcmp(x.body.data, r.body.data, x.body.len) == 0));
    }
    if (x.statuses) {
        FUZZ_CHECK(x.status == r.status);
        FUZZ_CHECK(same(&x.headers, &r.headers));
    }
    sl_buf_dispose(&r.headers);
    sl_buf_dispose(&r.body);
    sl_buf_dispose(&r.field);
    sl_buf_dispose(&x.headers);
    sl_buf_dispose(&x.body);
    sl_buf_dispose(&u.req);
    sl_free(resp);
    return 0;
}
