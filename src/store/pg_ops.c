/* The PostgreSQL queries behind each store operation (db.h): usage rows and sums, sessions,
 * and keys, as statements prepared on every connection. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/tokens.h"
#include "store/db_sql.h"
#include "store/pg.h"

static const sl_pg_stmt_t stmts[SL_PG_COUNT] = {
    [SL_PG_USAGE] =
        {"usage insert",
         "INSERT INTO usage(ts, request_id, key_name, user_id, dialect, model, provider,"
         " status, prompt_tokens, completion_tokens, usage_estimated, ttft_ms, total_ms,"
         " bytes_out, cancelled, tags)"
         " VALUES($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16)"},
    [SL_PG_SPEND] = {"key spend", "INSERT INTO key_spend(key_name, tokens) VALUES($1, $2)"
                                  " ON CONFLICT(key_name) DO UPDATE"
                                  " SET tokens = key_spend.tokens + EXCLUDED.tokens"},
    [SL_PG_SESS_CREATE] = {"session create", "INSERT INTO sessions(id, owner, created, updated)"
                                             " VALUES($1, $2, $3, $3) ON CONFLICT(id) DO NOTHING"},
    /* Changes one row exactly when the session is owner's. Its row lock, held to the commit,
     * also makes concurrent appends from several instances take their seqs one after the
     * other. */
    [SL_PG_SESS_TOUCH] = {"session touch", "UPDATE sessions SET updated = $3"
                                           " WHERE id = $1 AND owner IS NOT DISTINCT FROM $2"},
    [SL_PG_LAST_SEQ] = {"turn seq", "SELECT max(seq) FROM session_turns WHERE session_id = $1"},
    [SL_PG_TURNS_ADD] = {"turn insert",
                         "INSERT INTO session_turns(session_id, seq, role, content, ts)"
                         " VALUES($1, $2, 'user', $4, $6), ($1, $3, 'assistant', $5, $6)"},
    [SL_PG_TURN_TRIM] = {"turn trim",
                         "DELETE FROM session_turns WHERE session_id = $1 AND seq < $2"},
    [SL_PG_SESS_OWNED] = {"session owner", "SELECT 1 FROM sessions"
                                           " WHERE id = $1 AND owner IS NOT DISTINCT FROM $2"},
    [SL_PG_TURNS] = {"session load", "SELECT role, content FROM (SELECT seq, role, content"
                                     " FROM session_turns WHERE session_id = $1"
                                     " ORDER BY seq DESC LIMIT $2) t ORDER BY seq"},
    [SL_PG_STATS_ONE] = {"user stats",
                         "SELECT user_id, count(*), sum(prompt_tokens), sum(completion_tokens),"
                         " max(ts) FROM usage WHERE user_id = $1"
                         " AND ($2::text IS NULL OR key_name = $2::text) GROUP BY user_id"},
    [SL_PG_STATS_ALL] = {"user stats",
                         "SELECT user_id, count(*), sum(prompt_tokens), sum(completion_tokens),"
                         " max(ts) FROM usage WHERE user_id IS NOT NULL"
                         " AND ($2::text IS NULL OR key_name = $2::text) GROUP BY user_id"
                         " ORDER BY max(ts) DESC, user_id LIMIT $1"},
    [SL_PG_KEYS] = {"keys read",
                    "SELECT k.id, k.name, encode(k.hash, 'hex'), k.rpm, k.tpm, k.budget_tokens,"
                    " k.models, k.created_at, k.expires_at, k.revoked, coalesce(s.tokens, 0)"
                    " FROM keys k LEFT JOIN key_spend s ON s.key_name = k.name"
                    " ORDER BY k.created_at DESC, k.seq DESC"},
    [SL_PG_KEY_ADD] =
        {"key insert",
         "INSERT INTO keys(id, name, hash, rpm, tpm, budget_tokens, models, created_at,"
         " expires_at) VALUES($1, $2, decode($3, 'hex'), $4, $5, $6, $7, $8, $9)"},
    [SL_PG_KEY_REVOKE] = {"key revoke", "UPDATE keys SET revoked = true WHERE id = $1"},
    [SL_PG_SPEND_READ] = {"spend read", "SELECT key_name, tokens FROM key_spend"},
};

/* ---- usage ---- */

static int pg_usage_insert(sl_db_t *db, const sl_usage_record_t *r)
{
    sl_pg_t *p = (sl_pg_t *)db;
    sl_pg_params_t ps = {0};
    sl_pg_int(&ps, r->ts);
    sl_pg_text(&ps, r->request_id);
    sl_pg_text(&ps, r->key_name);
    sl_pg_text(&ps, r->user_id);
    sl_pg_text(&ps, r->dialect);
    sl_pg_text(&ps, r->model);
    sl_pg_text(&ps, r->provider);
    sl_pg_int(&ps, r->status);
    sl_pg_int(&ps, r->prompt_tokens);
    sl_pg_int(&ps, r->completion_tokens);
    sl_pg_text(&ps, r->usage_estimated ? "t" : "f");
    if (r->ttft_ms < 0)
        sl_pg_text(&ps, NULL);
    else
        sl_pg_real(&ps, r->ttft_ms);
    sl_pg_real(&ps, r->total_ms);
    sl_pg_int(&ps, r->bytes_out);
    sl_pg_text(&ps, r->cancelled ? "t" : "f");
    sl_pg_text(&ps, r->tags);
    int err = sl_pg_run(p, SL_PG_USAGE, &ps, NULL);
    int64_t tokens = sl_tokens_add(r->prompt_tokens, r->completion_tokens);
    if (err || !r->key_name || tokens == 0)
        return err;
    sl_pg_spend_add(p, r->key_name, tokens);
    return 0;
}

static int pg_user_stats(sl_db_t *db, const char *user_id, const char *key_name,
                         sl_user_stats_t **rows, size_t *n)
{
    sl_pg_t *p = (sl_pg_t *)db;
    *rows = NULL;
    *n = 0;
    sl_pg_params_t ps = {0};
    if (user_id)
        sl_pg_text(&ps, user_id);
    else
        sl_pg_int(&ps, SL_DB_ROWS_LIMIT);
    sl_pg_text(&ps, key_name); /* NULL: SQL NULL, every key */
    PGresult *r = NULL;
    int err = sl_pg_ready(p);
    if (!err)
        err = sl_pg_run(p, user_id ? SL_PG_STATS_ONE : SL_PG_STATS_ALL, &ps, &r);
    if (err)
        return err;
    int nr = PQntuples(r);
    sl_user_stats_t *v = nr ? sl_calloc((size_t)nr, sizeof *v) : NULL;
    for (int i = 0; i < nr; i++) {
        sl_pg_col_copy(v[i].user_id, sizeof v[i].user_id, r, i, 0);
        v[i].requests = sl_pg_col_int(r, i, 1);
        v[i].prompt_tokens = sl_pg_col_int(r, i, 2);
        v[i].completion_tokens = sl_pg_col_int(r, i, 3);
        v[i].last_ts = sl_pg_col_int(r, i, 4);
    }
    PQclear(r);
    *rows = v;
    *n = (size_t)nr;
    return 0;
}

static const sl_db_sql_t usage_spelling = {
    .group_expr =
        {
            [SL_DB_GROUP_KEY] = "coalesce(key_name, '')",
            [SL_DB_GROUP_USER] = "coalesce(user_id, '')",
            [SL_DB_GROUP_MODEL] = "coalesce(model, '')",
            [SL_DB_GROUP_DIALECT] = "coalesce(dialect, '')",
            [SL_DB_GROUP_PROVIDER] = "coalesce(provider, '')",
            [SL_DB_GROUP_DAY] = "to_char(to_timestamp(ts) AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
        },
    .sums = "count(*), coalesce(sum(prompt_tokens), 0), coalesce(sum(completion_tokens), 0),"
            " count(*) FILTER (WHERE status >= 400), count(*) FILTER (WHERE cancelled)",
    .numbered = true,
};

/* The statement's text depends on which filters are set; these are rare admin requests, so it
 * is sent with its parameters each time rather than prepared. */
static int usage_exec(sl_pg_t *p, const sl_usage_query_t *q, PGresult **res)
{
    sl_buf_t sql;
    sl_buf_init(&sql);
    sl_db_param_t dp[SL_DB_USAGE_PARAMS];
    size_t np = 0;
    sl_db_usage_sql(q, &usage_spelling, &sql, dp, &np);
    sl_pg_params_t ps = {0};
    sl_buf_t fix[SL_DB_USAGE_PARAMS];
    for (size_t i = 0; i < np; i++) {
        sl_buf_init(&fix[i]);
        if (dp[i].text)
            sl_pg_text(&ps, sl_db_utf8(dp[i].text, &fix[i]));
        else
            sl_pg_int(&ps, dp[i].num);
    }
    PGresult *r = PQexecParams(p->conn, sql.data, ps.n, NULL, ps.v, NULL, NULL, 0);
    for (size_t i = 0; i < np; i++)
        sl_buf_dispose(&fix[i]);
    sl_buf_dispose(&sql);
    if (PQresultStatus(r) == PGRES_TUPLES_OK) {
        *res = r;
        return 0;
    }
    int err = sl_pg_fail(p, "usage query", r);
    PQclear(r);
    return err;
}

static int pg_usage_query(sl_db_t *db, const sl_usage_query_t *q, sl_usage_sum_t **rows, size_t *n)
{
    sl_pg_t *p = (sl_pg_t *)db;
    *rows = NULL;
    *n = 0;
    PGresult *r = NULL;
    int err = sl_pg_ready(p);
    if (!err)
        err = usage_exec(p, q, &r);
    if (err)
        return err;
    int nr = PQntuples(r);
    sl_usage_sum_t *v = nr ? sl_calloc((size_t)nr, sizeof *v) : NULL;
    for (int i = 0; i < nr; i++) {
        int64_t sums[5];
        for (int c = 0; c < 5; c++)
            sums[c] = sl_pg_col_int(r, i, c + 1);
        sl_db_usage_row(&v[i], PQgetvalue(r, i, 0), sums);
    }
    PQclear(r);
    *rows = v;
    *n = (size_t)nr;
    return 0;
}

/* ---- sessions ---- */

/* The body of an append, inside its savepoint (see sqlite.c: a turn is two consecutive
 * seqs). */
static int append_turn(sl_pg_t *p, const char *sid, const char *owner, const char *user_msg,
                       const char *assistant_msg, int64_t ts)
{
    sl_pg_params_t ps = {0};
    sl_pg_text(&ps, sid);
    sl_pg_text(&ps, owner);
    sl_pg_int(&ps, ts);
    PGresult *r = NULL;
    int err = sl_pg_run(p, SL_PG_SESS_CREATE, &ps, NULL);
    if (!err)
        err = sl_pg_run(p, SL_PG_SESS_TOUCH, &ps, &r);
    bool mine = !err && strcmp(PQcmdTuples(r), "1") == 0;
    PQclear(r);
    r = NULL;
    if (!mine)
        return err; /* someone else's session: not ours to write */
    sl_pg_params_t one = {0};
    sl_pg_text(&one, sid);
    err = sl_pg_run(p, SL_PG_LAST_SEQ, &one, &r);
    if (err)
        return err;
    int64_t seq = PQgetisnull(r, 0, 0) ? 0 : sl_pg_col_int(r, 0, 0) + 1;
    PQclear(r);
    sl_pg_params_t add = {0};
    sl_pg_text(&add, sid);
    sl_pg_int(&add, seq);
    sl_pg_int(&add, seq + 1);
    sl_pg_text(&add, user_msg ? user_msg : "");
    sl_pg_text(&add, assistant_msg ? assistant_msg : "");
    sl_pg_int(&add, ts);
    err = sl_pg_run(p, SL_PG_TURNS_ADD, &add, NULL);
    if (err)
        return err;
    sl_pg_params_t trim = {0};
    sl_pg_text(&trim, sid);
    sl_pg_int(&trim, seq + 2 - 2 * (int64_t)SL_DB_MAX_TURNS);
    return sl_pg_run(p, SL_PG_TURN_TRIM, &trim, NULL);
}

static int pg_session_append(sl_db_t *db, const char *id, const char *owner, const char *user_msg,
                             const char *assistant_msg, int64_t ts)
{
    sl_pg_t *p = (sl_pg_t *)db;
    /* The savepoint keeps the turn all or nothing, and keeps the batch alive when it fails
     * (a deadlock with another instance appending to the same sessions, say): without it, one
     * failed statement would doom the whole transaction. */
    int err = sl_pg_plain(p, "SAVEPOINT turn");
    if (err)
        return err;
    err = append_turn(p, id, owner, user_msg, assistant_msg, ts);
    if (err)
        sl_pg_undo(p, "ROLLBACK TO SAVEPOINT turn"); /* in_txn tells if this failed */
    int rel = sl_pg_plain(p, "RELEASE SAVEPOINT turn");
    return err ? err : rel;
}

/* Appends each row of r to arr as {role, content}. */
static int read_turns(sl_pg_t *p, const PGresult *r, json_t *arr)
{
    for (int i = 0; i < PQntuples(r); i++) {
        json_t *role = sl_db_json_text(PQgetvalue(r, i, 0), (size_t)PQgetlength(r, i, 0));
        json_t *text = sl_db_json_text(PQgetvalue(r, i, 1), (size_t)PQgetlength(r, i, 1));
        json_t *m = json_pack("{s:o, s:o}", "role", role, "content", text);
        if (!m || json_array_append_new(arr, m) != 0) {
            snprintf(p->base.errmsg, sizeof p->base.errmsg,
                     "session load: cannot build the messages");
            return SL_EINTERNAL;
        }
    }
    return 0;
}

static int pg_session_load(sl_db_t *db, const char *id, const char *owner, unsigned max_turns,
                           bool *found, json_t **messages)
{
    sl_pg_t *p = (sl_pg_t *)db;
    *messages = json_array();
    *found = false;
    sl_pg_params_t ps = {0};
    sl_pg_text(&ps, id);
    sl_pg_text(&ps, owner);
    PGresult *r = NULL;
    int err = sl_pg_ready(p);
    if (!err)
        err = sl_pg_run(p, SL_PG_SESS_OWNED, &ps, &r);
    bool owned = !err && PQntuples(r) == 1;
    PQclear(r);
    r = NULL;
    if (!owned)
        return err;
    unsigned turns = max_turns && max_turns < SL_DB_MAX_TURNS ? max_turns : SL_DB_MAX_TURNS;
    sl_pg_params_t tp = {0};
    sl_pg_text(&tp, id);
    sl_pg_int(&tp, 2 * (int64_t)turns);
    err = sl_pg_run(p, SL_PG_TURNS, &tp, &r);
    if (!err)
        err = read_turns(p, r, *messages);
    PQclear(r);
    *found = !err;
    if (err)
        (void)json_array_clear(*messages); /* cannot fail on an array */
    return err;
}

/* ---- keys ---- */

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

static void read_key(const PGresult *r, int i, sl_key_rec_t *k)
{
    memset(k, 0, sizeof *k);
    sl_pg_col_copy(k->id, sizeof k->id, r, i, 0);
    sl_pg_col_copy(k->name, sizeof k->name, r, i, 1);
    /* Anything but 32 bytes stays all zero, which no secret hashes to. */
    const char *hex = PQgetvalue(r, i, 2);
    if (strlen(hex) == 2 * sizeof k->hash)
        for (size_t b = 0; b < sizeof k->hash; b++) {
            int hi = hex_digit(hex[2 * b]), lo = hex_digit(hex[2 * b + 1]);
            k->hash[b] = hi < 0 || lo < 0 ? 0 : (uint8_t)(hi << 4 | lo);
        }
    k->rpm = sl_pg_col_int(r, i, 3);
    k->tpm = sl_pg_col_int(r, i, 4);
    k->budget_tokens = sl_pg_col_int(r, i, 5);
    sl_pg_col_copy(k->models, sizeof k->models, r, i, 6);
    k->created_at = sl_pg_col_int(r, i, 7);
    k->expires_at = sl_pg_col_int(r, i, 8);
    k->revoked = PQgetvalue(r, i, 9)[0] == 't';
    k->spent_tokens = sl_pg_col_int(r, i, 10);
}

static int pg_keys_read(sl_db_t *db, sl_key_rec_t **rows, size_t *n)
{
    sl_pg_t *p = (sl_pg_t *)db;
    *rows = NULL;
    *n = 0;
    PGresult *r = NULL;
    int err = sl_pg_ready(p);
    if (!err)
        err = sl_pg_run(p, SL_PG_KEYS, NULL, &r);
    if (err)
        return err;
    int nr = PQntuples(r);
    sl_key_rec_t *v = nr ? sl_malloc((size_t)nr * sizeof *v) : NULL;
    for (int i = 0; i < nr; i++)
        read_key(r, i, &v[i]);
    PQclear(r);
    *rows = v;
    *n = (size_t)nr;
    return 0;
}

static int pg_spend_read(sl_db_t *db, sl_db_spend_t **rows, size_t *n)
{
    sl_pg_t *p = (sl_pg_t *)db;
    *rows = NULL;
    *n = 0;
    PGresult *r = NULL;
    int err = sl_pg_ready(p);
    if (!err)
        err = sl_pg_run(p, SL_PG_SPEND_READ, NULL, &r);
    if (err)
        return err;
    int nr = PQntuples(r);
    sl_db_spend_t *v = nr ? sl_malloc((size_t)nr * sizeof *v) : NULL;
    for (int i = 0; i < nr; i++)
        v[i] = (sl_db_spend_t){sl_strdup(PQgetvalue(r, i, 0)), sl_pg_col_int(r, i, 1)};
    PQclear(r);
    *rows = v;
    *n = (size_t)nr;
    return 0;
}

static int pg_key_insert(sl_db_t *db, const sl_key_rec_t *k)
{
    sl_pg_t *p = (sl_pg_t *)db;
    char hex[2 * sizeof k->hash + 1];
    sl_db_hex(k->hash, sizeof k->hash, hex);
    sl_pg_params_t ps = {0};
    sl_pg_text(&ps, k->id);
    sl_pg_text(&ps, k->name);
    sl_pg_text(&ps, hex);
    sl_pg_int(&ps, k->rpm);
    sl_pg_int(&ps, k->tpm);
    sl_pg_int(&ps, k->budget_tokens);
    sl_pg_text(&ps, k->models);
    sl_pg_int(&ps, k->created_at);
    sl_pg_int(&ps, k->expires_at);
    int err = sl_pg_ready(p);
    return err ? err : sl_pg_run(p, SL_PG_KEY_ADD, &ps, NULL);
}

static int pg_key_revoke(sl_db_t *db, const char *id, bool *found)
{
    sl_pg_t *p = (sl_pg_t *)db;
    sl_pg_params_t ps = {0};
    sl_pg_text(&ps, id);
    PGresult *r = NULL;
    int err = sl_pg_ready(p);
    if (!err)
        err = sl_pg_run(p, SL_PG_KEY_REVOKE, &ps, &r);
    *found = !err && strcmp(PQcmdTuples(r), "1") == 0;
    PQclear(r);
    return err;
}

static const sl_db_ops_t pg_ops = {
    .close = sl_pg_close,
    .begin = sl_pg_begin,
    .commit = sl_pg_commit,
    .rollback = sl_pg_rollback,
    .in_txn = sl_pg_in_txn,
    .usage_insert = pg_usage_insert,
    .session_append = pg_session_append,
    .session_load = pg_session_load,
    .user_stats = pg_user_stats,
    .usage_query = pg_usage_query,
    .keys_read = pg_keys_read,
    .spend_read = pg_spend_read,
    .key_insert = pg_key_insert,
    .key_revoke = pg_key_revoke,
};

int sl_db_open_pg(const char *url, sl_db_t **out, sl_buf_t *err)
{
    return sl_pg_open(url, &pg_ops, stmts, out, err);
}
