/* The store's insides (internal to src/store/, included by store.c and store_ops.c only): the
 * op, client and store structs. store.c runs the thread and the queues between it and the
 * workers; store_ops.c builds the operations workers post and hands answers to their callbacks.
 *
 * Who frees an op: whoever holds it when it is finished with. Posting hands it to the store
 * queue (or, when refused, straight to the client's reply queue); the store thread runs it and
 * frees it, or moves a query's answer to the client's reply queue; the client's loop delivers
 * and frees it. Cancelling only sets a flag: every holder checks it, and the last check is on
 * the client's loop, the thread that cancels, so a cancelled op's callback can never run. */
#ifndef SL_STORE_STORE_OP_H
#define SL_STORE_STORE_OP_H
#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "store/db.h"
#include "store/keyset.h"
#include "store/store.h"

typedef enum {
    SL_STORE_OP_USAGE,
    SL_STORE_OP_APPEND,
    SL_STORE_OP_LOAD,
    SL_STORE_OP_STATS,
    SL_STORE_OP_USAGE_QUERY,
    SL_STORE_OP_RAG_SYNC,  /* rag: bring the corpus index in line (a write) */
    SL_STORE_OP_RAG_QUERY, /* rag: cache, retrieval, rerank (a query) */
    SL_STORE_OP_RAG_PUT,   /* rag: keep an answer in the cache (a write) */
} sl_store_op_kind_t;

struct sl_store_op {
    sl_store_op_t *next;  /* weak: link in whichever queue or batch holds the op */
    sl_store_t *s;        /* borrowed: the store outlives its ops */
    sl_store_client_t *c; /* counted in c->refs until the op is freed; NULL for an op posted
                             without a client (sl_store_rag_sync), which never answers */
    sl_store_op_kind_t kind;
    int cancelled; /* atomic: set on the client's loop; holders discard instead of answering */
    unsigned max_turns;
    int64_t ts;
    /* Strings point into text[], copied when posted. */
    const char *session_id, *owner, *user_msg, *assistant_msg, *user_id;
    sl_usage_record_t rec;
    sl_usage_query_t query;
    sl_session_load_cb load_cb;
    sl_stats_cb stats_cb;
    sl_usage_query_cb usage_cb;
    sl_rag_cb rag_cb;
    sl_rag_query_t rag; /* strings point into text[] */
    double t_posted;    /* sl_now_ms() when posted: the rag cache phase counts the wait */
    void *ud;           /* borrowed: the caller's, handed back to its callback */
    /* Results, written by the store thread before the op is queued back. */
    int err;
    bool found;
    json_t *messages;      /* owned until handed to load_cb */
    sl_user_stats_t *rows; /* owned */
    sl_usage_sum_t *sums;  /* owned */
    json_t *result;        /* owned until handed to rag_cb */
    size_t nrows;          /* of rows or sums */
    char text[];
};

struct sl_store_client {
    uv_async_t async;           /* wakes the worker's loop when replies are queued */
    sl_store_t *s;              /* borrowed: outlives us because stop requires clients closed */
    unsigned refs;              /* atomic: 1 for the async handle until its close cb, 1 per op */
    sl_store_op_t *head, *tail; /* owned: answers waiting for the loop; under s->mu */
    bool closed;                /* under s->mu (written on the loop): no more replies queued */
};

struct sl_store {
    uv_mutex_t mu;
    uv_cond_t wake; /* signalled when ops are queued or stop begins */
    uv_thread_t thread;
    sl_store_op_t *head, *tail; /* owned: waiting ops, oldest first; under mu */
    size_t queued, cap;         /* under mu */
    bool stopping;              /* under mu */
    bool has_query;             /* under mu: a worker waits on something queued */
    unsigned open_clients;      /* under mu; must be 0 when stop frees us */
    sl_db_t *db;                /* owned; only the store thread touches it once started */
    uv_mutex_t keys_mu;         /* guards keys alone, so readers never wait on the queue */
    sl_keyset_t *keys;          /* owned (one ref); under keys_mu; never NULL once started */
    bool keys_stale;            /* store thread only: the last refresh failed */
    uint64_t dropped;           /* atomic */
    int64_t next_log_ms;        /* atomic: when the next drop may be logged */
    /* rag corpus: store thread only once started */
    char *sqlite_path; /* owned; where the corpus lives when the backend is not SQLite */
    sqlite3 *corpus;   /* the backend's connection (borrowed) or one of its own (owned) */
    bool corpus_owned; /* corpus is ours to close */
    uint64_t rag_gen;  /* the config generation whose corpus was last synced; 0 = none */
};

/* The cancel flag, as set by sl_store_op_cancel on the client's loop. */
static inline bool sl_store_op_cancelled(const sl_store_op_t *op)
{
    return __atomic_load_n(&op->cancelled, __ATOMIC_ACQUIRE);
}

/* ---- store.c, for store_ops.c ---- */

/* Hands op to the store thread; takes op. When the queue is full or stopping the op is counted
 * as dropped: a query is answered SL_EUNAVAIL on its client's loop, a write is freed. */
void sl_store_post(sl_store_op_t *op);
/* Queues an answered op for its client's loop; false when nobody wants it (client closed or
 * op cancelled): the caller frees op. Only with op->s->mu held. */
bool sl_store_reply_locked(sl_store_op_t *op);
/* Frees op, its results and its client reference; sl_store_op_free_list frees a chain. */
void sl_store_op_free(sl_store_op_t *op);
void sl_store_op_free_list(sl_store_op_t *op);
/* Drops one reference of c; the last one frees it. */
void sl_store_client_unref(sl_store_client_t *c);

#endif
