/* One transition function for every lifecycle object (connection, exchange, transfer, upstream
 * request, Redis link), after curl's mstate: a named-state enum, a table of the edges each state
 * may take, and sl_fsm_step, which asserts the edge is legal and logs "what id: old → new (why)"
 * at debug level. Off, the log costs one branch. */
#ifndef SL_CORE_FSM_H
#define SL_CORE_FSM_H
#include <stdbool.h>
#include <stdint.h>

#include "core/log.h"

/* A machine's shape, one static const per kind of object. edges[s] has bit t set when state s
 * may move to state t; a state with no edges is terminal. At most 32 states. */
typedef struct sl_fsm {
    const char *what;         /* "conn", "relay", ...: the first word of the debug line */
    const char *const *names; /* names[s] */
    const uint32_t *edges;    /* edges[s] */
    unsigned nstates;
} sl_fsm_t;

#define SL_FSM_TO(s) (1u << (s))

static inline bool sl_fsm_legal(const sl_fsm_t *m, unsigned from, unsigned to)
{
    return from < m->nstates && to < m->nstates && (m->edges[from] & SL_FSM_TO(to)) != 0;
}
/* Whether sl_fsm_step will print, so a caller builds an id only then. */
static inline bool sl_fsm_speaks(const sl_fsm_t *m, unsigned from, unsigned to)
{
    return !sl_fsm_legal(m, from, to) || sl_log_enabled(SL_LOG_DEBUG);
}

/* Checks the move from → to and returns to (so: o->state = sl_fsm_step(&m, o->state, to, ...)).
 * An illegal edge is logged at error level, then asserted (a bug: the object's code took a path
 * its table does not allow). id names the object in the line. */
unsigned sl_fsm_step(const sl_fsm_t *m, unsigned from, unsigned to, const char *id,
                     const char *why);

#endif
