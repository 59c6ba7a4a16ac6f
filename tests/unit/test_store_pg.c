/* Unit tests for the store on PostgreSQL (DESIGN §8): a real server, initdb'd into a temporary
 * directory and listening on a free loopback port, with a fresh schema per test. It runs the
 * cases every backend shares (store_cases.h), the keys command through a postgresql:// URL,
 * two stores sharing one database as two sluice instances would, and a server restart.
 *
 * The server is stopped by a watchdog process that waits for the test process to go away (the
 * pipe it reads from reaches EOF when our end closes, however we exit), so it is stopped and
 * its directory removed even when a test crashes. Missing PostgreSQL binaries fail the tests: they
 * are a gap to fix (Debian: postgresql-15), not a reason to skip. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <netinet/in.h>
#include <pwd.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <libpq-fe.h>

#include "core/alloc.h"
#include "core/log.h"
#include "store/keys.h"
#include "store/store.h"
#include "store_cases.h"
#include "store_helpers.h"

/* ---- the server ---- */

typedef struct pgsrv {
    char bin[256]; /* directory of initdb, pg_ctl, postgres */
    char as[64];   /* "runuser -u postgres -- " when root (PostgreSQL refuses root), else "" */
    char dir[64];  /* mkdtemp: data/, the socket, the log */
    int port;
    int next_schema; /* schemas t1, t2, ... one per test */
    int watch_fd;    /* write end of the watchdog's pipe; -1 when none */
    pid_t watchdog;  /* 0 when none */
} pgsrv_t;

/* Runs a shell command built from fmt; returns its exit status (-1 if it did not exit). */
static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
    char cmd[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof cmd)
        return -1;
    int rc = system(cmd);
    return rc != -1 && WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static bool has_server_bins(const char *dir)
{
    char p[300];
    static const char *const bins[] = {"initdb", "pg_ctl", "postgres"};
    for (size_t i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, bins[i]);
        if (access(p, X_OK) != 0)
            return false;
    }
    return true;
}

/* $PG_BIN, else the newest /usr/lib/postgresql/N/bin (where Debian puts the server). */
static bool find_bin(pgsrv_t *srv)
{
    const char *env = getenv("PG_BIN");
    if (env) {
        snprintf(srv->bin, sizeof srv->bin, "%s", env);
        return has_server_bins(srv->bin);
    }
    glob_t g;
    bool found = false;
    if (glob("/usr/lib/postgresql/*/bin", 0, NULL, &g) == 0) {
        for (size_t i = g.gl_pathc; i-- > 0 && !found;) {
            snprintf(srv->bin, sizeof srv->bin, "%s", g.gl_pathv[i]);
            found = has_server_bins(srv->bin);
        }
        globfree(&g);
    }
    return found;
}

/* A loopback port nobody listens on right now. */
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
        close(fd);
    return port;
}

/* Forks the process that stops the server (by its data directory) and removes the directory
 * once our end of its pipe closes: in the group teardown, or when this process dies. */
static int start_watchdog(pgsrv_t *srv)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd,
             "%s%s/pg_ctl -D %s/data -m immediate -w stop >/dev/null 2>&1; rm -rf %s", srv->as,
             srv->bin, srv->dir, srv->dir);
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        close(fds[1]);
        setsid(); /* a ^C meant for the tests must not stop the cleanup */
        char c;
        while (read(fds[0], &c, 1) < 0 && errno == EINTR)
            ;
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    close(fds[0]);
    srv->watch_fd = fds[1];
    srv->watchdog = pid;
    return 0;
}

static void print_log(const pgsrv_t *srv, const char *name)
{
    fprintf(stderr, "---- %s/%s ----\n", srv->dir, name);
    (void)sh("tail -n 30 %s/%s >&2", srv->dir, name); /* diagnostics only */
}

/* initdb as the server's user, then pg_ctl start on a free port, waiting until it accepts. */
static int init_and_start(pgsrv_t *srv)
{
    if (geteuid() == 0) {
        const struct passwd *pw = getpwnam("postgres");
        if (!pw)
            pw = getpwnam("nobody");
        if (!pw || chown(srv->dir, pw->pw_uid, pw->pw_gid) != 0)
            return -1;
        snprintf(srv->as, sizeof srv->as, "runuser -u %s -- ", pw->pw_name);
    }
    if (start_watchdog(srv) != 0)
        return -1;
    if (sh("%s%s/initdb -D %s/data -A trust -U sluice -E UTF8 --locale=C -N >%s/initdb.log 2>&1",
           srv->as, srv->bin, srv->dir, srv->dir) != 0) {
        print_log(srv, "initdb.log");
        return -1;
    }
    srv->port = free_port();
    if (srv->port < 0 || sh("%s%s/pg_ctl -D %s/data -l %s/pg.log -w -t 20 -o \"-p %d -k %s"
                            " -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off"
                            " -c full_page_writes=off\" start >/dev/null 2>&1",
                            srv->as, srv->bin, srv->dir, srv->dir, srv->port, srv->dir) != 0) {
        print_log(srv, "pg.log");
        return -1;
    }
    return 0;
}

static int group_setup(void **state)
{
    pgsrv_t *srv = sl_calloc(1, sizeof *srv);
    srv->watch_fd = -1;
    *state = srv;
    if (!find_bin(srv)) {
        fprintf(stderr, "test_store_pg: the PostgreSQL server programs (initdb, pg_ctl, postgres)"
                        " are not installed: install postgresql-15 (Debian), or set PG_BIN to"
                        " their directory\n");
        return -1;
    }
    snprintf(srv->dir, sizeof srv->dir, "/tmp/sluice-pg-XXXXXX");
    if (!mkdtemp(srv->dir)) {
        srv->dir[0] = '\0';
        return -1;
    }
    return init_and_start(srv);
}

static int group_teardown(void **state)
{
    pgsrv_t *srv = *state;
    int status = 0;
    if (srv->watchdog > 0) {
        close(srv->watch_fd); /* the watchdog stops the server and removes the directory */
        if (waitpid(srv->watchdog, &status, 0) != srv->watchdog)
            status = -1;
    } else if (srv->dir[0]) {
        (void)rmdir(srv->dir); /* failed before anything went in it */
    }
    sl_free(srv);
    return status == 0 ? 0 : -1;
}

/* Runs sql with schema first on the search path; the result (PQclear it), or NULL after failing
 * the test with the server's words. */
static PGresult *pg_exec(const pgsrv_t *srv, const char *schema, const char *sql)
{
    char conninfo[160];
    snprintf(conninfo, sizeof conninfo,
             "host=127.0.0.1 port=%d user=sluice dbname=postgres options='-csearch_path=%s'",
             srv->port, schema);
    PGconn *c = PQconnectdb(conninfo);
    PGresult *r = PQstatus(c) == CONNECTION_OK ? PQexec(c, sql) : NULL;
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        char why[256];
        snprintf(why, sizeof why, "%s", PQerrorMessage(c));
        PQclear(r);
        PQfinish(c);
        fail_msg("postgres %s: %s: %s", schema, sql, why);
        return NULL;
    }
    PQfinish(c);
    return r;
}

static int64_t pg_int(const pgsrv_t *srv, const char *schema, const char *sql)
{
    PGresult *r = pg_exec(srv, schema, sql);
    int64_t v = PQntuples(r) > 0 ? strtoll(PQgetvalue(r, 0, 0), NULL, 10) : -1;
    PQclear(r);
    return v;
}

/* ---- per test: a fresh schema (much quicker to make than a database) ---- */

typedef struct pfx {
    fx_t fx; /* first: the cases take it as fx_t */
    pgsrv_t *srv;
    char schema[16];
} pfx_t;

static int setup(void **state)
{
    pgsrv_t *srv = *state;
    pfx_t *p = sl_calloc(1, sizeof *p);
    p->srv = srv;
    snprintf(p->schema, sizeof p->schema, "t%d", ++srv->next_schema);
    char sql[64];
    snprintf(sql, sizeof sql, "CREATE SCHEMA %s", p->schema);
    PQclear(pg_exec(srv, "public", sql));
    /* The URL form operators use, with the search path as a connection option. */
    snprintf(p->fx.url, sizeof p->fx.url,
             "postgresql://sluice@127.0.0.1:%d/postgres?options=-csearch_path%%3D%s", srv->port,
             p->schema);
    *state = p;
    return 0;
}

static int teardown(void **state)
{
    pfx_t *p = *state;
    if (p->fx.s)
        fx_stop(&p->fx);
    sl_free(p);
    return 0;
}

/* ---- the cases every backend shares ---- */

#define CASE(name)                                                                                 \
    static void test_##name(void **state)                                                          \
    {                                                                                              \
        case_##name(*state);                                                                       \
    }
CASE(session_round_trip_oldest_first_limited_to_max_turns)
CASE(session_of_another_owner_is_neither_read_nor_written)
CASE(session_unknown_is_not_found_and_empty)
CASE(session_load_replaces_invalid_utf8)
CASE(session_survives_a_restart)
CASE(usage_stats_sum_every_row_and_skip_anonymous)
CASE(usage_stats_of_one_key)
CASE(usage_query_totals_honour_every_filter)
CASE(usage_query_filters_are_never_sql)
CASE(usage_query_groups_by_each_dimension)
CASE(usage_query_unknown_group_is_einval_on_the_loop)
CASE(keyset_follows_create_and_revoke_within_a_second)
CASE(keyset_spent_follows_usage_rows)
#undef CASE

static void test_session_keeps_only_the_last_200_turns(void **state)
{
    pfx_t *p = *state;
    case_session_keeps_only_the_last_200_turns(&p->fx);
    fx_stop(&p->fx);
    assert_int_equal(pg_int(p->srv, p->schema, "SELECT count(*) FROM session_turns"), 400);
}

/* ---- PostgreSQL holds the rows ---- */

static void test_every_usage_field_lands_in_postgres(void **state)
{
    pfx_t *p = *state;
    fx_start(&p->fx, 1024);
    for (int i = 0; i < 500; i++) {
        char rid[32];
        sl_usage_record_t rec = usage_row(i, "u", rid, sizeof rid);
        sl_store_usage(p->fx.c, &rec);
    }
    fx_stop(&p->fx); /* at once: most rows are still queued */
    assert_int_equal(pg_int(p->srv, p->schema, "SELECT count(*) FROM usage"), 500);
    assert_int_equal(pg_int(p->srv, p->schema,
                            "SELECT count(*) FROM usage WHERE request_id = 'r-7'"
                            " AND ts = 1007 AND key_name = 'dev' AND user_id = 'u'"
                            " AND dialect = 'openai' AND model = 'gpt-4o-mini'"
                            " AND provider = 'mock' AND status = 200"
                            " AND prompt_tokens = 7 AND completion_tokens = 15"
                            " AND usage_estimated AND ttft_ms = 12.5"
                            " AND total_ms = 100.25 AND bytes_out = 70"
                            " AND cancelled AND tags = '{\"project\":\"p\"}'"),
                     1);
    assert_int_equal(pg_int(p->srv, p->schema,
                            "SELECT count(*) FROM usage WHERE request_id = 'r-0'"
                            " AND provider IS NULL AND tags IS NULL"
                            " AND ttft_ms IS NULL AND NOT usage_estimated"),
                     1);
    /* The running spend matches the rows it sums. */
    assert_int_equal(
        pg_int(p->srv, p->schema, "SELECT tokens FROM key_spend WHERE key_name = 'dev'"),
        pg_int(p->srv, p->schema,
               "SELECT sum(prompt_tokens + completion_tokens) FROM usage"
               " WHERE key_name = 'dev'"));
}

/* PostgreSQL refuses text that is not UTF-8; a row carrying some is repaired, not lost with
 * the rest of its batch. */
static void test_invalid_utf8_in_a_usage_row_loses_nothing(void **state)
{
    pfx_t *p = *state;
    fx_start(&p->fx, 64);
    for (int i = 0; i < 3; i++) {
        char rid[32];
        sl_usage_record_t rec = usage_row(i, i == 1 ? "caf\xc3" : "u", rid, sizeof rid);
        rec.model = "m\xff";
        sl_store_usage(p->fx.c, &rec);
    }
    stats_rec_t r = {0};
    stats_wait(&p->fx, "caf\xef\xbf\xbd", &r);
    assert_int_equal(r.n, 1);
    assert_int_equal(sl_store_dropped(p->fx.s), 0);
    fx_stop(&p->fx);
    assert_int_equal(
        pg_int(p->srv, p->schema, "SELECT count(*) FROM usage WHERE model = 'm\xef\xbf\xbd'"), 3);
}

/* ---- the keys command against a URL ---- */

typedef struct listed {
    int n;
    sl_key_rec_t keys[4];
} listed_t;

static void on_key(void *ud, const sl_key_rec_t *k)
{
    listed_t *l = ud;
    if (l->n < 4)
        l->keys[l->n] = *k;
    l->n++;
}

static void test_keys_create_list_revoke_through_a_url(void **state)
{
    pfx_t *p = *state;
    char s1[64], s2[64];
    sl_key_rec_t a = key_create(&p->fx, "first", 0, "gpt-*", s1);
    sl_key_rec_t b = key_create(&p->fx, "second", 100, "", s2);
    listed_t l = {0};
    sl_buf_t err;
    sl_buf_init(&err);
    assert_int_equal(sl_keys_list(p->fx.url, on_key, &l, &err), 0);
    assert_int_equal(l.n, 2);
    assert_string_equal(l.keys[0].id, b.id); /* newest first */
    assert_string_equal(l.keys[1].id, a.id);
    assert_memory_equal(l.keys[1].hash, a.hash, 32);
    assert_string_equal(l.keys[1].models, "gpt-*");
    assert_int_equal(l.keys[0].budget_tokens, 100);
    assert_int_equal(sl_keys_revoke(p->fx.url, a.id, &err), 0);
    assert_int_equal(sl_keys_revoke(p->fx.url, "key_0000000000000000", &err), SL_ENOTFOUND);
    sl_buf_dispose(&err);
    memset(&l, 0, sizeof l);
    sl_buf_init(&err);
    assert_int_equal(sl_keys_list(p->fx.url, on_key, &l, &err), 0);
    sl_buf_dispose(&err);
    assert_true(l.keys[1].revoked);
    assert_false(l.keys[0].revoked);
    /* Stored as the hash; the secret is in no column. */
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM keys WHERE hash = sha256('%s'::bytea)", s1);
    assert_int_equal(pg_int(p->srv, p->schema, sql), 1);
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM keys WHERE strpos(concat_ws(',', id, name, encode(hash, 'hex'),"
             " models), '%s') > 0",
             s1 + 6);
    assert_int_equal(pg_int(p->srv, p->schema, sql), 0);
}

static void test_start_names_no_password_when_postgres_is_unreachable(void **state)
{
    (void)state;
    sl_buf_t err;
    sl_buf_init(&err);
    sl_store_t *s = NULL;
    int port = free_port();
    char url[128];
    snprintf(url, sizeof url, "postgresql://sluice:hunter2@127.0.0.1:%d/x", port);
    assert_int_equal(sl_store_start("unused.db", url, 16, &s, &err), SL_EUNAVAIL);
    assert_null(s);
    assert_non_null(strstr(err.data, "postgres"));
    assert_null(strstr(err.data, "hunter2"));
    sl_buf_dispose(&err);
}

/* ---- two instances, one database ---- */

static void test_two_stores_share_sessions_usage_and_keys(void **state)
{
    pfx_t *p = *state;
    fx_t *a = &p->fx;
    fx_t b = *a; /* the same URL; a second store, client and loop */
    fx_start(a, 1024);
    fx_start(&b, 1024);
    /* Both append to one session at once: the session's row lock hands out seqs in turn. */
    for (int i = 0; i < 50; i++) {
        sl_store_session_append(a->c, "shared", "alice", "from a", "ok");
        sl_store_session_append(b.c, "shared", "alice", "from b", "ok");
        char rid[32];
        sl_usage_record_t rec = usage_row(i, "both", rid, sizeof rid);
        sl_store_usage(i % 2 ? a->c : b.c, &rec);
    }
    /* Each store answers in order, so its own writes are committed once these return. */
    stats_rec_t ra = {0}, rb = {0};
    stats_wait(a, "both", &ra);
    stats_wait(&b, "both", &rb);
    load_rec_t l = {0};
    load_wait(a, "shared", "alice", 0, &l);
    json_t *m = json_loads(l.dump, 0, NULL);
    assert_int_equal(json_array_size(m), 200); /* 100 turns of 2 messages */
    json_decref(m);
    sl_free(l.dump);
    stats_wait(&b, "both", &rb);
    assert_int_equal(rb.rows[0].requests, 50);
    assert_int_equal(sl_store_dropped(a->s) + sl_store_dropped(b.s), 0);
    /* A key made through either shows up in both snapshots. */
    char secret[64];
    sl_key_rec_t k = key_create(a, "shared-key", 0, "", secret);
    key_want_t want = {0};
    memcpy(want.hash, k.hash, 32);
    assert_true(keys_wait(a, key_is, &want));
    assert_true(keys_wait(&b, key_is, &want));
    fx_stop(&b);
}

/* ---- a server restart ---- */

static void test_store_reconnects_after_the_server_restarts(void **state)
{
    pfx_t *p = *state;
    pgsrv_t *srv = p->srv;
    fx_start(&p->fx, 64);
    char rid[32];
    sl_usage_record_t rec = usage_row(1, "before", rid, sizeof rid);
    sl_store_usage(p->fx.c, &rec);
    stats_rec_t r = {0};
    stats_wait(&p->fx, "before", &r);
    assert_int_equal(sh("%s%s/pg_ctl -D %s/data -m fast -w restart >/dev/null 2>&1", srv->as,
                        srv->bin, srv->dir),
                     0);
    /* The first calls find the connection gone; within a few seconds it is back. */
    double until = sl_now_ms() + DEADLINE_MS;
    do {
        int before = r.calls;
        sl_store_user_stats(p->fx.c, "before", on_stats, &r);
        assert_true(waiter_run(&p->fx.w, &r.calls, before + 1));
    } while (r.err != 0 && sl_now_ms() < until);
    assert_int_equal(r.err, 0);
    assert_int_equal(r.n, 1);
    rec = usage_row(2, "after", rid, sizeof rid);
    sl_store_usage(p->fx.c, &rec);
    stats_wait(&p->fx, "after", &r);
    assert_int_equal(r.n, 1);
}

int main(void)
{
    json_set_alloc_funcs(sl_malloc_fn, sl_free);
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_session_round_trip_oldest_first_limited_to_max_turns),
        T(test_session_of_another_owner_is_neither_read_nor_written),
        T(test_session_unknown_is_not_found_and_empty),
        T(test_session_keeps_only_the_last_200_turns),
        T(test_session_load_replaces_invalid_utf8),
        T(test_session_survives_a_restart),
        T(test_usage_stats_sum_every_row_and_skip_anonymous),
        T(test_usage_stats_of_one_key),
        T(test_usage_query_totals_honour_every_filter),
        T(test_usage_query_filters_are_never_sql),
        T(test_usage_query_groups_by_each_dimension),
        T(test_usage_query_unknown_group_is_einval_on_the_loop),
        T(test_keyset_follows_create_and_revoke_within_a_second),
        T(test_keyset_spent_follows_usage_rows),
        T(test_every_usage_field_lands_in_postgres),
        T(test_invalid_utf8_in_a_usage_row_loses_nothing),
        T(test_keys_create_list_revoke_through_a_url),
        T(test_start_names_no_password_when_postgres_is_unreachable),
        T(test_two_stores_share_sessions_usage_and_keys),
        T(test_store_reconnects_after_the_server_restarts),
    };
#undef T
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
