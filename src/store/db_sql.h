/* The SQL the database backends (sqlite.c, pg.c) share: the usage query in each backend's
 * spelling, and stored text made safe for JSON and for databases that insist on UTF-8. */
#ifndef SL_STORE_DB_SQL_H
#define SL_STORE_DB_SQL_H
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "store/store.h"

/* Rows returned by a stats query over every user, and by a grouped usage query. */
#define SL_DB_ROWS_LIMIT 1000

/* ---- the usage query, spelled by each backend ---- */

typedef enum {
    SL_DB_GROUP_KEY,
    SL_DB_GROUP_USER,
    SL_DB_GROUP_MODEL,
    SL_DB_GROUP_DIALECT,
    SL_DB_GROUP_PROVIDER,
    SL_DB_GROUP_DAY,
    SL_DB_GROUP_COUNT,
    SL_DB_GROUP_TOTAL = SL_DB_GROUP_COUNT, /* group_by NULL: one row */
} sl_db_group_t;

/* The group for a group_by name (NULL: SL_DB_GROUP_TOTAL), or -1 when it names none. */
int sl_db_group(const char *group_by);

typedef struct sl_db_sql {
    const char *group_expr[SL_DB_GROUP_COUNT]; /* never NULL: missing values become '' */
    const char *sums; /* requests, prompt, completion, errors, cancelled; 0 when no rows */
    bool numbered;    /* placeholders $1, $2 (PostgreSQL) rather than ? (sqlite) */
} sl_db_sql_t;

/* A bound parameter of the usage query: text, or a number when text is NULL. */
typedef struct sl_db_param {
    const char *text; /* borrowed from the query */
    int64_t num;
} sl_db_param_t;
#define SL_DB_USAGE_PARAMS 5

/* Writes the usage query's SQL into sql, in the backend's spelling. Only the spelling's own
 * fragments go into the text; every value the caller gave is a parameter (at most
 * SL_DB_USAGE_PARAMS, in placeholder order). */
void sl_db_usage_sql(const sl_usage_query_t *q, const sl_db_sql_t *spell, sl_buf_t *sql,
                     sl_db_param_t *params, size_t *nparams);
/* Reads one result row's five sums (as the spelling's sums list them) into row. */
void sl_db_usage_row(sl_usage_sum_t *row, const char *group, const int64_t sums[5]);

/* ---- text ---- */

/* Lowercase hex of b[0..n) into out, which holds 2n + 1 bytes. */
void sl_db_hex(const uint8_t *b, size_t n, char *out);

/* A JSON string of stored text. Text is stored byte-exact, and an answer cut off by a cancel
 * can end inside a character; the messages go back upstream as JSON, so each invalid byte
 * becomes U+FFFD rather than the whole message being lost. NULL only when out of memory. */
json_t *sl_db_json_text(const char *p, size_t n);
/* s itself when it is valid UTF-8, else a copy in tmp with each invalid byte as U+FFFD. For
 * databases that refuse invalid text (PostgreSQL). */
const char *sl_db_utf8(const char *s, sl_buf_t *tmp);

#endif
