/* Unit tests for the lifecycles of an upstream transfer (xfer.c) and of a built-in client
 * request (h1.c), told by their debug lines ("xfer N: A → B (why)", "h1 N: ..."), against a
 * real TCP server on the same loop: the story of a streamed answer, the idle deadline still
 * running after END, the first-byte deadline counting until the first body byte, an error
 * mid-answer that reads no further, no deadline while paused, a cancel, a retry, a refusal. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/alloc.h"
#include "core/log.h"
#include "upstream/h1.h"
#include "upstream/provider.h"
#include "upstream/upstream.h"
#include "upstream/xfer.h"

/* ---- the fake upstream: answers each complete request with the scenario's bytes ---- */

typedef struct scen {
    const char *resp;
    bool close_after; /* close once the answer is written */
    int drop_on;      /* close (without answering) when a connection gets its Nth request */
} scen_t;

typedef struct srv {
    uv_tcp_t tcp;
    int port;
    scen_t sc;
    int accepts, requests, eofs;
} srv_t;

typedef struct sconn {
    uv_tcp_t tcp;
    sl_buf_t in;
    int nreq;
    bool closing;
} sconn_t;

static uv_loop_t loop;
static srv_t srv;

static void sconn_freed(uv_handle_t *h)
{
    sconn_t *c = h->data;
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

static void answer(sconn_t *c)
{
    if (srv.sc.drop_on && c->nreq == srv.sc.drop_on) {
        sconn_close(c);
        return;
    }
    size_t n = strlen(srv.sc.resp);
    wr_t *x = sl_calloc(1, sizeof *x);
    x->data = sl_malloc(n ? n : 1);
    memcpy(x->data, srv.sc.resp, n);
    x->c = c;
    x->close = srv.sc.close_after;
    uv_buf_t b = uv_buf_init(x->data, (unsigned)n);
    assert_int_equal(uv_write(&x->w, (uv_stream_t *)&c->tcp, &b, 1, on_written), 0);
}

static void s_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    *b = uv_buf_init(sl_malloc(65536), 65536);
}

static void s_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b)
{
    sconn_t *c = st->data;
    if (n < 0) {
        srv.eofs++;
        sconn_close(c);
    } else if (n > 0 && !c->closing) {
        sl_buf_append(&c->in, b->base, (size_t)n);
        char *end;
        while (c->in.len && (end = strstr(c->in.data, "\r\n\r\n"))) {
            const char *cl = strstr(c->in.data, "Content-Length: ");
            size_t need = (size_t)(end + 4 - c->in.data) + (cl ? strtoul(cl + 16, NULL, 10) : 0);
            if (c->in.len < need)
                break;
            sl_buf_consume(&c->in, need);
            c->nreq++;
            srv.requests++;
            if (srv.sc.resp)
                answer(c); /* else: hold, never answer */
            if (c->closing)
                break;
        }
    }
    sl_free(b->base);
}

static void on_accept(uv_stream_t *l, int status)
{
    sconn_t *c = sl_calloc(1, sizeof *c);
    uv_tcp_init(&loop, &c->tcp);
    c->tcp.data = c;
    assert_int_equal(uv_accept(l, (uv_stream_t *)&c->tcp), 0);
    srv.accepts++;
    uv_read_start((uv_stream_t *)&c->tcp, s_alloc, s_read);
}

/* ---- the client side: an sl_xfer with a recording decoder and sink ---- */

typedef struct got {
    const char *code; /* of an ERROR event */
    bool end, err, congested;
    int events, data_events;
} got_t;

static got_t got;
static sl_upstream_t *up;
static sl_config_t cfg;

static void sink_emit(void *ud, const sl_event_t *ev)
{
    got.events++;
    got.end |= ev->type == SL_EV_END;
    if (ev->type == SL_EV_ERROR) {
        got.err = true;
        got.code = ev->error.code;
    }
}

static bool sink_congested(void *ud)
{
    return got.congested;
}

/* [DONE] ends the answer, "bad" is an error inside it, anything else is counted. */
static int dec_sse(sl_xfer_t *x, void *ud, const sl_sse_event_t *ev)
{
    if (ev->data_len == 6 && memcmp(ev->data, "[DONE]", 6) == 0) {
        sl_event_t end = {.type = SL_EV_END};
        sl_xfer_emit(x, &end);
        return 1;
    }
    if (ev->data_len == 3 && memcmp(ev->data, "bad", 3) == 0) {
        sl_xfer_emit_error(x, 502, "server_error", "bad_event", "bad");
        return 1;
    }
    got.data_events++;
    return 0;
}

static void dec_whole(sl_xfer_t *x, void *ud, const char *body, size_t len)
{
    sl_event_t end = {.type = SL_EV_END};
    sl_xfer_emit(x, &end);
}

static void dec_error(sl_xfer_t *x, void *ud, int status, const char *body, size_t len, int ra)
{
    sl_xfer_emit_error(x, status, "server_error", "upstream_status", "status");
}

static const sl_xfer_decoder_t dec = {.sse = dec_sse, .whole = dec_whole, .error = dec_error};

static sl_xfer_t *start(bool stream)
{
    memset(&got, 0, sizeof got);
    sl_upstream_call_t call = {.loop = &loop, .upstream = up, .cfg = &cfg, .request_id = "rid"};
    call.sink = (sl_upstream_sink_t){.emit = sink_emit, .congested = sink_congested};
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/v1/chat/completions", srv.port);
    sl_xfer_req_t req = {.url = url, .stream = stream};
    sl_buf_init(&req.body);
    sl_buf_puts(&req.body, "{}");
    sl_headers_init(&req.headers);
    sl_xfer_t *x = NULL;
    assert_int_equal(sl_xfer_start(&call, &req, &dec, NULL, &x), 0);
    return x;
}

static bool timed_out;
static void on_giveup(uv_timer_t *t)
{
    timed_out = true;
}

/* Runs the loop until cond() or ms have passed (then fails unless expired is allowed). */
static void run_until(bool (*cond)(void), uint64_t ms, bool may_expire)
{
    uv_timer_t t;
    uv_timer_init(&loop, &t);
    timed_out = false;
    uv_timer_start(&t, on_giveup, ms, 0);
    while ((!cond || !cond()) && !timed_out)
        uv_run(&loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&t, NULL);
    for (int i = 0; i < 3; i++) /* let the transfer tear down and the pool take the conn */
        uv_run(&loop, UV_RUN_NOWAIT);
    if (!may_expire)
        assert_false(timed_out);
}

static bool told(void)
{
    return got.end || got.err;
}

static bool server_saw_eof(void)
{
    return srv.eofs > 0;
}

static bool requested(void)
{
    return srv.requests > 0;
}

static sl_h1_stats_t stats(void)
{
    sl_h1_stats_t s;
    sl_h1_pool_stats(up->h1, &s);
    return s;
}

/* ---- the debug lines: stderr goes to a file during each test ---- */

static char logpath[64];
static int saved_stderr = -1;
static long log_from; /* story() reads from here on */

/* Later stories start here. */
static void story_restart(void)
{
    FILE *f = fopen(logpath, "r");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    log_from = ftell(f);
    fclose(f);
}

/* The lines of one machine ("xfer" or "h1"), ids dropped, each "A → B (why)\n". */
static void story(const char *what, sl_buf_t *out)
{
    FILE *f = fopen(logpath, "r");
    assert_non_null(f);
    fseek(f, log_from, SEEK_SET);
    char line[512], prefix[32];
    int plen = snprintf(prefix, sizeof prefix, "sluice: debug: %s ", what);
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, prefix, (size_t)plen) != 0)
            continue;
        const char *colon = strstr(line + plen, ": ");
        if (colon)
            sl_buf_puts(out, colon + 2);
    }
    fclose(f);
}

static void assert_story(const char *what, const char *want)
{
    sl_buf_t s;
    sl_buf_init(&s);
    story(what, &s);
    if (!s.data || strcmp(s.data, want) != 0)
        fail_msg("%s lines:\n%s\nwanted:\n%s", what, s.data ? s.data : "(none)", want);
    sl_buf_dispose(&s);
}

static int setup(void **state)
{
    snprintf(logpath, sizeof logpath, "/tmp/test_xfer_state.%d.log", (int)getpid());
    FILE *f = fopen(logpath, "w");
    assert_non_null(f);
    log_from = 0;
    fflush(stderr);
    saved_stderr = dup(STDERR_FILENO);
    assert_true(dup2(fileno(f), STDERR_FILENO) >= 0);
    fclose(f);
    sl_log_set_level(SL_LOG_DEBUG);

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
    if (!uv_is_closing((uv_handle_t *)&srv.tcp))
        uv_close((uv_handle_t *)&srv.tcp, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_walk(&loop, close_all, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    sl_log_set_level(SL_LOG_INFO);
    fflush(stderr);
    dup2(saved_stderr, STDERR_FILENO);
    close(saved_stderr);
    /* What was not a debug line (warnings, cmocka's failure messages) goes to stderr. */
    FILE *f = fopen(logpath, "r");
    char line[512];
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "sluice: debug: ", 15) != 0)
            fputs(line, stderr);
    if (f)
        fclose(f);
    unlink(logpath);
    return 0;
}

#define SSE_HEAD                                                                                   \
    "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
#define EV_A    "f\r\ndata: {\"a\":1}\n\n\r\n"
#define EV_DONE "e\r\ndata: [DONE]\n\n\r\n"
#define EV_BAD  "b\r\ndata: bad\n\n\r\n"
#define LAST    "0\r\n\r\n"

/* ---- tests ---- */

static void test_a_streamed_answer_tells_its_story(void **state)
{
    srv.sc.resp = SSE_HEAD EV_A EV_DONE LAST;
    (void)start(true);
    run_until(told, 5000, false);
    run_until(NULL, 20, true); /* the transfer reads to the end, the pool takes the conn */
    assert_true(got.end);
    assert_int_equal(got.events, 1);
    assert_int_equal(stats().idle, 1);
    assert_story("xfer", "CONNECTING → WAITING (connected)\n"
                         "WAITING → RECEIVING (first body byte)\n"
                         "RECEIVING → ENDED (end)\n"
                         "ENDED → CLOSED (done)\n");
    assert_story("h1", "CONNECTING → SENDING (connected)\n"
                       "SENDING → READING_HEAD (first response byte)\n"
                       "READING_HEAD → READING_BODY (status)\n"
                       "READING_BODY → DONE (response complete)\n"
                       "DONE → STOPPED (stopped)\n");
}

/* After END the transfer reads on to the answer's end, still under the idle deadline: an
 * upstream that never finishes is closed then (and its connection not reused). */
static void test_the_idle_deadline_runs_after_end(void **state)
{
    cfg.idle_ms = 100;
    srv.sc.resp = SSE_HEAD EV_DONE; /* no last chunk: the response never completes */
    (void)start(true);
    run_until(told, 5000, false);
    assert_true(got.end);
    run_until(server_saw_eof, 2000, false);
    assert_int_equal(got.events, 1); /* the timeout's error went nowhere */
    assert_int_equal(stats().idle, 0);
    assert_story("xfer", "CONNECTING → WAITING (connected)\n"
                         "WAITING → RECEIVING (first body byte)\n"
                         "RECEIVING → ENDED (end)\n"
                         "ENDED → CLOSED (deadline)\n");
}

/* A status and headers are not a first byte: only the body is. */
static void test_the_first_byte_deadline_waits_for_the_body(void **state)
{
    cfg.first_byte_ms = 100;
    srv.sc.resp = SSE_HEAD;
    (void)start(true);
    run_until(told, 5000, false);
    assert_true(got.err);
    assert_string_equal(got.code, "upstream_timeout");
    assert_story("xfer", "CONNECTING → WAITING (connected)\n"
                         "WAITING → ENDED (upstream_timeout)\n"
                         "ENDED → CLOSED (deadline)\n");
    assert_story("h1", "CONNECTING → SENDING (connected)\n"
                       "SENDING → READING_HEAD (first response byte)\n"
                       "READING_HEAD → READING_BODY (status)\n"
                       "READING_BODY → STOPPED (stopped)\n");
}

/* An error inside the answer: the transfer reads no further, the connection is not reused. */
static void test_an_error_mid_answer_reads_no_further(void **state)
{
    srv.sc.resp = SSE_HEAD EV_A EV_BAD EV_A EV_DONE LAST;
    (void)start(true);
    run_until(told, 5000, false);
    run_until(server_saw_eof, 2000, false);
    assert_true(got.err);
    assert_string_equal(got.code, "bad_event");
    assert_int_equal(got.events, 1);
    assert_int_equal(got.data_events, 1);
    assert_int_equal(stats().idle, 0);
    assert_story("xfer", "CONNECTING → WAITING (connected)\n"
                         "WAITING → RECEIVING (first body byte)\n"
                         "RECEIVING → FAILED (bad_event)\n"
                         "FAILED → CLOSED (done)\n");
}

/* While the client is congested no deadline runs; resume goes on where it stopped. */
static void test_no_deadline_while_paused(void **state)
{
    cfg.idle_ms = 50;
    cfg.first_byte_ms = 50;
    srv.sc.resp = SSE_HEAD EV_A EV_DONE LAST;
    sl_xfer_t *x = start(true);
    got.congested = true;
    run_until(NULL, 300, true);
    assert_int_equal(got.events, 0);
    got.congested = false;
    sl_xfer_resume(x);
    run_until(told, 5000, false);
    assert_true(got.end);
    assert_int_equal(got.data_events, 1);
    assert_story("xfer", "CONNECTING → WAITING (connected)\n"
                         "WAITING → RECEIVING (first body byte)\n"
                         "RECEIVING → PAUSED (congested)\n"
                         "PAUSED → RECEIVING (resumed)\n"
                         "RECEIVING → ENDED (end)\n"
                         "ENDED → CLOSED (done)\n");
    assert_story("h1", "CONNECTING → SENDING (connected)\n"
                       "SENDING → READING_HEAD (first response byte)\n"
                       "READING_HEAD → READING_BODY (status)\n"
                       "READING_BODY → PAUSED (transfer congested)\n"
                       "PAUSED → READING_BODY (resumed)\n"
                       "READING_BODY → DONE (response complete)\n"
                       "DONE → STOPPED (stopped)\n");
}

static void test_a_cancel_before_any_event(void **state)
{
    srv.sc.resp = NULL; /* the server holds the request */
    sl_xfer_t *x = start(true);
    run_until(requested, 5000, false);
    sl_xfer_cancel(x);
    run_until(server_saw_eof, 2000, false);
    assert_int_equal(got.events, 0);
    assert_story("xfer", "CONNECTING → WAITING (connected)\n"
                         "WAITING → CANCELLED (cancelled)\n");
    assert_story("h1", "CONNECTING → SENDING (connected)\n"
                       "SENDING → STOPPED (stopped)\n");
}

/* A reused connection the server dropped goes back to CONNECTING once; the transfer hears
 * connected only the first time. */
static void test_a_retry_connects_again(void **state)
{
    srv.sc.resp = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    srv.sc.drop_on = 2;
    (void)start(false);
    run_until(told, 5000, false);
    run_until(NULL, 20, true);
    assert_int_equal(stats().idle, 1);
    story_restart();
    (void)start(false);
    run_until(told, 5000, false);
    assert_true(got.end);
    assert_int_equal(stats().retries, 1);
    assert_story("xfer", "CONNECTING → WAITING (connected)\n"
                         "WAITING → RECEIVING (first body byte)\n"
                         "RECEIVING → ENDED (end)\n"
                         "ENDED → CLOSED (done)\n");
    assert_story("h1", "SENDING → CONNECTING (retry: the reused connection failed)\n"
                       "CONNECTING → SENDING (connected)\n"
                       "SENDING → READING_HEAD (first response byte)\n"
                       "READING_HEAD → READING_BODY (status)\n"
                       "READING_BODY → DONE (response complete)\n"
                       "DONE → STOPPED (stopped)\n");
}

static void test_a_refused_connect(void **state)
{
    uv_close((uv_handle_t *)&srv.tcp, NULL);
    uv_run(&loop, UV_RUN_NOWAIT);
    (void)start(false);
    run_until(told, 5000, false);
    assert_true(got.err);
    assert_string_equal(got.code, "upstream_unreachable");
    assert_story("xfer", "CONNECTING → ENDED (upstream_unreachable)\n"
                         "ENDED → CLOSED (done)\n");
    assert_story("h1", "CONNECTING → STOPPED (stopped)\n");
}

int main(void)
{
    /* The built-in client only: no proxy may take these URLs. */
    static const char *const vars[] = {"http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY",
                                       "SLUICE_UPSTREAM_CLIENT"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        unsetenv(vars[i]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_a_streamed_answer_tells_its_story, setup, teardown),
        cmocka_unit_test_setup_teardown(test_the_idle_deadline_runs_after_end, setup, teardown),
        cmocka_unit_test_setup_teardown(test_the_first_byte_deadline_waits_for_the_body, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_an_error_mid_answer_reads_no_further, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_deadline_while_paused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_cancel_before_any_event, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_retry_connects_again, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_refused_connect, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
