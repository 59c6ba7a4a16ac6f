/* What every provider implements: take one canonical request, talk to an LLM server (or, for
 * mock, to the worker's timers) and produce canonical events (DESIGN §5). A provider knows
 * nothing of dialects or connections; it sees only the sink its events go to. */
#ifndef SL_UPSTREAM_PROVIDER_H
#define SL_UPSTREAM_PROVIDER_H
#include <stdbool.h>
#include <uv.h>

#include "codec/canon.h"
#include "config/config.h"
#include "core/err.h"

typedef struct sl_upstream sl_upstream_t;

typedef struct sl_upstream_sink {
    /* Delivers one event. After a terminal event (ERROR, END) the provider emits nothing more. */
    void (*emit)(void *ud, const sl_event_t *ev);
    /* True while the client is behind: stop producing until resume() (DESIGN §3.3). */
    bool (*congested)(void *ud);
    void *ud;
} sl_upstream_sink_t;

typedef struct sl_upstream_call {
    uv_loop_t *loop;         /* the worker's */
    sl_upstream_t *upstream; /* the worker's transports */
    const sl_config_t *cfg;
    const sl_provider_cfg_t *provider;
    const sl_target_cfg_t *target;
    sl_chat_req_t *req;     /* valid during start() only; sl_chat_req_json may parse it */
    const char *request_id; /* valid during start() only; sent upstream as X-Request-Id */
    bool want_raw;          /* the dialect forwards OpenAI JSON as it is: parse only what decides */
    /* Ask the upstream for a whole answer even though req->stream is set, and deliver it as
     * parsed events (START, DELTA..., FINISH, USAGE, END): the stream → non-stream fallback. */
    bool force_non_stream;
    sl_upstream_sink_t sink;
} sl_upstream_call_t;

typedef struct sl_provider_ops {
    const char *type;
    /* Starts the call; events follow asynchronously (never from inside start). On failure
     * nothing was started and no event will come. */
    SL_MUST_CHECK int (*start)(const sl_upstream_call_t *call, void **state);
    /* The client went away: stop now (closing the upstream connection); no event after this.
     * The provider frees its state itself. */
    void (*cancel)(void *state);
    /* The client caught up after congested() said true. */
    void (*resume)(void *state);
} sl_provider_ops_t;

extern const sl_provider_ops_t sl_provider_mock;
extern const sl_provider_ops_t sl_provider_openai;
extern const sl_provider_ops_t sl_provider_azure;
extern const sl_provider_ops_t sl_provider_anthropic;

const sl_provider_ops_t *sl_provider_ops_for(sl_provider_type_t type);

#endif
