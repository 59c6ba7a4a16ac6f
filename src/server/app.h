/* The process as the admin endpoints see it: the workers, the store, the config file and the
 * current config generation. Reloading (SIGHUP or POST /admin/reload) builds a new immutable
 * config + router and hands one ref of each to every worker (DESIGN §2); a bad file is refused
 * with its error and the running config keeps serving. */
#ifndef SL_SERVER_APP_H
#define SL_SERVER_APP_H
#include <stdint.h>
#include <uv.h>

#include "config/config.h"
#include "core/buf.h"
#include "core/err.h"

typedef struct sl_worker sl_worker_t;
typedef struct sl_router sl_router_t;
typedef struct sl_store sl_store_t;

typedef struct sl_app {
    const char *config_path; /* borrowed (argv); NULL = the embedded default */
    sl_worker_t **workers;   /* borrowed: main's array */
    int nworkers;
    sl_store_t *store;            /* borrowed */
    struct sl_logq *logq;         /* borrowed: the access-log writer, NULL = write inline */
    struct sl_limiter *limiter;   /* owned: this process's rate-limit buckets, shared by workers */
    struct sl_breakers *breakers; /* owned: this process's circuit breakers, shared by workers */
    struct sl_budgets *budgets;   /* owned: this process's budget ledger, shared by workers */
    sl_router_t *(*build_router)(const sl_config_t *cfg);
    double start_time_s;
    uv_mutex_t mu;                       /* serialises reloads */
    sl_config_t *cfg;                    /* owned ref: the current generation, under mu */
    sl_router_t *router;                 /* owned ref, under mu */
    uint64_t reloads_ok, reloads_failed; /* atomic */
} sl_app_t;

/* Takes refs on cfg and router as the first generation. */
void sl_app_init(sl_app_t *app, const char *config_path, sl_config_t *cfg, sl_router_t *router,
                 sl_router_t *(*build_router)(const sl_config_t *cfg));
void sl_app_dispose(sl_app_t *app);
/* Reads the config file again and installs it in every worker. Any thread; blocking (file
 * read): call it from the main thread or a thread-pool job, never from a worker's loop. On a
 * bad config err holds "file:line:col: message" and nothing changes. */
SL_MUST_CHECK int sl_app_reload(sl_app_t *app, sl_buf_t *err);

#endif
