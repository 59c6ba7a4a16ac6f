/* The store's database interface (internal to src/store/): one table of operations with two
 * implementations, SQLite (sqlite.c) and PostgreSQL (pg.c), so the store thread and the
 * `sluice keys` command never care which database holds the tables. A connection is used by
 * one thread at a time (the store thread once the store has started). Failures return
 * SL_EUNAVAIL (database busy or unreachable: try later) or SL_EINTERNAL, and leave the
 * database's own words in db->errmsg. */
#ifndef SL_STORE_DB_H
#define SL_STORE_DB_H
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/err.h"
#include "store/db_sql.h"
#include "store/keys.h"
#include "store/store.h"

/* Turns kept per session: older ones are deleted as new ones arrive. */
#define SL_DB_MAX_TURNS 200

typedef struct sl_db sl_db_t;

/* A key name's running token sum (what usage rows with that key_name add up to). */
typedef struct sl_db_spend {
    char *name; /* owned */
    int64_t tokens;
} sl_db_spend_t;

typedef struct sl_db_ops {
    /* Closes the connection (sqlite: a WAL checkpoint). */
    void (*close)(sl_db_t *db);
    /* One write transaction per batch; begin waits for the write lock up front, so a busy
     * database is met here rather than halfway through the batch. */
    int (*begin)(sl_db_t *db);
    int (*commit)(sl_db_t *db);
    void (*rollback)(sl_db_t *db);
    /* False once the batch's transaction is gone: sqlite rolled it back on its own (disk
     * full, I/O error), or a PostgreSQL statement failed, which dooms the transaction (it is
     * rolled back here so the next begin works). */
    bool (*in_txn)(sl_db_t *db);
    /* Inserts every field of r (ttft_ms < 0 as NULL so averages skip it) and adds its tokens to
     * the spend of r->key_name. */
    int (*usage_insert)(sl_db_t *db, const sl_usage_record_t *r);
    /* Creates the session for owner if new, then appends both messages as one turn, all or
     * nothing. A session owned by someone else is left untouched (returns 0). */
    int (*session_append)(sl_db_t *db, const char *id, const char *owner, const char *user_msg,
                          const char *assistant_msg, int64_t ts);
    /* Sets *messages to a new array of the last max_turns turns (0: every kept turn), oldest
     * first, as {role, content}; empty with *found false when the session is missing or not
     * owner's (owners compare NULL-aware). *messages is always set; the caller owns it. */
    int (*session_load)(sl_db_t *db, const char *id, const char *owner, unsigned max_turns,
                        bool *found, json_t **messages);
    /* Per-user totals: of user_id alone, or of every user (most recent first, at most
     * SL_DB_ROWS_LIMIT). Rows without a user id are not counted; with key_name, only rows of
     * that key are. */
    int (*user_stats)(sl_db_t *db, const char *user_id, const char *key_name,
                      sl_user_stats_t **rows, size_t *n);
    /* The sums sl_store_usage_query describes; q->group_by has passed sl_db_group. */
    int (*usage_query)(sl_db_t *db, const sl_usage_query_t *q, sl_usage_sum_t **rows, size_t *n);
    /* Every key, newest first, with its spent tokens. */
    int (*keys_read)(sl_db_t *db, sl_key_rec_t **rows, size_t *n);
    /* The spent tokens of every key name seen in usage (issued and config keys alike), in no
     * particular order. */
    int (*spend_read)(sl_db_t *db, sl_db_spend_t **rows, size_t *n);
    int (*key_insert)(sl_db_t *db, const sl_key_rec_t *k);
    /* *found is false when no key has that id. */
    int (*key_revoke)(sl_db_t *db, const char *id, bool *found);
    /* The SQLite connection, for the rag corpus (store/corpus.c: FTS5); NULL in backends that
     * are not SQLite, whose store opens store.sqlite beside them for the corpus. */
    struct sqlite3 *(*sqlite)(sl_db_t *db);
} sl_db_ops_t;

/* Each backend's connection struct starts with this. Rows handed out through ops (*rows) are
 * sl_malloc'd (NULL when *n is 0) and owned by the caller. */
struct sl_db {
    const sl_db_ops_t *ops; /* the backend's table */
    char errmsg[256];       /* the last failure as "what: the database's words" */
};

/* Opens PostgreSQL when postgres_url is set (any libpq conninfo), else the SQLite file; either
 * way the schema is created if missing. On failure err says why (never the URL, which may hold
 * a password). */
SL_MUST_CHECK int sl_db_open(const char *sqlite_path, const char *postgres_url, sl_db_t **out,
                             sl_buf_t *err);
/* Backend constructors behind sl_db_open. */
SL_MUST_CHECK int sl_db_open_sqlite(const char *path, sl_db_t **out, sl_buf_t *err);
SL_MUST_CHECK int sl_db_open_pg(const char *url, sl_db_t **out, sl_buf_t *err);
/* NULL is a no-op. */
void sl_db_close(sl_db_t *db);
/* Whether a store setting names PostgreSQL (postgres:// or postgresql://) rather than a file. */
bool sl_db_is_url(const char *s);

#endif
