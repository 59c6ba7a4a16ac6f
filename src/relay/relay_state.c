/* The exchange's lifecycle: the one function that changes an exchange's state, the table of
 * legal changes it asserts, and the debug line that tells an exchange's story. */
#include <stdbool.h>
#include <stdint.h>

#include "core/fsm.h"
#include "net/conn.h"
#include "relay/relay_int.h"

#define TO(s) SL_FSM_TO(SL_RELAY_##s)

/* edges[from] has a bit per state from may move to. */
static const uint32_t edges[SL_RELAY_NSTATES] = {
    /* Admitted (with or without history to load), refused (ENDING: 403, 429), cut, or left
     * while Redis decides. */
    [SL_RELAY_ADMITTING] = TO(LOADING_HISTORY) | TO(ROUTING) | TO(ENDING) | TO(GONE),
    [SL_RELAY_LOADING_HISTORY] = TO(ROUTING) | TO(ENDING) | TO(GONE),
    /* A provider started, or none could (no route: 404; every target skipped or failing to
     * start). Never waits, so neither the client's leaving nor a cut can happen here. */
    [SL_RELAY_ROUTING] = TO(ATTEMPTING) | TO(ENDING),
    /* A retry or fallback is scheduled, an answer event commits, or the error is told. */
    [SL_RELAY_ATTEMPTING] = TO(WAITING_RETRY) | TO(STREAMING) | TO(ENDING) | TO(GONE),
    [SL_RELAY_WAITING_RETRY] = TO(ATTEMPTING) | TO(ENDING) | TO(GONE),
    [SL_RELAY_STREAMING] = TO(ENDING) | TO(GONE),
    /* The dialect ends the response while it encodes the terminal event. */
    [SL_RELAY_ENDING] = TO(ENDED),
    [SL_RELAY_ENDED] = 0,
    [SL_RELAY_GONE] = 0,
};

static const char *const names[SL_RELAY_NSTATES] = {
    [SL_RELAY_ADMITTING] = "ADMITTING",
    [SL_RELAY_LOADING_HISTORY] = "LOADING_HISTORY",
    [SL_RELAY_ROUTING] = "ROUTING",
    [SL_RELAY_ATTEMPTING] = "ATTEMPTING",
    [SL_RELAY_WAITING_RETRY] = "WAITING_RETRY",
    [SL_RELAY_STREAMING] = "STREAMING",
    [SL_RELAY_ENDING] = "ENDING",
    [SL_RELAY_ENDED] = "ENDED",
    [SL_RELAY_GONE] = "GONE",
};

static const sl_fsm_t relay_fsm = {"relay", names, edges, SL_RELAY_NSTATES};

void relay_set_state(sl_relay_t *r, sl_relay_state_t to, const char *why)
{
    /* The connection's id is valid here: GONE is entered before r->conn is cleared, ENDED
     * before the response ends (and a pipelined request takes a new id). */
    const char *rid = r->conn ? sl_conn_request_id(r->conn) : "-";
    r->state = (sl_relay_state_t)sl_fsm_step(&relay_fsm, r->state, to, rid, why);
    if (to == SL_RELAY_STREAMING)
        r->committed = true;
}
