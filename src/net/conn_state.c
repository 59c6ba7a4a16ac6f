/* The connection's state machine: the edges a connection may take and the one function every
 * change of c->state passes through, which logs old → new at debug level. */
#include "net/conn.h"

#include "core/ctx.h"
#include "net/conn_int.h"

#include <inttypes.h>
#include <stdio.h>

#include "core/fsm.h"
#include "core/log.h"

#define TO(s) SL_FSM_TO(SL_CONN_##s)
/* The edges a connection may take: READING → HANDLING a complete request (or one refused, which
 * is answered like any other) → READING when its response ended, or → WS when it upgraded.
 * DRAINING follows a refusal or the last answer (Connection: close). Any state but CLOSING may
 * close, and CLOSING is terminal. */
static const uint32_t edges[] = {
    [SL_CONN_READING] = TO(HANDLING) | TO(DRAINING) | TO(CLOSING),
    [SL_CONN_HANDLING] = TO(READING) | TO(WS) | TO(CLOSING),
    [SL_CONN_DRAINING] = TO(CLOSING),
    [SL_CONN_WS] = TO(CLOSING),
    [SL_CONN_CLOSING] = 0,
};
static const char *const names[] = {"READING", "HANDLING", "DRAINING", "WS", "CLOSING"};
static const sl_fsm_t conn_fsm = {"conn", names, edges, sizeof edges / sizeof edges[0]};
_Static_assert(sizeof names / sizeof names[0] == sizeof edges / sizeof edges[0], "a name each");

void conn_set_state(sl_conn_t *c, sl_conn_state_t to, const char *why)
{
    char id[32] = "";
    if (sl_fsm_speaks(&conn_fsm, c->state, to))
        snprintf(id, sizeof id, "%d.%" PRIu64, c->x->id, c->id);
    c->state = (sl_conn_state_t)sl_fsm_step(&conn_fsm, c->state, to, id, why);
}
