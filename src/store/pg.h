/* The PostgreSQL backend's insides (internal to src/store/): pg.c owns the connection, the
 * prepared statements and the transactions; pg_ops.c holds the SQL and the queries behind each
 * operation of db.h. */
#ifndef SL_STORE_PG_H
#define SL_STORE_PG_H
#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/db.h"

#define SL_PG_MAX_PARAMS 16

/* The prepared statements, in the order of pg_ops.c's table. */
enum {
    SL_PG_USAGE,
    SL_PG_SPEND,
    SL_PG_SESS_CREATE,
    SL_PG_SESS_TOUCH,
    SL_PG_LAST_SEQ,
    SL_PG_TURNS_ADD,
    SL_PG_TURN_TRIM,
    SL_PG_SESS_OWNED,
    SL_PG_TURNS,
    SL_PG_STATS_ONE,
    SL_PG_STATS_ALL,
    SL_PG_KEYS,
    SL_PG_KEY_ADD,
    SL_PG_KEY_REVOKE,
    SL_PG_SPEND_READ,
    SL_PG_COUNT
};

typedef struct sl_pg_stmt {
    const char *what; /* names the statement in error messages */
    const char *sql;
} sl_pg_stmt_t;

/* Tokens a batch adds to one key, applied at commit. */
typedef struct sl_pg_spend {
    char *key; /* owned */
    int64_t tokens;
} sl_pg_spend_t;

typedef struct sl_pg {
    sl_db_t base;
    PGconn *conn;              /* owned */
    const sl_pg_stmt_t *stmts; /* borrowed (static): SL_PG_COUNT statements, pg_ops.c's */
    bool prepared;             /* the statements exist on this connection (a reset loses them) */
    bool in_batch;             /* begin succeeded and no commit or rollback yet */
    double next_try_ms;        /* when a lost connection may be tried again */
    sl_pg_spend_t *spend;      /* owned: this transaction's tokens per key, in arrival order */
    size_t nspend, spend_cap;
} sl_pg_t;

/* Connects, creates the schema if missing and prepares stmts; the backend's constructor
 * (sl_db_open_pg, in pg_ops.c, which owns the SQL) hands in its operations and statements, so
 * the connection code never calls up into the operations. */
SL_MUST_CHECK int sl_pg_open(const char *url, const sl_db_ops_t *ops, const sl_pg_stmt_t *stmts,
                             sl_db_t **out, sl_buf_t *err);

/* Parameters in text form; NULL is SQL NULL. Numbers are formatted into num[]. */
typedef struct sl_pg_params {
    const char *v[SL_PG_MAX_PARAMS];
    char num[SL_PG_MAX_PARAMS][32];
    int n;
} sl_pg_params_t;

/* Parameter builders: text (NULL is SQL NULL) and numbers. */
void sl_pg_text(sl_pg_params_t *ps, const char *s);
void sl_pg_int(sl_pg_params_t *ps, int64_t x);
void sl_pg_real(sl_pg_params_t *ps, double x);

/* Records why `what` failed in p->base.errmsg (r: its result, or NULL for a connection
 * failure) and returns SL_EUNAVAIL when trying later may help, else SL_EINTERNAL. */
SL_MUST_CHECK int sl_pg_fail(sl_pg_t *p, const char *what, const PGresult *r);
/* Makes sure the connection is up (reconnecting and preparing again if it was lost, at most
 * once a second, never inside a batch). */
SL_MUST_CHECK int sl_pg_ready(sl_pg_t *p);
/* Runs prepared statement id with ps (NULL: none). Text that is not valid UTF-8 is repaired
 * first. With res, the result (rows) is handed over and the caller PQclears it. */
SL_MUST_CHECK int sl_pg_run(sl_pg_t *p, int id, const sl_pg_params_t *ps, PGresult **res);
/* Runs SQL that takes no parameters and returns no rows. */
SL_MUST_CHECK int sl_pg_plain(sl_pg_t *p, const char *sql);
/* Runs SQL that undoes after a failure (ROLLBACK, ROLLBACK TO): the first failure is the one
 * worth reporting, so its message is kept whatever this one does. */
void sl_pg_undo(sl_pg_t *p, const char *sql);
/* Column values: NULL reads as 0; text longer than cap is cut. */
int64_t sl_pg_col_int(const PGresult *r, int row, int col);
void sl_pg_col_copy(char *dst, size_t cap, const PGresult *r, int row, int col);
/* Adds a usage row's tokens to its key's spend, applied when the batch commits. */
void sl_pg_spend_add(sl_pg_t *p, const char *key_name, int64_t tokens);

/* The transaction operations of the backend's table (pg_ops.c). */
void sl_pg_close(sl_db_t *db);
int sl_pg_begin(sl_db_t *db);
int sl_pg_commit(sl_db_t *db);
void sl_pg_rollback(sl_db_t *db);
bool sl_pg_in_txn(sl_db_t *db);

#endif
