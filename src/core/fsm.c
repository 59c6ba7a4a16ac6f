/* sl_fsm_step: the check and the debug line every lifecycle object's state change shares. */
#include "core/fsm.h"

#include "core/err.h"

static const char *name_of(const sl_fsm_t *m, unsigned s)
{
    return s < m->nstates && m->names[s] ? m->names[s] : "(out of range)";
}

unsigned sl_fsm_step(const sl_fsm_t *m, unsigned from, unsigned to, const char *id, const char *why)
{
    bool legal = sl_fsm_legal(m, from, to);
    if (!legal)
        sl_log(SL_LOG_ERROR, "%s %s: illegal state change %s → %s (%s)", m->what, id,
               name_of(m, from), name_of(m, to), why);
    SL_ASSERT(legal);
    if (sl_log_enabled(SL_LOG_DEBUG)) /* off: one branch */
        sl_log(SL_LOG_DEBUG, "%s %s: %s → %s (%s)", m->what, id, name_of(m, from), name_of(m, to),
               why);
    return to;
}
