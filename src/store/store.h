/* The store thread (DESIGN §2, §8): owns the database (SQLite with WAL, or PostgreSQL; batched
 * transactions) so no worker ever waits on it. Workers talk to it only through a bounded queue +
 * uv_async: they post operations, and answers come back on the worker's own loop. Holds
 * conversation sessions (seed 000 session_id, seed 003 sessionId), usage records, per-user
 * counters, and the API keys it publishes as a snapshot. */
#ifndef SL_STORE_STORE_H
#define SL_STORE_STORE_H
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "core/buf.h"
#include "core/err.h"

typedef struct sl_store sl_store_t;
typedef struct sl_store_client sl_store_client_t;
typedef struct sl_store_op sl_store_op_t;

/* One usage record per request (DESIGN §6). Strings are copied by sl_store_usage. */
typedef struct sl_usage_record {
    int64_t ts;             /* unix seconds */
    const char *request_id; /* never NULL */
    const char *key_name;   /* may be NULL */
    const char *user_id;    /* may be NULL */
    const char *dialect;
    const char *model;
    const char *provider; /* may be NULL */
    int status;
    int64_t prompt_tokens, completion_tokens;
    bool usage_estimated;
    double ttft_ms, total_ms; /* ttft < 0 when no token came */
    int64_t bytes_out;
    bool cancelled;
    const char *tags; /* JSON object text of extra ids (workspace, project, org) or NULL */
} sl_usage_record_t;

/* Per-user totals, as seed 002's /rate-limit/stats shows them. */
typedef struct sl_user_stats {
    char user_id[128];
    int64_t requests;
    int64_t prompt_tokens, completion_tokens;
    int64_t last_ts;
} sl_user_stats_t;

/* Opens the database and starts the thread: the SQLite file (WAL, schema created if needed),
 * or PostgreSQL when postgres_url is set (keys, usage and sessions then live there; several
 * instances share them). queue_cap bounds the operations waiting; beyond it writes are counted
 * as dropped, never blocking a worker. On failure err says why. */
SL_MUST_CHECK int sl_store_start(const char *sqlite_path, const char *postgres_url,
                                 size_t queue_cap, sl_store_t **out, sl_buf_t *err);
/* Stops accepting, writes everything still queued, closes the database and joins the thread.
 * Every client must have been closed first. NULL is a no-op. */
void sl_store_stop(sl_store_t *s);
/* Writes dropped because the queue was full (and other failures), for metrics. */
uint64_t sl_store_dropped(const sl_store_t *s);

/* A worker's endpoint: answers to its operations run as callbacks on loop. */
sl_store_client_t *sl_store_client_new(sl_store_t *s, uv_loop_t *loop);
/* Closes the uv_async; callbacks of operations still pending are not called. Memory is released
 * in the close callback. */
void sl_store_client_close(sl_store_client_t *c);

/* Loads the last max_turns user/assistant turns of a session owned by owner (NULL owner matches
 * only sessions created without one), oldest first, as an OpenAI messages array. A session that
 * does not exist, or belongs to another owner, yields an empty array (found=false): the caller
 * starts a new one. cb runs on the client's loop; messages is owned by the callee of cb (decref
 * it). Returns a handle the caller may cancel (then cb never runs). */
typedef void (*sl_session_load_cb)(void *ud, int err, bool found, json_t *messages);
sl_store_op_t *sl_store_session_load(sl_store_client_t *c, const char *session_id,
                                     const char *owner, unsigned max_turns, sl_session_load_cb cb,
                                     void *ud);
/* Appends one exchange (user message, assistant answer) to a session, creating it for owner if
 * new. Fire and forget. A session owned by someone else is never written. */
void sl_store_session_append(sl_store_client_t *c, const char *session_id, const char *owner,
                             const char *user_msg, const char *assistant_msg);
/* Records one usage row (batched by the thread). Fire and forget. */
void sl_store_usage(sl_store_client_t *c, const sl_usage_record_t *rec);
/* Totals per user (user_id NULL: every user, most recent first, at most 1000). */
typedef void (*sl_stats_cb)(void *ud, int err, const sl_user_stats_t *rows, size_t n);
sl_store_op_t *sl_store_user_stats(sl_store_client_t *c, const char *user_id, sl_stats_cb cb,
                                   void *ud);
/* The same over the usage of one API key (key_name as the usage records hold it; NULL: every
 * key's, as sl_store_user_stats). */
sl_store_op_t *sl_store_user_stats_key(sl_store_client_t *c, const char *user_id,
                                       const char *key_name, sl_stats_cb cb, void *ud);
/* The current API-key snapshot (a new ref; sl_keyset_unref it), refreshed by the store thread
 * every SL_KEYS_REFRESH_MS. Any thread. Never NULL once started. */
struct sl_keyset *sl_store_keys(sl_store_t *s);

/* GET /admin/usage: sums of requests and tokens over usage rows matching the filters (NULL =
 * any; since <= ts < until in unix seconds, 0 = open), grouped by group_by ("key", "user", "model",
 * "dialect", "provider", "day", or NULL for one total row). */
typedef struct sl_usage_query {
    const char *key_name, *user_id, *model;
    int64_t since, until;
    const char *group_by;
} sl_usage_query_t;
typedef struct sl_usage_sum {
    char group[128]; /* "" for the total row */
    int64_t requests, prompt_tokens, completion_tokens, errors, cancelled;
} sl_usage_sum_t;
typedef void (*sl_usage_query_cb)(void *ud, int err, const sl_usage_sum_t *rows, size_t n);
sl_store_op_t *sl_store_usage_query(sl_store_client_t *c, const sl_usage_query_t *q,
                                    sl_usage_query_cb cb, void *ud);

/* ---- rag (seed 004): the corpus index and the answer cache (store/corpus.c) ----
 * They live in SQLite whatever the backend: the store's own file, or with PostgreSQL the
 * store.sqlite file beside it (the corpus is SQLite-only: FTS5). */

/* Brings the index of corpus dir in line with the files (those whose mtime or size changed are
 * read again), unless it was done for this config generation already. Fire and forget; any
 * thread (main calls it at start, before the workers exist). */
void sl_store_rag_sync(sl_store_t *s, const char *dir, uint64_t generation);

typedef struct sl_rag_query {
    const char *corpus; /* NULL: no corpus, the answer has no sources */
    uint64_t generation;
    const char *question;
    unsigned top_k;
    const char *cache_key; /* NULL: the answer cache is off */
    int64_t cache_ttl_s;
} sl_rag_query_t;
/* The phases before generation, in order: sync the index if the generation is new, the answer
 * cache, retrieval, rerank. result (owned by the callee of cb) is {"cached": "<the cached
 * value>"} on a cache hit, else {"sources": [{id, title, path, score, snippet, text}]}; both
 * with "cache_ms" (from the post, queue wait included), "retrieval_ms" (with any sync) and
 * "rerank_ms". Strings of q are copied. */
typedef void (*sl_rag_cb)(void *ud, int err, json_t *result);
sl_store_op_t *sl_store_rag_query(sl_store_client_t *c, const sl_rag_query_t *q, sl_rag_cb cb,
                                  void *ud);
/* Keeps value (JSON text) under key in the answer cache. Fire and forget. */
void sl_store_rag_cache_put(sl_store_client_t *c, const char *key, const char *value);

/* The caller no longer wants the answer (its client left). Safe until cb has run. */
void sl_store_op_cancel(sl_store_op_t *op);

#endif
