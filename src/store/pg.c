/* The PostgreSQL backend of the store (db.h, DESIGN §8): the same tables as SQLite on a server
 * that several sluice instances share. This file owns the connection: the schema, the prepared
 * statements (prepared once per connection, and again after a lost one is re-established) and
 * the batch transactions. Calls block, which is fine: only the store thread (or the keys
 * command) waits on them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/log.h"
#include "core/tokens.h"
#include "store/db_sql.h"
#include "store/pg.h"

/* A lost server is tried again at most this often; between tries calls fail at once, so the
 * store thread keeps draining its queue (counting drops) instead of hanging on connects. */
#define RECONNECT_MS 1000

/* One transaction, under a lock every sluice takes for it: several instances starting at once
 * would otherwise race inside CREATE TABLE IF NOT EXISTS (a known PostgreSQL failure). */
static const char schema[] =
    "SET client_min_messages = warning;"
    "BEGIN;"
    "SELECT pg_advisory_xact_lock(7308604759212651116);" /* "sluice" as a number */
    "CREATE TABLE IF NOT EXISTS sessions(id TEXT PRIMARY KEY, owner TEXT,"
    " created BIGINT NOT NULL, updated BIGINT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS session_turns(session_id TEXT NOT NULL, seq BIGINT NOT NULL,"
    " role TEXT NOT NULL, content TEXT NOT NULL, ts BIGINT NOT NULL,"
    " PRIMARY KEY(session_id, seq));"
    "CREATE TABLE IF NOT EXISTS usage(id BIGSERIAL PRIMARY KEY, ts BIGINT NOT NULL,"
    " request_id TEXT NOT NULL, key_name TEXT, user_id TEXT, dialect TEXT, model TEXT,"
    " provider TEXT, status INTEGER NOT NULL, prompt_tokens BIGINT NOT NULL,"
    " completion_tokens BIGINT NOT NULL, usage_estimated BOOLEAN NOT NULL,"
    " ttft_ms DOUBLE PRECISION, total_ms DOUBLE PRECISION NOT NULL, bytes_out BIGINT NOT NULL,"
    " cancelled BOOLEAN NOT NULL, tags TEXT);"
    "CREATE INDEX IF NOT EXISTS usage_by_ts ON usage(ts);"
    "CREATE INDEX IF NOT EXISTS usage_by_user ON usage(user_id, ts);"
    "CREATE INDEX IF NOT EXISTS usage_by_key ON usage(key_name, ts);"
    "CREATE TABLE IF NOT EXISTS keys(id TEXT PRIMARY KEY, seq BIGSERIAL, name TEXT NOT NULL,"
    " hash BYTEA NOT NULL UNIQUE, rpm BIGINT NOT NULL, tpm BIGINT NOT NULL,"
    " budget_tokens BIGINT NOT NULL, models TEXT NOT NULL, created_at BIGINT NOT NULL,"
    " expires_at BIGINT NOT NULL, revoked BOOLEAN NOT NULL DEFAULT false);"
    /* Running token sums per key name (see sqlite.c): the snapshot reads O(keys) rows. */
    "CREATE TABLE IF NOT EXISTS key_spend(key_name TEXT PRIMARY KEY, tokens BIGINT NOT NULL);"
    "COMMIT;";

void sl_pg_text(sl_pg_params_t *ps, const char *s)
{
    SL_ASSERT(ps->n < SL_PG_MAX_PARAMS);
    ps->v[ps->n++] = s;
}

void sl_pg_int(sl_pg_params_t *ps, int64_t x)
{
    SL_ASSERT(ps->n < SL_PG_MAX_PARAMS);
    snprintf(ps->num[ps->n], sizeof ps->num[0], "%lld", (long long)x);
    ps->v[ps->n] = ps->num[ps->n];
    ps->n++;
}

void sl_pg_real(sl_pg_params_t *ps, double x)
{
    SL_ASSERT(ps->n < SL_PG_MAX_PARAMS);
    snprintf(ps->num[ps->n], sizeof ps->num[0], "%.17g", x);
    ps->v[ps->n] = ps->num[ps->n];
    ps->n++;
}

/* Records why `what` failed. Unreachable server, deadlock, serialization failure, lack of
 * resources and shutdown are worth trying again later; anything else is ours to fix. */
int sl_pg_fail(sl_pg_t *p, const char *what, const PGresult *r)
{
    const char *msg = r ? PQresultErrorMessage(r) : "";
    if (!*msg)
        msg = PQerrorMessage(p->conn);
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    snprintf(p->base.errmsg, sizeof p->base.errmsg, "%s: %.*s (%s)", what, (int)strcspn(msg, "\n"),
             msg, state ? state : "no sqlstate");
    if (PQstatus(p->conn) != CONNECTION_OK || !state)
        return SL_EUNAVAIL;
    static const char *const transient[] = {"08", "40", "53", "57"};
    for (size_t i = 0; i < sizeof transient / sizeof transient[0]; i++)
        if (strncmp(state, transient[i], 2) == 0)
            return SL_EUNAVAIL;
    return SL_EINTERNAL;
}

/* Runs prepared statement id. Text that is not valid UTF-8 is repaired first: PostgreSQL
 * refuses it, and an answer cut off by a cancel can end inside a character. With res, the
 * result (rows) is handed over and the caller PQclears it. */
int sl_pg_run(sl_pg_t *p, int id, const sl_pg_params_t *ps, PGresult **res)
{
    sl_buf_t fix[SL_PG_MAX_PARAMS];
    const char *v[SL_PG_MAX_PARAMS];
    int n = ps ? ps->n : 0;
    for (int i = 0; i < n; i++) {
        sl_buf_init(&fix[i]);
        v[i] = sl_db_utf8(ps->v[i], &fix[i]);
    }
    char name[16];
    snprintf(name, sizeof name, "sl%d", id);
    PGresult *r = PQexecPrepared(p->conn, name, n, v, NULL, NULL, 0);
    for (int i = 0; i < n; i++)
        sl_buf_dispose(&fix[i]);
    ExecStatusType st = PQresultStatus(r);
    int err =
        st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK ? 0 : sl_pg_fail(p, p->stmts[id].what, r);
    if (res && !err)
        *res = r;
    else
        PQclear(r);
    return err;
}

/* Runs a statement that takes no parameters and returns no rows. */
int sl_pg_plain(sl_pg_t *p, const char *sql)
{
    PGresult *r = PQexec(p->conn, sql);
    int err = PQresultStatus(r) == PGRES_COMMAND_OK ? 0 : sl_pg_fail(p, sql, r);
    PQclear(r);
    return err;
}

int64_t sl_pg_col_int(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? 0 : strtoll(PQgetvalue(r, row, col), NULL, 10);
}

void sl_pg_col_copy(char *dst, size_t cap, const PGresult *r, int row, int col)
{
    /* Longer values are cut; they are display keys, not looked up again. */
    snprintf(dst, cap, "%s", PQgetvalue(r, row, col));
}

/* ---- connection ---- */

static void on_notice(void *ud, const char *msg)
{
    sl_log(SL_LOG_DEBUG, "store: postgres: %.*s", (int)strcspn(msg, "\n"), msg);
}

static int prepare_all(sl_pg_t *p)
{
    /* A try that failed halfway left some behind, and names cannot be prepared twice. */
    int err = sl_pg_plain(p, "DEALLOCATE ALL");
    for (int i = 0; i < SL_PG_COUNT && !err; i++) {
        char name[16];
        snprintf(name, sizeof name, "sl%d", i);
        PGresult *r = PQprepare(p->conn, name, p->stmts[i].sql, 0, NULL);
        err = PQresultStatus(r) == PGRES_COMMAND_OK ? 0 : sl_pg_fail(p, p->stmts[i].what, r);
        PQclear(r);
    }
    p->prepared = !err;
    return err;
}

/* Makes sure the connection is up before a batch or a read outside one. Never inside a batch:
 * a new connection has no transaction, and the batch's writes must not run outside one. */
int sl_pg_ready(sl_pg_t *p)
{
    if (PQstatus(p->conn) == CONNECTION_OK && p->prepared)
        return 0;
    double now = sl_now_ms();
    if (p->in_batch || now < p->next_try_ms) {
        snprintf(p->base.errmsg, sizeof p->base.errmsg, "postgres: connection lost");
        return SL_EUNAVAIL;
    }
    p->next_try_ms = now + RECONNECT_MS;
    if (PQstatus(p->conn) != CONNECTION_OK) {
        p->prepared = false;
        PQreset(p->conn);
        if (PQstatus(p->conn) != CONNECTION_OK)
            return sl_pg_fail(p, "postgres reconnect", NULL);
    }
    int err = prepare_all(p);
    if (!err)
        sl_log(SL_LOG_INFO, "store: postgres connection re-established");
    return err;
}

/* ---- transactions ---- */

static void spend_clear(sl_pg_t *p)
{
    for (size_t i = 0; i < p->nspend; i++)
        sl_free(p->spend[i].key);
    p->nspend = 0;
}

static void end_batch(sl_pg_t *p)
{
    p->in_batch = false;
    spend_clear(p);
}

static int by_key(const void *a, const void *b)
{
    return strcmp(((const sl_pg_spend_t *)a)->key, ((const sl_pg_spend_t *)b)->key);
}

/* Applies the batch's spend, one upsert per key in name order: every instance takes the row
 * locks in the same order, so two batches never deadlock over them. */
static int spend_flush(sl_pg_t *p)
{
    if (p->nspend > 1)
        qsort(p->spend, p->nspend, sizeof *p->spend, by_key);
    for (size_t i = 0; i < p->nspend;) {
        int64_t tokens = 0;
        size_t j = i;
        for (; j < p->nspend && strcmp(p->spend[j].key, p->spend[i].key) == 0; j++)
            tokens = sl_tokens_add(tokens, p->spend[j].tokens);
        sl_pg_params_t ps = {0};
        sl_pg_text(&ps, p->spend[i].key);
        sl_pg_int(&ps, tokens);
        int err = sl_pg_run(p, SL_PG_SPEND, &ps, NULL);
        if (err)
            return err;
        i = j;
    }
    return 0;
}

void sl_pg_close(sl_db_t *db)
{
    sl_pg_t *p = (sl_pg_t *)db;
    spend_clear(p);
    sl_free(p->spend);
    PQfinish(p->conn);
    sl_free(p);
}

int sl_pg_begin(sl_db_t *db)
{
    sl_pg_t *p = (sl_pg_t *)db;
    int err = sl_pg_ready(p);
    if (!err)
        err = sl_pg_plain(p, "BEGIN");
    p->in_batch = !err;
    return err;
}

int sl_pg_commit(sl_db_t *db)
{
    sl_pg_t *p = (sl_pg_t *)db;
    int err = spend_flush(p);
    if (err)
        return err; /* the caller rolls back, which ends the batch */
    PGresult *r = PQexec(p->conn, "COMMIT");
    /* COMMIT of a doomed transaction reports success with the tag ROLLBACK. */
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK && strcmp(PQcmdStatus(r), "COMMIT") == 0;
    if (!ok)
        err = sl_pg_fail(p, "commit", r);
    PQclear(r);
    end_batch(p);
    return err;
}

void sl_pg_rollback(sl_db_t *db)
{
    sl_pg_t *p = (sl_pg_t *)db;
    if (PQstatus(p->conn) == CONNECTION_OK)
        sl_pg_undo(p, "ROLLBACK");
    end_batch(p);
}

bool sl_pg_in_txn(sl_db_t *db)
{
    sl_pg_t *p = (sl_pg_t *)db;
    PGTransactionStatusType t = PQtransactionStatus(p->conn);
    if (t == PQTRANS_INTRANS)
        return true;
    /* A failed statement dooms the whole transaction: nothing more runs in it. */
    if (t == PQTRANS_INERROR)
        sl_pg_undo(p, "ROLLBACK");
    end_batch(p);
    return false;
}

void sl_pg_undo(sl_pg_t *p, const char *sql)
{
    char first[sizeof p->base.errmsg];
    memcpy(first, p->base.errmsg, sizeof first);
    if (sl_pg_plain(p, sql) != 0)
        sl_log(SL_LOG_DEBUG, "store: %s", p->base.errmsg);
    memcpy(p->base.errmsg, first, sizeof first);
}

void sl_pg_spend_add(sl_pg_t *p, const char *key_name, int64_t tokens)
{
    if (p->nspend == p->spend_cap) {
        p->spend_cap = p->spend_cap ? 2 * p->spend_cap : 16;
        p->spend = sl_realloc(p->spend, p->spend_cap * sizeof *p->spend);
    }
    p->spend[p->nspend++] = (sl_pg_spend_t){sl_strdup(key_name), tokens};
}

int sl_pg_open(const char *url, const sl_db_ops_t *ops, const sl_pg_stmt_t *stmts, sl_db_t **out,
               sl_buf_t *err)
{
    sl_pg_t *p = sl_calloc(1, sizeof *p);
    p->base.ops = ops;
    p->stmts = stmts;
    /* connect_timeout comes before the URL so the URL's own wins; client_encoding comes after
     * so ours does: every string sent has been made valid UTF-8. */
    const char *const keys[] = {"connect_timeout", "fallback_application_name", "dbname",
                                "client_encoding", NULL};
    const char *const vals[] = {"5", "sluice", url, "UTF8", NULL};
    p->conn = PQconnectdbParams(keys, vals, 1);
    int rc = PQstatus(p->conn) == CONNECTION_OK ? 0 : sl_pg_fail(p, "postgres connect", NULL);
    if (!rc) {
        /* "already exists, skipping" and the like are not worth stderr. */
        PQsetNoticeProcessor(p->conn, on_notice, NULL);
        PGresult *r = PQexec(p->conn, schema);
        rc = PQresultStatus(r) == PGRES_COMMAND_OK ? 0 : sl_pg_fail(p, "postgres schema", r);
        PQclear(r);
    }
    if (!rc)
        rc = prepare_all(p);
    if (rc) {
        sl_buf_puts(err, p->base.errmsg);
        sl_pg_close(&p->base);
        return rc;
    }
    *out = &p->base;
    return 0;
}
