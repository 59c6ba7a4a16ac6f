/* The database factory: which backend a store setting names, and opening it. The SQL both
 * backends share is in db_sql.c, so neither backend needs this file. */
#include "store/db.h"

#include <stdio.h>
#include <string.h>

#include "core/alloc.h"

int sl_db_open(const char *sqlite_path, const char *postgres_url, sl_db_t **out, sl_buf_t *err)
{
    if (postgres_url)
        return sl_db_open_pg(postgres_url, out, err);
    return sl_db_open_sqlite(sqlite_path, out, err);
}

void sl_db_close(sl_db_t *db)
{
    if (db)
        db->ops->close(db);
}

bool sl_db_is_url(const char *s)
{
    return strncmp(s, "postgres://", 11) == 0 || strncmp(s, "postgresql://", 13) == 0;
}
