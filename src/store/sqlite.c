/* The SQLite backend of the store (db.h): opens the file (WAL, schema), keeps every fixed
 * statement prepared for the life of the connection, and runs the queries behind each store
 * operation and the keys command. */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/tokens.h"
#include "store/db.h"
#include "store/db_sql.h"

/* How long a statement waits for another connection's write lock (an operator's sqlite3
 * shell, a backup, the keys command) before the batch is given up and counted as dropped. */
#define BUSY_TIMEOUT_MS 5000

/* synchronous=NORMAL in WAL mode: a commit survives a crash of sluice, and only a power loss
 * can take the last commits back; usage rows are not worth an fsync each. */
static const char schema[] =
    "PRAGMA journal_mode=WAL;"
    "PRAGMA synchronous=NORMAL;"
    "CREATE TABLE IF NOT EXISTS sessions(id TEXT PRIMARY KEY NOT NULL, owner TEXT,"
    " created INTEGER NOT NULL, updated INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS session_turns(session_id TEXT NOT NULL, seq INTEGER NOT NULL,"
    " role TEXT NOT NULL, content TEXT NOT NULL, ts INTEGER NOT NULL);"
    "CREATE UNIQUE INDEX IF NOT EXISTS session_turns_by_seq ON session_turns(session_id, seq);"
    "CREATE TABLE IF NOT EXISTS usage(id INTEGER PRIMARY KEY, ts INTEGER NOT NULL,"
    " request_id TEXT NOT NULL, key_name TEXT, user_id TEXT, dialect TEXT, model TEXT,"
    " provider TEXT, status INTEGER NOT NULL, prompt_tokens INTEGER NOT NULL,"
    " completion_tokens INTEGER NOT NULL, usage_estimated INTEGER NOT NULL, ttft_ms REAL,"
    " total_ms REAL NOT NULL, bytes_out INTEGER NOT NULL, cancelled INTEGER NOT NULL, tags TEXT);"
    "CREATE INDEX IF NOT EXISTS usage_by_ts ON usage(ts);"
    "CREATE INDEX IF NOT EXISTS usage_by_user ON usage(user_id, ts);"
    "CREATE INDEX IF NOT EXISTS usage_by_key ON usage(key_name, ts);"
    "CREATE TABLE IF NOT EXISTS keys(id TEXT PRIMARY KEY NOT NULL, name TEXT NOT NULL,"
    " hash BLOB NOT NULL UNIQUE, rpm INTEGER NOT NULL, tpm INTEGER NOT NULL,"
    " budget_tokens INTEGER NOT NULL, models TEXT NOT NULL, created_at INTEGER NOT NULL,"
    " expires_at INTEGER NOT NULL, revoked INTEGER NOT NULL DEFAULT 0);"
    /* The running sum of usage tokens per key name, kept in step with usage inserts: the key
     * snapshot is rebuilt twice a second, and summing the usage table each time would cost
     * O(rows) forever. */
    "CREATE TABLE IF NOT EXISTS key_spend(key_name TEXT PRIMARY KEY NOT NULL,"
    " tokens INTEGER NOT NULL);";

/* Version 1 introduced key_spend: seed it from the usage rows written before. */
static const char seed_spend[] =
    "INSERT OR REPLACE INTO key_spend(key_name, tokens) SELECT key_name,"
    " sum(prompt_tokens + completion_tokens) FROM usage WHERE key_name IS NOT NULL"
    " GROUP BY key_name;"
    "PRAGMA user_version = 1;";

enum {
    ST_BEGIN,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_SAVEPOINT,
    ST_RELEASE,
    ST_UNDO,
    ST_USAGE,
    ST_SPEND,
    ST_SESS_CREATE,
    ST_SESS_TOUCH,
    ST_LAST_SEQ,
    ST_TURN_ADD,
    ST_TURN_TRIM,
    ST_SESS_OWNED,
    ST_TURNS,
    ST_STATS_ONE,
    ST_STATS_ALL,
    ST_KEYS,
    ST_KEY_ADD,
    ST_KEY_REVOKE,
    ST_SPEND_READ,
    ST_COUNT
};

static const struct {
    const char *what; /* names the statement in error messages */
    const char *sql;
} stmts[ST_COUNT] = {
    [ST_BEGIN] = {"begin", "BEGIN IMMEDIATE"},
    [ST_COMMIT] = {"commit", "COMMIT"},
    [ST_ROLLBACK] = {"rollback", "ROLLBACK"},
    [ST_SAVEPOINT] = {"savepoint", "SAVEPOINT turn"},
    [ST_RELEASE] = {"release", "RELEASE turn"},
    [ST_UNDO] = {"rollback to", "ROLLBACK TO turn"},
    [ST_USAGE] = {"usage insert",
                  "INSERT INTO usage(ts, request_id, key_name, user_id, dialect, model, provider,"
                  " status, prompt_tokens, completion_tokens, usage_estimated, ttft_ms, total_ms,"
                  " bytes_out, cancelled, tags)"
                  " VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16)"},
    [ST_SPEND] = {"key spend", "INSERT INTO key_spend(key_name, tokens) VALUES(?1, ?2)"
                               " ON CONFLICT(key_name) DO UPDATE SET tokens = tokens + ?2"},
    [ST_SESS_CREATE] = {"session create", "INSERT OR IGNORE INTO sessions(id, owner, created,"
                                          " updated) VALUES(?1, ?2, ?3, ?3)"},
    /* Changes one row exactly when the session is owner's: the ownership check and the
     * timestamp in one statement. IS compares NULL owners as equal. */
    [ST_SESS_TOUCH] = {"session touch", "UPDATE sessions SET updated = ?3"
                                        " WHERE id = ?1 AND owner IS ?2"},
    /* A bare max() over the (session_id, seq) index is a single seek. */
    [ST_LAST_SEQ] = {"turn seq", "SELECT max(seq) FROM session_turns WHERE session_id = ?1"},
    [ST_TURN_ADD] = {"turn insert", "INSERT INTO session_turns(session_id, seq, role, content, ts)"
                                    " VALUES(?1, ?2, ?3, ?4, ?5)"},
    [ST_TURN_TRIM] = {"turn trim", "DELETE FROM session_turns WHERE session_id = ?1 AND seq < ?2"},
    [ST_SESS_OWNED] = {"session owner", "SELECT 1 FROM sessions WHERE id = ?1 AND owner IS ?2"},
    [ST_TURNS] = {"session load", "SELECT role, content FROM (SELECT seq, role, content"
                                  " FROM session_turns WHERE session_id = ?1"
                                  " ORDER BY seq DESC LIMIT ?2) ORDER BY seq"},
    [ST_STATS_ONE] = {"user stats",
                      "SELECT user_id, count(*), sum(prompt_tokens), sum(completion_tokens),"
                      " max(ts) FROM usage WHERE user_id = ?1 AND (?2 IS NULL OR key_name = ?2)"
                      " GROUP BY user_id"},
    [ST_STATS_ALL] = {"user stats",
                      "SELECT user_id, count(*), sum(prompt_tokens), sum(completion_tokens),"
                      " max(ts) FROM usage WHERE user_id IS NOT NULL"
                      " AND (?2 IS NULL OR key_name = ?2) GROUP BY user_id"
                      " ORDER BY max(ts) DESC, user_id LIMIT ?1"},
    /* Keys made in the same second keep their order through the rowid. */
    [ST_KEYS] = {"keys read",
                 "SELECT k.id, k.name, k.hash, k.rpm, k.tpm, k.budget_tokens, k.models,"
                 " k.created_at, k.expires_at, k.revoked, coalesce(s.tokens, 0) FROM keys k"
                 " LEFT JOIN key_spend s ON s.key_name = k.name"
                 " ORDER BY k.created_at DESC, k.rowid DESC"},
    [ST_KEY_ADD] = {"key insert",
                    "INSERT INTO keys(id, name, hash, rpm, tpm, budget_tokens, models, created_at,"
                    " expires_at) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"},
    [ST_KEY_REVOKE] = {"key revoke", "UPDATE keys SET revoked = 1 WHERE id = ?1"},
    [ST_SPEND_READ] = {"spend read", "SELECT key_name, tokens FROM key_spend"},
};

typedef struct lite {
    sl_db_t base;
    sqlite3 *db;                /* owned */
    sqlite3_stmt *st[ST_COUNT]; /* owned; prepared once at open */
} lite_t;

/* Records why `what` failed and translates sqlite's code: busy means another connection holds
 * the lock (try later), anything else is ours to fix. */
static int fail_as(lite_t *q, const char *what)
{
    int code = sqlite3_extended_errcode(q->db);
    snprintf(q->base.errmsg, sizeof q->base.errmsg, "%s: %s (%d)", what, sqlite3_errmsg(q->db),
             code);
    code &= 0xff;
    return code == SQLITE_BUSY || code == SQLITE_LOCKED ? SL_EUNAVAIL : SL_EINTERNAL;
}

static int fail(lite_t *q, int id)
{
    return fail_as(q, stmts[id].what);
}

static void release(sqlite3_stmt *st)
{
    /* reset repeats the last step's error, which fail() has already recorded; neither call
     * can fail on its own. */
    (void)sqlite3_reset(st);
    (void)sqlite3_clear_bindings(st);
}

/* Steps a statement that returns no rows and readies it for its next use. */
static int run_done(lite_t *q, int id)
{
    int rc = sqlite3_step(q->st[id]);
    int err = rc == SQLITE_DONE ? 0 : fail(q, id);
    release(q->st[id]);
    return err;
}

/* Steps statement id once its binds are made (rc: their OR-ed results; SQLITE_OK is 0). */
static int bound_done(lite_t *q, int id, int rc)
{
    if (rc == SQLITE_OK)
        return run_done(q, id);
    int err = fail(q, id);
    release(q->st[id]);
    return err;
}

static int bind_text(sqlite3_stmt *st, int i, const char *s)
{
    return s ? sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC) : sqlite3_bind_null(st, i);
}

/* Grows a row array by one and returns the new slot. */
static void *grow(void **v, size_t *len, size_t *cap, size_t size)
{
    if (*len == *cap) {
        *cap = *cap ? 2 * *cap : 16;
        *v = sl_realloc(*v, *cap * size);
    }
    return (char *)*v + (*len)++ * size;
}

static void copy_column(char *dst, size_t cap, sqlite3_stmt *st, int col)
{
    const unsigned char *s = sqlite3_column_text(st, col);
    snprintf(dst, cap, "%s", s ? (const char *)s : "");
}

/* ---- open, close, transactions ---- */

static int read_int(void *ud, int ncols, char **vals, char **names)
{
    *(int *)ud = ncols > 0 && vals[0] ? (int)strtol(vals[0], NULL, 10) : 0;
    return 0;
}

/* Brings a database made by an older sluice up to date. The write lock is taken before the
 * version is read again, so two openers (the keys command next to a running sluice) never
 * both seed. */
static int migrate(lite_t *q)
{
    int version = 0;
    int rc = sqlite3_exec(q->db, "PRAGMA user_version", read_int, &version, NULL);
    if (rc != SQLITE_OK || version >= 1)
        return rc;
    rc = sqlite3_exec(q->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(q->db, "PRAGMA user_version", read_int, &version, NULL);
    if (rc == SQLITE_OK && version < 1)
        rc = sqlite3_exec(q->db, seed_spend, NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(q->db, "COMMIT", NULL, NULL, NULL);
    if (rc != SQLITE_OK && !sqlite3_get_autocommit(q->db))
        (void)sqlite3_exec(q->db, "ROLLBACK", NULL, NULL, NULL); /* the error to report is rc */
    return rc;
}

/*
 * The schema and its migration, retried while another process creates the same file: two
 * instances starting at once, or `sluice keys` beside them. The busy timeout does not cover
 * this: switching to WAL, or upgrading the read lock a CREATE ... IF NOT EXISTS took, fails
 * with SQLITE_BUSY at once when waiting could deadlock. Every step is idempotent.
 */
static int create_schema(lite_t *q)
{
    enum { RETRY_MS = 10 };
    for (int waited = 0;; waited += RETRY_MS) {
        int rc = sqlite3_exec(q->db, schema, NULL, NULL, NULL);
        if (rc == SQLITE_OK)
            rc = migrate(q);
        if (rc != SQLITE_BUSY || waited >= BUSY_TIMEOUT_MS)
            return rc;
        sqlite3_sleep(RETRY_MS);
    }
}

static void lite_close(sl_db_t *db)
{
    lite_t *q = (lite_t *)db;
    for (int i = 0; i < ST_COUNT; i++)
        (void)sqlite3_finalize(q->st[i]); /* repeats the last step's error, already reported */
    /* With every statement finalized, close can only fail on a bug; the v2 form still frees
     * the connection then, so nothing leaks. */
    (void)sqlite3_close_v2(q->db);
    sl_free(q);
}

static int lite_begin(sl_db_t *db)
{
    return run_done((lite_t *)db, ST_BEGIN);
}

static int lite_commit(sl_db_t *db)
{
    return run_done((lite_t *)db, ST_COMMIT);
}

static void lite_rollback(sl_db_t *db)
{
    /* Fails only when there is no transaction left to roll back, which is the goal anyway. */
    (void)run_done((lite_t *)db, ST_ROLLBACK);
}

static bool lite_in_txn(sl_db_t *db)
{
    return !sqlite3_get_autocommit(((lite_t *)db)->db);
}

/* ---- usage ---- */

/* Adds a request's tokens to its key's running total, in the usage row's transaction. */
static int add_spend(lite_t *q, const sl_usage_record_t *r)
{
    int64_t tokens = sl_tokens_add(r->prompt_tokens, r->completion_tokens);
    if (!r->key_name || tokens == 0)
        return 0;
    sqlite3_stmt *st = q->st[ST_SPEND];
    int rc = bind_text(st, 1, r->key_name);
    rc |= sqlite3_bind_int64(st, 2, tokens);
    return bound_done(q, ST_SPEND, rc);
}

static int lite_usage_insert(sl_db_t *db, const sl_usage_record_t *r)
{
    lite_t *q = (lite_t *)db;
    sqlite3_stmt *st = q->st[ST_USAGE];
    int rc = sqlite3_bind_int64(st, 1, r->ts);
    rc |= bind_text(st, 2, r->request_id);
    rc |= bind_text(st, 3, r->key_name);
    rc |= bind_text(st, 4, r->user_id);
    rc |= bind_text(st, 5, r->dialect);
    rc |= bind_text(st, 6, r->model);
    rc |= bind_text(st, 7, r->provider);
    rc |= sqlite3_bind_int(st, 8, r->status);
    rc |= sqlite3_bind_int64(st, 9, r->prompt_tokens);
    rc |= sqlite3_bind_int64(st, 10, r->completion_tokens);
    rc |= sqlite3_bind_int(st, 11, r->usage_estimated);
    rc |= r->ttft_ms < 0 ? sqlite3_bind_null(st, 12) : sqlite3_bind_double(st, 12, r->ttft_ms);
    rc |= sqlite3_bind_double(st, 13, r->total_ms);
    rc |= sqlite3_bind_int64(st, 14, r->bytes_out);
    rc |= sqlite3_bind_int(st, 15, r->cancelled);
    rc |= bind_text(st, 16, r->tags);
    int err = bound_done(q, ST_USAGE, rc);
    return err ? err : add_spend(q, r);
}

static void read_stats_row(sqlite3_stmt *st, sl_user_stats_t *row)
{
    /* Ids longer than the field are cut; they are display keys, not looked up again. */
    copy_column(row->user_id, sizeof row->user_id, st, 0);
    row->requests = sqlite3_column_int64(st, 1);
    row->prompt_tokens = sqlite3_column_int64(st, 2);
    row->completion_tokens = sqlite3_column_int64(st, 3);
    row->last_ts = sqlite3_column_int64(st, 4);
}

static int lite_user_stats(sl_db_t *db, const char *user_id, const char *key_name,
                           sl_user_stats_t **rows, size_t *n)
{
    lite_t *q = (lite_t *)db;
    int id = user_id ? ST_STATS_ONE : ST_STATS_ALL;
    sqlite3_stmt *st = q->st[id];
    int rc = user_id ? bind_text(st, 1, user_id) : sqlite3_bind_int(st, 1, SL_DB_ROWS_LIMIT);
    rc |= bind_text(st, 2, key_name);
    void *v = NULL;
    size_t len = 0, cap = 0;
    while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        read_stats_row(st, grow(&v, &len, &cap, sizeof(sl_user_stats_t)));
        rc = SQLITE_OK;
    }
    int err = rc == SQLITE_DONE ? 0 : fail(q, id);
    release(st);
    if (err) {
        sl_free(v);
        v = NULL;
        len = 0;
    }
    *rows = v;
    *n = len;
    return err;
}

static const sl_db_sql_t usage_spelling = {
    .group_expr =
        {
            [SL_DB_GROUP_KEY] = "coalesce(key_name, '')",
            [SL_DB_GROUP_USER] = "coalesce(user_id, '')",
            [SL_DB_GROUP_MODEL] = "coalesce(model, '')",
            [SL_DB_GROUP_DIALECT] = "coalesce(dialect, '')",
            [SL_DB_GROUP_PROVIDER] = "coalesce(provider, '')",
            [SL_DB_GROUP_DAY] = "strftime('%Y-%m-%d', ts, 'unixepoch')",
        },
    .sums = "count(*), coalesce(sum(prompt_tokens), 0), coalesce(sum(completion_tokens), 0),"
            " coalesce(sum(status >= 400), 0), coalesce(sum(cancelled != 0), 0)",
    .numbered = false,
};

/* Binds the usage query's parameters and collects its rows. */
static int usage_rows(lite_t *q, sqlite3_stmt *st, const sl_db_param_t *params, size_t np,
                      sl_usage_sum_t **rows, size_t *n)
{
    int rc = SQLITE_OK;
    for (size_t i = 0; i < np; i++)
        rc |= params[i].text ? bind_text(st, (int)i + 1, params[i].text)
                             : sqlite3_bind_int64(st, (int)i + 1, params[i].num);
    void *v = NULL;
    size_t len = 0, cap = 0;
    while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t sums[5];
        for (int c = 0; c < 5; c++)
            sums[c] = sqlite3_column_int64(st, c + 1);
        sl_db_usage_row(grow(&v, &len, &cap, sizeof(sl_usage_sum_t)),
                        (const char *)sqlite3_column_text(st, 0), sums);
        rc = SQLITE_OK;
    }
    int err = rc == SQLITE_DONE ? 0 : fail_as(q, "usage query");
    if (err) {
        sl_free(v);
        v = NULL;
        len = 0;
    }
    *rows = v;
    *n = len;
    return err;
}

/* The statement's text depends on which filters are set, so it is prepared per query: these
 * are rare admin requests, not worth a cache. */
static int lite_usage_query(sl_db_t *db, const sl_usage_query_t *q, sl_usage_sum_t **rows,
                            size_t *n)
{
    lite_t *l = (lite_t *)db;
    sl_buf_t sql;
    sl_buf_init(&sql);
    sl_db_param_t params[SL_DB_USAGE_PARAMS];
    size_t np = 0;
    sl_db_usage_sql(q, &usage_spelling, &sql, params, &np);
    sqlite3_stmt *st = NULL;
    int err;
    if (sqlite3_prepare_v2(l->db, sql.data, (int)sql.len, &st, NULL) == SQLITE_OK) {
        err = usage_rows(l, st, params, np, rows, n);
    } else {
        err = fail_as(l, "usage query");
        *rows = NULL;
        *n = 0;
    }
    (void)sqlite3_finalize(st); /* repeats the step's error, already recorded */
    sl_buf_dispose(&sql);
    return err;
}

/* ---- sessions ---- */

/* Binds the (id, owner, ts) the session statements share as ?1, ?2, ?3 (no ts for the owner
 * check). */
static int bind_session(lite_t *q, int id, const char *sid, const char *owner, int64_t ts)
{
    sqlite3_stmt *st = q->st[id];
    int rc = bind_text(st, 1, sid);
    if (rc == SQLITE_OK)
        rc = bind_text(st, 2, owner);
    if (rc == SQLITE_OK && id != ST_SESS_OWNED)
        rc = sqlite3_bind_int64(st, 3, ts);
    if (rc == SQLITE_OK)
        return 0;
    int err = fail(q, id);
    release(st);
    return err;
}

/* The seq of the next message of session sid (0 for the first). */
static int next_seq(lite_t *q, const char *sid, int64_t *seq)
{
    sqlite3_stmt *st = q->st[ST_LAST_SEQ];
    int err = 0;
    int rc = bind_text(st, 1, sid);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *seq = sqlite3_column_type(st, 0) == SQLITE_NULL ? 0 : sqlite3_column_int64(st, 0) + 1;
    else
        err = fail(q, ST_LAST_SEQ);
    release(st);
    return err;
}

static int add_message(lite_t *q, const char *sid, int64_t seq, const char *role,
                       const char *content, int64_t ts)
{
    sqlite3_stmt *st = q->st[ST_TURN_ADD];
    int rc = bind_text(st, 1, sid);
    rc |= sqlite3_bind_int64(st, 2, seq);
    rc |= bind_text(st, 3, role);
    rc |= bind_text(st, 4, content ? content : "");
    rc |= sqlite3_bind_int64(st, 5, ts);
    return bound_done(q, ST_TURN_ADD, rc);
}

/* The body of an append, inside its savepoint. A turn is two rows (user, assistant) with
 * consecutive seqs, so "the last n turns" is "the last 2n rows". */
static int append_turn(lite_t *q, const char *sid, const char *owner, const char *user_msg,
                       const char *assistant_msg, int64_t ts)
{
    int err = bind_session(q, ST_SESS_CREATE, sid, owner, ts);
    if (!err)
        err = run_done(q, ST_SESS_CREATE);
    if (!err)
        err = bind_session(q, ST_SESS_TOUCH, sid, owner, ts);
    if (!err)
        err = run_done(q, ST_SESS_TOUCH);
    if (err || sqlite3_changes(q->db) != 1)
        return err; /* someone else's session: not ours to write */
    int64_t seq = 0;
    err = next_seq(q, sid, &seq);
    if (!err)
        err = add_message(q, sid, seq, "user", user_msg, ts);
    if (!err)
        err = add_message(q, sid, seq + 1, "assistant", assistant_msg, ts);
    if (err)
        return err;
    sqlite3_stmt *st = q->st[ST_TURN_TRIM];
    int rc = bind_text(st, 1, sid);
    rc |= sqlite3_bind_int64(st, 2, seq + 2 - 2 * (int64_t)SL_DB_MAX_TURNS);
    return bound_done(q, ST_TURN_TRIM, rc);
}

static int lite_session_append(sl_db_t *db, const char *id, const char *owner, const char *user_msg,
                               const char *assistant_msg, int64_t ts)
{
    lite_t *q = (lite_t *)db;
    /* A savepoint makes the turn all or nothing inside the batch's transaction: a failure
     * halfway must not leave a user message without its answer. */
    int err = run_done(q, ST_SAVEPOINT);
    if (err)
        return err;
    err = append_turn(q, id, owner, user_msg, assistant_msg, ts);
    if (err) {
        /* Fails only if sqlite already rolled the whole transaction back; the caller sees that
         * through in_txn. The error worth reporting is the first one. */
        char first[sizeof q->base.errmsg];
        memcpy(first, q->base.errmsg, sizeof first);
        (void)run_done(q, ST_UNDO);
        memcpy(q->base.errmsg, first, sizeof first);
    }
    /* RELEASE after ROLLBACK TO ends the savepoint; with no transaction left it fails harmlessly.
     */
    int rel = run_done(q, ST_RELEASE);
    return err ? err : rel;
}

static int session_owned(lite_t *q, const char *id, const char *owner, bool *found)
{
    sqlite3_stmt *st = q->st[ST_SESS_OWNED];
    int err = bind_session(q, ST_SESS_OWNED, id, owner, 0);
    if (err)
        return err;
    int rc = sqlite3_step(st);
    *found = rc == SQLITE_ROW;
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        err = fail(q, ST_SESS_OWNED);
    release(st);
    return err;
}

static json_t *column_json(sqlite3_stmt *st, int col)
{
    const char *s = (const char *)sqlite3_column_text(st, col);
    return sl_db_json_text(s ? s : "", (size_t)sqlite3_column_bytes(st, col));
}

/* Appends each row of the stepped-on turns statement to arr as {role, content}. */
static int read_turns(lite_t *q, json_t *arr)
{
    sqlite3_stmt *st = q->st[ST_TURNS];
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        json_t *m =
            json_pack("{s:o, s:o}", "role", column_json(st, 0), "content", column_json(st, 1));
        if (!m || json_array_append_new(arr, m) != 0) {
            snprintf(q->base.errmsg, sizeof q->base.errmsg,
                     "session load: cannot build the messages");
            return SL_EINTERNAL;
        }
    }
    return rc == SQLITE_DONE ? 0 : fail(q, ST_TURNS);
}

static int lite_session_load(sl_db_t *db, const char *id, const char *owner, unsigned max_turns,
                             bool *found, json_t **messages)
{
    lite_t *q = (lite_t *)db;
    *messages = json_array();
    int err = session_owned(q, id, owner, found);
    if (err || !*found)
        return err;
    unsigned turns = max_turns && max_turns < SL_DB_MAX_TURNS ? max_turns : SL_DB_MAX_TURNS;
    sqlite3_stmt *st = q->st[ST_TURNS];
    int rc = bind_text(st, 1, id);
    rc |= sqlite3_bind_int64(st, 2, 2 * (int64_t)turns);
    err = rc == SQLITE_OK ? read_turns(q, *messages) : fail(q, ST_TURNS);
    release(st);
    if (err) {
        *found = false;
        (void)json_array_clear(*messages); /* cannot fail on an array */
    }
    return err;
}

/* ---- keys ---- */

static void read_key(sqlite3_stmt *st, sl_key_rec_t *k)
{
    memset(k, 0, sizeof *k);
    copy_column(k->id, sizeof k->id, st, 0);
    copy_column(k->name, sizeof k->name, st, 1);
    /* The schema cannot promise 32 bytes (the table is open to an operator's shell): anything
     * else stays all zero, which no secret hashes to. */
    if (sqlite3_column_bytes(st, 2) == (int)sizeof k->hash)
        memcpy(k->hash, sqlite3_column_blob(st, 2), sizeof k->hash);
    k->rpm = sqlite3_column_int64(st, 3);
    k->tpm = sqlite3_column_int64(st, 4);
    k->budget_tokens = sqlite3_column_int64(st, 5);
    copy_column(k->models, sizeof k->models, st, 6);
    k->created_at = sqlite3_column_int64(st, 7);
    k->expires_at = sqlite3_column_int64(st, 8);
    k->revoked = sqlite3_column_int(st, 9) != 0;
    k->spent_tokens = sqlite3_column_int64(st, 10);
}

static int lite_keys_read(sl_db_t *db, sl_key_rec_t **rows, size_t *n)
{
    lite_t *q = (lite_t *)db;
    sqlite3_stmt *st = q->st[ST_KEYS];
    void *v = NULL;
    size_t len = 0, cap = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        read_key(st, grow(&v, &len, &cap, sizeof(sl_key_rec_t)));
    int err = rc == SQLITE_DONE ? 0 : fail(q, ST_KEYS);
    release(st);
    if (err) {
        sl_free(v);
        v = NULL;
        len = 0;
    }
    *rows = v;
    *n = len;
    return err;
}

static int lite_spend_read(sl_db_t *db, sl_db_spend_t **rows, size_t *n)
{
    lite_t *q = (lite_t *)db;
    sqlite3_stmt *st = q->st[ST_SPEND_READ];
    void *v = NULL;
    size_t len = 0, cap = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        sl_db_spend_t *row = grow(&v, &len, &cap, sizeof *row);
        const unsigned char *name = sqlite3_column_text(st, 0);
        row->name = sl_strdup(name ? (const char *)name : "");
        row->tokens = sqlite3_column_int64(st, 1);
    }
    int err = rc == SQLITE_DONE ? 0 : fail(q, ST_SPEND_READ);
    release(st);
    if (err) {
        for (size_t i = 0; i < len; i++)
            sl_free(((sl_db_spend_t *)v)[i].name);
        sl_free(v);
        v = NULL;
        len = 0;
    }
    *rows = v;
    *n = len;
    return err;
}

static int lite_key_insert(sl_db_t *db, const sl_key_rec_t *k)
{
    lite_t *q = (lite_t *)db;
    sqlite3_stmt *st = q->st[ST_KEY_ADD];
    int rc = bind_text(st, 1, k->id);
    rc |= bind_text(st, 2, k->name);
    rc |= sqlite3_bind_blob(st, 3, k->hash, sizeof k->hash, SQLITE_STATIC);
    rc |= sqlite3_bind_int64(st, 4, k->rpm);
    rc |= sqlite3_bind_int64(st, 5, k->tpm);
    rc |= sqlite3_bind_int64(st, 6, k->budget_tokens);
    rc |= bind_text(st, 7, k->models);
    rc |= sqlite3_bind_int64(st, 8, k->created_at);
    rc |= sqlite3_bind_int64(st, 9, k->expires_at);
    return bound_done(q, ST_KEY_ADD, rc);
}

static int lite_key_revoke(sl_db_t *db, const char *id, bool *found)
{
    lite_t *q = (lite_t *)db;
    int err = bound_done(q, ST_KEY_REVOKE, bind_text(q->st[ST_KEY_REVOKE], 1, id));
    *found = !err && sqlite3_changes(q->db) == 1;
    return err;
}

static sqlite3 *lite_sqlite(sl_db_t *db)
{
    return ((lite_t *)db)->db;
}

static const sl_db_ops_t lite_ops = {
    .close = lite_close,
    .begin = lite_begin,
    .commit = lite_commit,
    .rollback = lite_rollback,
    .in_txn = lite_in_txn,
    .usage_insert = lite_usage_insert,
    .session_append = lite_session_append,
    .session_load = lite_session_load,
    .user_stats = lite_user_stats,
    .usage_query = lite_usage_query,
    .keys_read = lite_keys_read,
    .spend_read = lite_spend_read,
    .key_insert = lite_key_insert,
    .key_revoke = lite_key_revoke,
    .sqlite = lite_sqlite,
};

int sl_db_open_sqlite(const char *path, sl_db_t **out, sl_buf_t *err)
{
    lite_t *q = sl_calloc(1, sizeof *q);
    q->base.ops = &lite_ops;
    /* NOMUTEX: one thread uses the connection at a time (the store thread once started);
     * sqlite's lock would be pure overhead. */
    int rc = sqlite3_open_v2(
        path, &q->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_busy_timeout(q->db, BUSY_TIMEOUT_MS);
    if (rc == SQLITE_OK)
        rc = create_schema(q);
    for (int i = 0; i < ST_COUNT && rc == SQLITE_OK; i++)
        rc =
            sqlite3_prepare_v3(q->db, stmts[i].sql, -1, SQLITE_PREPARE_PERSISTENT, &q->st[i], NULL);
    if (rc != SQLITE_OK) {
        sl_buf_printf(err, "sqlite %s: %s", path,
                      q->db ? sqlite3_errmsg(q->db) : sqlite3_errstr(rc));
        lite_close(&q->base);
        return SL_EUNAVAIL;
    }
    *out = &q->base;
    return 0;
}
