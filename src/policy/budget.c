/* The process's budget ledger: a chained hash of key ids under one mutex. */
#include "policy/budget.h"

#include <pthread.h>
#include <string.h>

#include "core/alloc.h"
#include "core/err.h"

#define SLOTS 4096 /* a power of two */

typedef struct entry {
    struct entry *next; /* owned: the slot's chain */
    int64_t spent;      /* the larger of the records' total and what was settled here */
    int64_t reserved;   /* held by requests in flight */
    uint64_t hash;
    char id[]; /* NUL-terminated */
} entry_t;

struct sl_budgets {
    pthread_mutex_t mu;
    entry_t *slots[SLOTS]; /* owned chains */
    size_t count;
};

sl_budgets_t *sl_budgets_new(void)
{
    sl_budgets_t *b = sl_calloc(1, sizeof *b);
    SL_ASSERT(pthread_mutex_init(&b->mu, NULL) == 0);
    return b;
}

void sl_budgets_free(sl_budgets_t *b)
{
    if (!b)
        return;
    for (size_t i = 0; i < SLOTS; i++) {
        for (entry_t *e = b->slots[i], *next; e; e = next) {
            next = e->next;
            sl_free(e);
        }
    }
    (void)pthread_mutex_destroy(&b->mu); /* unlocked by contract */
    sl_free(b);
}

static uint64_t hash_id(const char *id)
{
    uint64_t h = 1469598103934665603ULL;
    for (const char *p = id; *p; p++)
        h = (h ^ (uint8_t)*p) * 1099511628211ULL;
    return h ^ (h >> 29);
}

/* Drops idle entries (nothing reserved) to make room: the floor brings their spend back. */
static void shed(sl_budgets_t *b)
{
    for (size_t i = 0; i < SLOTS && b->count >= SL_BUDGETS_MAX; i++) {
        for (entry_t **pp = &b->slots[i]; *pp;) {
            entry_t *e = *pp;
            if (e->reserved == 0) {
                *pp = e->next;
                sl_free(e);
                b->count--;
            } else {
                pp = &e->next;
            }
        }
    }
}

/* Under mu. create: add it when missing (NULL only when the table is full of reservations). */
static entry_t *find(sl_budgets_t *b, const char *id, bool create)
{
    uint64_t h = hash_id(id);
    entry_t **slot = &b->slots[h & (SLOTS - 1)];
    for (entry_t *e = *slot; e; e = e->next)
        if (e->hash == h && !strcmp(e->id, id))
            return e;
    if (!create)
        return NULL;
    if (b->count >= SL_BUDGETS_MAX)
        shed(b);
    if (b->count >= SL_BUDGETS_MAX)
        return NULL;
    size_t len = strlen(id);
    entry_t *e = sl_calloc(1, sizeof *e + len + 1);
    memcpy(e->id, id, len + 1);
    e->hash = h;
    e->next = *slot;
    *slot = e;
    b->count++;
    return e;
}

void sl_budgets_reserve(sl_budgets_t *b, const char *id, int64_t budget, int64_t floor,
                        int64_t worst, bool strict, sl_budget_grant_t *out)
{
    *out = (sl_budget_grant_t){0};
    if (worst < 1)
        worst = 1;
    SL_ASSERT(pthread_mutex_lock(&b->mu) == 0);
    entry_t *e = find(b, id, true);
    if (!e) {
        /* 65536 keys each with a request in flight: decide on the records alone. */
        out->left = budget - floor;
        out->allowed = out->left > 0 && (!strict || worst <= out->left);
    } else {
        if (floor > e->spent)
            e->spent = floor;
        out->left = budget - e->spent - e->reserved;
        if (out->left > 0 && (!strict || worst <= out->left)) {
            out->allowed = true;
            out->granted = worst < out->left ? worst : out->left;
            e->reserved += out->granted;
        }
    }
    SL_ASSERT(pthread_mutex_unlock(&b->mu) == 0);
}

void sl_budgets_settle(sl_budgets_t *b, const char *id, int64_t granted, int64_t actual)
{
    if (actual < 0)
        actual = 0;
    SL_ASSERT(pthread_mutex_lock(&b->mu) == 0);
    entry_t *e = find(b, id, granted == 0); /* a reservation keeps its entry alive */
    if (e) {
        e->reserved -= granted;
        if (e->reserved < 0)
            e->reserved = 0;
        e->spent = actual > INT64_MAX - e->spent ? INT64_MAX : e->spent + actual;
    }
    SL_ASSERT(pthread_mutex_unlock(&b->mu) == 0);
}

void sl_budgets_peek(sl_budgets_t *b, const char *id, int64_t *spent, int64_t *reserved)
{
    SL_ASSERT(pthread_mutex_lock(&b->mu) == 0);
    entry_t *e = find(b, id, false);
    *spent = e ? e->spent : 0;
    *reserved = e ? e->reserved : 0;
    SL_ASSERT(pthread_mutex_unlock(&b->mu) == 0);
}
