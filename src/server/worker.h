/* A worker thread: one libuv loop, one SO_REUSEPORT listener, the thread's context (core/ctx.h:
 * upstream transports, store client, metrics shard, ...), and every connection accepted on it,
 * for life (DESIGN §2). Nothing here is shared with other workers except the immutable config
 * and router and what the process lends every worker (limiter, budgets, breakers). */
#ifndef SL_SERVER_WORKER_H
#define SL_SERVER_WORKER_H
#include <stdbool.h>
#include <uv.h>

#include "config/config.h"
#include "core/ctx.h"
#include "core/err.h"

typedef struct sl_router sl_router_t;
typedef struct sl_store sl_store_t;
typedef struct sl_worker sl_worker_t;

/* Creates the listening socket (SO_REUSEPORT) on host:port; when port is 0 the kernel picks one
 * and *bound_port tells which, so the other workers can join it. */
SL_MUST_CHECK int sl_worker_listen_fd(const char *host, int port, int *fd, int *bound_port);
sl_worker_t *sl_worker_new(void);
/* Starts the worker thread on an already created listening socket (ownership taken). */
SL_MUST_CHECK int sl_worker_start(sl_worker_t *w, int id, int fd, sl_config_t *cfg,
                                  sl_router_t *router, sl_store_t *store, struct sl_app *app);
/* Before sl_worker_start: also listen on fd (ownership taken) for the routes of router (a ref
 * is taken), the operations endpoints on their own address. */
void sl_worker_set_ops(sl_worker_t *w, int fd, sl_router_t *router);
/* Hands the worker a new config and router (refs taken by the worker). Thread-safe; the worker
 * switches on its own loop: requests in flight keep the config they started with. */
void sl_worker_install(sl_worker_t *w, sl_config_t *cfg, sl_router_t *router);
/* Asks the worker to stop accepting and finish in-flight streams within cfg->drain_ms.
 * Thread-safe. */
void sl_worker_stop(sl_worker_t *w);
/* Waits for the thread to end and releases everything but w itself. */
void sl_worker_join(sl_worker_t *w);
/* After join (or when start failed): frees w. NULL is a no-op. */
void sl_worker_free(sl_worker_t *w);
/* The thread's context. Its metrics shard may be read from any thread (obs/metrics.h). */
sl_ctx_t *sl_worker_ctx(sl_worker_t *w);

#endif
