/* Unit tests for upstream/h1 (the built-in HTTP/1.1 client) through sl_xfer, against a real
 * TCP server on the same libuv loop: response framings, splits at every byte, pool reuse,
 * stale pooled connections, cancel, backpressure; the eligibility rules; and the request head
 * both transports (h1 and curl) make of the wire's headers, with header text holding a line
 * break refused before anything is sent. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/alloc.h"
#include "upstream/h1.h"
#include "upstream/provider.h"
#include "upstream/upstream.h"
#include "upstream/xfer.h"

/* ---- the fake upstream: answers each complete request with the scenario's bytes ---- */

typedef struct scen {
    const char *resp; /* bytes to answer with */
    size_t resp_len;
    long split;       /* >= 0: write [0, split), then the rest on a later loop turn */
    bool close_after; /* close once the answer is written */
    int drop_on;      /* close (without answering) when a connection gets its Nth request */
    bool hold;        /* answer, then keep the connection open */
} scen_t;

typedef struct srv {
    uv_tcp_t tcp;
    int port;
    scen_t sc;
    int accepts, requests, eofs;
    sl_buf_t head; /* the last request's head, up to and with its blank line */
} srv_t;

typedef struct sconn {
    uv_tcp_t tcp;
    srv_t *s;
    sl_buf_t in;
    int nreq;
    uv_timer_t later;
    bool closing;
} sconn_t;

static uv_loop_t loop;
static srv_t srv;

static void sconn_freed(uv_handle_t *h)
{
    sconn_t *c = h->data;
    if (h == (uv_handle_t *)&c->tcp) {
        uv_close((uv_handle_t *)&c->later, sconn_freed);
        return;
    }
    sl_buf_dispose(&c->in);
    sl_free(c);
}

static void sconn_close(sconn_t *c)
{
    if (c->closing)
        return;
    c->closing = true;
    uv_close((uv_handle_t *)&c->tcp, sconn_freed);
}

typedef struct wr {
    uv_write_t w;
    char *data;
    sconn_t *c;
    bool close;
} wr_t;

static void on_written(uv_write_t *w, int status)
{
    wr_t *x = (wr_t *)w;
    if (x->close && status == 0)
        sconn_close(x->c);
    sl_free(x->data);
    sl_free(x);
}

static void swrite(sconn_t *c, const char *p, size_t n, bool close)
{
    wr_t *x = sl_calloc(1, sizeof *x);
    x->data = sl_malloc(n ? n : 1);
    memcpy(x->data, p, n);
    x->c = c;
    x->close = close;
    uv_buf_t b = uv_buf_init(x->data, (unsigned)n);
    assert_int_equal(uv_write(&x->w, (uv_stream_t *)&c->tcp, &b, 1, on_written), 0);
}

static void write_rest(uv_timer_t *t)
{
    sconn_t *c = t->data;
    scen_t *sc = &c->s->sc;
    swrite(c, sc->resp + sc->split, sc->resp_len - (size_t)sc->split, sc->close_after);
}

static void answer(sconn_t *c)
{
    scen_t *sc = &c->s->sc;
    if (sc->drop_on && c->nreq == sc->drop_on) {
        sconn_close(c);
        return;
    }
    if (sc->split >= 0) {
        swrite(c, sc->resp, (size_t)sc->split, false);
        uv_timer_start(&c->later, write_rest, 2, 0); /* a gap so the client reads twice */
        return;
    }
    swrite(c, sc->resp, sc->resp_len, sc->close_after);
}

static void s_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    *b = uv_buf_init(sl_malloc(65536), 65536);
}

static void s_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b)
{
    sconn_t *c = st->data;
    if (n < 0) {
        c->s->eofs++;
        sconn_close(c);
    } else if (n > 0 && !c->closing) {
        sl_buf_append(&c->in, b->base, (size_t)n);
        char *end;
        while (c->in.len && (end = strstr(c->in.data, "\r\n\r\n"))) {
            const char *cl = strstr(c->in.data, "Content-Length: ");
            size_t body = cl ? strtoul(cl + 16, NULL, 10) : 0;
            size_t need = (size_t)(end + 4 - c->in.data) + body;
            if (c->in.len < need)
                break;
            sl_buf_reset(&c->s->head);
            sl_buf_append(&c->s->head, c->in.data, (size_t)(end + 4 - c->in.data));
            sl_buf_consume(&c->in, need);
            c->nreq++;
            c->s->requests++;
            answer(c);
            if (c->closing)
                break;
        }
    }
    sl_free(b->base);
}

static void on_accept(uv_stream_t *l, int status)
{
    sconn_t *c = sl_calloc(1, sizeof *c);
    c->s = &srv;
    uv_tcp_init(&loop, &c->tcp);
    uv_timer_init(&loop, &c->later);
    c->tcp.data = c->later.data = c;
    assert_int_equal(uv_accept(l, (uv_stream_t *)&c->tcp), 0);
    srv.accepts++;
    uv_read_start((uv_stream_t *)&c->tcp, s_alloc, s_read);
}

/* ---- the client side: an sl_xfer with a recording decoder and sink ---- */

typedef struct got {
    sl_buf_t data; /* SSE data fields joined by '|', or the whole body */
    int status;    /* of an ERROR event */
    const char *code;
    bool end, err;
    bool congested;
    int events;
} got_t;

static got_t got;
static sl_upstream_t *up;
static sl_config_t cfg;

static void sink_emit(void *ud, const sl_event_t *ev)
{
    got.events++;
    if (ev->type == SL_EV_END)
        got.end = true;
    if (ev->type == SL_EV_ERROR) {
        got.err = true;
        got.status = ev->error.status;
        got.code = ev->error.code;
    }
}

static bool sink_congested(void *ud)
{
    return got.congested;
}

static int dec_sse(sl_xfer_t *x, void *ud, const sl_sse_event_t *ev)
{
    if (ev->data_len == 6 && memcmp(ev->data, "[DONE]", 6) == 0) {
        sl_event_t end = {.type = SL_EV_END};
        sl_xfer_emit(x, &end);
        return 1;
    }
    sl_buf_append(&got.data, ev->data, ev->data_len);
    sl_buf_putc(&got.data, '|');
    return 0;
}

static void dec_whole(sl_xfer_t *x, void *ud, const char *body, size_t len)
{
    sl_buf_append(&got.data, body, len);
    sl_event_t end = {.type = SL_EV_END};
    sl_xfer_emit(x, &end);
}

static void dec_error(sl_xfer_t *x, void *ud, int status, const char *body, size_t len, int ra)
{
    sl_xfer_emit_error(x, status, "server_error", "upstream_status", "status");
}

static const sl_xfer_decoder_t dec = {.sse = dec_sse, .whole = dec_whole, .error = dec_error};

static sl_upstream_call_t call_for(const char *request_id)
{
    sl_buf_dispose(&got.data);
    memset(&got, 0, sizeof got);
    sl_upstream_call_t call = {
        .loop = &loop, .upstream = up, .cfg = &cfg, .request_id = request_id};
    call.sink = (sl_upstream_sink_t){.emit = sink_emit, .congested = sink_congested};
    return call;
}

/* A request with Content-Type, and curl's default Accept omitted (so either transport's head
 * shows whether the omit list was honoured). */
static void request_for(sl_xfer_req_t *req, char *url, size_t cap, bool stream)
{
    snprintf(url, cap, "http://127.0.0.1:%d/v1/chat/completions", srv.port);
    *req = (sl_xfer_req_t){.url = url, .stream = stream};
    sl_buf_init(&req->body);
    sl_buf_puts(&req->body, "{\"model\":\"m\"}");
    sl_headers_init(&req->headers);
    assert_int_equal(sl_headers_add(&req->headers, "Content-Type", "application/json"), 0);
    sl_headers_omit(&req->headers, "Accept");
}

static sl_xfer_t *start(bool stream)
{
    sl_upstream_call_t call = call_for("rid");
    char url[64];
    sl_xfer_req_t req;
    request_for(&req, url, sizeof url, stream);
    sl_xfer_t *x = NULL;
    assert_int_equal(sl_xfer_start(&call, &req, &dec, NULL, &x), 0);
    assert_int_equal(req.headers.send.len + req.headers.omit.len + req.body.len, 0); /* taken */
    return x;
}

static bool timed_out;
static void on_giveup(uv_timer_t *t)
{
    timed_out = true;
}

static bool done(void)
{
    return got.end || got.err;
}

static void run_done(void)
{
    uv_timer_t t;
    uv_timer_init(&loop, &t);
    timed_out = false;
    uv_timer_start(&t, on_giveup, 5000, 0);
    while (!done() && !timed_out)
        uv_run(&loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&t, NULL);
    for (int i = 0; i < 3; i++) /* let the transfer tear down and the pool take the conn */
        uv_run(&loop, UV_RUN_NOWAIT);
    assert_false(timed_out);
}

/* Runs the loop until the transfer let go of its connection and the pool holds it (after the
 * terminal event the transfer still reads the end of the response). */
static void settle_pooled(void)
{
    sl_h1_stats_t s;
    for (int i = 0; i < 500; i++) {
        sl_h1_pool_stats(up->h1, &s);
        if (s.idle)
            return;
        uv_run(&loop, UV_RUN_ONCE);
    }
    fail_msg("the connection never went back to the pool");
}

static void scen(const char *resp)
{
    memset(&srv.sc, 0, sizeof srv.sc);
    srv.sc.resp = resp;
    srv.sc.resp_len = strlen(resp);
    srv.sc.split = -1;
}

static int setup(void **state)
{
    uv_loop_init(&loop);
    up = sl_upstream_new(&loop);
    memset(&srv, 0, sizeof srv);
    uv_tcp_init(&loop, &srv.tcp);
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", 0, &a);
    assert_int_equal(uv_tcp_bind(&srv.tcp, (const struct sockaddr *)&a, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&srv.tcp, 64, on_accept), 0);
    struct sockaddr_storage ss;
    int len = sizeof ss;
    uv_tcp_getsockname(&srv.tcp, (struct sockaddr *)&ss, &len);
    srv.port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    memset(&cfg, 0, sizeof cfg);
    cfg.connect_ms = 2000;
    cfg.first_byte_ms = 3000;
    cfg.idle_ms = 3000;
    return 0;
}

static void close_all(uv_handle_t *h, void *arg)
{
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

static int teardown(void **state)
{
    sl_upstream_close(up);
    uv_close((uv_handle_t *)&srv.tcp, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_walk(&loop, close_all, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    sl_buf_dispose(&got.data);
    sl_buf_dispose(&srv.head);
    return 0;
}

/* The same, with every upstream on curl (the pool reads the variable when it is made). */
static int setup_curl(void **state)
{
    assert_int_equal(setenv("SLUICE_UPSTREAM_CLIENT", "curl", 1), 0);
    return setup(state);
}

static int teardown_curl(void **state)
{
    int rc = teardown(state);
    assert_int_equal(unsetenv("SLUICE_UPSTREAM_CLIENT"), 0);
    return rc;
}

static sl_h1_stats_t stats(void)
{
    sl_h1_stats_t s;
    sl_h1_pool_stats(up->h1, &s);
    return s;
}

#define CHUNKED_SSE                                                                                \
    "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"     \
    "f\r\ndata: {\"a\":1}\n\n\r\n"                                                                 \
    "1c\r\ndata: {\"b\":\"two\"}\n\ndata: [DO\r\n"                                                 \
    "4\r\nNE]\n\r\n1\r\n\n\r\n0\r\n\r\n"

/* ---- tests ---- */

static void test_h1_content_length_whole_body(void **state)
{
    scen("HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world");
    (void)start(false);
    run_done();
    assert_true(got.end);
    assert_string_equal(got.data.data, "hello world");
    assert_int_equal(stats().connects, 1);
    assert_int_equal(stats().idle, 1); /* keep-alive: back in the pool */
}

static void test_h1_chunked_sse(void **state)
{
    scen(CHUNKED_SSE);
    (void)start(true);
    run_done();
    assert_true(got.end);
    assert_string_equal(got.data.data, "{\"a\":1}|{\"b\":\"two\"}|");
    assert_int_equal(stats().idle, 1);
}

static void test_h1_close_delimited_body(void **state)
{
    scen("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end");
    srv.sc.close_after = true;
    (void)start(false);
    run_done();
    assert_true(got.end);
    assert_string_equal(got.data.data, "until the end");
    assert_int_equal(stats().idle, 0); /* not reusable */
}

static void test_h1_error_status_and_retry_after(void **state)
{
    scen("HTTP/1.1 429 Too Many\r\nRetry-After: 7\r\nContent-Length: 2\r\n\r\n{}");
    (void)start(true);
    run_done();
    assert_true(got.err);
    assert_int_equal(got.status, 429);
}

/* A 1xx answer ends at its header section (RFC 9110 §15.2): a Content-Length on it announces
 * no body, and what follows is the next answer's status line, never body bytes handed to the
 * transfer before any status (found by tests/fuzz/fuzz_h1_response). */
static void test_h1_interim_answer_has_no_body(void **state)
{
    scen("HTTP/1.1 100 Continue\r\nContent-Length: 5\r\n\r\n"
         "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    (void)start(false);
    run_done();
    assert_true(got.end);
    assert_string_equal(got.data.data, "ok");
}

static void test_h1_split_at_every_byte_on_one_pooled_connection(void **state)
{
    scen(CHUNKED_SSE);
    size_t n = strlen(CHUNKED_SSE);
    for (size_t k = 1; k < n; k++) {
        srv.sc.split = (long)k;
        (void)start(true);
        run_done();
        assert_true(got.end);
        assert_string_equal(got.data.data, "{\"a\":1}|{\"b\":\"two\"}|");
        settle_pooled();
    }
    scen("HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world");
    for (size_t k = 1; k < srv.sc.resp_len; k++) {
        srv.sc.split = (long)k;
        (void)start(false);
        run_done();
        assert_string_equal(got.data.data, "hello world");
        settle_pooled();
    }
    /* Every request went over the one connection the pool kept. */
    assert_int_equal(srv.accepts, 1);
    assert_int_equal(stats().connects, 1);
    assert_int_equal(stats().requests, n - 1 + srv.sc.resp_len - 1);
    assert_int_equal(srv.requests, n - 1 + srv.sc.resp_len - 1);
}

static void test_h1_pooled_connection_closed_by_server_is_dropped(void **state)
{
    scen("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    srv.sc.close_after = true; /* keep-alive by the headers, closed anyway while idle */
    (void)start(false);
    run_done();
    bool idle_gone = false;
    uv_timer_t t;
    uv_timer_init(&loop, &t);
    for (int i = 0; i < 200 && stats().idle; i++)
        uv_run(&loop, UV_RUN_ONCE); /* the idle connection's EOF arrives */
    idle_gone = stats().idle == 0;
    uv_close((uv_handle_t *)&t, NULL);
    assert_true(idle_gone);
    srv.sc.close_after = false;
    (void)start(false);
    run_done();
    assert_true(got.end);
    assert_string_equal(got.data.data, "ok");
    assert_int_equal(srv.accepts, 2);
}

static void test_h1_reused_connection_failing_is_retried_once(void **state)
{
    scen("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    srv.sc.drop_on = 2; /* the server drops a connection when its 2nd request arrives */
    (void)start(false);
    run_done();
    (void)start(false);
    run_done();
    assert_true(got.end);
    assert_string_equal(got.data.data, "ok");
    assert_int_equal(stats().retries, 1);
    assert_int_equal(srv.accepts, 2);
}

static void test_h1_drop_mid_response_is_disconnected(void **state)
{
    scen("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part");
    srv.sc.close_after = true;
    (void)start(false);
    run_done();
    assert_true(got.err);
    assert_int_equal(got.status, 502);
    assert_string_equal(got.code, "upstream_disconnected");
}

static void test_h1_refused_is_unreachable(void **state)
{
    int port = srv.port;
    uv_close((uv_handle_t *)&srv.tcp, NULL);
    uv_run(&loop, UV_RUN_NOWAIT);
    srv.port = port;
    (void)start(false);
    run_done();
    assert_true(got.err);
    assert_int_equal(got.status, 502);
    assert_string_equal(got.code, "upstream_unreachable");
    uv_tcp_init(&loop, &srv.tcp); /* for teardown */
}

static void test_h1_cancel_mid_stream_closes_the_socket(void **state)
{
    scen("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nf\r\ndata: {\"a\":1}\n\n\r\n");
    sl_xfer_t *x = start(true);
    while (!got.data.len)
        uv_run(&loop, UV_RUN_ONCE);
    sl_xfer_cancel(x);
    bool closed = false;
    for (int i = 0; i < 200 && !closed; i++) {
        uv_run(&loop, UV_RUN_ONCE);
        closed = srv.eofs == 1;
    }
    assert_true(closed);
    assert_int_equal(stats().idle, 0);
}

static int resumes;

static void resume_soon(uv_timer_t *t)
{
    got.congested = false;
    sl_xfer_resume(t->data); /* hands over what was held */
    got.congested = true;    /* and the next bytes read are held again */
    resumes++;
}

static void test_h1_backpressure_holds_bytes_and_loses_none(void **state)
{
    /* A 4 MiB chunked stream of numbered events, written at once; the sink says congested
     * after every event batch and the test resumes it a turn later. */
    sl_buf_t resp, want;
    sl_buf_init(&resp);
    sl_buf_init(&want);
    sl_buf_puts(&resp, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
    for (int i = 0; i < 40000; i++) {
        char ev[160];
        int n = snprintf(ev, sizeof ev, "data: {\"i\":%d,\"pad\":\"%080d\"}\n\n", i, i);
        sl_buf_printf(&resp, "%x\r\n%s\r\n", n, ev);
        sl_buf_printf(&want, "{\"i\":%d,\"pad\":\"%080d\"}|", i, i);
    }
    sl_buf_puts(&resp, "e\r\ndata: [DONE]\n\n\r\n0\r\n\r\n");
    scen(resp.data);
    sl_xfer_t *x = start(true);
    uv_timer_t t;
    uv_timer_init(&loop, &t);
    t.data = x;
    resumes = 0;
    timed_out = false;
    uv_timer_t g;
    uv_timer_init(&loop, &g);
    uv_timer_start(&g, on_giveup, 10000, 0);
    got.congested = true;
    while (!done() && !timed_out) {
        uv_timer_start(&t, resume_soon, 0, 0);
        uv_run(&loop, UV_RUN_ONCE);
    }
    uv_close((uv_handle_t *)&t, NULL);
    uv_close((uv_handle_t *)&g, NULL);
    uv_run(&loop, UV_RUN_NOWAIT);
    assert_false(timed_out);
    assert_true(got.end);
    assert_int_equal(got.data.len, want.len);
    assert_memory_equal(got.data.data, want.data, want.len);
    assert_true(resumes > 10);
    sl_buf_dispose(&resp);
    sl_buf_dispose(&want);
}

static void test_h1_eligibility(void **state)
{
    sl_h1_env_t none = {0};
    sl_h1_target_t t;
    assert_true(sl_h1_eligible("http://127.0.0.1:8000/v1/chat/completions", &none, &t));
    assert_string_equal(t.host, "127.0.0.1:8000");
    assert_int_equal(t.path_len, strlen("/v1/chat/completions"));
    assert_memory_equal(t.path, "/v1/chat/completions", t.path_len);
    assert_true(sl_h1_eligible("http://localhost:11434/v1/x?a=b", &none, &t));
    assert_string_equal(t.host, "localhost:11434");
    assert_int_equal(t.path_len, strlen("/v1/x?a=b"));
    assert_int_equal(t.addr.ss_family, AF_INET);
    assert_true(sl_h1_eligible("http://[::1]:9/v1", &none, &t));
    assert_string_equal(t.host, "[::1]:9");
    assert_int_equal(t.addr.ss_family, AF_INET6);
    assert_true(sl_h1_eligible("http://10.0.0.5/v1", &none, &t));
    assert_string_equal(t.host, "10.0.0.5");
    assert_int_equal(ntohs(((struct sockaddr_in *)&t.addr)->sin_port), 80);
    /* curl's */
    assert_false(sl_h1_eligible("https://127.0.0.1:8000/v1", &none, &t));
    assert_false(sl_h1_eligible("http://api.example.com/v1", &none, &t));
    assert_false(sl_h1_eligible("http://user:pw@127.0.0.1/v1", &none, &t));
    assert_false(sl_h1_eligible("not a url", &none, &t));
    sl_h1_env_t curl = {.client = "curl"};
    assert_false(sl_h1_eligible("http://127.0.0.1:8000/v1", &curl, &t));
    sl_h1_env_t builtin = {.client = "builtin"};
    assert_true(sl_h1_eligible("http://127.0.0.1:8000/v1", &builtin, &t));
    sl_h1_env_t proxy = {.http_proxy = "http://proxy:3128"};
    assert_false(sl_h1_eligible("http://127.0.0.1:8000/v1", &proxy, &t));
    sl_h1_env_t all = {.all_proxy = "socks5://p:1080"};
    assert_false(sl_h1_eligible("http://127.0.0.1:8000/v1", &all, &t));
    sl_h1_env_t empty = {.http_proxy = ""};
    assert_true(sl_h1_eligible("http://127.0.0.1:8000/v1", &empty, &t));
    sl_h1_env_t np = {.http_proxy = "http://proxy:3128", .no_proxy = "example.com, 127.0.0.1"};
    assert_true(sl_h1_eligible("http://127.0.0.1:8000/v1", &np, &t));
    assert_false(sl_h1_eligible("http://localhost:8000/v1", &np, &t));
    sl_h1_env_t star = {.all_proxy = "http://p:1", .no_proxy = "*"};
    assert_true(sl_h1_eligible("http://[::1]:8000/v1", &star, &t));
}

static void test_h1_no_proxy_rules(void **state)
{
    assert_true(sl_h1_no_proxy_match("localhost", "localhost"));
    assert_true(sl_h1_no_proxy_match("a.com,.local", "x.local"));
    assert_true(sl_h1_no_proxy_match("10.0.0.0/8", "10.2.3.4"));
    assert_false(sl_h1_no_proxy_match("10.0.0.0/8", "11.2.3.4"));
    assert_true(sl_h1_no_proxy_match("[::1]", "::1"));
    assert_true(sl_h1_no_proxy_match("fd00::/8", "fd12::1"));
    assert_false(sl_h1_no_proxy_match("127.0.0.1", "127.0.0.10"));
    assert_false(sl_h1_no_proxy_match(NULL, "127.0.0.1"));
    assert_false(sl_h1_no_proxy_match("", "127.0.0.1"));
}

/* ---- the request head made of the wire's headers ---- */

static bool has(const char *line)
{
    return srv.head.data && strstr(srv.head.data, line);
}

/* What both transports must send: the headers added, X-Request-Id, and none of those omitted
 * (Expect by the transfer, Accept by the test: curl would add both of its own accord). */
static void assert_head_of_the_wire(void)
{
    assert_non_null(srv.head.data);
    assert_true(strncmp(srv.head.data, "POST /v1/chat/completions HTTP/1.1\r\n", 36) == 0);
    assert_true(has("\r\nContent-Type: application/json\r\n"));
    assert_true(has("\r\nX-Request-Id: rid\r\n"));
    assert_true(has("\r\nContent-Length: 13\r\n"));
    assert_false(has("\nExpect:"));
    assert_false(has("\nAccept:"));
}

static void test_h1_request_head_carries_the_wire_headers(void **state)
{
    scen("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    (void)start(false);
    run_done();
    assert_true(got.end);
    assert_int_equal(stats().requests, 1);
    assert_head_of_the_wire();
    char host[40];
    snprintf(host, sizeof host, "\r\nHost: 127.0.0.1:%d\r\n", srv.port);
    assert_true(has(host));
}

static void test_curl_request_head_carries_the_wire_headers(void **state)
{
    scen("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    (void)start(false);
    run_done();
    assert_true(got.end);
    assert_string_equal(got.data.data, "ok");
    assert_int_equal(stats().requests, 0); /* it went out on curl */
    assert_int_equal(srv.requests, 1);
    assert_head_of_the_wire();
}

/* A header value holding CR or LF would end its line and start one of the sender's choosing:
 * the transfer refuses to start, nothing goes out, and the caller still owns what it passed. */
static void test_xfer_request_id_with_line_break_is_refused(void **state)
{
    scen("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    sl_upstream_call_t call = call_for("rid\r\nX-Injected: 1");
    char url[64];
    sl_xfer_req_t req;
    request_for(&req, url, sizeof url, false);
    sl_xfer_t *x = NULL;
    assert_int_equal(sl_xfer_start(&call, &req, &dec, NULL, &x), SL_EINVAL);
    assert_null(x);
    assert_int_equal(req.body.len, 13); /* still the caller's */
    sl_headers_dispose(&req.headers);
    sl_buf_dispose(&req.body);
    (void)start(false); /* the next request is the first the server sees */
    run_done();
    assert_true(got.end);
    assert_int_equal(srv.requests, 1);
    assert_false(has("X-Injected"));
}

/* Config text (an api_key, anthropic's api_version) reaches a header: a line break in it makes
 * the provider refuse the call rather than send it. */
static void test_provider_config_with_line_break_is_refused(void **state)
{
    static const char body[] = "{\"id\":\"c\",\"choices\":[{\"index\":0,\"message\":"
                               "{\"content\":\"hi\"},\"finish_reason\":\"stop\"}]}";
    char resp[256];
    snprintf(resp, sizeof resp, "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n%s", sizeof body - 1,
             body);
    scen(resp);
    char base[64];
    snprintf(base, sizeof base, "http://127.0.0.1:%d/v1", srv.port);
    static const char raw[] = "{\"model\":\"m\",\"messages\":[]}";
    sl_chat_req_t req = {.model = "m", .raw = raw, .raw_len = sizeof raw - 1};
    sl_target_cfg_t target = {0};
    sl_provider_cfg_t p = {.base_url = base, .api_version = "2024-06-01"};
    sl_upstream_call_t call = call_for("rid");
    call.provider = &p;
    call.target = &target;
    call.req = &req;
    void *st = NULL;
    p.api_key = "key\r\nX-Injected: 1";
    assert_int_equal(sl_provider_openai.start(&call, &st), SL_EINVAL);
    p.api_key = "key\nX-Injected: 1";
    assert_int_equal(sl_provider_azure.start(&call, &st), SL_EINVAL);
    p.api_key = "key\rX-Injected: 1";
    assert_int_equal(sl_provider_anthropic.start(&call, &st), SL_EINVAL);
    p.api_key = "key";
    p.api_version = "2023-06-01\r\nX-Injected: 1";
    assert_int_equal(sl_provider_anthropic.start(&call, &st), SL_EINVAL);
    assert_null(st);
    /* The same call with clean text goes out, and is the first the server sees. */
    assert_int_equal(sl_provider_openai.start(&call, &st), 0);
    run_done();
    assert_true(got.end);
    assert_int_equal(srv.requests, 1);
    assert_true(has("\r\nAuthorization: Bearer key\r\n"));
    assert_true(has("\r\nAccept: application/json\r\n"));
    assert_false(has("X-Injected"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_h1_eligibility),
        cmocka_unit_test(test_h1_no_proxy_rules),
        cmocka_unit_test_setup_teardown(test_h1_content_length_whole_body, setup, teardown),
        cmocka_unit_test_setup_teardown(test_h1_chunked_sse, setup, teardown),
        cmocka_unit_test_setup_teardown(test_h1_close_delimited_body, setup, teardown),
        cmocka_unit_test_setup_teardown(test_h1_error_status_and_retry_after, setup, teardown),
        cmocka_unit_test_setup_teardown(test_h1_interim_answer_has_no_body, setup, teardown),
        cmocka_unit_test_setup_teardown(test_h1_split_at_every_byte_on_one_pooled_connection, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_h1_pooled_connection_closed_by_server_is_dropped,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_h1_reused_connection_failing_is_retried_once, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_h1_drop_mid_response_is_disconnected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_h1_refused_is_unreachable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_h1_cancel_mid_stream_closes_the_socket, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_h1_backpressure_holds_bytes_and_loses_none, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_h1_request_head_carries_the_wire_headers, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_curl_request_head_carries_the_wire_headers, setup_curl,
                                        teardown_curl),
        cmocka_unit_test_setup_teardown(test_xfer_request_id_with_line_break_is_refused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_provider_config_with_line_break_is_refused, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
