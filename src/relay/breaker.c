/* Circuit breaker state machine. */
#include "relay/breaker.h"

#include <stdio.h>
#include <string.h>

#include "core/alloc.h"

bool sl_breaker_allow(sl_breaker_t *b, uint64_t now_ms)
{
    if (b->state == SL_BREAKER_OPEN) {
        if (now_ms < b->open_until_ms)
            return false;
        b->state = SL_BREAKER_HALF_OPEN;
        b->probing = false;
    }
    if (b->state == SL_BREAKER_HALF_OPEN) {
        if (b->probing)
            return false; /* one probe at a time */
        b->probing = true;
    }
    return true;
}

void sl_breaker_success(sl_breaker_t *b)
{
    b->state = SL_BREAKER_CLOSED;
    b->failures = 0;
    b->probing = false;
}

void sl_breaker_failure(sl_breaker_t *b, unsigned threshold, uint64_t cooldown_ms, uint64_t now_ms)
{
    b->failures++;
    if (threshold == 0)
        return;
    if (b->state == SL_BREAKER_HALF_OPEN || b->failures >= threshold) {
        b->state = SL_BREAKER_OPEN;
        b->open_until_ms = now_ms + cooldown_ms;
        b->probing = false;
    }
}

void sl_breaker_abandon(sl_breaker_t *b)
{
    if (b->state == SL_BREAKER_HALF_OPEN)
        b->probing = false;
}

sl_breaker_t *sl_breakers_get(sl_breakers_t *set, const char *provider)
{
    for (unsigned i = 0; i < set->n; i++)
        if (strcmp(set->b[i].name, provider) == 0)
            return &set->b[i];
    set->b = sl_realloc(set->b, (set->n + 1) * sizeof *set->b);
    sl_breaker_t *b = &set->b[set->n++];
    memset(b, 0, sizeof *b);
    snprintf(b->name, sizeof b->name, "%s", provider);
    return b;
}

void sl_breakers_dispose(sl_breakers_t *set)
{
    sl_free(set->b);
    set->b = NULL;
    set->n = 0;
}
