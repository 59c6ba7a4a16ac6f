/* Helpers shared by the store tests (test_store.c on SQLite, test_store_pg.c on PostgreSQL): a
 * test-owned loop to wait on, a store fixture with one client, and recorders for the answers.
 * Waiting means running the loop until a counter is hit or a deadline timer fires. Included
 * after <cmocka.h>; everything is static inline so each test uses what it needs. */
#ifndef SL_TESTS_STORE_HELPERS_H
#define SL_TESTS_STORE_HELPERS_H
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "store/keys.h"
#include "store/store.h"

#define DEADLINE_MS 10000
/* A key change must show in the snapshot within about a second (SL_KEYS_REFRESH_MS twice,
 * with room for a slow sanitizer build). */
#define KEYS_DEADLINE_MS 2000

/* ---- a loop to wait on ---- */

typedef struct waiter {
    uv_loop_t loop;
    uv_timer_t deadline;
    bool expired;
} waiter_t;

static inline int waiter_init(waiter_t *w)
{
    int rc = uv_loop_init(&w->loop);
    if (rc == 0)
        rc = uv_timer_init(&w->loop, &w->deadline);
    w->deadline.data = w;
    return rc;
}

static inline void on_deadline(uv_timer_t *t)
{
    ((waiter_t *)t->data)->expired = true;
}

/* Runs the loop until *count reaches want or ms pass; true if it got there. */
static inline bool waiter_run_for(waiter_t *w, const int *count, int want, uint64_t ms)
{
    w->expired = false;
    if (uv_timer_start(&w->deadline, on_deadline, ms, 0) != 0)
        return false;
    while (*count < want && !w->expired)
        uv_run(&w->loop, UV_RUN_ONCE);
    return uv_timer_stop(&w->deadline) == 0 && *count >= want;
}

static inline bool waiter_run(waiter_t *w, const int *count, int want)
{
    return waiter_run_for(w, count, want, DEADLINE_MS);
}

/* Lets every closed handle finish; 0 when nothing was left open on the loop. */
static inline int waiter_dispose(waiter_t *w)
{
    uv_close((uv_handle_t *)&w->deadline, NULL);
    uv_run(&w->loop, UV_RUN_DEFAULT);
    return uv_loop_close(&w->loop);
}

/* ---- fixture: a store, one client on the test's loop ---- */

typedef struct fx {
    char dir[64];
    char path[96]; /* the SQLite file (unused with url) */
    char url[160]; /* PostgreSQL, or "" for SQLite */
    sl_store_t *s;
    waiter_t w;
    sl_store_client_t *c;
} fx_t;

/* The database the keys command is pointed at: the URL or the file. */
static inline const char *fx_db(const fx_t *fx)
{
    return fx->url[0] ? fx->url : fx->path;
}

static inline void fx_start(fx_t *fx, size_t cap)
{
    sl_buf_t err;
    sl_buf_init(&err);
    int rc = sl_store_start(fx->path, fx->url[0] ? fx->url : NULL, cap, &fx->s, &err);
    if (rc != 0)
        fail_msg("store start: %s", err.data ? err.data : "?");
    sl_buf_dispose(&err);
    assert_int_equal(waiter_init(&fx->w), 0);
    fx->c = sl_store_client_new(fx->s, &fx->w.loop);
    assert_non_null(fx->c);
}

/* Closes the client and stops the store: everything posted is written by the time it
 * returns. */
static inline void fx_stop(fx_t *fx)
{
    sl_store_client_close(fx->c);
    fx->c = NULL;
    assert_int_equal(waiter_dispose(&fx->w), 0);
    sl_store_stop(fx->s);
    fx->s = NULL;
}

/* ---- recorded answers ---- */

typedef struct load_rec {
    int calls;
    int err;
    bool found;
    char *dump; /* the messages as compact JSON */
} load_rec_t;

static inline void on_load(void *ud, int err, bool found, json_t *messages)
{
    load_rec_t *r = ud;
    r->calls++;
    r->err = err;
    r->found = found;
    sl_free(r->dump);
    r->dump = json_dumps(messages, JSON_COMPACT);
    json_decref(messages);
}

typedef struct stats_rec {
    int calls;
    int err;
    size_t n;
    sl_user_stats_t rows[8];
} stats_rec_t;

static inline void on_stats(void *ud, int err, const sl_user_stats_t *rows, size_t n)
{
    stats_rec_t *r = ud;
    r->calls++;
    r->err = err;
    r->n = n;
    if (n > 0) /* rows is NULL when there are none */
        memcpy(r->rows, rows, (n < 8 ? n : 8) * sizeof *rows);
}

typedef struct sums_rec {
    int calls;
    int err;
    size_t n;
    sl_usage_sum_t rows[16];
} sums_rec_t;

static inline void on_sums(void *ud, int err, const sl_usage_sum_t *rows, size_t n)
{
    sums_rec_t *r = ud;
    r->calls++;
    r->err = err;
    r->n = n;
    if (n > 0)
        memcpy(r->rows, rows, (n < 16 ? n : 16) * sizeof *rows);
}

/* Loads a session and waits for the answer into r (r's previous dump is replaced). */
static inline void load_wait(fx_t *fx, const char *id, const char *owner, unsigned max_turns,
                             load_rec_t *r)
{
    int before = r->calls;
    sl_store_session_load(fx->c, id, owner, max_turns, on_load, r);
    assert_true(waiter_run(&fx->w, &r->calls, before + 1));
    assert_int_equal(r->err, 0);
}

static inline void stats_wait(fx_t *fx, const char *user, stats_rec_t *r)
{
    int before = r->calls;
    sl_store_user_stats(fx->c, user, on_stats, r);
    assert_true(waiter_run(&fx->w, &r->calls, before + 1));
    assert_int_equal(r->err, 0);
}

static inline void stats_key_wait(fx_t *fx, const char *user, const char *key, stats_rec_t *r)
{
    int before = r->calls;
    sl_store_user_stats_key(fx->c, user, key, on_stats, r);
    assert_true(waiter_run(&fx->w, &r->calls, before + 1));
    assert_int_equal(r->err, 0);
}

static inline void sums_wait(fx_t *fx, const sl_usage_query_t *q, sums_rec_t *r)
{
    int before = r->calls;
    sl_store_usage_query(fx->c, q, on_sums, r);
    assert_true(waiter_run(&fx->w, &r->calls, before + 1));
    assert_int_equal(r->err, 0);
}

/* The row of group g in r, failing the test when there is none. */
static inline const sl_usage_sum_t *sums_row(const sums_rec_t *r, const char *g)
{
    for (size_t i = 0; i < r->n && i < 16; i++)
        if (strcmp(r->rows[i].group, g) == 0)
            return &r->rows[i];
    fail_msg("no usage group \"%s\"", g);
    return NULL;
}

static inline sl_usage_record_t usage_row(int i, const char *user, char *rid, size_t rid_len)
{
    snprintf(rid, rid_len, "r-%d", i);
    return (sl_usage_record_t){.ts = 1000 + i,
                               .request_id = rid,
                               .key_name = "dev",
                               .user_id = user,
                               .dialect = "openai",
                               .model = "gpt-4o-mini",
                               .provider = i % 2 ? "mock" : NULL,
                               .status = 200,
                               .prompt_tokens = i,
                               .completion_tokens = 2 * i + 1,
                               .usage_estimated = i % 2,
                               .ttft_ms = i % 3 ? 12.5 : -1,
                               .total_ms = 100.25,
                               .bytes_out = 10 * (int64_t)i,
                               .cancelled = i % 7 == 0,
                               .tags = i % 2 ? "{\"project\":\"p\"}" : NULL};
}

/* ---- the key snapshot ---- */

typedef bool (*keys_pred_t)(const sl_keyset_t *ks, const void *arg);

typedef struct keys_poll {
    sl_store_t *s;
    keys_pred_t pred;
    const void *arg;
    int hits;
} keys_poll_t;

static inline void on_keys_poll(uv_timer_t *t)
{
    keys_poll_t *p = t->data;
    sl_keyset_t *ks = sl_store_keys(p->s);
    p->hits += p->pred(ks, p->arg);
    sl_keyset_unref(ks);
}

/* Runs the loop, looking at the store's snapshot every 10 ms, until pred holds or
 * KEYS_DEADLINE_MS pass; true if it came to hold. */
static inline bool keys_wait(fx_t *fx, keys_pred_t pred, const void *arg)
{
    keys_poll_t p = {.s = fx->s, .pred = pred, .arg = arg};
    uv_timer_t poll;
    assert_int_equal(uv_timer_init(&fx->w.loop, &poll), 0);
    poll.data = &p;
    assert_int_equal(uv_timer_start(&poll, on_keys_poll, 0, 10), 0);
    bool ok = waiter_run_for(&fx->w, &p.hits, 1, KEYS_DEADLINE_MS);
    uv_close((uv_handle_t *)&poll, NULL);
    uv_run(&fx->w.loop, UV_RUN_NOWAIT); /* the close callback, before poll goes out of scope */
    return ok;
}

/* Creates a key on the fixture's database; secret (at least 64 bytes) gets its secret. */
static inline sl_key_rec_t key_create(const fx_t *fx, const char *name, int64_t budget,
                                      const char *models, char *secret)
{
    sl_key_rec_t tmpl = {.budget_tokens = budget, .rpm = 60, .tpm = 1000};
    snprintf(tmpl.name, sizeof tmpl.name, "%s", name);
    snprintf(tmpl.models, sizeof tmpl.models, "%s", models ? models : "");
    sl_key_rec_t out;
    sl_buf_t err;
    sl_buf_init(&err);
    int rc = sl_keys_create(fx_db(fx), &tmpl, secret, 64, &out, &err);
    if (rc != 0)
        fail_msg("keys create: %s", err.data ? err.data : "?");
    sl_buf_dispose(&err);
    return out;
}

#endif
