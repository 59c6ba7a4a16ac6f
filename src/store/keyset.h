/* Building the key snapshot (internal to src/store/; readers use keys.h). */
#ifndef SL_STORE_KEYSET_H
#define SL_STORE_KEYSET_H
#include <stddef.h>

#include "store/db.h"
#include "store/keys.h"

/* A snapshot of a copy of recs[0..n) and of spend[0..nspend) (taken over: the array and its
 * names), both in any order; the caller holds its one reference. */
sl_keyset_t *sl_keyset_new(const sl_key_rec_t *recs, size_t n, sl_db_spend_t *spend, size_t nspend);

#endif
