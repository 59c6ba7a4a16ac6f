/* The process-wide token-bucket limiter (DESIGN §6): requests and tokens per minute for each
 * scope+id, shared by every worker. 64 stripes, each a mutex over its own hash table and
 * use-ordered list, so two workers only contend when their keys land on the same stripe.
 * The Lua script in policy/ratelimit_redis.c does the same arithmetic; change both together. */
#include "policy/ratelimit.h"

#include <inttypes.h>
#include <pthread.h>
#include <string.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/err.h"

/* Levels are kept in 1/60000 of a token: a bucket of capacity C a minute then refills by
 * exactly C units a millisecond, and every step is integer arithmetic (no drift, no float). */
#define UNIT       60000
#define STRIPES    64
#define STRIPE_MAX (SL_LIMITER_MAX_BUCKETS / STRIPES)
/* Two minutes without use: a bucket is full by then (debt is capped at one window, so at
 * worst it climbs from -C to C in two), which makes dropping it invisible. */
#define IDLE_MS 120000
/* Evicted per check at most, so one unlucky check never pays for a whole stripe. */
#define SWEEP_MAX 8
/* SL_LIMIT_RATE_MAX keeps 2 * C * UNIT exact in int64 here and in Lua's doubles (< 2^53). */
#define RATE_MAX SL_LIMIT_RATE_MAX

typedef struct bucket {
    struct bucket *next;          /* owned: next in the slot's chain */
    struct bucket *newer, *older; /* weak: the stripe's use order; unlinked before free */
    uint64_t hash;
    int64_t req, tok; /* levels in units; tok goes negative after a charge */
    int64_t ts;       /* refilled up to here (ms) */
    int64_t used;     /* last checked or settled (ms) */
    size_t klen;
    char key[]; /* scope, '\0', id */
} bucket_t;

typedef struct stripe {
    pthread_mutex_t mu;
    bucket_t **slots; /* owned: nslots chains, nslots a power of two */
    size_t nslots, count;
    bucket_t *newest, *oldest; /* weak: ends of the use order */
} stripe_t;

/* Padded so two stripes never share a cache line; malloc promises no 64-byte alignment, so
 * padding rather than _Alignas (which UBSan would flag on a misaligned heap block). */
typedef union padded {
    stripe_t s;
    char pad[128];
} padded_t;

struct sl_limiter {
    padded_t stripes[STRIPES];
};

/* One limit of a check, with what the check found for it. */
typedef struct view {
    const sl_limit_t *lim; /* borrowed: the caller's, for this call */
    int64_t rpm, tpm;      /* clamped to [0, RATE_MAX] */
    size_t slen, ilen;
    uint64_t hash;
    stripe_t *st; /* borrowed: one of the limiter's */
    bucket_t *b;  /* borrowed: lives while st is locked */
} view_t;

sl_limiter_t *sl_limiter_new(void)
{
    sl_limiter_t *l = sl_calloc(1, sizeof *l);
    for (size_t i = 0; i < STRIPES; i++) {
        stripe_t *st = &l->stripes[i].s;
        SL_ASSERT(pthread_mutex_init(&st->mu, NULL) == 0);
        st->nslots = 16;
        st->slots = sl_calloc(st->nslots, sizeof(bucket_t *));
    }
    return l;
}

void sl_limiter_free(sl_limiter_t *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < STRIPES; i++) {
        stripe_t *st = &l->stripes[i].s;
        for (bucket_t *b = st->newest, *next; b; b = next) {
            next = b->older;
            sl_free(b);
        }
        sl_free(st->slots);
        (void)pthread_mutex_destroy(&st->mu); /* unlocked by contract: nothing to report */
    }
    sl_free(l);
}

size_t sl_limiter_size(sl_limiter_t *l)
{
    size_t n = 0;
    for (size_t i = 0; i < STRIPES; i++) {
        stripe_t *st = &l->stripes[i].s;
        SL_ASSERT(pthread_mutex_lock(&st->mu) == 0);
        n += st->count;
        SL_ASSERT(pthread_mutex_unlock(&st->mu) == 0);
    }
    return n;
}

/* ---- the table ---- */

static uint64_t fnv(uint64_t h, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)p[i]) * 1099511628211ULL;
    return h;
}

static uint64_t hash_key(const char *scope, size_t slen, const char *id, size_t ilen)
{
    uint64_t h = fnv(1469598103934665603ULL, scope, slen + 1); /* the NUL separates */
    h = fnv(h, id, ilen);
    /* FNV's low bits are weak and both the stripe and the slot come from them: mix. */
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return h;
}

static size_t slot_of(const stripe_t *st, uint64_t hash)
{
    return (size_t)(hash >> 6) & (st->nslots - 1);
}

static void unlink_use(stripe_t *st, bucket_t *b)
{
    *(b->newer ? &b->newer->older : &st->newest) = b->older;
    *(b->older ? &b->older->newer : &st->oldest) = b->newer;
    b->newer = b->older = NULL;
}

static void link_newest(stripe_t *st, bucket_t *b)
{
    b->older = st->newest;
    *(st->newest ? &st->newest->newer : &st->oldest) = b;
    st->newest = b;
}

static void evict(stripe_t *st, bucket_t *b)
{
    bucket_t **pp = &st->slots[slot_of(st, b->hash)];
    while (*pp != b)
        pp = &(*pp)->next;
    *pp = b->next;
    unlink_use(st, b);
    st->count--;
    sl_free(b);
}

/* Drops the least recently used buckets that have been idle long enough to be full. */
static void sweep(stripe_t *st, int64_t now)
{
    for (int i = 0; i < SWEEP_MAX && st->oldest && now - st->oldest->used >= IDLE_MS; i++)
        evict(st, st->oldest);
}

static void grow(stripe_t *st)
{
    size_t old_n = st->nslots;
    bucket_t **old = st->slots;
    st->nslots *= 2;
    st->slots = sl_calloc(st->nslots, sizeof(bucket_t *));
    for (size_t i = 0; i < old_n; i++) {
        for (bucket_t *b = old[i], *next; b; b = next) {
            next = b->next;
            size_t s = slot_of(st, b->hash);
            b->next = st->slots[s];
            st->slots[s] = b;
        }
    }
    sl_free(old);
}

static bucket_t *find(stripe_t *st, const view_t *v)
{
    size_t klen = v->slen + 1 + v->ilen;
    for (bucket_t *b = st->slots[slot_of(st, v->hash)]; b; b = b->next) {
        if (b->hash == v->hash && b->klen == klen &&
            memcmp(b->key, v->lim->scope, v->slen + 1) == 0 &&
            memcmp(b->key + v->slen + 1, v->lim->id, v->ilen) == 0)
            return b;
    }
    return NULL;
}

/* The bucket for v, made full if new, now the stripe's most recently used. */
static bucket_t *lookup(stripe_t *st, const view_t *v, int64_t now)
{
    bucket_t *b = find(st, v);
    if (b) {
        unlink_use(st, b);
    } else {
        if (st->count >= STRIPE_MAX)
            evict(st, st->oldest); /* the bound holds even when nothing is idle */
        if (st->count >= st->nslots)
            grow(st);
        b = sl_calloc(1, sizeof *b + v->slen + 1 + v->ilen);
        b->hash = v->hash;
        b->klen = v->slen + 1 + v->ilen;
        memcpy(b->key, v->lim->scope, v->slen + 1);
        memcpy(b->key + v->slen + 1, v->lim->id, v->ilen);
        b->req = v->rpm * UNIT;
        b->tok = v->tpm * UNIT;
        b->ts = b->used = now;
        size_t s = slot_of(st, b->hash);
        b->next = st->slots[s];
        st->slots[s] = b;
        st->count++;
    }
    link_newest(st, b);
    if (now > b->used)
        b->used = now;
    return b;
}

/* ---- bucket arithmetic (mirrored in redis.c's script) ---- */

static int64_t clamp(int64_t x, int64_t lo, int64_t hi)
{
    return x < lo ? lo : x > hi ? hi : x;
}

/* level after el ms at rate units/ms, never above the capacity (which may have shrunk). */
static int64_t refilled(int64_t level, int64_t rate, int64_t el)
{
    int64_t cap = rate * UNIT;
    if (level >= cap)
        return cap;
    if (rate == 0 || el >= (cap - level + rate - 1) / rate)
        return rate == 0 ? level : cap;
    return level + el * rate;
}

static void refill(bucket_t *b, const view_t *v, int64_t now)
{
    /* Workers pass their own clocks: one a little behind must not move ts back. */
    int64_t el = now > b->ts ? now - b->ts : 0;
    b->req = refilled(b->req, v->rpm, el);
    b->tok = refilled(b->tok, v->tpm, el);
    if (now > b->ts)
        b->ts = now;
}

/* ms until level reaches need at rate; 0 if it already has. */
static int64_t wait_ms(int64_t level, int64_t need, int64_t rate)
{
    if (rate == 0 || level >= need)
        return 0;
    return (need - level + rate - 1) / rate;
}

/* An estimate above the capacity would never fit: a full bucket is enough. */
static int64_t tokens_needed(const view_t *v, int64_t estimate)
{
    return clamp(estimate, 0, v->tpm) * UNIT;
}

static int64_t remaining(int64_t level)
{
    return level > 0 ? level / UNIT : 0;
}

static int64_t reset_ms(int64_t level, int64_t rate)
{
    return wait_ms(level, rate * UNIT, rate);
}

/* ---- checks ---- */

/* Keeps the limits that limit something; returns how many, with their hashes. */
static size_t collect(sl_limiter_t *l, const sl_limit_t *limits, size_t n, view_t *v)
{
    SL_ASSERT(n <= SL_LIMITS_MAX);
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        view_t *w = &v[m];
        w->lim = &limits[i];
        w->rpm = clamp(limits[i].rpm, 0, RATE_MAX);
        w->tpm = clamp(limits[i].tpm, 0, RATE_MAX);
        if (w->rpm == 0 && w->tpm == 0)
            continue;
        w->slen = strlen(limits[i].scope);
        w->ilen = strlen(limits[i].id);
        w->hash = hash_key(limits[i].scope, w->slen, limits[i].id, w->ilen);
        w->st = &l->stripes[w->hash % STRIPES].s;
        m++;
    }
    return m;
}

/* Locks every stripe the limits touch, in index order so two checks cannot deadlock. */
static uint64_t lock_all(sl_limiter_t *l, const view_t *v, size_t m, int64_t now)
{
    uint64_t mask = 0;
    for (size_t i = 0; i < m; i++)
        mask |= 1ULL << (v[i].hash % STRIPES);
    for (size_t i = 0; i < STRIPES; i++) {
        if (mask & (1ULL << i)) {
            SL_ASSERT(pthread_mutex_lock(&l->stripes[i].s.mu) == 0);
            sweep(&l->stripes[i].s, now);
        }
    }
    return mask;
}

static void unlock_all(sl_limiter_t *l, uint64_t mask)
{
    for (size_t i = 0; i < STRIPES; i++) {
        if (mask & (1ULL << i))
            SL_ASSERT(pthread_mutex_unlock(&l->stripes[i].s.mu) == 0);
    }
}

/* Which limit refuses (the one that needs longest); -1 when all allow. */
static int refuser(const view_t *v, size_t m, int64_t estimate, int64_t *wait)
{
    int worst = -1;
    *wait = 0;
    for (size_t i = 0; i < m; i++) {
        int64_t wr = wait_ms(v[i].b->req, v[i].rpm ? UNIT : 0, v[i].rpm);
        int64_t wt = wait_ms(v[i].b->tok, tokens_needed(&v[i], estimate), v[i].tpm);
        int64_t w = wr > wt ? wr : wt;
        if (w > *wait) {
            *wait = w;
            worst = (int)i;
        }
    }
    return worst;
}

/* Fills the header fields from the tightest limit of each kind (fewest remaining). */
static void report(const view_t *v, size_t m, sl_limit_result_t *out)
{
    int rq = -1, tk = -1;
    for (size_t i = 0; i < m; i++) {
        const bucket_t *b = v[i].b;
        if (v[i].rpm && (rq < 0 || remaining(b->req) < out->remaining_requests)) {
            rq = (int)i;
            out->limit_requests = v[i].rpm;
            out->remaining_requests = remaining(b->req);
            out->reset_requests_ms = reset_ms(b->req, v[i].rpm);
        }
        if (v[i].tpm && (tk < 0 || remaining(b->tok) < out->remaining_tokens)) {
            tk = (int)i;
            out->limit_tokens = v[i].tpm;
            out->remaining_tokens = remaining(b->tok);
            out->reset_tokens_ms = reset_ms(b->tok, v[i].tpm);
        }
    }
    if (!out->scope && (rq >= 0 || tk >= 0))
        out->scope = v[rq >= 0 ? rq : tk].lim->scope;
}

void sl_limiter_take(sl_limiter_t *l, const sl_limit_t *limits, size_t n, int64_t tokens_estimate,
                     int64_t now_ms, sl_limit_result_t *out)
{
    view_t v[SL_LIMITS_MAX];
    memset(out, 0, sizeof *out);
    out->allowed = true;
    size_t m = collect(l, limits, n, v);
    if (m == 0)
        return;
    uint64_t mask = lock_all(l, v, m, now_ms);
    for (size_t i = 0; i < m; i++) {
        v[i].b = lookup(v[i].st, &v[i], now_ms);
        refill(v[i].b, &v[i], now_ms);
    }
    int64_t wait;
    int worst = refuser(v, m, tokens_estimate, &wait);
    if (worst >= 0) {
        out->allowed = false;
        out->scope = v[worst].lim->scope;
        out->retry_after_s = (int)((wait + 999) / 1000);
    } else {
        for (size_t i = 0; i < m; i++) {
            v[i].b->req -= v[i].rpm ? UNIT : 0;
            v[i].b->tok -= tokens_needed(&v[i], tokens_estimate);
        }
    }
    report(v, m, out);
    unlock_all(l, mask);
}

void sl_limiter_settle(sl_limiter_t *l, const sl_limit_t *limits, size_t n, int64_t estimate,
                       int64_t actual, int64_t now_ms)
{
    view_t v[SL_LIMITS_MAX];
    size_t m = collect(l, limits, n, v);
    uint64_t mask = lock_all(l, v, m, now_ms);
    for (size_t i = 0; i < m; i++) {
        if (v[i].tpm == 0)
            continue;
        bucket_t *b = lookup(v[i].st, &v[i], now_ms);
        refill(b, &v[i], now_ms);
        /* What the take took (it was capped at the capacity), not the raw estimate. Debt is
         * capped at one window so one huge answer cannot lock a key out for hours; budgets
         * bound the total. Clamping diff first keeps diff * UNIT inside int64. */
        int64_t cap = v[i].tpm * UNIT;
        int64_t diff = clamp(clamp(actual, 0, INT64_MAX / 2) - clamp(estimate, 0, v[i].tpm),
                             -2 * v[i].tpm, 2 * v[i].tpm);
        b->tok = clamp(b->tok - diff * UNIT, -cap, cap);
    }
    unlock_all(l, mask);
}

/* ---- headers ---- */

/* A duration as OpenAI writes it (Go's time.Duration): "120ms", "6s", "1.5s", "1m0s". */
static void put_duration(sl_buf_t *out, int64_t ms)
{
    if (ms <= 0) {
        sl_buf_puts(out, "0s");
        return;
    }
    if (ms < 1000) {
        sl_buf_printf(out, "%" PRId64 "ms", ms);
        return;
    }
    int64_t h = ms / 3600000, m = ms / 60000 % 60, s = ms / 1000 % 60, frac = ms % 1000;
    if (h)
        sl_buf_printf(out, "%" PRId64 "h", h);
    if (h || m)
        sl_buf_printf(out, "%" PRId64 "m", m);
    sl_buf_printf(out, "%" PRId64, s);
    if (frac) {
        char digits[4] = {(char)('0' + frac / 100), (char)('0' + frac / 10 % 10),
                          (char)('0' + frac % 10), 0};
        for (int i = 2; i > 0 && digits[i] == '0'; i--)
            digits[i] = 0;
        sl_buf_printf(out, ".%s", digits);
    }
    sl_buf_putc(out, 's');
}

static void put_kind(sl_buf_t *out, const char *kind, int64_t limit, int64_t left, int64_t reset)
{
    sl_buf_printf(out, "x-ratelimit-limit-%s: %" PRId64 "\r\n", kind, limit);
    sl_buf_printf(out, "x-ratelimit-remaining-%s: %" PRId64 "\r\n", kind, left);
    sl_buf_printf(out, "x-ratelimit-reset-%s: ", kind);
    put_duration(out, reset);
    sl_buf_puts(out, "\r\n");
}

void sl_limit_headers(const sl_limit_result_t *r, struct sl_buf *out)
{
    if (r->limit_requests > 0)
        put_kind(out, "requests", r->limit_requests, r->remaining_requests, r->reset_requests_ms);
    if (r->limit_tokens > 0)
        put_kind(out, "tokens", r->limit_tokens, r->remaining_tokens, r->reset_tokens_ms);
}
