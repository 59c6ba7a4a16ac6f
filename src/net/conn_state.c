/* The connection's state machine: the edges a connection may take and the one function every
 * change of c->state passes through, which logs old → new at debug level. */
#include "net/conn.h"

#include "core/ctx.h"
#include "net/conn_int.h"

#include <inttypes.h>

#include "core/err.h"
#include "core/log.h"

#define EDGE(s) (1u << (s))
/* The edges a connection may take: READING → HANDLING a complete request (or one refused, which
 * is answered like any other) → READING when its response ended, or → WS when it upgraded.
 * DRAINING follows a refusal or the last answer (Connection: close). Any state but CLOSING may
 * close, and CLOSING is terminal. */
static const unsigned state_edges[] = {
    [SL_CONN_READING] = EDGE(SL_CONN_HANDLING) | EDGE(SL_CONN_DRAINING) | EDGE(SL_CONN_CLOSING),
    [SL_CONN_HANDLING] = EDGE(SL_CONN_READING) | EDGE(SL_CONN_WS) | EDGE(SL_CONN_CLOSING),
    [SL_CONN_DRAINING] = EDGE(SL_CONN_CLOSING),
    [SL_CONN_WS] = EDGE(SL_CONN_CLOSING),
    [SL_CONN_CLOSING] = 0,
};

void conn_set_state(sl_conn_t *c, sl_conn_state_t to, const char *why)
{
    static const char *const names[] = {"READING", "HANDLING", "DRAINING", "WS", "CLOSING"};
    SL_ASSERT(state_edges[c->state] & EDGE(to));
    if (sl_log_enabled(SL_LOG_DEBUG))
        sl_log(SL_LOG_DEBUG, "conn %d.%" PRIu64 ": %s → %s (%s)", c->x->id, c->id, names[c->state],
               names[to], why);
    c->state = to;
}
