/* store/keys.c also administers keys in the database (`sluice keys`); the fuzz targets that link
 * it for its glob and hash helpers never get there, so the store is cut off here rather than
 * linked in. Each stub aborts: reaching one is a finding. */
#ifndef SL_FUZZ_STUB_DB_H
#define SL_FUZZ_STUB_DB_H
#include <stdlib.h>

#include "store/db.h"

int sl_db_open(const char *sqlite_path, const char *postgres_url, sl_db_t **out, sl_buf_t *err)
{
    abort();
}
void sl_db_close(sl_db_t *db)
{
    abort();
}
bool sl_db_is_url(const char *s)
{
    abort();
}
void sl_db_hex(const uint8_t *b, size_t n, char *out)
{
    abort();
}

#endif
