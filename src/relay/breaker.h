/* Circuit breaker per provider (DESIGN §5): after `failures` failures in a row the provider is
 * skipped for `cooldown`; then exactly one request probes it; the probe's success closes the
 * breaker, its failure opens it again. Pure state + the worker's clock: no I/O, no locks (one
 * set of breakers per worker). */
#ifndef SL_RELAY_BREAKER_H
#define SL_RELAY_BREAKER_H
#include <stdbool.h>
#include <stdint.h>

typedef enum {
    SL_BREAKER_CLOSED = 0,
    SL_BREAKER_OPEN = 1,
    SL_BREAKER_HALF_OPEN = 2
} sl_breaker_state_t;

typedef struct sl_breaker {
    char name[64]; /* the provider's name */
    sl_breaker_state_t state;
    unsigned failures; /* in a row */
    uint64_t open_until_ms;
    bool probing;  /* half-open: the one probe is in flight */
    bool reported; /* its state was published to metrics at least once */
} sl_breaker_t;

/* May a request go to this provider now? A true answer in half-open state makes the caller
 * the probe: it must report success, failure or sl_breaker_abandon. */
bool sl_breaker_allow(sl_breaker_t *b, uint64_t now_ms);
void sl_breaker_success(sl_breaker_t *b);
/* threshold 0 disables opening. */
void sl_breaker_failure(sl_breaker_t *b, unsigned threshold, uint64_t cooldown_ms, uint64_t now_ms);
/* The probe ended without an answer either way (the client left): let another one try. */
void sl_breaker_abandon(sl_breaker_t *b);

/* A worker's breakers, found by provider name (a few providers: a linear scan). */
typedef struct sl_breakers {
    sl_breaker_t *b; /* owned */
    unsigned n;
} sl_breakers_t;

sl_breaker_t *sl_breakers_get(sl_breakers_t *set, const char *provider);
void sl_breakers_dispose(sl_breakers_t *set);

#endif
