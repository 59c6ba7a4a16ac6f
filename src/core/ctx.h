/* The per-thread context: everything one worker thread owns, or borrows from the process, that
 * code running on that thread needs (the loop, the current config, the upstream transports,
 * the store client, limits, metrics, breakers, the key snapshot, a slot per dialect). Like
 * h2o's h2o_context_t it is one struct every layer can name, so nothing below server/ ever
 * sees the worker. Core holds only its shape: each member's type belongs to the room that
 * defines it (incomplete here) and server/worker.c fills it in. Handlers reach it through the
 * connection they serve (sl_conn_ctx); it lives exactly as long as its worker thread. */
#ifndef SL_CORE_CTX_H
#define SL_CORE_CTX_H
#include <stdbool.h>
#include <uv.h>

#include "core/buf.h"

struct sl_config;
struct sl_router;
struct sl_upstream;
struct sl_store;
struct sl_store_client;
struct sl_metrics;
struct sl_redis;
struct sl_limiter;
struct sl_budgets;
struct sl_breakers;
struct sl_keyset;
struct sl_app;
struct sl_conn;

/* One read buffer per thread: reads are handled synchronously, so an idle connection owns no
 * read memory at all. */
#define SL_READ_BUF 65536
/* Per-thread state slots, one per dialect (config's sl_dialect_id_t indexes them). */
#define SL_CTX_SLOTS 8

typedef struct sl_ctx {
    int id; /* the worker's number: request ids, logs */
    uv_loop_t loop;
    struct sl_config *cfg;        /* owned ref: the current config (exchanges hold their own) */
    struct sl_router *router;     /* owned ref: the routes of the client listener */
    struct sl_router *ops_router; /* owned ref, or NULL: the metrics listener's routes */

    /* This thread's own (owned; made and closed by the worker). */
    struct sl_upstream *upstream;  /* the upstream transports: curl multi + built-in h1 pool */
    struct sl_store_client *store; /* endpoint to the store thread, or NULL without a store */
    struct sl_metrics *metrics;    /* this thread's metrics shard */
    struct sl_redis *redis;        /* shared limits (store.redis), NULL when local */
    struct sl_keyset *keys;        /* ref on the key snapshot last handed out (policy/auth) */
    sl_buf_t access_log;           /* this turn's access-log lines, written once per turn */
    /* What a relay formats (an event, an error) before it is queued on its connection: one per
     * worker rather than one per stream, since nothing holds it across a turn (relay_output.c) */
    sl_buf_t scratch;

    /* The process's, shared by every worker (borrowed: the process outlives its workers). */
    struct sl_store *store_thread; /* the key snapshot comes from it; NULL without a store */
    struct sl_limiter *limiter;
    struct sl_budgets *budgets;
    struct sl_breakers *breakers;
    struct sl_app *app; /* opaque below server/: the operations endpoints read the process */

    /* The connections of this thread (net/conn.c keeps these). */
    struct sl_conn *conns;   /* all open connections (intrusive list) */
    struct sl_conn *pending; /* connections with output or input waiting for this turn's flush */
    unsigned nconns;
    unsigned active; /* requests in flight (responses not finished) */
    bool draining;   /* stopping: no new connections, idle ones close */
    /* Set by the worker: net calls it when a connection has gone (drain bookkeeping). */
    void (*conn_gone)(struct sl_ctx *x);
    void *owner; /* the worker, for conn_gone */

    /* A dialect's per-thread state (e.g. a cache), made on first use; free_slot[i] releases
     * slot[i] when the thread ends. */
    void *slot[SL_CTX_SLOTS];
    void (*free_slot[SL_CTX_SLOTS])(void *state);

    char readbuf[SL_READ_BUF];
} sl_ctx_t;

#endif
