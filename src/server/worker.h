/* A worker thread: one libuv loop, one SO_REUSEPORT listener, one curl multi handle, and every
 * connection accepted on it, for life (DESIGN §2). Nothing here is shared with other workers
 * except the immutable config and router. */
#ifndef SL_SERVER_WORKER_H
#define SL_SERVER_WORKER_H
#include <stdbool.h>
#include <uv.h>

#include "config/config.h"
#include "core/buf.h"
#include "core/err.h"

typedef struct sl_conn sl_conn_t;
typedef struct sl_router sl_router_t;
typedef struct sl_multi sl_multi_t;
typedef struct sl_store sl_store_t;
typedef struct sl_store_client sl_store_client_t;

#define SL_READ_BUF 65536

typedef struct sl_worker {
    int id;
    uv_loop_t loop;
    uv_tcp_t listener;
    /* observability.metrics.listen: a second listener for /metrics, /healthz and /readyz only,
     * routed by ops_router (owned ref; NULL = none). Unref'd, so it never holds the loop open;
     * it is closed with the loop's last handles. */
    uv_tcp_t ops_listener;
    sl_router_t *ops_router;
    int ops_fd;
    uv_async_t wake; /* another thread asks us to drain and stop */
    /* Output is flushed once per loop turn, from two points: after the poll phase (what I/O
     * callbacks produced) and before it (what timers produced, so it never waits on poll). */
    uv_check_t flush;
    uv_prepare_t flush_pre;
    uv_timer_t drain_timer;
    uv_thread_t thread;
    int listen_fd;

    sl_config_t *cfg;    /* owned ref: the current config (exchanges hold their own) */
    sl_router_t *router; /* owned ref */
    struct sl_app *app;  /* borrowed: the process outlives its workers */
    /* A reload hands the next config here (under next_mu) and wakes the loop. */
    uv_mutex_t next_mu;
    sl_config_t *next_cfg;      /* owned ref, or NULL */
    sl_router_t *next_router;   /* owned ref, or NULL */
    sl_multi_t *multi;          /* owned */
    sl_store_client_t *store;   /* owned: this worker's endpoint to the store thread */
    struct sl_metrics *metrics; /* owned: this worker's shard */
    struct sl_keyset *keys;     /* owned ref: the API-key snapshot of the current request */
    struct sl_redis *redis;     /* owned: shared limits (store.redis), NULL when local */
    sl_buf_t access_log;        /* owned: this turn's access-log lines, written once per turn */

    sl_conn_t *conns;   /* all open connections (intrusive list) */
    sl_conn_t *pending; /* connections with output or input waiting for this turn's flush */
    unsigned nconns;
    unsigned active; /* requests in flight (responses not finished) */
    bool draining;
    bool stopping;
    int stop_request; /* atomic: set by sl_worker_stop */

    /* One read buffer for all connections: reads are handled synchronously, so an idle
     * connection owns no read memory at all. */
    char readbuf[SL_READ_BUF];
} sl_worker_t;

/* Creates the listening socket (SO_REUSEPORT) on host:port; when port is 0 the kernel picks one
 * and *bound_port tells which, so the other workers can join it. */
SL_MUST_CHECK int sl_worker_listen_fd(const char *host, int port, int *fd, int *bound_port);
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
/* Waits for the thread to end and releases everything. */
void sl_worker_join(sl_worker_t *w);

/* The API keys as the store last saw them (it re-reads them every SL_KEYS_REFRESH_MS).
 * Borrowed: valid until the worker's next call. */
const struct sl_keyset *sl_worker_keys(sl_worker_t *w);

/* Internal to net/: connection bookkeeping. */
void sl_worker_schedule(sl_worker_t *w, sl_conn_t *c);
void sl_worker_conn_gone(sl_worker_t *w, sl_conn_t *c);

#endif
