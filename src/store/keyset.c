/* The immutable key snapshot workers authenticate against: sorted by hash once when built,
 * so every lookup is a binary search and no reader ever takes a lock. */
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "store/keyset.h"

#define HASH_LEN sizeof(((sl_key_rec_t *)0)->hash)

struct sl_keyset {
    unsigned refs;        /* atomic */
    sl_db_spend_t *spend; /* owned, names too; sorted by name */
    size_t nspend;
    size_t n;
    sl_key_rec_t keys[]; /* sorted by hash */
};

static int by_hash(const void *a, const void *b)
{
    return memcmp(((const sl_key_rec_t *)a)->hash, ((const sl_key_rec_t *)b)->hash, HASH_LEN);
}

static int by_name(const void *a, const void *b)
{
    return strcmp(((const sl_db_spend_t *)a)->name, ((const sl_db_spend_t *)b)->name);
}

sl_keyset_t *sl_keyset_new(const sl_key_rec_t *recs, size_t n, sl_db_spend_t *spend, size_t nspend)
{
    sl_keyset_t *ks = sl_malloc(sizeof *ks + n * sizeof ks->keys[0]);
    ks->refs = 1;
    ks->n = n;
    ks->spend = spend;
    ks->nspend = nspend;
    if (n > 0) {
        memcpy(ks->keys, recs, n * sizeof ks->keys[0]);
        qsort(ks->keys, n, sizeof ks->keys[0], by_hash);
    }
    if (nspend > 1)
        qsort(spend, nspend, sizeof *spend, by_name);
    return ks;
}

sl_keyset_t *sl_keyset_ref(sl_keyset_t *ks)
{
    __atomic_add_fetch(&ks->refs, 1, __ATOMIC_RELAXED);
    return ks;
}

void sl_keyset_unref(sl_keyset_t *ks)
{
    /* Acquire-release: the thread freeing sees every other holder's reads finished. */
    if (!ks || __atomic_sub_fetch(&ks->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    for (size_t i = 0; i < ks->nspend; i++)
        sl_free(ks->spend[i].name);
    sl_free(ks->spend);
    sl_free(ks);
}

size_t sl_keyset_count(const sl_keyset_t *ks)
{
    return ks->n;
}

int64_t sl_keyset_spent(const sl_keyset_t *ks, const char *key_name)
{
    if (!key_name || ks->nspend == 0)
        return 0;
    sl_db_spend_t probe = {.name = (char *)key_name};
    const sl_db_spend_t *s = bsearch(&probe, ks->spend, ks->nspend, sizeof probe, by_name);
    return s ? s->tokens : 0;
}

/* The lookup's timing depends on the hash, never on the secret: learning where a hash sorts
 * tells an attacker nothing about a preimage, so a binary search is as safe as a constant-time
 * compare of each entry. */
const sl_key_rec_t *sl_keyset_find(const sl_keyset_t *ks, const uint8_t hash[32])
{
    size_t lo = 0, hi = ks->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = memcmp(hash, ks->keys[mid].hash, HASH_LEN);
        if (c == 0)
            return &ks->keys[mid];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}
