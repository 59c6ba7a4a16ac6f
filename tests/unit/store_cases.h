/* Behaviour both store backends must show, run by test_store.c on SQLite and by
 * test_store_pg.c on PostgreSQL: each case starts the fixture's store itself (the test's
 * teardown stops it). Included after store_helpers.h. */
#ifndef SL_TESTS_STORE_CASES_H
#define SL_TESTS_STORE_CASES_H
#include "store_helpers.h"

/* ---- sessions ---- */

static inline void case_session_round_trip_oldest_first_limited_to_max_turns(fx_t *fx)
{
    fx_start(fx, 64);
    sl_store_session_append(fx->c, "s1", "alice", "q1", "a1");
    sl_store_session_append(fx->c, "s1", "alice", "q2", "a2");
    sl_store_session_append(fx->c, "s1", "alice", "q3", "a3");
    load_rec_t r = {0};
    load_wait(fx, "s1", "alice", 2, &r);
    assert_true(r.found);
    assert_string_equal(r.dump, "[{\"role\":\"user\",\"content\":\"q2\"},"
                                "{\"role\":\"assistant\",\"content\":\"a2\"},"
                                "{\"role\":\"user\",\"content\":\"q3\"},"
                                "{\"role\":\"assistant\",\"content\":\"a3\"}]");
    load_wait(fx, "s1", "alice", 10, &r);
    assert_true(r.found);
    assert_string_equal(r.dump, "[{\"role\":\"user\",\"content\":\"q1\"},"
                                "{\"role\":\"assistant\",\"content\":\"a1\"},"
                                "{\"role\":\"user\",\"content\":\"q2\"},"
                                "{\"role\":\"assistant\",\"content\":\"a2\"},"
                                "{\"role\":\"user\",\"content\":\"q3\"},"
                                "{\"role\":\"assistant\",\"content\":\"a3\"}]");
    char *all = sl_strdup(r.dump);
    load_wait(fx, "s1", "alice", 0, &r); /* 0: every kept turn */
    assert_string_equal(r.dump, all);
    sl_free(all);
    sl_free(r.dump);
}

static inline void case_session_of_another_owner_is_neither_read_nor_written(fx_t *fx)
{
    fx_start(fx, 64);
    sl_store_session_append(fx->c, "s", "alice", "mine", "yes");
    sl_store_session_append(fx->c, "s", "bob", "intruder", "no");
    sl_store_session_append(fx->c, "s", NULL, "anonymous", "no");
    sl_store_session_append(fx->c, "anon", NULL, "hello", "hi");
    sl_store_session_append(fx->c, "anon", "alice", "takeover", "no");
    load_rec_t r = {0};
    load_wait(fx, "s", "bob", 5, &r);
    assert_false(r.found);
    assert_string_equal(r.dump, "[]");
    load_wait(fx, "s", NULL, 5, &r);
    assert_false(r.found);
    assert_string_equal(r.dump, "[]");
    load_wait(fx, "s", "alice", 5, &r);
    assert_true(r.found);
    assert_string_equal(r.dump, "[{\"role\":\"user\",\"content\":\"mine\"},"
                                "{\"role\":\"assistant\",\"content\":\"yes\"}]");
    load_wait(fx, "anon", "alice", 5, &r);
    assert_false(r.found);
    assert_string_equal(r.dump, "[]");
    load_wait(fx, "anon", NULL, 5, &r);
    assert_true(r.found);
    assert_string_equal(r.dump, "[{\"role\":\"user\",\"content\":\"hello\"},"
                                "{\"role\":\"assistant\",\"content\":\"hi\"}]");
    sl_free(r.dump);
}

static inline void case_session_unknown_is_not_found_and_empty(fx_t *fx)
{
    fx_start(fx, 64);
    load_rec_t r = {0};
    load_wait(fx, "never-written", "alice", 5, &r);
    assert_false(r.found);
    assert_string_equal(r.dump, "[]");
    sl_free(r.dump);
}

static inline void case_session_keeps_only_the_last_200_turns(fx_t *fx)
{
    fx_start(fx, 1024);
    for (int i = 0; i < 205; i++) {
        char q[16], a[16];
        snprintf(q, sizeof q, "q%d", i);
        snprintf(a, sizeof a, "a%d", i);
        sl_store_session_append(fx->c, "long", "u", q, a);
    }
    load_rec_t r = {0};
    load_wait(fx, "long", "u", 1000, &r);
    json_t *m = json_loads(r.dump, 0, NULL);
    assert_int_equal(json_array_size(m), 400);
    assert_string_equal(json_string_value(json_object_get(json_array_get(m, 0), "content")), "q5");
    assert_string_equal(json_string_value(json_object_get(json_array_get(m, 399), "content")),
                        "a204");
    json_decref(m);
    sl_free(r.dump);
}

static inline void case_session_load_replaces_invalid_utf8(fx_t *fx)
{
    fx_start(fx, 64);
    /* An answer cut off by a cancel inside "é" (0xc3 0xa9). */
    sl_store_session_append(fx->c, "s", NULL, "caf\xc3\xa9?", "caf\xc3");
    load_rec_t r = {0};
    load_wait(fx, "s", NULL, 5, &r);
    assert_true(r.found);
    assert_string_equal(r.dump, "[{\"role\":\"user\",\"content\":\"caf\xc3\xa9?\"},"
                                "{\"role\":\"assistant\",\"content\":\"caf\xef\xbf\xbd\"}]");
    sl_free(r.dump);
}

static inline void case_session_survives_a_restart(fx_t *fx)
{
    fx_start(fx, 64);
    sl_store_session_append(fx->c, "s", "alice", "before", "restart");
    fx_stop(fx);
    fx_start(fx, 64);
    load_rec_t r = {0};
    load_wait(fx, "s", "alice", 5, &r);
    assert_true(r.found);
    assert_string_equal(r.dump, "[{\"role\":\"user\",\"content\":\"before\"},"
                                "{\"role\":\"assistant\",\"content\":\"restart\"}]");
    sl_free(r.dump);
}

static inline void case_usage_stats_sum_every_row_and_skip_anonymous(fx_t *fx)
{
    fx_start(fx, 1024);
    static const char *const users[] = {"u0", "u1", "u2", "u3", NULL};
    int64_t prompt[4] = {0}, completion[4] = {0};
    for (int i = 0; i < 500; i++) {
        char rid[32];
        sl_usage_record_t rec = usage_row(i, users[i % 5], rid, sizeof rid);
        sl_store_usage(fx->c, &rec);
        if (i % 5 < 4) {
            prompt[i % 5] += rec.prompt_tokens;
            completion[i % 5] += rec.completion_tokens;
        }
    }
    stats_rec_t all = {0};
    stats_wait(fx, NULL, &all);
    assert_int_equal(all.n, 4); /* rows without a user id are not a user */
    for (size_t k = 0; k < 4; k++) {
        int u = 3 - (int)k; /* most recent first: u3 wrote last (ts 1498) */
        assert_string_equal(all.rows[k].user_id, users[u]);
        assert_int_equal(all.rows[k].requests, 100);
        assert_int_equal(all.rows[k].prompt_tokens, prompt[u]);
        assert_int_equal(all.rows[k].completion_tokens, completion[u]);
        assert_int_equal(all.rows[k].last_ts, 1000 + 495 + u);
    }
    stats_rec_t one = {0};
    stats_wait(fx, "u1", &one);
    assert_int_equal(one.n, 1);
    assert_string_equal(one.rows[0].user_id, "u1");
    assert_int_equal(one.rows[0].prompt_tokens, prompt[1]);
    stats_wait(fx, "nobody", &one);
    assert_int_equal(one.n, 0);
    assert_int_equal(sl_store_dropped(fx->s), 0);
}

/* /rate-limit/stats for an API key: only that key's rows count. */
static inline void case_usage_stats_of_one_key(fx_t *fx)
{
    fx_start(fx, 64);
    static const char *const keys[] = {"alice", "bob", "alice", NULL, "bob", "alice"};
    static const char *const users[] = {"u1", "u1", "u2", "u1", "u2", "u1"};
    for (int i = 0; i < 6; i++) {
        char rid[32];
        sl_usage_record_t rec = usage_row(i, users[i], rid, sizeof rid);
        rec.key_name = keys[i];
        sl_store_usage(fx->c, &rec);
    }
    stats_rec_t r = {0};
    stats_key_wait(fx, NULL, "alice", &r);
    assert_int_equal(r.n, 2);
    assert_string_equal(r.rows[0].user_id, "u1"); /* most recent first: u1 wrote last */
    assert_int_equal(r.rows[0].requests, 2);
    assert_int_equal(r.rows[0].prompt_tokens, 0 + 5);
    assert_int_equal(r.rows[0].last_ts, 1005);
    assert_string_equal(r.rows[1].user_id, "u2");
    assert_int_equal(r.rows[1].requests, 1);
    stats_key_wait(fx, "u1", "bob", &r);
    assert_int_equal(r.n, 1);
    assert_int_equal(r.rows[0].requests, 1);
    assert_int_equal(r.rows[0].prompt_tokens, 1);
    stats_key_wait(fx, "u1", "nobody", &r);
    assert_int_equal(r.n, 0);
    stats_key_wait(fx, "u1", NULL, &r); /* every key's rows, and those without a key */
    assert_int_equal(r.rows[0].requests, 4);
    stats_key_wait(fx, NULL, "x' OR '1'='1", &r); /* a parameter, never SQL */
    assert_int_equal(r.n, 0);
}

/* ---- usage queries ---- */

/* Five requests over two keys, three users, two models, with errors and a cancel, on two UTC
 * days (86400 is 1970-01-02T00:00:00Z). Totals: 5 requests, 19 prompt and 27 completion
 * tokens, 2 errors, 1 cancelled. */
static inline void post_query_rows(fx_t *fx)
{
    static const struct {
        int64_t ts;
        const char *key, *user, *model, *dialect, *provider;
        int status;
        int64_t prompt, completion;
        bool cancelled;
    } rows[] = {
        {86399, "k1", "u1", "m1", "openai", "mock", 200, 10, 20, false},
        {86400, "k1", "u2", "m1", "chat", "openai", 200, 1, 2, false},
        {86401, "k2", "u1", "m2", "openai", "mock", 429, 0, 0, false},
        {90000, "k2", NULL, "m2", "openai", NULL, 200, 5, 5, true},
        {100000, NULL, "u3", "m1", "aichat", "mock", 502, 3, 0, false},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        char rid[16];
        snprintf(rid, sizeof rid, "q-%zu", i);
        sl_usage_record_t rec = {.ts = rows[i].ts,
                                 .request_id = rid,
                                 .key_name = rows[i].key,
                                 .user_id = rows[i].user,
                                 .dialect = rows[i].dialect,
                                 .model = rows[i].model,
                                 .provider = rows[i].provider,
                                 .status = rows[i].status,
                                 .prompt_tokens = rows[i].prompt,
                                 .completion_tokens = rows[i].completion,
                                 .ttft_ms = -1,
                                 .cancelled = rows[i].cancelled};
        sl_store_usage(fx->c, &rec);
    }
}

static inline void assert_sum(const sl_usage_sum_t *r, int64_t requests, int64_t prompt,
                              int64_t completion, int64_t errors, int64_t cancelled)
{
    assert_int_equal(r->requests, requests);
    assert_int_equal(r->prompt_tokens, prompt);
    assert_int_equal(r->completion_tokens, completion);
    assert_int_equal(r->errors, errors);
    assert_int_equal(r->cancelled, cancelled);
}

/* The one total row of q (group ""). */
static inline sl_usage_sum_t total_of(fx_t *fx, sl_usage_query_t q)
{
    sums_rec_t r = {0};
    sums_wait(fx, &q, &r);
    assert_int_equal(r.n, 1);
    assert_string_equal(r.rows[0].group, "");
    return r.rows[0];
}

static inline void case_usage_query_totals_honour_every_filter(fx_t *fx)
{
    fx_start(fx, 64);
    post_query_rows(fx);
    sl_usage_sum_t t = total_of(fx, (sl_usage_query_t){0});
    assert_sum(&t, 5, 19, 27, 2, 1);
    t = total_of(fx, (sl_usage_query_t){.key_name = "k1"});
    assert_sum(&t, 2, 11, 22, 0, 0);
    t = total_of(fx, (sl_usage_query_t){.user_id = "u1"});
    assert_sum(&t, 2, 10, 20, 1, 0);
    t = total_of(fx, (sl_usage_query_t){.model = "m2"});
    assert_sum(&t, 2, 5, 5, 1, 1);
    t = total_of(fx, (sl_usage_query_t){.since = 86400}); /* since is inclusive */
    assert_sum(&t, 4, 9, 7, 2, 1);
    t = total_of(fx, (sl_usage_query_t){.until = 86401}); /* until is exclusive */
    assert_sum(&t, 2, 11, 22, 0, 0);
    t = total_of(fx, (sl_usage_query_t){.since = 86400, .until = 90000});
    assert_sum(&t, 2, 1, 2, 1, 0);
    t = total_of(fx, (sl_usage_query_t){.key_name = "k1", .user_id = "u2", .model = "m1"});
    assert_sum(&t, 1, 1, 2, 0, 0);
    /* Nothing matches: still the one row, all zero. */
    t = total_of(fx, (sl_usage_query_t){.key_name = "nobody"});
    assert_sum(&t, 0, 0, 0, 0, 0);
}

/* A filter value is a bound parameter, never SQL. */
static inline void case_usage_query_filters_are_never_sql(fx_t *fx)
{
    fx_start(fx, 64);
    post_query_rows(fx);
    sl_usage_sum_t t = total_of(fx, (sl_usage_query_t){.key_name = "k1' OR '1'='1"});
    assert_sum(&t, 0, 0, 0, 0, 0);
    t = total_of(fx, (sl_usage_query_t){.model = "m1\"); DROP TABLE usage; --"});
    assert_sum(&t, 0, 0, 0, 0, 0);
    t = total_of(fx, (sl_usage_query_t){0});
    assert_sum(&t, 5, 19, 27, 2, 1);
}

static inline void case_usage_query_groups_by_each_dimension(fx_t *fx)
{
    fx_start(fx, 64);
    post_query_rows(fx);
    sums_rec_t r = {0};
    sums_wait(fx, &(sl_usage_query_t){.group_by = "key"}, &r);
    assert_int_equal(r.n, 3); /* a row without a key groups under "" */
    assert_string_equal(r.rows[0].group, "");
    assert_sum(sums_row(&r, ""), 1, 3, 0, 1, 0);
    assert_sum(sums_row(&r, "k1"), 2, 11, 22, 0, 0);
    assert_sum(sums_row(&r, "k2"), 2, 5, 5, 1, 1);
    sums_wait(fx, &(sl_usage_query_t){.group_by = "user"}, &r);
    assert_int_equal(r.n, 4);
    assert_sum(sums_row(&r, "u1"), 2, 10, 20, 1, 0);
    assert_sum(sums_row(&r, "u3"), 1, 3, 0, 1, 0);
    sums_wait(fx, &(sl_usage_query_t){.group_by = "model"}, &r);
    assert_int_equal(r.n, 2);
    assert_sum(sums_row(&r, "m1"), 3, 14, 22, 1, 0);
    sums_wait(fx, &(sl_usage_query_t){.group_by = "dialect"}, &r);
    assert_int_equal(r.n, 3);
    assert_sum(sums_row(&r, "openai"), 3, 15, 25, 1, 1);
    sums_wait(fx, &(sl_usage_query_t){.group_by = "provider"}, &r);
    assert_int_equal(r.n, 3);
    assert_sum(sums_row(&r, ""), 1, 5, 5, 0, 1);
    assert_sum(sums_row(&r, "mock"), 3, 13, 20, 2, 0);
    /* Days are UTC dates of ts, in order. */
    sums_wait(fx, &(sl_usage_query_t){.group_by = "day"}, &r);
    assert_int_equal(r.n, 2);
    assert_string_equal(r.rows[0].group, "1970-01-01");
    assert_string_equal(r.rows[1].group, "1970-01-02");
    assert_sum(&r.rows[0], 1, 10, 20, 0, 0);
    assert_sum(&r.rows[1], 4, 9, 7, 2, 1);
    /* Grouping and filters together. */
    sums_wait(fx, &(sl_usage_query_t){.group_by = "model", .user_id = "u1"}, &r);
    assert_int_equal(r.n, 2);
    assert_sum(sums_row(&r, "m1"), 1, 10, 20, 0, 0);
    assert_sum(sums_row(&r, "m2"), 1, 0, 0, 1, 0);
}

static inline void case_usage_query_unknown_group_is_einval_on_the_loop(fx_t *fx)
{
    fx_start(fx, 64);
    sums_rec_t r = {0};
    sl_store_usage_query(fx->c, &(sl_usage_query_t){.group_by = "week"}, on_sums, &r);
    assert_int_equal(r.calls, 0); /* never inside the call that posted it */
    assert_true(waiter_run(&fx->w, &r.calls, 1));
    assert_int_equal(r.err, SL_EINVAL);
    assert_int_equal(r.n, 0);
    /* "" is no group either (NULL is the total). */
    sl_store_usage_query(fx->c, &(sl_usage_query_t){.group_by = ""}, on_sums, &r);
    assert_true(waiter_run(&fx->w, &r.calls, 2));
    assert_int_equal(r.err, SL_EINVAL);
}

/* ---- the key snapshot ---- */

typedef struct key_want {
    uint8_t hash[32];
    bool revoked;
    int64_t spent;
} key_want_t;

static inline bool key_is(const sl_keyset_t *ks, const void *arg)
{
    const key_want_t *want = arg;
    const sl_key_rec_t *k = sl_keyset_find(ks, want->hash);
    return k && k->revoked == want->revoked && k->spent_tokens == want->spent;
}

static inline void case_keyset_follows_create_and_revoke_within_a_second(fx_t *fx)
{
    fx_start(fx, 64);
    char secret[64];
    sl_key_rec_t k = key_create(fx, "alice", 0, "gpt-*", secret);
    key_want_t want = {.revoked = false};
    sl_key_hash(secret, strlen(secret), want.hash);
    assert_memory_equal(want.hash, k.hash, 32);
    assert_true(keys_wait(fx, key_is, &want));
    sl_keyset_t *ks = sl_store_keys(fx->s);
    const sl_key_rec_t *found = sl_keyset_find(ks, want.hash);
    assert_non_null(found);
    assert_string_equal(found->id, k.id);
    assert_string_equal(found->name, "alice");
    assert_string_equal(found->models, "gpt-*");
    assert_int_equal(found->rpm, 60);
    assert_int_equal(found->tpm, 1000);
    assert_int_equal(sl_keyset_count(ks), 1);
    sl_buf_t err;
    sl_buf_init(&err);
    assert_int_equal(sl_keys_revoke(fx_db(fx), k.id, &err), 0);
    sl_buf_dispose(&err);
    want.revoked = true;
    assert_true(keys_wait(fx, key_is, &want));
    /* An older snapshot still held is unchanged: snapshots are immutable. */
    assert_false(sl_keyset_find(ks, want.hash)->revoked);
    sl_keyset_unref(ks);
}

static inline bool spent_is(const sl_keyset_t *ks, const void *arg)
{
    const key_want_t *want = arg;
    const sl_key_rec_t *k = sl_keyset_find(ks, want->hash);
    return k && k->spent_tokens == want->spent && sl_keyset_spent(ks, "cfg-key") == 50 &&
           sl_keyset_spent(ks, "bob") == want->spent;
}

static inline void case_keyset_spent_follows_usage_rows(fx_t *fx)
{
    char secret[64];
    sl_key_rec_t k = key_create(fx, "bob", 100, "", secret);
    fx_start(fx, 64);
    /* The first snapshot is there as soon as the store has started. */
    sl_keyset_t *ks = sl_store_keys(fx->s);
    const sl_key_rec_t *found = sl_keyset_find(ks, k.hash);
    assert_non_null(found);
    assert_int_equal(found->budget_tokens, 100);
    assert_int_equal(found->spent_tokens, 0);
    assert_int_equal(sl_keyset_spent(ks, "bob"), 0);
    sl_keyset_unref(ks);
    for (int i = 0; i < 3; i++) {
        char rid[32];
        sl_usage_record_t rec = usage_row(i + 1, "u", rid, sizeof rid); /* 1+3, 2+5, 3+7 */
        rec.key_name = "bob";
        sl_store_usage(fx->c, &rec);
        rec.key_name = "cfg-key"; /* a key from the config: spend by name alone */
        rec.prompt_tokens = 10;
        rec.completion_tokens = i == 2 ? 20 : 0;
        sl_store_usage(fx->c, &rec);
    }
    key_want_t want = {.spent = 21};
    memcpy(want.hash, k.hash, sizeof want.hash);
    assert_true(keys_wait(fx, spent_is, &want));
    ks = sl_store_keys(fx->s);
    assert_int_equal(sl_keyset_spent(ks, "nobody"), 0);
    assert_int_equal(sl_keyset_count(ks), 1); /* config keys are not issued keys */
    sl_keyset_unref(ks);
}

#endif
