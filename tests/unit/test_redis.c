/* Unit tests for policy/ratelimit_redis against a real redis-server on a free loopback port,
 * started by the group (with a password, so AUTH and SELECT run too) and killed and restarted by
 * the outage test. Answers are awaited by running the test's loop until a condition holds or a
 * deadline timer fires. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <cmocka.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/alloc.h"
#include "policy/ratelimit.h"
#include "policy/ratelimit_redis.h"

#define PASS        "sluice-test"
#define DEADLINE_MS 5000

/* ---- the server ---- */

typedef struct server {
    pid_t pid;
    int port;
    char url[128];
} server_t;

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0)
        (void)close(fd); /* the port stays free for redis-server to take */
    return port;
}

/* A blocking connection for the test's own commands (AUTH and SELECT done); NULL if none. */
static redisContext *admin(const server_t *s)
{
    struct timeval tv = {1, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", s->port, tv);
    redisReply *a = c && !c->err ? redisCommand(c, "AUTH %s", PASS) : NULL;
    redisReply *b = a && a->type != REDIS_REPLY_ERROR ? redisCommand(c, "SELECT 2") : NULL;
    bool ok = b && b->type != REDIS_REPLY_ERROR;
    freeReplyObject(a);
    freeReplyObject(b);
    if (!ok && c) {
        redisFree(c);
        c = NULL;
    }
    return c;
}

/* Runs one command on a fresh connection; its reply as text ("" for nil, NULL on error). */
static char *admin_cmd(const server_t *s, const char *cmd)
{
    redisContext *c = admin(s);
    redisReply *rep = c ? redisCommand(c, cmd) : NULL;
    char *out = NULL;
    if (rep && (rep->type == REDIS_REPLY_STRING || rep->type == REDIS_REPLY_STATUS))
        out = sl_strdup(rep->str);
    else if (rep && rep->type == REDIS_REPLY_NIL)
        out = sl_strdup("");
    freeReplyObject(rep);
    if (c)
        redisFree(c);
    return out;
}

static bool server_ready(const server_t *s)
{
    redisContext *c = admin(s);
    if (c)
        redisFree(c);
    return c != NULL;
}

static int server_start(server_t *s)
{
    char port[16];
    (void)snprintf(port, sizeof port, "%d", s->port);
    s->pid = fork();
    if (s->pid == 0) {
        /* Dies with us even if a test crashes before the teardown runs. */
        (void)prctl(PR_SET_PDEATHSIG, SIGKILL);
        int devnull = open("/dev/null", O_WRONLY);
        (void)dup2(devnull, STDOUT_FILENO);
        (void)dup2(devnull, STDERR_FILENO);
        execlp("redis-server", "redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "no", "--daemonize", "no", "--requirepass", PASS, (char *)NULL);
        _exit(127);
    }
    return s->pid > 0 ? 0 : -1;
}

static void server_kill(server_t *s, int sig)
{
    if (s->pid > 0) {
        (void)kill(s->pid, sig);
        (void)waitpid(s->pid, NULL, 0); /* reaped: its sockets are closed */
        s->pid = 0;
    }
}

/* ---- a loop to wait on ---- */

typedef struct fx {
    server_t *srv; /* borrowed: the group's */
    uv_loop_t loop;
    uv_timer_t deadline, poll;
    bool expired;
} fx_t;

typedef bool (*cond_fn)(void *arg);

static void on_deadline(uv_timer_t *t)
{
    ((fx_t *)t->data)->expired = true;
}

static void on_poll(uv_timer_t *t)
{
    /* Only wakes the loop, for conditions no I/O of ours signals (a server starting). */
}

/* Runs the loop until cond(arg) holds or ms pass; true if it held. */
static bool wait_for(fx_t *fx, cond_fn cond, void *arg, uint64_t ms)
{
    fx->expired = false;
    assert_int_equal(uv_timer_start(&fx->deadline, on_deadline, ms, 0), 0);
    assert_int_equal(uv_timer_start(&fx->poll, on_poll, 20, 20), 0);
    while (!cond(arg) && !fx->expired)
        uv_run(&fx->loop, UV_RUN_ONCE);
    assert_int_equal(uv_timer_stop(&fx->deadline), 0);
    assert_int_equal(uv_timer_stop(&fx->poll), 0);
    return cond(arg);
}

static bool is_up(void *r)
{
    return sl_redis_up(r);
}

static bool is_down(void *r)
{
    return !sl_redis_up(r);
}

static bool is_ready(void *s)
{
    return server_ready(s);
}

static sl_redis_t *connected(fx_t *fx)
{
    sl_redis_t *r = sl_redis_new(&fx->loop, fx->srv->url);
    assert_non_null(r);
    assert_false(sl_redis_up(r)); /* connecting happens on the loop */
    assert_true(wait_for(fx, is_up, r, DEADLINE_MS));
    return r;
}

/* ---- recorded answers ---- */

typedef struct rec {
    int calls;
    int err;
    sl_limit_result_t res;
    char scope[32]; /* res.scope lives only during the callback */
} rec_t;

static void on_take(void *ud, int err, const sl_limit_result_t *res)
{
    rec_t *rc = ud;
    rc->calls++;
    rc->err = err;
    if (res) {
        rc->res = *res;
        (void)snprintf(rc->scope, sizeof rc->scope, "%s", res->scope ? res->scope : "");
        rc->res.scope = rc->scope;
    }
}

static bool answered(void *rc)
{
    return ((rec_t *)rc)->calls > 0;
}

/* One take, awaited. */
static rec_t take(fx_t *fx, sl_redis_t *r, const sl_limit_t *lims, size_t n, int64_t est,
                  const sl_redis_budget_t *budget)
{
    rec_t rc = {0};
    sl_redis_op_t *op = NULL;
    assert_int_equal(sl_redis_take(r, lims, n, est, budget, on_take, &rc, &op), 0);
    assert_non_null(op);
    assert_true(wait_for(fx, answered, &rc, DEADLINE_MS));
    assert_int_equal(rc.calls, 1);
    assert_int_equal(rc.err, 0);
    return rc;
}

/* ---- fixtures ---- */

static int group_setup(void **state)
{
    server_t *s = sl_calloc(1, sizeof *s);
    *state = s;
    s->port = free_port();
    (void)snprintf(s->url, sizeof s->url, "redis://:%s@127.0.0.1:%d/2", PASS, s->port);
    return s->port > 0 ? server_start(s) : -1;
}

static int group_teardown(void **state)
{
    server_t *s = *state;
    server_kill(s, SIGTERM);
    sl_free(s);
    return 0;
}

static int setup(void **state)
{
    fx_t *fx = sl_calloc(1, sizeof *fx);
    fx->srv = *state;
    if (uv_loop_init(&fx->loop) != 0 || uv_timer_init(&fx->loop, &fx->deadline) != 0 ||
        uv_timer_init(&fx->loop, &fx->poll) != 0)
        return -1;
    fx->deadline.data = fx->poll.data = fx;
    *state = fx;
    if (!wait_for(fx, is_ready, fx->srv, DEADLINE_MS))
        return -1;
    char *ok = admin_cmd(fx->srv, "FLUSHALL");
    bool flushed = ok && strcmp(ok, "OK") == 0;
    sl_free(ok);
    return flushed ? 0 : -1;
}

/* Closes the test's handles and runs the loop dry: fails if anything was left open. */
static int teardown(void **state)
{
    fx_t *fx = *state;
    *state = fx->srv;
    uv_close((uv_handle_t *)&fx->deadline, NULL);
    uv_close((uv_handle_t *)&fx->poll, NULL);
    (void)uv_run(&fx->loop, UV_RUN_DEFAULT); /* runs until nothing is left */
    int rc = uv_loop_close(&fx->loop);
    sl_free(fx);
    return rc;
}

/* ---- tests ---- */

static void test_redis_connects_in_the_background(void **state)
{
    fx_t *fx = *state;
    sl_redis_t *r = connected(fx);
    sl_redis_close(r);
}

static void test_redis_ten_rpm_allows_ten_then_refuses(void **state)
{
    fx_t *fx = *state;
    sl_redis_t *r = connected(fx);
    sl_limit_t k = {"key", "k1", 10, 0};
    for (int i = 0; i < 10; i++) {
        rec_t rc = take(fx, r, &k, 1, 0, NULL);
        assert_true(rc.res.allowed);
        assert_int_equal(rc.res.remaining_requests, 9 - i);
        assert_int_equal(rc.res.limit_requests, 10);
        assert_string_equal(rc.scope, "key");
    }
    rec_t rc = take(fx, r, &k, 1, 0, NULL);
    assert_false(rc.res.allowed);
    assert_string_equal(rc.scope, "key");
    assert_in_range(rc.res.retry_after_s, 5, 6); /* 6 s, less what Redis's clock moved */
    assert_int_equal(rc.res.remaining_requests, 0);
    sl_redis_close(r);
}

static void test_redis_two_instances_share_one_limit(void **state)
{
    fx_t *fx = *state;
    sl_redis_t *a = connected(fx), *b = connected(fx);
    sl_limit_t lims[] = {{"key", "shared", 10, 0}, {"ip", "10.0.0.1", 0, 0}};
    for (int i = 0; i < 10; i++)
        assert_true(take(fx, i % 2 ? a : b, lims, 2, 0, NULL).res.allowed);
    assert_false(take(fx, a, lims, 2, 0, NULL).res.allowed);
    assert_false(take(fx, b, lims, 2, 0, NULL).res.allowed);
    sl_redis_close(a);
    sl_redis_close(b);
}

static void test_redis_all_or_nothing_across_scopes(void **state)
{
    fx_t *fx = *state;
    sl_redis_t *r = connected(fx);
    sl_limit_t both[] = {{"key", "k1", 100, 0}, {"user", "alice", 2, 0}};
    assert_true(take(fx, r, both, 2, 0, NULL).res.allowed);
    assert_true(take(fx, r, both, 2, 0, NULL).res.allowed);
    rec_t rc = take(fx, r, both, 2, 0, NULL);
    assert_false(rc.res.allowed);
    assert_string_equal(rc.scope, "user");
    rc = take(fx, r, both, 1, 0, NULL);
    assert_int_equal(rc.res.remaining_requests, 97); /* the refused check took nothing */
    sl_redis_close(r);
}

static void test_redis_budget_refused_once_spent(void **state)
{
    fx_t *fx = *state;
    sl_redis_t *r = connected(fx);
    sl_limit_t k = {"key", "k1", 100, 10000};
    sl_redis_budget_t budget = {.id = "k1", .budget_tokens = 100, .worst = 10, .member = "m1"};
    rec_t rc = take(fx, r, &k, 1, 10, &budget);
    assert_true(rc.res.allowed);
    assert_int_equal(rc.res.budget_granted, 10);
    /* Fire and forget, but on the same connection: the next take runs after it. */
    sl_redis_budget_t done = budget;
    done.member = "m1|10";
    sl_redis_settle(r, &k, 1, 10, 100, &done);
    budget.member = "m2";
    rc = take(fx, r, &k, 1, 10, &budget);
    assert_false(rc.res.allowed);
    assert_string_equal(rc.scope, "budget");
    assert_int_equal(rc.res.retry_after_s, 0);
    char *spent = admin_cmd(fx->srv, "GET sluice:budget:k1");
    assert_string_equal(spent, "100");
    sl_free(spent);
    char *held = admin_cmd(fx->srv, "GET sluice:budsum:k1");
    assert_string_equal(held, "0"); /* the settle released the reservation */
    sl_free(held);
    /* A bigger budget lets it through again. */
    budget.budget_tokens = 1000;
    assert_true(take(fx, r, &k, 1, 10, &budget).res.allowed);
    sl_redis_close(r);
}

/* Parallel requests with max_tokens: reservations, not the spent counter, decide. */
static void test_redis_budget_reservations_hold_under_parallel_takes(void **state)
{
    fx_t *fx = *state;
    sl_redis_t *a = connected(fx), *b = connected(fx);
    sl_redis_budget_t budget = {
        .id = "k2", .budget_tokens = 100, .worst = 30, .strict = true, .member = "p"};
    int allowed = 0;
    for (int i = 0; i < 10; i++) {
        rec_t rc = take(fx, i % 2 ? a : b, NULL, 0, 0, &budget);
        allowed += rc.res.allowed;
        if (!rc.res.allowed) {
            assert_string_equal(rc.scope, "budget");
            assert_int_equal(rc.res.budget_left, 10);
        }
    }
    assert_int_equal(allowed, 3);
    /* Not strict (no max_tokens): the remainder, and nothing for the next one. */
    budget.strict = false;
    rec_t rc = take(fx, a, NULL, 0, 0, &budget);
    assert_true(rc.res.allowed);
    assert_int_equal(rc.res.budget_granted, 10);
    assert_false(take(fx, b, NULL, 0, 0, &budget).res.allowed);
    sl_redis_close(a);
    sl_redis_close(b);
}

/* Redis lost its data: the counter starts again from the usage records (the floor). */
static void test_redis_budget_rebuilt_from_the_floor(void **state)
{
    fx_t *fx = *state;
    sl_redis_t *r = connected(fx);
    char *ok = admin_cmd(fx->srv, "FLUSHALL");
    sl_free(ok);
    sl_redis_budget_t budget = {
        .id = "k3", .budget_tokens = 100, .worst = 30, .strict = true, .floor = 80, .member = "f"};
    rec_t rc = take(fx, r, NULL, 0, 0, &budget);
    assert_false(rc.res.allowed);
    assert_int_equal(rc.res.budget_left, 20);
    char *spent = admin_cmd(fx->srv, "GET sluice:budget:k3");
    assert_string_equal(spent, "80");
    sl_free(spent);
    sl_redis_close(r);
}

/* A take whose caller left before the answer gives its reservation back. */
static void test_redis_cancelled_take_releases_its_reservation(void **state)
{
    fx_t *fx = *state;
    sl_redis_t *r = connected(fx);
    sl_redis_budget_t budget = {
        .id = "k4", .budget_tokens = 100, .worst = 60, .strict = true, .member = "c"};
    rec_t gone = {0};
    sl_redis_op_t *op = NULL;
    assert_int_equal(sl_redis_take(r, NULL, 0, 0, &budget, on_take, &gone, &op), 0);
    sl_redis_op_cancel(op);
    /* Replies come in order: once this one is here, the cancelled one's release went out. */
    sl_redis_budget_t small = budget;
    small.worst = 1;
    small.member = "d";
    assert_true(take(fx, r, NULL, 0, 0, &small).res.allowed);
    budget.member = "e";
    rec_t rc = take(fx, r, NULL, 0, 0, &budget); /* 60 of the 99 left: the 60 came back */
    assert_true(rc.res.allowed);
    assert_int_equal(gone.calls, 0);
    sl_redis_close(r);
}

/* The same story told to the local limiter and to Redis gets the same answers. */
static void test_redis_agrees_with_the_local_limiter(void **state)
{
    fx_t *fx = *state;
    sl_redis_t *r = connected(fx);
    sl_limiter_t *l = sl_limiter_new();
    /* Slow rates: Redis's clock moves a few ms meanwhile, far less than a token's worth. */
    sl_limit_t lims[] = {{"key", "k1", 5, 100}, {"ip", "::1", 3, 0}};
    static const struct {
        int64_t est, actual; /* actual < 0: no settle */
    } steps[] = {{40, 20}, {40, -1}, {40, 90}, {500, 5}, {0, -1}, {10, -1}, {0, -1}};
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        sl_limit_result_t want;
        sl_limiter_take(l, lims, 2, steps[i].est, 0, &want);
        rec_t got = take(fx, r, lims, 2, steps[i].est, NULL);
        assert_int_equal(got.res.allowed, want.allowed);
        assert_string_equal(got.scope, want.scope);
        assert_int_equal(got.res.remaining_requests, want.remaining_requests);
        assert_int_equal(got.res.remaining_tokens, want.remaining_tokens);
        assert_int_equal(got.res.limit_tokens, want.limit_tokens);
        if (steps[i].actual >= 0) {
            sl_limiter_settle(l, lims, 2, steps[i].est, steps[i].actual, 0);
            sl_redis_settle(r, lims, 2, steps[i].est, steps[i].actual, NULL);
        }
    }
    sl_limiter_free(l);
    sl_redis_close(r);
}

static void test_redis_recovers_from_noscript(void **state)
{
    fx_t *fx = *state;
    sl_redis_t *r = connected(fx);
    sl_limit_t k = {"key", "k1", 10, 0};
    assert_int_equal(take(fx, r, &k, 1, 0, NULL).res.remaining_requests, 9);
    char *ok = admin_cmd(fx->srv, "SCRIPT FLUSH");
    assert_string_equal(ok, "OK");
    sl_free(ok);
    assert_int_equal(take(fx, r, &k, 1, 0, NULL).res.remaining_requests, 8); /* via EVAL */
    assert_int_equal(take(fx, r, &k, 1, 0, NULL).res.remaining_requests, 7); /* reloaded */
    assert_true(sl_redis_up(r));
    sl_redis_close(r);
}

static void test_redis_cancelled_take_never_calls_back(void **state)
{
    fx_t *fx = *state;
    sl_redis_t *r = connected(fx);
    sl_limit_t k = {"key", "k1", 10, 0};
    rec_t gone = {0};
    sl_redis_op_t *op = NULL;
    assert_int_equal(sl_redis_take(r, &k, 1, 0, NULL, on_take, &gone, &op), 0);
    sl_redis_op_cancel(op);
    /* Replies come in order: once this one is here, the cancelled one has been and gone. */
    assert_int_equal(take(fx, r, &k, 1, 0, NULL).res.remaining_requests, 8);
    assert_int_equal(gone.calls, 0);
    sl_redis_close(r);
}

static void test_redis_close_with_takes_in_flight_calls_nothing(void **state)
{
    fx_t *fx = *state;
    sl_redis_t *r = connected(fx);
    sl_limit_t k = {"key", "k1", 10, 0};
    rec_t rc = {0};
    sl_redis_op_t *op = NULL;
    for (int i = 0; i < 3; i++)
        assert_int_equal(sl_redis_take(r, &k, 1, 0, NULL, on_take, &rc, &op), 0);
    sl_redis_settle(r, &k, 1, 0, 10, NULL);
    sl_redis_close(r);
    (void)uv_run(&fx->loop, UV_RUN_NOWAIT); /* the close callbacks run; nothing else may */
    assert_int_equal(rc.calls, 0);
}

static void test_redis_resolves_host_names(void **state)
{
    fx_t *fx = *state;
    char url[160];
    (void)snprintf(url, sizeof url, "redis://:%s@localhost:%d/2", PASS, fx->srv->port);
    sl_redis_t *r = sl_redis_new(&fx->loop, url);
    assert_non_null(r);
    assert_true(wait_for(fx, is_up, r, DEADLINE_MS));
    sl_redis_close(r);
    /* Closed while its lookup runs: the answer finds it gone (the teardown runs the loop dry). */
    r = sl_redis_new(&fx->loop, url);
    (void)uv_run(&fx->loop, UV_RUN_NOWAIT); /* the first attempt starts: a lookup */
    sl_redis_close(r);
}

static void test_redis_bad_urls_are_refused(void **state)
{
    fx_t *fx = *state;
    static const char *const bad[] = {"http://127.0.0.1:6379", "redis://",      "redis://h:0",
                                      "redis://h:99999",       "redis://h:12x", "redis://h/db",
                                      "redis://[::1",          "redis://:pw@"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_null(sl_redis_new(&fx->loop, bad[i]));
    sl_redis_t *r = sl_redis_new(&fx->loop, "redis://user:p%40ss@[::1]:1/3");
    assert_non_null(r);
    sl_redis_close(r);
}

static void test_redis_wrong_password_stays_down(void **state)
{
    fx_t *fx = *state;
    char url[160];
    (void)snprintf(url, sizeof url, "redis://:nope@127.0.0.1:%d", fx->srv->port);
    sl_redis_t *r = sl_redis_new(&fx->loop, url);
    assert_false(wait_for(fx, is_up, r, 600)); /* it keeps retrying meanwhile */
    sl_limit_t k = {"key", "k1", 10, 0};
    rec_t rc = {0};
    sl_redis_op_t *op = (sl_redis_op_t *)&rc; /* cleared on failure */
    assert_int_equal(sl_redis_take(r, &k, 1, 0, NULL, on_take, &rc, &op), SL_EUNAVAIL);
    assert_null(op);
    sl_redis_close(r);
    assert_int_equal(rc.calls, 0);
}

static void test_redis_outage_falls_back_then_reconnects(void **state)
{
    fx_t *fx = *state;
    sl_redis_t *r = connected(fx);
    sl_limit_t k = {"key", "k1", 10, 0};
    rec_t in_flight = {0};
    sl_redis_op_t *op = NULL;
    assert_int_equal(sl_redis_take(r, &k, 1, 0, NULL, on_take, &in_flight, &op), 0);
    server_kill(fx->srv, SIGKILL);
    assert_true(wait_for(fx, answered, &in_flight, DEADLINE_MS));
    assert_int_equal(in_flight.err, SL_EUNAVAIL);
    assert_true(wait_for(fx, is_down, r, DEADLINE_MS));
    rec_t rc = {0};
    assert_int_equal(sl_redis_take(r, &k, 1, 0, NULL, on_take, &rc, &op), SL_EUNAVAIL);
    sl_redis_settle(r, &k, 1, 0, 10, NULL); /* dropped quietly */
    assert_int_equal(server_start(fx->srv), 0);
    assert_true(wait_for(fx, is_up, r, DEADLINE_MS));
    assert_true(take(fx, r, &k, 1, 0, NULL).res.allowed);
    assert_int_equal(rc.calls, 0);
    sl_redis_close(r);
}

static void test_redis_silent_server_is_given_up_on(void **state)
{
    fx_t *fx = *state;
    sl_redis_t *r = connected(fx);
    sl_limit_t k = {"key", "k1", 10, 0};
    rec_t rc = {0};
    sl_redis_op_t *op = NULL;
    /* Stopped, the server keeps its sockets open and answers nothing. */
    assert_int_equal(kill(fx->srv->pid, SIGSTOP), 0);
    assert_int_equal(sl_redis_take(r, &k, 1, 0, NULL, on_take, &rc, &op), 0);
    assert_true(wait_for(fx, answered, &rc, DEADLINE_MS));
    assert_int_equal(rc.err, SL_EUNAVAIL);
    assert_false(sl_redis_up(r));
    assert_int_equal(kill(fx->srv->pid, SIGCONT), 0);
    assert_true(wait_for(fx, is_up, r, DEADLINE_MS));
    assert_true(take(fx, r, &k, 1, 0, NULL).res.allowed);
    sl_redis_close(r);
}

int main(void)
{
    if (system("command -v redis-server >/dev/null 2>&1") != 0) {
        fprintf(stderr, "test_redis: redis-server not installed; skipping\n");
        return 0;
    }
    (void)signal(SIGPIPE, SIG_IGN); /* a write to a killed server must fail, not kill us */
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_redis_connects_in_the_background),
        T(test_redis_ten_rpm_allows_ten_then_refuses),
        T(test_redis_two_instances_share_one_limit),
        T(test_redis_all_or_nothing_across_scopes),
        T(test_redis_budget_refused_once_spent),
        T(test_redis_budget_reservations_hold_under_parallel_takes),
        T(test_redis_budget_rebuilt_from_the_floor),
        T(test_redis_cancelled_take_releases_its_reservation),
        T(test_redis_agrees_with_the_local_limiter),
        T(test_redis_recovers_from_noscript),
        T(test_redis_cancelled_take_never_calls_back),
        T(test_redis_close_with_takes_in_flight_calls_nothing),
        T(test_redis_resolves_host_names),
        T(test_redis_bad_urls_are_refused),
        T(test_redis_wrong_password_stays_down),
        T(test_redis_silent_server_is_given_up_on),
        T(test_redis_outage_falls_back_then_reconnects),
    };
#undef T
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
