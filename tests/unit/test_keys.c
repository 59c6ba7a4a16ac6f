/* Unit tests for store/keys and the key snapshot: the `sluice keys` functions on a temporary
 * SQLite file (create, list, revoke), what is stored (the hash, never the secret), lookups by
 * hash, and the allowed-model globs. */
#include <ctype.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "core/alloc.h"
#include "store/keys.h"
#include "store/keyset.h"

typedef struct kfx {
    char dir[64];
    char path[96];
} kfx_t;

static int setup(void **state)
{
    kfx_t *fx = sl_calloc(1, sizeof *fx);
    snprintf(fx->dir, sizeof fx->dir, "/tmp/sluice-keys-XXXXXX");
    if (!mkdtemp(fx->dir))
        return -1;
    snprintf(fx->path, sizeof fx->path, "%s/keys.db", fx->dir);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    kfx_t *fx = *state;
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

static sl_key_rec_t tmpl_of(const char *name, const char *models)
{
    sl_key_rec_t t = {.rpm = 600, .tpm = 200000, .budget_tokens = 5000, .expires_at = 4102444800};
    snprintf(t.name, sizeof t.name, "%s", name);
    snprintf(t.models, sizeof t.models, "%s", models);
    return t;
}

/* Creates a key, failing the test with the reason if it cannot. */
static sl_key_rec_t create(const kfx_t *fx, const char *name, const char *models, char *secret,
                           size_t cap)
{
    sl_key_rec_t t = tmpl_of(name, models), out;
    sl_buf_t err;
    sl_buf_init(&err);
    int rc = sl_keys_create(fx->path, &t, secret, cap, &out, &err);
    if (rc != 0)
        fail_msg("keys create: %s", err.data ? err.data : "?");
    sl_buf_dispose(&err);
    return out;
}

static bool all_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isxdigit((unsigned char)s[i]) || isupper((unsigned char)s[i]))
            return false;
    return s[n] == '\0';
}

/* ---- create ---- */

static void test_create_returns_a_secret_and_id_of_the_documented_form(void **state)
{
    kfx_t *fx = *state;
    char secret[64];
    sl_key_rec_t k = create(fx, "dev", "", secret, sizeof secret);
    assert_int_equal(strlen(secret), 6 + 48);
    assert_memory_equal(secret, "sk-sl-", 6);
    assert_true(all_hex(secret + 6, 48));
    assert_int_equal(strlen(k.id), 4 + 16);
    assert_memory_equal(k.id, "key_", 4);
    assert_true(all_hex(k.id + 4, 16));
    uint8_t h[32];
    sl_key_hash(secret, strlen(secret), h);
    assert_memory_equal(k.hash, h, 32);
    assert_string_equal(k.name, "dev");
    assert_int_equal(k.rpm, 600);
    assert_int_equal(k.tpm, 200000);
    assert_int_equal(k.budget_tokens, 5000);
    assert_int_equal(k.expires_at, 4102444800);
    assert_false(k.revoked);
    assert_true(k.created_at > 1700000000);
}

static void test_two_keys_never_share_a_secret_or_an_id(void **state)
{
    kfx_t *fx = *state;
    char s1[64], s2[64];
    sl_key_rec_t a = create(fx, "same-name", "", s1, sizeof s1);
    sl_key_rec_t b = create(fx, "same-name", "", s2, sizeof s2);
    assert_string_not_equal(s1, s2);
    assert_string_not_equal(a.id, b.id);
    assert_memory_not_equal(a.hash, b.hash, 32);
}

/* Every text and blob of every row of every table, as one sqlite query per table. */
static void assert_nowhere_in_db(const char *path, const char *needle)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *tables = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT name FROM sqlite_master WHERE type = 'table'",
                                        -1, &tables, NULL),
                     SQLITE_OK);
    int ntables = 0;
    while (sqlite3_step(tables) == SQLITE_ROW) {
        char sql[128];
        snprintf(sql, sizeof sql, "SELECT * FROM \"%s\"", sqlite3_column_text(tables, 0));
        sqlite3_stmt *rows = NULL;
        assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &rows, NULL), SQLITE_OK);
        while (sqlite3_step(rows) == SQLITE_ROW)
            for (int c = 0; c < sqlite3_column_count(rows); c++) {
                const void *v = sqlite3_column_blob(rows, c);
                int n = sqlite3_column_bytes(rows, c);
                assert_true(!v || !memmem(v, (size_t)n, needle, strlen(needle)));
            }
        assert_int_equal(sqlite3_finalize(rows), SQLITE_OK);
        ntables++;
    }
    assert_int_equal(sqlite3_finalize(tables), SQLITE_OK);
    assert_int_equal(sqlite3_close(db), SQLITE_OK);
    assert_true(ntables >= 5); /* sessions, session_turns, usage, keys, key_spend */
}

static void test_create_stores_the_hash_and_never_the_secret(void **state)
{
    kfx_t *fx = *state;
    char secret[64];
    sl_key_rec_t k = create(fx, "dev", "", secret, sizeof secret);
    assert_nowhere_in_db(fx->path, secret);
    assert_nowhere_in_db(fx->path, secret + 6); /* nor its random part alone */
    /* The WAL may hold pages not yet checkpointed: look there too. */
    char wal[128];
    snprintf(wal, sizeof wal, "%s-wal", fx->path);
    FILE *f = fopen(wal, "rb");
    if (f) {
        static char bytes[1 << 20];
        size_t n = fread(bytes, 1, sizeof bytes, f);
        assert_int_equal(fclose(f), 0);
        assert_null(memmem(bytes, n, secret + 6, 48));
    }
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_open_v2(fx->path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT hash FROM keys WHERE id = ?1", -1, &st, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_bind_text(st, 1, k.id, -1, SQLITE_STATIC), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_int_equal(sqlite3_column_bytes(st, 0), 32);
    assert_memory_equal(sqlite3_column_blob(st, 0), k.hash, 32);
    assert_int_equal(sqlite3_finalize(st), SQLITE_OK);
    assert_int_equal(sqlite3_close(db), SQLITE_OK);
}

static void test_create_refuses_bad_templates(void **state)
{
    kfx_t *fx = *state;
    char secret[64];
    sl_key_rec_t out;
    sl_key_rec_t bad[5] = {tmpl_of("", ""), tmpl_of("a\nb", ""), tmpl_of("neg", ""),
                           tmpl_of("neg", ""), tmpl_of("ok", "")};
    bad[2].rpm = -1;
    bad[3].budget_tokens = -5;
    memset(bad[4].name, 'x', sizeof bad[4].name); /* not terminated */
    for (size_t i = 0; i < 5; i++) {
        sl_buf_t err;
        sl_buf_init(&err);
        assert_int_equal(sl_keys_create(fx->path, &bad[i], secret, sizeof secret, &out, &err),
                         SL_EINVAL);
        assert_non_null(err.data);
        sl_buf_dispose(&err);
    }
    sl_key_rec_t ok = tmpl_of("ok", "");
    sl_buf_t err;
    sl_buf_init(&err);
    assert_int_equal(sl_keys_create(fx->path, &ok, secret, 54, &out, &err), SL_EINVAL);
    assert_non_null(strstr(err.data, "secret"));
    sl_buf_dispose(&err);
}

static void test_create_names_the_database_it_cannot_open(void **state)
{
    (void)state;
    char secret[64];
    sl_key_rec_t t = tmpl_of("dev", ""), out;
    sl_buf_t err;
    sl_buf_init(&err);
    assert_true(
        sl_keys_create("/nonexistent-sluice-dir/k.db", &t, secret, sizeof secret, &out, &err) < 0);
    assert_non_null(strstr(err.data, "/nonexistent-sluice-dir/k.db"));
    sl_buf_dispose(&err);
}

/* ---- list and revoke ---- */

typedef struct listed {
    int n;
    sl_key_rec_t keys[8];
} listed_t;

static void on_key(void *ud, const sl_key_rec_t *k)
{
    listed_t *l = ud;
    if (l->n < 8)
        l->keys[l->n] = *k;
    l->n++;
}

static listed_t list(const kfx_t *fx)
{
    listed_t l = {0};
    sl_buf_t err;
    sl_buf_init(&err);
    int rc = sl_keys_list(fx->path, on_key, &l, &err);
    if (rc != 0)
        fail_msg("keys list: %s", err.data ? err.data : "?");
    sl_buf_dispose(&err);
    return l;
}

static void test_list_shows_every_key_newest_first(void **state)
{
    kfx_t *fx = *state;
    assert_int_equal(list(fx).n, 0); /* a new database has none */
    char secret[64];
    sl_key_rec_t a = create(fx, "first", "gpt-*", secret, sizeof secret);
    sl_key_rec_t b = create(fx, "second", "", secret, sizeof secret);
    sl_key_rec_t c = create(fx, "third", "", secret, sizeof secret);
    listed_t l = list(fx);
    assert_int_equal(l.n, 3);
    assert_string_equal(l.keys[0].id, c.id);
    assert_string_equal(l.keys[1].id, b.id);
    assert_string_equal(l.keys[2].id, a.id);
    const sl_key_rec_t *k = &l.keys[2];
    assert_string_equal(k->name, "first");
    assert_string_equal(k->models, "gpt-*");
    assert_memory_equal(k->hash, a.hash, 32);
    assert_int_equal(k->rpm, 600);
    assert_int_equal(k->tpm, 200000);
    assert_int_equal(k->budget_tokens, 5000);
    assert_int_equal(k->spent_tokens, 0);
    assert_int_equal(k->created_at, a.created_at);
    assert_int_equal(k->expires_at, 4102444800);
    assert_false(k->revoked);
}

static void test_revoke_marks_only_that_key_and_unknown_ids_are_not_found(void **state)
{
    kfx_t *fx = *state;
    char secret[64];
    sl_key_rec_t a = create(fx, "a", "", secret, sizeof secret);
    sl_key_rec_t b = create(fx, "b", "", secret, sizeof secret);
    sl_buf_t err;
    sl_buf_init(&err);
    assert_int_equal(sl_keys_revoke(fx->path, a.id, &err), 0);
    assert_int_equal(sl_keys_revoke(fx->path, a.id, &err), 0); /* again: still revoked */
    assert_int_equal(sl_keys_revoke(fx->path, "key_0000000000000000", &err), SL_ENOTFOUND);
    assert_non_null(strstr(err.data, "key_0000000000000000"));
    sl_buf_dispose(&err);
    listed_t l = list(fx);
    assert_int_equal(l.n, 2);
    assert_string_equal(l.keys[0].id, b.id);
    assert_false(l.keys[0].revoked);
    assert_string_equal(l.keys[1].id, a.id);
    assert_true(l.keys[1].revoked);
}

/* ---- hashing and lookups ---- */

static void test_hash_is_sha256(void **state)
{
    (void)state;
    static const uint8_t abc[32] = {0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea,
                                    0x41, 0x41, 0x40, 0xde, 0x5d, 0xae, 0x22, 0x23,
                                    0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17, 0x7a, 0x9c,
                                    0xb4, 0x10, 0xff, 0x61, 0xf2, 0x00, 0x15, 0xad};
    uint8_t h[32];
    sl_key_hash("abc", 3, h);
    assert_memory_equal(h, abc, 32);
    sl_key_hash("abcd", 3, h); /* only len bytes count */
    assert_memory_equal(h, abc, 32);
}

static void test_keyset_finds_every_key_by_hash_and_nothing_else(void **state)
{
    (void)state;
    enum { N = 101 };
    sl_key_rec_t recs[N];
    memset(recs, 0, sizeof recs);
    for (int i = 0; i < N; i++) {
        char secret[32];
        snprintf(secret, sizeof secret, "sk-sl-test-%d", i);
        sl_key_hash(secret, strlen(secret), recs[i].hash);
        snprintf(recs[i].name, sizeof recs[i].name, "k%d", i);
    }
    sl_db_spend_t *spend = sl_malloc(2 * sizeof *spend);
    spend[0] = (sl_db_spend_t){sl_strdup("k7"), 70};
    spend[1] = (sl_db_spend_t){sl_strdup("cfg"), 5};
    sl_keyset_t *ks = sl_keyset_new(recs, N, spend, 2);
    assert_int_equal(sl_keyset_count(ks), N);
    for (int i = 0; i < N; i++) {
        const sl_key_rec_t *k = sl_keyset_find(ks, recs[i].hash);
        assert_non_null(k);
        assert_string_equal(k->name, recs[i].name);
    }
    uint8_t other[32];
    sl_key_hash("sk-sl-not-issued", 16, other);
    assert_null(sl_keyset_find(ks, other));
    assert_int_equal(sl_keyset_spent(ks, "k7"), 70);
    assert_int_equal(sl_keyset_spent(ks, "cfg"), 5);
    assert_int_equal(sl_keyset_spent(ks, "k8"), 0);
    assert_int_equal(sl_keyset_spent(ks, NULL), 0);
    sl_keyset_t *more = sl_keyset_ref(ks);
    sl_keyset_unref(ks);
    assert_non_null(sl_keyset_find(more, recs[0].hash)); /* alive while a ref is held */
    sl_keyset_unref(more);
    sl_keyset_unref(NULL);

    sl_keyset_t *empty = sl_keyset_new(NULL, 0, NULL, 0);
    assert_int_equal(sl_keyset_count(empty), 0);
    assert_null(sl_keyset_find(empty, other));
    assert_int_equal(sl_keyset_spent(empty, "k7"), 0);
    sl_keyset_unref(empty);
}

/* ---- models ---- */

static bool allows(const char *models, const char *model)
{
    sl_key_rec_t k = {0};
    snprintf(k.models, sizeof k.models, "%s", models);
    return sl_key_allows_model(&k, model);
}

static void test_models_globs_decide_which_models_a_key_may_use(void **state)
{
    (void)state;
    assert_true(allows("", "anything"));
    assert_true(allows("", ""));
    assert_true(allows("gpt-4o-mini", "gpt-4o-mini"));
    assert_false(allows("gpt-4o-mini", "gpt-4o"));
    assert_false(allows("gpt-4o", "gpt-4o-mini"));
    assert_true(allows("gpt-4o*", "gpt-4o-mini"));
    assert_true(allows("gpt-4o*", "gpt-4o"));
    assert_false(allows("gpt-4o*", "gpt-3.5-turbo"));
    assert_true(allows("claude-?", "claude-3"));
    assert_false(allows("claude-?", "claude-35"));
    /* A list: any entry may match; spaces around entries and empty entries are ignored. */
    assert_true(allows("gpt-4o-mini, claude-*", "claude-3-haiku"));
    assert_true(allows("gpt-4o-mini , claude-*", "gpt-4o-mini"));
    assert_false(allows("gpt-4o-mini, claude-*", "llama3"));
    assert_true(allows("a,,b", "b"));
    assert_false(allows("a,,b", ""));
    assert_false(allows(",", "x"));
    assert_true(allows("*", "x"));
    assert_false(allows("gpt-*", NULL));
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_create_returns_a_secret_and_id_of_the_documented_form),
        T(test_two_keys_never_share_a_secret_or_an_id),
        T(test_create_stores_the_hash_and_never_the_secret),
        T(test_create_refuses_bad_templates),
        cmocka_unit_test(test_create_names_the_database_it_cannot_open),
        T(test_list_shows_every_key_newest_first),
        T(test_revoke_marks_only_that_key_and_unknown_ids_are_not_found),
        cmocka_unit_test(test_hash_is_sha256),
        cmocka_unit_test(test_keyset_finds_every_key_by_hash_and_nothing_else),
        cmocka_unit_test(test_models_globs_decide_which_models_a_key_may_use),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
