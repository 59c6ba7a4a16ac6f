/* Unit tests for store/store: a real store thread on a temporary SQLite file; answers are
 * awaited by running a test-owned loop until a counter is hit or a deadline timer fires. The
 * cases both backends share are in store_cases.h; test_store_pg.c runs them on PostgreSQL. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <pthread.h>
#include <sqlite3.h>

#include "core/alloc.h"
#include "store/db.h"
#include "store/keys.h"
#include "store/store.h"
#include "store_cases.h"
#include "store_helpers.h"

static int setup(void **state)
{
    fx_t *fx = sl_calloc(1, sizeof *fx);
    snprintf(fx->dir, sizeof fx->dir, "/tmp/sluice-store-XXXXXX");
    if (!mkdtemp(fx->dir))
        return -1;
    snprintf(fx->path, sizeof fx->path, "%s/store.db", fx->dir);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fx_t *fx = *state;
    if (fx->s)
        fx_stop(fx);
    static const char *const suffixes[] = {"", "-wal", "-shm", "-journal"};
    for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
        char p[128];
        snprintf(p, sizeof p, "%s%s", fx->path, suffixes[i]);
        (void)unlink(p); /* most of them do not exist: that is fine */
    }
    int rc = rmdir(fx->dir);
    sl_free(fx);
    return rc;
}

/* The first column of the first row of sql, read with sqlite directly; -1 on any failure. */
static int64_t sql_int(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int64_t v = -1;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    (void)sqlite3_finalize(st); /* read-only probe: only the value matters */
    (void)sqlite3_close(db);
    return v;
}

/* ---- sessions ---- */

static void test_session_round_trip_oldest_first_limited_to_max_turns(void **state)
{
    case_session_round_trip_oldest_first_limited_to_max_turns(*state);
}

static void test_session_of_another_owner_is_neither_read_nor_written(void **state)
{
    case_session_of_another_owner_is_neither_read_nor_written(*state);
}

static void test_session_unknown_is_not_found_and_empty(void **state)
{
    case_session_unknown_is_not_found_and_empty(*state);
}

static void test_session_keeps_only_the_last_200_turns(void **state)
{
    fx_t *fx = *state;
    case_session_keeps_only_the_last_200_turns(fx);
    fx_stop(fx);
    /* Deleted, not merely left out of the answer. */
    assert_int_equal(sql_int(fx->path, "SELECT count(*) FROM session_turns"), 400);
}

static void test_session_load_replaces_invalid_utf8(void **state)
{
    case_session_load_replaces_invalid_utf8(*state);
}

static void test_session_survives_a_restart(void **state)
{
    case_session_survives_a_restart(*state);
}

/* ---- usage ---- */

static void test_usage_stats_sum_every_row_and_skip_anonymous(void **state)
{
    case_usage_stats_sum_every_row_and_skip_anonymous(*state);
}

static void test_usage_stats_of_one_key(void **state)
{
    case_usage_stats_of_one_key(*state);
}

static void test_stop_writes_every_queued_usage_row(void **state)
{
    fx_t *fx = *state;
    fx_start(fx, 1024);
    for (int i = 0; i < 500; i++) {
        char rid[32];
        sl_usage_record_t rec = usage_row(i, "u", rid, sizeof rid);
        sl_store_usage(fx->c, &rec);
    }
    fx_stop(fx); /* at once: most rows are still queued */
    assert_int_equal(sql_int(fx->path, "SELECT count(*) FROM usage"), 500);
    /* Every field arrives: r-7 has provider mock, estimated, ttft, tags, cancelled. */
    assert_int_equal(sql_int(fx->path, "SELECT count(*) FROM usage WHERE request_id = 'r-7'"
                                       " AND ts = 1007 AND key_name = 'dev' AND user_id = 'u'"
                                       " AND dialect = 'openai' AND model = 'gpt-4o-mini'"
                                       " AND provider = 'mock' AND status = 200"
                                       " AND prompt_tokens = 7 AND completion_tokens = 15"
                                       " AND usage_estimated = 1 AND ttft_ms = 12.5"
                                       " AND total_ms = 100.25 AND bytes_out = 70"
                                       " AND cancelled = 1 AND tags = '{\"project\":\"p\"}'"),
                     1);
    /* r-0: no provider, no tags, no first token (ttft < 0 is stored as NULL). */
    assert_int_equal(sql_int(fx->path, "SELECT count(*) FROM usage WHERE request_id = 'r-0'"
                                       " AND provider IS NULL AND tags IS NULL"
                                       " AND ttft_ms IS NULL AND usage_estimated = 0"),
                     1);
}

/* ---- usage queries ---- */

static void test_usage_query_totals_honour_every_filter(void **state)
{
    case_usage_query_totals_honour_every_filter(*state);
}

static void test_usage_query_filters_are_never_sql(void **state)
{
    fx_t *fx = *state;
    case_usage_query_filters_are_never_sql(fx);
    fx_stop(fx);
    assert_int_equal(sql_int(fx->path, "SELECT count(*) FROM usage"), 5);
}

static void test_usage_query_groups_by_each_dimension(void **state)
{
    case_usage_query_groups_by_each_dimension(*state);
}

static void test_usage_query_unknown_group_is_einval_on_the_loop(void **state)
{
    case_usage_query_unknown_group_is_einval_on_the_loop(*state);
}

/* ---- the key snapshot ---- */

static void test_keyset_follows_create_and_revoke_within_a_second(void **state)
{
    case_keyset_follows_create_and_revoke_within_a_second(*state);
}

static void test_keyset_spent_follows_usage_rows(void **state)
{
    case_keyset_spent_follows_usage_rows(*state);
}

/* A database written before key_spend existed (user_version 0): its usage rows count as spent
 * from the first snapshot on. */
static void test_keyset_spent_counts_usage_written_before_the_upgrade(void **state)
{
    fx_t *fx = *state;
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(fx->path, &db), SQLITE_OK);
    assert_int_equal(
        sqlite3_exec(db,
                     "CREATE TABLE usage(id INTEGER PRIMARY KEY, ts INTEGER NOT NULL,"
                     " request_id TEXT NOT NULL, key_name TEXT, user_id TEXT, dialect TEXT,"
                     " model TEXT, provider TEXT, status INTEGER NOT NULL,"
                     " prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL,"
                     " usage_estimated INTEGER NOT NULL, ttft_ms REAL, total_ms REAL NOT NULL,"
                     " bytes_out INTEGER NOT NULL, cancelled INTEGER NOT NULL, tags TEXT);"
                     "INSERT INTO usage(ts, request_id, key_name, status, prompt_tokens,"
                     " completion_tokens, usage_estimated, total_ms, bytes_out, cancelled)"
                     " VALUES(1, 'a', 'old', 200, 5, 6, 0, 1, 0, 0),"
                     " (2, 'b', 'old', 200, 7, 8, 0, 1, 0, 0),"
                     " (3, 'c', NULL, 200, 100, 100, 0, 1, 0, 0);",
                     NULL, NULL, NULL),
        SQLITE_OK);
    assert_int_equal(sqlite3_close(db), SQLITE_OK);
    fx_start(fx, 64);
    sl_keyset_t *ks = sl_store_keys(fx->s);
    assert_int_equal(sl_keyset_spent(ks, "old"), 26);
    sl_keyset_unref(ks);
    fx_stop(fx);
    /* Seeded once: a second start does not count the old rows again. */
    fx_start(fx, 64);
    ks = sl_store_keys(fx->s);
    assert_int_equal(sl_keyset_spent(ks, "old"), 26);
    sl_keyset_unref(ks);
}

/* ---- cancellation and closing ---- */

static void test_cancel_before_reply_never_calls_back(void **state)
{
    fx_t *fx = *state;
    fx_start(fx, 64);
    sl_store_session_append(fx->c, "s", NULL, "q", "a");
    load_rec_t cancelled = {0}, after = {0};
    stats_rec_t cancelled_stats = {0};
    sl_store_op_cancel(sl_store_session_load(fx->c, "s", NULL, 5, on_load, &cancelled));
    sl_store_op_cancel(sl_store_user_stats(fx->c, NULL, on_stats, &cancelled_stats));
    /* Answers come back in order, so once this one is in the other two are settled. */
    load_wait(fx, "s", NULL, 5, &after);
    assert_true(after.found);
    assert_int_equal(cancelled.calls, 0);
    assert_int_equal(cancelled_stats.calls, 0);
    sl_free(after.dump);
}

static void test_cancel_after_the_answer_is_queued_never_calls_back(void **state)
{
    fx_t *fx = *state;
    fx_start(fx, 64);
    waiter_t w2;
    assert_int_equal(waiter_init(&w2), 0);
    sl_store_client_t *c2 = sl_store_client_new(fx->s, &w2.loop);
    sl_store_session_append(fx->c, "s", NULL, "q", "a");
    load_rec_t cancelled = {0}, after = {0};
    stats_rec_t other = {0};
    sl_store_op_t *op = sl_store_session_load(fx->c, "s", NULL, 5, on_load, &cancelled);
    /* c2's answer is queued after op's, so once it arrived op's answer is sitting in the
     * client's reply queue, with fx's loop not yet run. */
    sl_store_user_stats(c2, NULL, on_stats, &other);
    assert_true(waiter_run(&w2, &other.calls, 1));
    sl_store_op_cancel(op);
    load_wait(fx, "s", NULL, 5, &after);
    assert_int_equal(cancelled.calls, 0);
    sl_free(after.dump);
    sl_store_client_close(c2);
    assert_int_equal(waiter_dispose(&w2), 0);
}

/* Cancels race the store thread: some ops are still queued, some running, some answered and
 * waiting for the loop. Whatever was cancelled before its callback never calls back. */
static void test_cancel_racing_the_store_thread_calls_back_only_the_uncancelled(void **state)
{
    fx_t *fx = *state;
    fx_start(fx, 1024);
    sl_store_session_append(fx->c, "s", NULL, "q", "a");
    enum { N = 300 };
    static load_rec_t recs[N];
    static sl_store_op_t *ops[N];
    bool cancelled[N] = {0};
    memset(recs, 0, sizeof recs);
    for (int i = 0; i < N; i++)
        ops[i] = sl_store_session_load(fx->c, "s", NULL, 5, on_load, &recs[i]);
    /* Newest first, so the oldest are answered before their turn comes: both outcomes. */
    for (int i = N - 1; i > 0; i -= 2) {
        if (recs[i].calls == 0) { /* still allowed: its callback has not run */
            sl_store_op_cancel(ops[i]);
            cancelled[i] = true;
        }
        if (i == N / 2 + 1)
            assert_true(waiter_run(&fx->w, &recs[N / 4].calls, 1));
        else if (i % 8 == 1)
            uv_run(&fx->w.loop, UV_RUN_NOWAIT); /* lets some answers in between cancels */
    }
    assert_true(waiter_run(&fx->w, &recs[N - 2].calls, 1)); /* answers arrive in order */
    for (int i = 0; i < N; i++) {
        assert_int_equal(recs[i].calls, cancelled[i] ? 0 : 1);
        sl_free(recs[i].dump);
    }
}

static void test_client_close_discards_pending_answers(void **state)
{
    fx_t *fx = *state;
    fx_start(fx, 64);
    waiter_t w2;
    assert_int_equal(waiter_init(&w2), 0);
    sl_store_client_t *c2 = sl_store_client_new(fx->s, &w2.loop);
    load_rec_t queued = {0}, unrun = {0};
    stats_rec_t other = {0};
    sl_store_session_load(fx->c, "s", NULL, 5, on_load, &queued);
    sl_store_user_stats(c2, NULL, on_stats, &other);
    assert_true(waiter_run(&w2, &other.calls, 1)); /* queued's answer waits on fx's client */
    sl_store_client_close(c2);
    assert_int_equal(waiter_dispose(&w2), 0);
    sl_store_session_load(fx->c, "s", NULL, 5, on_load, &unrun);
    fx_stop(fx); /* closes the client with one answer queued and one op not yet run */
    assert_int_equal(queued.calls, 0);
    assert_int_equal(unrun.calls, 0);
}

typedef struct closer {
    fx_t *fx;
    load_rec_t rec;
} closer_t;

/* A worker whose client goes away while it handles an answer. */
static void on_load_close(void *ud, int err, bool found, json_t *messages)
{
    closer_t *k = ud;
    on_load(&k->rec, err, found, messages);
    sl_store_client_close(k->fx->c);
    k->fx->c = NULL;
}

static void test_client_closed_inside_a_callback_gets_no_more(void **state)
{
    fx_t *fx = *state;
    fx_start(fx, 64);
    closer_t k = {.fx = fx};
    load_rec_t later = {0};
    sl_store_session_load(fx->c, "s", NULL, 5, on_load_close, &k);
    sl_store_session_load(fx->c, "s", NULL, 5, on_load, &later);
    assert_true(waiter_run(&fx->w, &k.rec.calls, 1));
    fx_stop(fx); /* the second answer, delivered or not, is discarded */
    assert_int_equal(later.calls, 0);
    sl_free(k.rec.dump);
}

/* ---- back pressure ---- */

static void test_full_queue_drops_writes_and_refuses_queries(void **state)
{
    fx_t *fx = *state;
    fx_start(fx, 2);
    /* Hold the write lock so the store thread blocks on its first batch: from then on at most
     * one batch (2 ops) is in its hands and 2 wait, so of 8 posts at least 4 are dropped. */
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(fx->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    for (int i = 0; i < 8; i++) {
        char rid[32];
        sl_usage_record_t rec = usage_row(i, "u", rid, sizeof rid);
        sl_store_usage(fx->c, &rec);
    }
    load_rec_t refused = {0};
    sl_store_session_load(fx->c, "s", NULL, 5, on_load, &refused);
    assert_true(waiter_run(&fx->w, &refused.calls, 1)); /* answered on the loop, not inline */
    assert_int_equal(refused.err, SL_EUNAVAIL);
    assert_false(refused.found);
    assert_string_equal(refused.dump, "[]");
    sl_free(refused.dump);
    assert_int_equal(sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_close(db), SQLITE_OK);
    uint64_t dropped = sl_store_dropped(fx->s);
    fx_stop(fx);
    int64_t written = sql_int(fx->path, "SELECT count(*) FROM usage");
    assert_true(dropped - 1 >= 4); /* 1: the refused query */
    assert_int_equal((uint64_t)written + dropped - 1, 8);
}

typedef struct poster {
    sl_store_t *s; /* borrowed: the test stops it after joining */
    const char *user;
    int rows;
    stats_rec_t stats;
    bool answered;
    int loop_rc;
} poster_t;

/* A worker of its own: its loop, its client, rows posted as fast as it can. */
static void poster_main(void *arg)
{
    poster_t *p = arg;
    waiter_t w;
    p->loop_rc = waiter_init(&w);
    if (p->loop_rc != 0)
        return;
    sl_store_client_t *c = sl_store_client_new(p->s, &w.loop);
    for (int i = 0; i < p->rows; i++) {
        char rid[32];
        sl_usage_record_t rec = usage_row(i, p->user, rid, sizeof rid);
        sl_store_usage(c, &rec);
    }
    sl_store_user_stats(c, p->user, on_stats, &p->stats);
    p->answered = waiter_run(&w, &p->stats.calls, 1);
    sl_store_client_close(c);
    p->loop_rc = waiter_dispose(&w);
}

static void test_two_threads_post_concurrently_without_loss(void **state)
{
    fx_t *fx = *state;
    fx_start(fx, 8192);
    poster_t p[2] = {{.s = fx->s, .user = "t0", .rows = 2000},
                     {.s = fx->s, .user = "t1", .rows = 2000}};
    uv_thread_t th[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(uv_thread_create(&th[i], poster_main, &p[i]), 0);
    for (int i = 0; i < 2; i++)
        assert_int_equal(uv_thread_join(&th[i]), 0);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(p[i].loop_rc, 0);
        assert_true(p[i].answered);
        assert_int_equal(p[i].stats.n, 1);
        assert_int_equal(p[i].stats.rows[0].requests, 2000);
        assert_int_equal(p[i].stats.rows[0].prompt_tokens, 1999 * 2000 / 2);
    }
    stats_rec_t all = {0};
    stats_wait(fx, NULL, &all);
    assert_int_equal(all.n, 2);
    assert_int_equal(sl_store_dropped(fx->s), 0);
}

static void test_start_names_the_path_it_cannot_open(void **state)
{
    (void)state;
    sl_buf_t err;
    sl_buf_init(&err);
    sl_store_t *s = NULL;
    int rc = sl_store_start("/nonexistent-sluice-dir/store.db", NULL, 16, &s, &err);
    assert_true(rc < 0);
    assert_null(s);
    assert_non_null(strstr(err.data, "/nonexistent-sluice-dir/store.db"));
    sl_buf_dispose(&err);
}

/* Several processes (two sluice instances, `sluice keys`) may create the same new file at
 * once: each must wait for the others' schema and open it, never fail with "locked". */
enum { OPENERS = 8 };
typedef struct {
    const char *path;
    pthread_barrier_t *go;
    int rc;
    char err[256];
} opener_t;

static void *open_at_once(void *arg)
{
    opener_t *o = arg;
    sl_buf_t err;
    sl_buf_init(&err);
    sl_db_t *db = NULL;
    (void)pthread_barrier_wait(o->go); /* the serial thread's return value is irrelevant */
    o->rc = sl_db_open_sqlite(o->path, &db, &err);
    snprintf(o->err, sizeof o->err, "%s", err.len ? err.data : "");
    if (db)
        sl_db_close(db);
    sl_buf_dispose(&err);
    return NULL;
}

static void test_open_of_a_new_file_by_many_at_once_all_succeed(void **state)
{
    fx_t *fx = *state;
    for (int round = 0; round < 5; round++) {
        char path[160];
        snprintf(path, sizeof path, "%s/race%d.db", fx->dir, round);
        pthread_barrier_t go;
        assert_int_equal(pthread_barrier_init(&go, NULL, OPENERS), 0);
        opener_t o[OPENERS];
        pthread_t t[OPENERS];
        for (int i = 0; i < OPENERS; i++) {
            o[i] = (opener_t){.path = path, .go = &go};
            assert_int_equal(pthread_create(&t[i], NULL, open_at_once, &o[i]), 0);
        }
        for (int i = 0; i < OPENERS; i++)
            assert_int_equal(pthread_join(t[i], NULL), 0);
        (void)pthread_barrier_destroy(&go); /* every waiter has passed it */
        for (int i = 0; i < OPENERS; i++) {
            if (o[i].rc != 0)
                fail_msg("round %d opener %d: %s", round, i, o[i].err);
        }
        assert_int_equal(sql_int(path, "PRAGMA user_version"), 1);
        static const char *const suffixes[] = {"", "-wal", "-shm", "-journal"};
        for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
            char p[192];
            snprintf(p, sizeof p, "%s%s", path, suffixes[i]);
            (void)unlink(p); /* some of them do not exist: that is fine */
        }
    }
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
        T(test_stop_writes_every_queued_usage_row),
        T(test_usage_query_totals_honour_every_filter),
        T(test_usage_query_filters_are_never_sql),
        T(test_usage_query_groups_by_each_dimension),
        T(test_usage_query_unknown_group_is_einval_on_the_loop),
        T(test_keyset_follows_create_and_revoke_within_a_second),
        T(test_keyset_spent_follows_usage_rows),
        T(test_keyset_spent_counts_usage_written_before_the_upgrade),
        T(test_cancel_before_reply_never_calls_back),
        T(test_cancel_after_the_answer_is_queued_never_calls_back),
        T(test_cancel_racing_the_store_thread_calls_back_only_the_uncancelled),
        T(test_client_close_discards_pending_answers),
        T(test_client_closed_inside_a_callback_gets_no_more),
        T(test_full_queue_drops_writes_and_refuses_queries),
        T(test_two_threads_post_concurrently_without_loss),
        T(test_start_names_the_path_it_cannot_open),
        T(test_open_of_a_new_file_by_many_at_once_all_succeed),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
