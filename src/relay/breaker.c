/* The process's circuit breakers: a bounded table of targets under one mutex. */
#include "relay/breaker.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/err.h"
#include "core/log.h"

/* A probe that never reported (a bug, a lost callback) must not hold half-open forever. */
#define PROBE_MAX_MS 120000
/* A 429 without Retry-After cools the target down this long. */
#define RATE_LIMIT_DEFAULT_MS 1000

typedef struct entry {
    char *key;   /* owned: provider, '\0', model; NULL = free slot */
    size_t plen; /* the provider's length within key */
    uint64_t hash;
    sl_breaker_state_t state;
    unsigned failures;      /* upstream failures in a row */
    unsigned opens;         /* times opened since it last closed: the cooldown doubles */
    uint64_t open_until;    /* OPEN: when half-open begins */
    uint64_t limited_until; /* a 429's cooldown */
    uint64_t last_failure;
    uint64_t probe_since; /* HALF_OPEN: when the probe was admitted; 0 = none in flight */
    uint64_t used;        /* last check or report: eviction order */
} entry_t;

typedef struct opened {
    char provider[64];
    uint64_t count;
} opened_t;

/* Twice the table: probes stay short. Slot values are entry index + 1; 0 is empty. */
#define INDEX_SLOTS (2 * SL_BREAKERS_MAX)
_Static_assert(SL_BREAKERS_MAX < 65535, "index slots hold an entry index in 16 bits");

struct sl_breakers {
    pthread_mutex_t mu;
    size_t count; /* entries in use; read without the lock for the fast path */
    entry_t e[SL_BREAKERS_MAX];
    uint16_t index[INDEX_SLOTS];
    opened_t opened[64]; /* sluice_breaker_opened_total by provider (names come from config) */
};

/* A state change, logged after the lock is released. */
typedef struct change {
    bool happened;
    sl_breaker_state_t from, to;
    char target[192];
    char why[96];
    uint64_t for_ms;
} change_t;

static const char *const state_names[] = {"closed", "open", "half-open"};

sl_breakers_t *sl_breakers_new(void)
{
    sl_breakers_t *b = sl_calloc(1, sizeof *b);
    SL_ASSERT(pthread_mutex_init(&b->mu, NULL) == 0);
    return b;
}

void sl_breakers_free(sl_breakers_t *b)
{
    if (!b)
        return;
    for (size_t i = 0; i < SL_BREAKERS_MAX; i++)
        sl_free(b->e[i].key);
    (void)pthread_mutex_destroy(&b->mu); /* unlocked by contract */
    sl_free(b);
}

static uint64_t hash_of(const char *provider, size_t plen, const char *model, size_t mlen)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i <= plen; i++) /* with the NUL: ("ab","c") and ("a","bc") differ */
        h = (h ^ (uint8_t)provider[i]) * 1099511628211ULL;
    for (size_t i = 0; i < mlen; i++)
        h = (h ^ (uint8_t)model[i]) * 1099511628211ULL;
    return h;
}

/* Nothing worth keeping: forgetting it changes no decision. */
static bool pristine(const entry_t *e, uint64_t now)
{
    return e->state == SL_BREAKER_CLOSED && e->failures == 0 && e->limited_until <= now;
}

static void index_put(sl_breakers_t *b, size_t i)
{
    for (size_t s = b->e[i].hash & (INDEX_SLOTS - 1);; s = (s + 1) & (INDEX_SLOTS - 1)) {
        if (!b->index[s]) {
            b->index[s] = (uint16_t)(i + 1);
            return;
        }
    }
}

/* After an eviction (rare): every live entry back in a clean index. */
static void index_rebuild(sl_breakers_t *b)
{
    memset(b->index, 0, sizeof b->index);
    for (size_t i = 0; i < SL_BREAKERS_MAX; i++)
        if (b->e[i].key)
            index_put(b, i);
}

/* The entry for provider/model; created when create is set and there is room. Under mu.
 * Lookups probe the index (a few slots); only creating one scans the table. */
static entry_t *find(sl_breakers_t *b, const char *provider, const char *model, bool create,
                     uint64_t now)
{
    size_t plen = strlen(provider), mlen = strlen(model);
    uint64_t h = hash_of(provider, plen, model, mlen);
    for (size_t s = h & (INDEX_SLOTS - 1); b->index[s]; s = (s + 1) & (INDEX_SLOTS - 1)) {
        entry_t *e = &b->e[b->index[s] - 1];
        if (e->hash == h && e->plen == plen && !memcmp(e->key, provider, plen + 1) &&
            !strcmp(e->key + plen + 1, model)) {
            e->used = now;
            return e;
        }
    }
    if (!create)
        return NULL;
    entry_t *free_slot = NULL, *evictable = NULL;
    for (size_t i = 0; i < SL_BREAKERS_MAX && !free_slot; i++) {
        entry_t *e = &b->e[i];
        if (!e->key)
            free_slot = e;
        else if (pristine(e, now) && (!evictable || e->used < evictable->used))
            evictable = e;
    }
    entry_t *e = free_slot ? free_slot : evictable;
    if (!e)
        return NULL; /* full of targets that matter: this one goes untracked */
    bool evicted = e->key != NULL;
    sl_free(e->key);
    memset(e, 0, sizeof *e);
    e->key = sl_malloc(plen + 1 + mlen + 1);
    memcpy(e->key, provider, plen + 1);
    memcpy(e->key + plen + 1, model, mlen + 1);
    e->plen = plen;
    e->hash = h;
    e->used = now;
    if (evicted) {
        index_rebuild(b);
    } else {
        index_put(b, (size_t)(e - b->e));
        __atomic_add_fetch(&b->count, 1, __ATOMIC_RELEASE);
    }
    return e;
}

static void set_state(sl_breakers_t *b, entry_t *e, sl_breaker_state_t to, const char *why,
                      uint64_t for_ms, change_t *ch)
{
    if (e->state == to)
        return;
    ch->happened = true;
    ch->from = e->state;
    ch->to = to;
    ch->for_ms = for_ms;
    (void)snprintf(ch->target, sizeof ch->target, "%s/%s", e->key, e->key + e->plen + 1);
    (void)snprintf(ch->why, sizeof ch->why, "%s", why ? why : "");
    e->state = to;
    if (to != SL_BREAKER_OPEN)
        return;
    for (size_t i = 0; i < sizeof b->opened / sizeof b->opened[0]; i++) {
        opened_t *o = &b->opened[i];
        if (!o->provider[0])
            (void)snprintf(o->provider, sizeof o->provider, "%s", e->key);
        if (!strncmp(o->provider, e->key, sizeof o->provider - 1)) {
            o->count++;
            break;
        }
    }
}

static void log_change(const change_t *ch)
{
    if (!ch->happened)
        return;
    if (ch->to == SL_BREAKER_OPEN)
        sl_log(SL_LOG_WARN, "breaker %s: %s -> open (%s); tried again in %" PRIu64 " ms",
               ch->target, state_names[ch->from], ch->why, ch->for_ms);
    else
        sl_log(ch->to == SL_BREAKER_CLOSED ? SL_LOG_INFO : SL_LOG_DEBUG,
               "breaker %s: %s -> %s (%s)", ch->target, state_names[ch->from], state_names[ch->to],
               ch->why);
}

void sl_breakers_check(sl_breakers_t *b, const char *provider, const char *model,
                       const sl_breaker_policy_t *p, uint64_t now_ms, sl_breaker_check_t *out)
{
    memset(out, 0, sizeof *out);
    out->verdict = SL_BREAKER_GO;
    /* Nothing ever failed (the usual case): no lock at all. */
    if (!b || __atomic_load_n(&b->count, __ATOMIC_ACQUIRE) == 0)
        return;
    change_t ch = {0};
    SL_ASSERT(pthread_mutex_lock(&b->mu) == 0);
    /* Only a target with a history is in the table: a check creates nothing. */
    entry_t *e = find(b, provider, model, false, now_ms);
    if (e) {
        out->last_failure_ms = e->last_failure;
        if (e->state == SL_BREAKER_OPEN && now_ms >= e->open_until)
            set_state(b, e, SL_BREAKER_HALF_OPEN, "cooldown over", 0, &ch);
        if (e->state == SL_BREAKER_OPEN) {
            out->verdict = SL_BREAKER_SKIP;
            out->why = "circuit_open";
            out->available_ms = e->open_until;
        } else if (e->state == SL_BREAKER_HALF_OPEN) {
            if (e->probe_since && now_ms - e->probe_since < PROBE_MAX_MS) {
                out->verdict = SL_BREAKER_SKIP;
                out->why = "probe_in_flight";
            } else {
                e->probe_since = now_ms ? now_ms : 1;
                out->verdict = SL_BREAKER_PROBE;
            }
        }
        if (out->verdict != SL_BREAKER_SKIP && e->limited_until > now_ms) {
            if (out->verdict == SL_BREAKER_PROBE)
                e->probe_since = 0; /* not this time after all */
            out->verdict = SL_BREAKER_SKIP;
            out->why = "rate_limited";
            out->available_ms = e->limited_until;
        }
    }
    SL_ASSERT(pthread_mutex_unlock(&b->mu) == 0);
    log_change(&ch);
}

static uint64_t open_period(const sl_breaker_policy_t *p, unsigned opens)
{
    uint64_t d = p->cooldown_ms;
    for (unsigned i = 1; i < opens && d < p->max_cooldown_ms; i++)
        d *= 2;
    return d > p->max_cooldown_ms && p->max_cooldown_ms >= p->cooldown_ms ? p->max_cooldown_ms : d;
}

static void open_now(sl_breakers_t *b, entry_t *e, const sl_breaker_policy_t *p, const char *why,
                     uint64_t now, change_t *ch)
{
    e->opens++;
    uint64_t d = open_period(p, e->opens);
    e->open_until = now + d;
    e->probe_since = 0;
    set_state(b, e, SL_BREAKER_OPEN, why, d, ch);
}

void sl_breakers_report(sl_breakers_t *b, const char *provider, const char *model,
                        const sl_breaker_policy_t *p, sl_breaker_outcome_t outcome,
                        int retry_after_s, bool probe, const char *why, uint64_t now_ms)
{
    bool bad = outcome == SL_BREAKER_FAILED || outcome == SL_BREAKER_LIMITED;
    if (!b || (!bad && __atomic_load_n(&b->count, __ATOMIC_ACQUIRE) == 0))
        return; /* good news about targets nobody tracks: nothing to change */
    change_t ch = {0};
    char reason[96];
    SL_ASSERT(pthread_mutex_lock(&b->mu) == 0);
    /* Good news about a target we know nothing of changes nothing: no entry for it. */
    entry_t *e = find(b, provider, model, bad, now_ms);
    if (e && probe)
        e->probe_since = 0;
    if (!e) {
        /* untracked, or nothing to record */
    } else if (outcome == SL_BREAKER_ANSWERED || outcome == SL_BREAKER_SUCCEEDED) {
        /* An answer started: the upstream is back. A clean end (or a 4xx: it answered) also
         * ends the run of failures; a stream that starts and then drops keeps counting. */
        if (e->state != SL_BREAKER_CLOSED)
            set_state(b, e, SL_BREAKER_CLOSED, probe ? "the probe answered" : "an attempt answered",
                      0, &ch);
        e->opens = 0;
        if (outcome == SL_BREAKER_SUCCEEDED || ch.happened)
            e->failures = 0;
    } else if (outcome == SL_BREAKER_FAILED) {
        e->failures++;
        e->last_failure = now_ms;
        if (e->state == SL_BREAKER_HALF_OPEN && probe) {
            (void)snprintf(reason, sizeof reason, "the probe failed: %s", why ? why : "error");
            open_now(b, e, p, reason, now_ms, &ch);
        } else if (e->state == SL_BREAKER_CLOSED && p->failures && e->failures >= p->failures) {
            (void)snprintf(reason, sizeof reason, "%u upstream failures in a row, the last: %s",
                           e->failures, why ? why : "error");
            open_now(b, e, p, reason, now_ms, &ch);
        }
        /* Failures of attempts that began before it opened change nothing more: a blip seen
         * by many requests at once is still one open period. */
    } else if (outcome == SL_BREAKER_LIMITED) {
        uint64_t d = retry_after_s >= 0 ? (uint64_t)retry_after_s * 1000 : RATE_LIMIT_DEFAULT_MS;
        if (d > p->max_rate_limit_ms)
            d = p->max_rate_limit_ms;
        if (now_ms + d > e->limited_until)
            e->limited_until = now_ms + d;
    }
    SL_ASSERT(pthread_mutex_unlock(&b->mu) == 0);
    log_change(&ch);
}

sl_breaker_state_t sl_breakers_state(sl_breakers_t *b, const char *provider, const char *model)
{
    if (!b)
        return SL_BREAKER_CLOSED;
    SL_ASSERT(pthread_mutex_lock(&b->mu) == 0);
    entry_t *e = find(b, provider, model, false, 0);
    sl_breaker_state_t s = e ? e->state : SL_BREAKER_CLOSED;
    SL_ASSERT(pthread_mutex_unlock(&b->mu) == 0);
    return s;
}

/* open > half-open > closed */
static int rank(sl_breaker_state_t s)
{
    return s == SL_BREAKER_OPEN ? 2 : s == SL_BREAKER_HALF_OPEN ? 1 : 0;
}

static void put_label(sl_buf_t *out, const char *s, size_t max)
{
    for (size_t i = 0; s[i] && i < max; i++) {
        char c = s[i];
        if (c == '\\' || c == '"')
            sl_buf_putc(out, '\\');
        if (c == '\n')
            sl_buf_puts(out, "\\n");
        else
            sl_buf_putc(out, c);
    }
}

void sl_breakers_render(sl_breakers_t *b, const char *const *providers, size_t n, sl_buf_t *out)
{
    if (!b)
        return;
    SL_ASSERT(pthread_mutex_lock(&b->mu) == 0);
    sl_buf_puts(out, "# HELP sluice_breaker_state Circuit breaker state of a provider's worst "
                     "target (0 closed, 1 open, 2 half-open), process-wide.\n"
                     "# TYPE sluice_breaker_state gauge\n");
    for (size_t i = 0; i < n; i++) {
        sl_breaker_state_t worst = SL_BREAKER_CLOSED;
        size_t plen = strlen(providers[i]);
        for (size_t j = 0; j < SL_BREAKERS_MAX; j++) {
            const entry_t *e = &b->e[j];
            if (e->key && e->plen == plen && !memcmp(e->key, providers[i], plen) &&
                rank(e->state) > rank(worst))
                worst = e->state;
        }
        sl_buf_puts(out, "sluice_breaker_state{provider=\"");
        put_label(out, providers[i], 64);
        sl_buf_printf(out, "\"} %d\n", (int)worst);
    }
    sl_buf_puts(out, "# HELP sluice_breaker_target_state Circuit breaker state of each target "
                     "(provider + upstream model) that is not closed.\n"
                     "# TYPE sluice_breaker_target_state gauge\n");
    for (size_t j = 0; j < SL_BREAKERS_MAX; j++) {
        const entry_t *e = &b->e[j];
        if (!e->key || e->state == SL_BREAKER_CLOSED)
            continue;
        sl_buf_puts(out, "sluice_breaker_target_state{provider=\"");
        put_label(out, e->key, 64);
        sl_buf_puts(out, "\",model=\"");
        put_label(out, e->key + e->plen + 1, 128);
        sl_buf_printf(out, "\"} %d\n", (int)e->state);
    }
    sl_buf_puts(out, "# HELP sluice_breaker_opened_total Times a target's breaker opened, by "
                     "provider.\n"
                     "# TYPE sluice_breaker_opened_total counter\n");
    for (size_t i = 0; i < n; i++) {
        uint64_t count = 0;
        for (size_t k = 0; k < sizeof b->opened / sizeof b->opened[0]; k++)
            if (b->opened[k].provider[0] &&
                !strncmp(b->opened[k].provider, providers[i], sizeof b->opened[k].provider - 1))
                count = b->opened[k].count;
        sl_buf_puts(out, "sluice_breaker_opened_total{provider=\"");
        put_label(out, providers[i], 64);
        sl_buf_printf(out, "\"} %" PRIu64 "\n", count);
    }
    SL_ASSERT(pthread_mutex_unlock(&b->mu) == 0);
}
