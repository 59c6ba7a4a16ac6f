/* The store thread and the queues around it (DESIGN §2): workers post operations into one
 * bounded queue, the thread runs whatever is waiting as one batch (one transaction) through
 * the database backend (db.h: SQLite or PostgreSQL), and answers travel back to each worker's
 * own loop through its client. Between batches, and at least every SL_KEYS_REFRESH_MS, the
 * thread also rebuilds the API-key snapshot that workers read without waiting. The ops
 * themselves, and the client end that delivers their answers, are in store_ops.c; who frees an
 * op is written in store_op.h. */
#include "store/store.h"

#include <sqlite3.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/log.h"
#include "store/corpus.h"
#include "store/db.h"
#include "store/db_sql.h"
#include "store/keys.h"
#include "store/keyset.h"
#include "store/store_op.h"

/* A burst of failures (queue full under load, disk full) logs one line per interval rather
 * than one per row; sl_store_dropped keeps the exact count. */
#define DROP_LOG_INTERVAL_MS 10000

#define WRITE_BATCH     512               /* this many queued writes go at once */
#define WRITE_LINGER_NS (20ull * 1000000) /* else writes wait this long to share a commit */

/* ---- ops and their lifetime ---- */

static void fifo_push(sl_store_op_t **head, sl_store_op_t **tail, sl_store_op_t *op)
{
    op->next = NULL;
    if (*tail)
        (*tail)->next = op;
    else
        *head = op;
    *tail = op;
}

static bool is_query(const sl_store_op_t *op)
{
    return op->kind == SL_STORE_OP_LOAD || op->kind == SL_STORE_OP_STATS ||
           op->kind == SL_STORE_OP_USAGE_QUERY || op->kind == SL_STORE_OP_RAG_QUERY;
}

void sl_store_client_unref(sl_store_client_t *c)
{
    /* The last reference goes either in the close callback or with the last op the store
     * thread discards; whichever it is, nothing touches c after. */
    if (__atomic_sub_fetch(&c->refs, 1, __ATOMIC_ACQ_REL) == 0)
        sl_free(c);
}

void sl_store_op_free(sl_store_op_t *op)
{
    json_decref(op->messages);
    sl_free(op->rows);
    sl_free(op->sums);
    json_decref(op->result);
    if (op->c)
        sl_store_client_unref(op->c);
    sl_free(op);
}

void sl_store_op_free_list(sl_store_op_t *op)
{
    while (op) {
        sl_store_op_t *next = op->next;
        sl_store_op_free(op);
        op = next;
    }
}

/* Counts n lost operations and logs at most once per interval. Lock-free: it is called by
 * workers refusing a post and by the store thread alike. */
static void count_drop(sl_store_t *s, uint64_t n, const char *why)
{
    if (n == 0)
        return;
    uint64_t total = __atomic_add_fetch(&s->dropped, n, __ATOMIC_RELAXED);
    int64_t now = (int64_t)sl_now_ms();
    int64_t next = __atomic_load_n(&s->next_log_ms, __ATOMIC_RELAXED);
    /* Whoever wins the exchange logs; the total in its line covers the others. */
    if (now < next ||
        !__atomic_compare_exchange_n(&s->next_log_ms, &next, now + DROP_LOG_INTERVAL_MS, false,
                                     __ATOMIC_RELAXED, __ATOMIC_RELAXED))
        return;
    sl_log(SL_LOG_WARN, "store: %s (%llu operations dropped so far)", why,
           (unsigned long long)total);
}

/* ---- answers: store thread → client's loop ---- */

/* Queues an answered op for its client's loop. Returns false, and the caller frees the op,
 * when nobody wants the answer. mu is held, so a close cannot slip in between the check and
 * the send (libuv forbids uv_async_send racing uv_close). */
bool sl_store_reply_locked(sl_store_op_t *op)
{
    sl_store_client_t *c = op->c;
    if (c->closed || sl_store_op_cancelled(op))
        return false;
    fifo_push(&c->head, &c->tail, op);
    /* Fails only on a handle that is not an async; several sends coalesce into one wakeup. */
    (void)uv_async_send(&c->async);
    return true;
}

/* ---- posting: worker → store thread ---- */

void sl_store_post(sl_store_op_t *op)
{
    sl_store_t *s = op->s;
    bool answered = false;
    uv_mutex_lock(&s->mu);
    bool stopping = s->stopping;
    bool queued = !stopping && s->queued < s->cap;
    if (queued) {
        /* One wakeup per batch, not per record: a write wakes the thread only when the queue
         * was empty (it then lingers to gather more) or is full enough to write at once; a
         * query always does, since a worker is waiting for it. */
        bool wake = !s->head || is_query(op) || s->queued + 1 >= WRITE_BATCH;
        fifo_push(&s->head, &s->tail, op);
        s->queued++;
        s->has_query |= is_query(op);
        if (wake)
            uv_cond_signal(&s->wake);
    } else if (is_query(op)) {
        /* A refused query still answers on the loop, never inside the call that posted it:
         * the caller has not even got its op handle yet. */
        op->err = SL_EUNAVAIL;
        answered = sl_store_reply_locked(op);
    }
    uv_mutex_unlock(&s->mu);
    if (queued)
        return;
    count_drop(s, 1, stopping ? "operation posted after stop" : "queue full");
    if (!answered)
        sl_store_op_free(op);
}

/* ---- the store thread ---- */

/* The corpus's SQLite connection, opened on first use: the backend's own when it is SQLite
 * (the corpus writes then share the batch's transaction), else store.sqlite on its own. */
static sqlite3 *corpus_db(sl_store_t *s, sl_buf_t *err)
{
    if (s->corpus)
        return s->corpus;
    sqlite3 *h = s->db->ops->sqlite ? s->db->ops->sqlite(s->db) : NULL;
    if (!h) {
        int rc =
            sqlite3_open_v2(s->sqlite_path, &h,
                            SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
        if (rc == SQLITE_OK)
            rc = sqlite3_exec(h, "PRAGMA journal_mode=WAL", NULL, NULL, NULL);
        if (rc == SQLITE_OK)
            rc = sqlite3_busy_timeout(h, 5000);
        if (rc != SQLITE_OK) {
            sl_buf_printf(err, "corpus database %s: %s", s->sqlite_path,
                          h ? sqlite3_errmsg(h) : sqlite3_errstr(rc));
            sqlite3_close(h);
            return NULL;
        }
        s->corpus_owned = true;
    }
    if (sl_corpus_open(h, err) != 0) {
        if (s->corpus_owned)
            sqlite3_close(h);
        s->corpus_owned = false;
        return NULL;
    }
    return s->corpus = h;
}

/* Once per config generation (start, then after each reload that has rag traffic). A failure
 * is logged and not retried until the next generation: a missing directory must not cost a
 * scan per request. */
static int rag_sync(sl_store_t *s, sqlite3 *db, const char *dir, uint64_t gen, sl_buf_t *err)
{
    if (!dir || gen == s->rag_gen)
        return 0;
    s->rag_gen = gen;
    int rc = sl_corpus_sync(db, dir, err);
    if (rc)
        sl_log(SL_LOG_WARN, "rag: the corpus index was not updated: %s", err->data);
    return rc;
}

/* Runs the rag phases before generation into op->result. */
static int rag_query(sl_store_t *s, sqlite3 *db, sl_store_op_t *op, sl_buf_t *err)
{
    const sl_rag_query_t *q = &op->rag;
    double t0 = sl_now_ms();
    /* A corpus that cannot be synced is searched as it was indexed. */
    (void)rag_sync(s, db, q->corpus, q->generation, err);
    sl_buf_reset(err);
    double t_sync = sl_now_ms() - t0;
    json_t *res = json_object();
    op->result = res;
    char *hit = NULL;
    double tc = sl_now_ms();
    int rc = q->cache_key
                 ? sl_corpus_cache_get(db, q->cache_key, sl_wall_s(), q->cache_ttl_s, &hit, err)
                 : 0;
    double cache_ms = (t0 - op->t_posted) + (sl_now_ms() - tc);
    json_object_set_new(res, "cache_ms", json_real(cache_ms > 0 ? cache_ms : 0));
    if (rc == 0 && hit) {
        json_object_set_new(res, "cached", json_string(hit));
        json_object_set_new(res, "retrieval_ms", json_real(0));
        json_object_set_new(res, "rerank_ms", json_real(0));
    } else if (rc == 0 && q->corpus) {
        rc = sl_corpus_search(db, q->question, q->top_k, res, err);
        json_t *r = json_object_get(res, "retrieval_ms");
        json_object_set_new(res, "retrieval_ms", json_real(json_real_value(r) + t_sync));
    } else if (rc == 0) {
        json_object_set_new(res, "sources", json_array());
        json_object_set_new(res, "retrieval_ms", json_real(0));
        json_object_set_new(res, "rerank_ms", json_real(0));
    }
    sl_free(hit);
    return rc;
}

static int run_rag(sl_store_t *s, sl_store_op_t *op)
{
    sl_buf_t err;
    sl_buf_init(&err);
    sqlite3 *db = corpus_db(s, &err);
    int rc = db ? 0 : SL_EUNAVAIL;
    if (db && op->kind == SL_STORE_OP_RAG_SYNC)
        rc = rag_sync(s, db, op->rag.corpus, op->rag.generation, &err);
    else if (db && op->kind == SL_STORE_OP_RAG_QUERY)
        rc = op->err = rag_query(s, db, op, &err);
    else if (db)
        rc = sl_corpus_cache_put(db, op->rag.cache_key, op->user_msg, op->ts, &err);
    if (rc && op->kind == SL_STORE_OP_RAG_QUERY)
        op->err = rc;
    if (rc) /* what the batch's drop count logs */
        snprintf(s->db->errmsg, sizeof s->db->errmsg, "%s", err.data ? err.data : "rag failed");
    sl_buf_dispose(&err);
    return rc;
}

static int run_op(sl_store_t *s, sl_db_t *db, sl_store_op_t *op)
{
    switch (op->kind) {
    case SL_STORE_OP_RAG_SYNC:
    case SL_STORE_OP_RAG_QUERY:
    case SL_STORE_OP_RAG_PUT: return run_rag(s, op);
    case SL_STORE_OP_USAGE: return db->ops->usage_insert(db, &op->rec);
    case SL_STORE_OP_APPEND:
        return db->ops->session_append(db, op->session_id, op->owner, op->user_msg,
                                       op->assistant_msg, op->ts);
    case SL_STORE_OP_LOAD:
        op->err = db->ops->session_load(db, op->session_id, op->owner, op->max_turns, &op->found,
                                        &op->messages);
        return op->err;
    case SL_STORE_OP_STATS:
        op->err = db->ops->user_stats(db, op->user_id, op->query.key_name, &op->rows, &op->nrows);
        return op->err;
    case SL_STORE_OP_USAGE_QUERY:
        op->err = db->ops->usage_query(db, &op->query, &op->sums, &op->nrows);
        return op->err;
    }
    return SL_EINTERNAL;
}

static uint64_t count_writes(const sl_store_op_t *op)
{
    uint64_t n = 0;
    for (; op; op = op->next)
        n += !is_query(op);
    return n;
}

/* Opens the batch's transaction before ops (the rest of the batch). On failure every write
 * among them is counted as dropped and skipped; queries still run, WAL readers need no lock. */
static bool begin(sl_store_t *s, const sl_store_op_t *ops)
{
    if (s->db->ops->begin(s->db) == 0)
        return true;
    count_drop(s, count_writes(ops), s->db->errmsg);
    return false;
}

static void commit(sl_store_t *s, uint64_t written)
{
    if (s->db->ops->commit(s->db) == 0)
        return;
    count_drop(s, written, s->db->errmsg);
    s->db->ops->rollback(s->db);
}

/* Runs a batch in order in one transaction: one fsync-worthy commit for however many usage
 * rows piled up, and a query sees every write posted before it. */
static void run_batch(sl_store_t *s, sl_store_op_t *batch)
{
    bool txn = count_writes(batch) > 0 && begin(s, batch);
    uint64_t written = 0; /* writes in the open transaction, lost with it if it rolls back */
    for (sl_store_op_t *op = batch; op; op = op->next) {
        if (is_query(op) ? sl_store_op_cancelled(op) : !txn)
            continue;
        int err = run_op(s, s->db, op);
        if (!err) {
            written += !is_query(op);
            continue;
        }
        count_drop(s, 1, s->db->errmsg);
        if (txn && !s->db->ops->in_txn(s->db)) {
            /* The whole transaction is gone (sqlite: disk full, I/O error; PostgreSQL: any
             * failed statement): the writes before this one went with it. Carry on with the
             * rest in a new one. */
            count_drop(s, written, "batch rolled back");
            written = 0;
            txn = begin(s, op->next);
        }
    }
    if (txn)
        commit(s, written);
}

/* Sends each answered query to its client; returns what nobody is waiting for. */
static sl_store_op_t *answer_locked(sl_store_op_t *batch)
{
    sl_store_op_t *trash = NULL;
    while (batch) {
        sl_store_op_t *op = batch;
        batch = op->next;
        if (is_query(op) && sl_store_reply_locked(op))
            continue;
        op->next = trash;
        trash = op;
    }
    return trash;
}

/* A new snapshot of every key and every key name's spend. */
static int read_keyset(sl_db_t *db, sl_keyset_t **out)
{
    sl_key_rec_t *keys = NULL;
    sl_db_spend_t *spend = NULL;
    size_t nkeys = 0, nspend = 0;
    int err = db->ops->keys_read(db, &keys, &nkeys);
    if (!err)
        err = db->ops->spend_read(db, &spend, &nspend);
    if (!err)
        *out = sl_keyset_new(keys, nkeys, spend, nspend);
    sl_free(keys);
    return err;
}

/* Reads every key and publishes them as the new snapshot. */
static int load_keys(sl_store_t *s)
{
    sl_keyset_t *ks = NULL;
    int err = read_keyset(s->db, &ks);
    if (err)
        return err;
    uv_mutex_lock(&s->keys_mu);
    sl_keyset_t *old = s->keys;
    s->keys = ks;
    uv_mutex_unlock(&s->keys_mu);
    sl_keyset_unref(old); /* readers holding it keep it alive */
    return 0;
}

/* A failed refresh keeps the last snapshot: a key revoked meanwhile is refused late, rather
 * than every request refused while the database is away. Logged when it starts and ends. */
static void refresh_keys(sl_store_t *s)
{
    int err = load_keys(s);
    if (err && !s->keys_stale)
        sl_log(SL_LOG_WARN, "store: cannot refresh the API keys, keeping the last ones: %s",
               s->db->errmsg);
    else if (!err && s->keys_stale)
        sl_log(SL_LOG_INFO, "store: API keys refreshed again");
    s->keys_stale = err != 0;
}

/* Waits until ops are queued, stop begins or refresh_at (sl_now_ms) passes, and takes every
 * op waiting as the next batch (NULL when none). */
static sl_store_op_t *take_batch(sl_store_t *s, double refresh_at, bool *stopping)
{
    uv_mutex_lock(&s->mu);
    double left;
    while (!s->head && !s->stopping && (left = refresh_at - sl_now_ms()) > 0)
        /* Timed out or woken, the loop condition says what to do next. */
        (void)uv_cond_timedwait(&s->wake, &s->mu, (uint64_t)(left * 1e6) + 1);
    /* Only writes waiting: linger a little so they share one transaction. */
    while (s->head && !s->has_query && !s->stopping && s->queued < WRITE_BATCH)
        if (uv_cond_timedwait(&s->wake, &s->mu, WRITE_LINGER_NS) == UV_ETIMEDOUT)
            break;
    /* Everything queued before stop is taken: stop loses no row. */
    sl_store_op_t *batch = s->head;
    s->head = s->tail = NULL;
    s->queued = 0;
    s->has_query = false;
    *stopping = s->stopping;
    uv_mutex_unlock(&s->mu);
    return batch;
}

static void store_main(void *arg)
{
    sl_store_t *s = arg;
    double refresh_at = sl_now_ms() + SL_KEYS_REFRESH_MS;
    for (;;) {
        bool stopping;
        sl_store_op_t *batch = take_batch(s, refresh_at, &stopping);
        if (!batch && stopping)
            return;
        if (batch) {
            run_batch(s, batch);
            uv_mutex_lock(&s->mu);
            sl_store_op_t *trash = answer_locked(batch);
            uv_mutex_unlock(&s->mu);
            sl_store_op_free_list(trash);
        }
        /* Checked after every batch too, so a busy queue cannot starve the refresh. */
        if (sl_now_ms() >= refresh_at) {
            refresh_keys(s);
            refresh_at = sl_now_ms() + SL_KEYS_REFRESH_MS;
        }
    }
}

/* ---- lifecycle ---- */

/* Creates the locks and the thread, or nothing; returns a libuv code. */
static int start_thread(sl_store_t *s)
{
    int rc = uv_mutex_init(&s->mu);
    if (rc == 0 && (rc = uv_mutex_init(&s->keys_mu)) != 0)
        uv_mutex_destroy(&s->mu);
    if (rc == 0 && (rc = uv_cond_init(&s->wake)) != 0) {
        uv_mutex_destroy(&s->keys_mu);
        uv_mutex_destroy(&s->mu);
    }
    /* The thread creation publishes s, db and keys included, to the store thread. */
    if (rc == 0 && (rc = uv_thread_create(&s->thread, store_main, s)) != 0) {
        uv_cond_destroy(&s->wake);
        uv_mutex_destroy(&s->keys_mu);
        uv_mutex_destroy(&s->mu);
    }
    return rc;
}

int sl_store_start(const char *sqlite_path, const char *postgres_url, size_t queue_cap,
                   sl_store_t **out, sl_buf_t *err)
{
    if (queue_cap == 0) {
        sl_buf_puts(err, "store: queue_cap must be at least 1");
        return SL_EINVAL;
    }
    sl_store_t *s = sl_calloc(1, sizeof *s);
    s->cap = queue_cap;
    s->sqlite_path = sl_strdup(sqlite_path ? sqlite_path : "./sluice.db");
    int rc = sl_db_open(sqlite_path, postgres_url, &s->db, err);
    if (rc)
        goto out;
    /* The first snapshot is read here, on the caller's thread before the store thread exists,
     * so sl_store_keys never returns NULL. */
    if ((rc = read_keyset(s->db, &s->keys)) != 0) {
        sl_buf_printf(err, "store: cannot read the API keys: %s", s->db->errmsg);
        goto out;
    }
    int uvrc = start_thread(s);
    if (uvrc != 0) {
        sl_buf_printf(err, "store: cannot start its thread: %s", uv_strerror(uvrc));
        rc = SL_EINTERNAL;
    }
out:
    if (rc) {
        sl_keyset_unref(s->keys);
        sl_db_close(s->db);
        sl_free(s->sqlite_path);
        sl_free(s);
        return rc;
    }
    *out = s;
    return 0;
}

void sl_store_stop(sl_store_t *s)
{
    if (!s)
        return;
    uv_mutex_lock(&s->mu);
    s->stopping = true;
    uv_cond_signal(&s->wake);
    uv_mutex_unlock(&s->mu);
    int rc = uv_thread_join(&s->thread);
    if (rc != 0)
        sl_log(SL_LOG_ERROR, "store: joining the store thread: %s", uv_strerror(rc));
    if (s->corpus_owned)
        sqlite3_close(s->corpus);
    sl_db_close(s->db);
    sl_free(s->sqlite_path);
    sl_keyset_unref(s->keys);
    uint64_t dropped = sl_store_dropped(s);
    if (dropped > 0) /* the rate-limited log may have missed the last of them */
        sl_log(SL_LOG_WARN, "store: stopped; %llu operations dropped in all",
               (unsigned long long)dropped);
    /* The database is safe by now. A client still open would later lock the mutex of a freed
     * store from its loop: fail loudly here instead. */
    SL_ASSERT(s->open_clients == 0);
    uv_cond_destroy(&s->wake);
    uv_mutex_destroy(&s->keys_mu);
    uv_mutex_destroy(&s->mu);
    sl_free(s);
}

sl_keyset_t *sl_store_keys(sl_store_t *s)
{
    uv_mutex_lock(&s->keys_mu);
    sl_keyset_t *ks = sl_keyset_ref(s->keys);
    uv_mutex_unlock(&s->keys_mu);
    return ks;
}

uint64_t sl_store_dropped(const sl_store_t *s)
{
    return __atomic_load_n(&s->dropped, __ATOMIC_RELAXED);
}
