/* The operations workers post to the store thread (store.c): each sl_store_* call builds an op
 * with its strings copied in, and the client, a worker's uv_async endpoint, hands each answer
 * to its callback on the worker's own loop. */
#include "store/store.h"

#include <string.h>

#include "core/alloc.h"
#include "core/log.h"
#include "store/db.h"
#include "store/store_op.h"

/* ---- building ops ---- */

static size_t text_size(const char *s)
{
    return s ? strlen(s) + 1 : 0;
}

/* Copies s to *at and moves *at past it; NULL stays NULL. */
static const char *copy_text(char **at, const char *s)
{
    if (!s)
        return NULL;
    size_t n = strlen(s) + 1;
    char *p = *at;
    memcpy(p, s, n);
    *at += n;
    return p;
}

static sl_store_op_t *op_new(sl_store_client_t *c, sl_store_op_kind_t kind, size_t text_len)
{
    sl_store_op_t *op = sl_calloc(1, sizeof *op + text_len);
    op->c = c;
    op->s = c->s;
    op->kind = kind;
    op->t_posted = sl_now_ms();
    __atomic_add_fetch(&c->refs, 1, __ATOMIC_RELAXED);
    return op;
}

/* ---- answers, on the client's loop ---- */

static void deliver(sl_store_op_t *op)
{
    if (op->kind == SL_STORE_OP_STATS) {
        op->stats_cb(op->ud, op->err, op->rows, op->nrows);
        return;
    }
    if (op->kind == SL_STORE_OP_USAGE_QUERY) {
        op->usage_cb(op->ud, op->err, op->sums, op->nrows);
        return;
    }
    if (op->kind == SL_STORE_OP_RAG_QUERY) {
        json_t *res = op->result ? op->result : json_object();
        op->result = NULL;
        op->rag_cb(op->ud, op->err, res);
        return;
    }
    /* The callee always gets an array to decref, even for a refused or failed load. */
    json_t *m = op->messages ? op->messages : json_array();
    op->messages = NULL;
    op->load_cb(op->ud, op->err, op->err ? false : op->found, m);
}

static void on_replies(uv_async_t *a)
{
    sl_store_client_t *c = a->data;
    uv_mutex_lock(&c->s->mu);
    sl_store_op_t *op = c->head;
    c->head = c->tail = NULL;
    uv_mutex_unlock(&c->s->mu);
    /* c outlives this loop: the async handle's reference goes only in its close callback. */
    while (op) {
        sl_store_op_t *next = op->next;
        /* A callback may cancel a later op or close the client: no callback after either. */
        if (!c->closed && !sl_store_op_cancelled(op))
            deliver(op);
        sl_store_op_free(op);
        op = next;
    }
}

/* ---- the operations ---- */

void sl_store_usage(sl_store_client_t *c, const sl_usage_record_t *rec)
{
    const char *const strs[] = {rec->request_id, rec->key_name, rec->user_id, rec->dialect,
                                rec->model,      rec->provider, rec->tags};
    size_t len = 0;
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++)
        len += text_size(strs[i]);
    sl_store_op_t *op = op_new(c, SL_STORE_OP_USAGE, len);
    char *at = op->text;
    op->rec = *rec;
    op->rec.request_id = copy_text(&at, rec->request_id);
    op->rec.key_name = copy_text(&at, rec->key_name);
    op->rec.user_id = copy_text(&at, rec->user_id);
    op->rec.dialect = copy_text(&at, rec->dialect);
    op->rec.model = copy_text(&at, rec->model);
    op->rec.provider = copy_text(&at, rec->provider);
    op->rec.tags = copy_text(&at, rec->tags);
    sl_store_post(op);
}

/* An op carrying a session id, owner and up to two messages, stamped now. */
static sl_store_op_t *session_op(sl_store_client_t *c, sl_store_op_kind_t kind,
                                 const char *session_id, const char *owner, const char *user_msg,
                                 const char *assistant_msg)
{
    size_t len =
        text_size(session_id) + text_size(owner) + text_size(user_msg) + text_size(assistant_msg);
    sl_store_op_t *op = op_new(c, kind, len);
    char *at = op->text;
    op->session_id = copy_text(&at, session_id);
    op->owner = copy_text(&at, owner);
    op->user_msg = copy_text(&at, user_msg);
    op->assistant_msg = copy_text(&at, assistant_msg);
    op->ts = sl_wall_s();
    return op;
}

void sl_store_session_append(sl_store_client_t *c, const char *session_id, const char *owner,
                             const char *user_msg, const char *assistant_msg)
{
    sl_store_post(session_op(c, SL_STORE_OP_APPEND, session_id, owner, user_msg, assistant_msg));
}

sl_store_op_t *sl_store_session_load(sl_store_client_t *c, const char *session_id,
                                     const char *owner, unsigned max_turns, sl_session_load_cb cb,
                                     void *ud)
{
    sl_store_op_t *op = session_op(c, SL_STORE_OP_LOAD, session_id, owner, NULL, NULL);
    op->max_turns = max_turns;
    op->load_cb = cb;
    op->ud = ud;
    sl_store_post(op);
    return op;
}

sl_store_op_t *sl_store_user_stats(sl_store_client_t *c, const char *user_id, sl_stats_cb cb,
                                   void *ud)
{
    return sl_store_user_stats_key(c, user_id, NULL, cb, ud);
}

sl_store_op_t *sl_store_user_stats_key(sl_store_client_t *c, const char *user_id,
                                       const char *key_name, sl_stats_cb cb, void *ud)
{
    sl_store_op_t *op = op_new(c, SL_STORE_OP_STATS, text_size(user_id) + text_size(key_name));
    char *at = op->text;
    op->user_id = copy_text(&at, user_id);
    op->query.key_name = copy_text(&at, key_name); /* the stats' key filter */
    op->stats_cb = cb;
    op->ud = ud;
    sl_store_post(op);
    return op;
}

/* Answers a query with err without running it, on the client's loop like any answer. */
static void refuse(sl_store_op_t *op, int err)
{
    sl_store_t *s = op->s;
    uv_mutex_lock(&s->mu);
    op->err = err;
    bool answered = sl_store_reply_locked(op);
    uv_mutex_unlock(&s->mu);
    if (!answered)
        sl_store_op_free(op);
}

sl_store_op_t *sl_store_usage_query(sl_store_client_t *c, const sl_usage_query_t *q,
                                    sl_usage_query_cb cb, void *ud)
{
    size_t len = text_size(q->key_name) + text_size(q->user_id) + text_size(q->model) +
                 text_size(q->group_by);
    sl_store_op_t *op = op_new(c, SL_STORE_OP_USAGE_QUERY, len);
    char *at = op->text;
    op->query = *q;
    op->query.key_name = copy_text(&at, q->key_name);
    op->query.user_id = copy_text(&at, q->user_id);
    op->query.model = copy_text(&at, q->model);
    op->query.group_by = copy_text(&at, q->group_by);
    op->usage_cb = cb;
    op->ud = ud;
    /* The backends build their SQL from the group's name: only known ones get that far. */
    if (sl_db_group(q->group_by) < 0)
        refuse(op, SL_EINVAL);
    else
        sl_store_post(op);
    return op;
}

void sl_store_rag_sync(sl_store_t *s, const char *dir, uint64_t generation)
{
    sl_store_op_t *op = sl_calloc(1, sizeof *op + text_size(dir));
    op->s = s;
    op->kind = SL_STORE_OP_RAG_SYNC;
    char *at = op->text;
    op->rag.corpus = copy_text(&at, dir);
    op->rag.generation = generation;
    sl_store_post(op);
}

sl_store_op_t *sl_store_rag_query(sl_store_client_t *c, const sl_rag_query_t *q, sl_rag_cb cb,
                                  void *ud)
{
    size_t len = text_size(q->corpus) + text_size(q->question) + text_size(q->cache_key);
    sl_store_op_t *op = op_new(c, SL_STORE_OP_RAG_QUERY, len);
    char *at = op->text;
    op->rag = *q;
    op->rag.corpus = copy_text(&at, q->corpus);
    op->rag.question = copy_text(&at, q->question);
    op->rag.cache_key = copy_text(&at, q->cache_key);
    op->rag_cb = cb;
    op->ud = ud;
    sl_store_post(op);
    return op;
}

void sl_store_rag_cache_put(sl_store_client_t *c, const char *key, const char *value)
{
    sl_store_op_t *op = op_new(c, SL_STORE_OP_RAG_PUT, text_size(key) + text_size(value));
    char *at = op->text;
    op->rag.cache_key = copy_text(&at, key);
    op->user_msg = copy_text(&at, value);
    op->ts = sl_wall_s();
    sl_store_post(op);
}

void sl_store_op_cancel(sl_store_op_t *op)
{
    if (op)
        __atomic_store_n(&op->cancelled, 1, __ATOMIC_RELEASE);
}

/* ---- the client ---- */

sl_store_client_t *sl_store_client_new(sl_store_t *s, uv_loop_t *loop)
{
    sl_store_client_t *c = sl_calloc(1, sizeof *c);
    c->s = s;
    c->refs = 1;
    int rc = uv_async_init(loop, &c->async, on_replies);
    if (rc != 0) {
        sl_log(SL_LOG_ERROR, "store: cannot create a client: %s", uv_strerror(rc));
        sl_free(c);
        return NULL;
    }
    c->async.data = c;
    uv_mutex_lock(&s->mu);
    s->open_clients++;
    uv_mutex_unlock(&s->mu);
    return c;
}

static void on_client_closed(uv_handle_t *h)
{
    sl_store_client_unref(h->data);
}

void sl_store_client_close(sl_store_client_t *c)
{
    if (!c)
        return;
    sl_store_t *s = c->s;
    uv_mutex_lock(&s->mu);
    SL_ASSERT(!c->closed);
    c->closed = true; /* from here the store thread discards this client's answers */
    s->open_clients--;
    sl_store_op_t *pending = c->head;
    c->head = c->tail = NULL;
    uv_mutex_unlock(&s->mu);
    sl_store_op_free_list(pending); /* the handle's reference keeps c alive through this */
    uv_close((uv_handle_t *)&c->async, on_client_closed);
}
