/* Worker threads: accept, flush once per loop turn, drain on stop. */
#include "server/worker.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "server/app.h"
#include "obs/metrics.h"
#include "core/alloc.h"
#include "core/log.h"
#include "http/router.h"
#include "net/conn.h"
#include "store/keys.h"
#include "policy/ratelimit_redis.h"
#include "store/store.h"
#include "upstream/multi.h"

int sl_worker_listen_fd(const char *host, int port, int *fd_out, int *bound_port)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    char portstr[16];
    snprintf(portstr, sizeof portstr, "%d", port);
    /* Startup only, before any loop runs: a blocking lookup is fine here. */
    int rc = getaddrinfo(host, portstr, &hints, &ai);
    if (rc != 0) {
        sl_log(SL_LOG_ERROR, "listen %s:%d: %s", host, port, gai_strerror(rc));
        return SL_ECONFIG;
    }
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0 ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 1024) != 0) {
        sl_log(SL_LOG_ERROR, "listen %s:%d: %s", host, port, strerror(errno));
        if (fd >= 0)
            close(fd);
        freeaddrinfo(ai);
        return SL_ECONFIG;
    }
    freeaddrinfo(ai);
    union {
        struct sockaddr sa;
        struct sockaddr_in in4;
        struct sockaddr_in6 in6;
    } addr;
    memset(&addr, 0, sizeof addr);
    socklen_t alen = sizeof addr;
    if (getsockname(fd, &addr.sa, &alen) != 0) {
        close(fd);
        return SL_ECONFIG;
    }
    in_port_t nport = addr.sa.sa_family == AF_INET6 ? addr.in6.sin6_port : addr.in4.sin_port;
    *bound_port = ntohs(nport);
    *fd_out = fd;
    return 0;
}

void sl_worker_schedule(sl_worker_t *w, sl_conn_t *c)
{
    if (c->pending)
        return;
    c->pending = true;
    c->pending_next = w->pending;
    w->pending = c;
}

static void unlink_pending(sl_worker_t *w, sl_conn_t *c)
{
    if (!c->pending)
        return;
    for (sl_conn_t **pp = &w->pending; *pp; pp = &(*pp)->pending_next) {
        if (*pp == c) {
            *pp = c->pending_next;
            break;
        }
    }
    c->pending = false;
}

static void maybe_finish_drain(sl_worker_t *w);

void sl_worker_conn_gone(sl_worker_t *w, sl_conn_t *c)
{
    unlink_pending(w, c);
    if (c->prev)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
    w->nconns--;
    if (w->draining)
        maybe_finish_drain(w);
}

/* Runs after every poll phase: everything this turn queued goes out in one write per
 * connection (DESIGN §3.2). */
static void flush_log(sl_worker_t *w)
{
    if (!w->access_log.len)
        return;
    sl_log_batch(w->access_log.data, w->access_log.len);
    sl_buf_reset(&w->access_log);
    sl_buf_shrink(&w->access_log, (size_t)64 * 1024);
}

static void flush_pending(sl_worker_t *w)
{
    while (w->pending) {
        sl_conn_t *c = w->pending;
        w->pending = c->pending_next;
        c->pending = false;
        sl_conn_flush(c);
    }
    flush_log(w); /* one write per turn for every request that ended in it */
    if (w->draining)
        maybe_finish_drain(w);
}

static void on_flush(uv_check_t *h)
{
    flush_pending(h->data);
}

static void on_flush_pre(uv_prepare_t *h)
{
    flush_pending(h->data);
}

static void on_connection(uv_stream_t *server, int status)
{
    sl_worker_t *w = server->data;
    if (status < 0 || w->draining)
        return;
    sl_conn_accept(w, server);
}

static void close_walk(uv_handle_t *h, void *arg)
{
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

static void stop_loop(sl_worker_t *w)
{
    if (w->stopping)
        return;
    w->stopping = true;
    while (w->conns)
        sl_conn_close(w->conns); /* cancels what is still in flight */
    sl_multi_close(w->multi);
    w->multi = NULL;
    sl_store_client_close(w->store);
    w->store = NULL;
    sl_redis_close(w->redis);
    w->redis = NULL;
    uv_close((uv_handle_t *)&w->wake, NULL);
    uv_close((uv_handle_t *)&w->flush, NULL);
    uv_close((uv_handle_t *)&w->flush_pre, NULL);
    uv_close((uv_handle_t *)&w->drain_timer, NULL);
}

static void maybe_finish_drain(sl_worker_t *w)
{
    static __thread bool busy; /* closing a connection below calls back in here */
    if (busy)
        return;
    busy = true;
    /* Idle keep-alive connections have nothing in flight: close them now. */
    for (sl_conn_t *c = w->conns, *next; c; c = next) {
        next = c->next;
        if (c->state == SL_CONN_READING && !c->req.started && !c->writing && !c->out.len)
            sl_conn_close(c);
    }
    /* Connections with an answer still going out close themselves once it is written. */
    if (w->nconns == 0 && !w->stopping)
        stop_loop(w);
    busy = false;
}

/* Time to write the error events of the cut streams before the last connections go. */
#define CUT_GRACE_MS 1000

static void on_cut_grace_over(uv_timer_t *t)
{
    sl_worker_t *w = t->data;
    sl_log(SL_LOG_WARN, "worker %d: closing %u connection(s) that did not take their last bytes",
           w->id, w->nconns);
    stop_loop(w);
}

/* The drain time is over: every exchange still running ends now with its dialect's error
 * event (never a silent cut, and never logged as the client's doing); the connections close
 * once that is written, or after CUT_GRACE_MS for clients that do not read. */
static void on_drain_timeout(uv_timer_t *t)
{
    sl_worker_t *w = t->data;
    sl_log(SL_LOG_WARN, "worker %d: drain time over, cutting %u connection(s)", w->id, w->nconns);
    for (sl_conn_t *c = w->conns, *next; c; c = next) {
        next = c->next;
        sl_conn_cut(c);
    }
    uv_timer_start(&w->drain_timer, on_cut_grace_over, CUT_GRACE_MS, 0);
    maybe_finish_drain(w);
}

/* A reload left a new config: switch to it. Connections read w->cfg when they start a request,
 * so new requests use it; exchanges in flight hold a ref on the old one. */
static void take_next(sl_worker_t *w)
{
    uv_mutex_lock(&w->next_mu);
    sl_config_t *cfg = w->next_cfg;
    sl_router_t *router = w->next_router;
    w->next_cfg = NULL;
    w->next_router = NULL;
    uv_mutex_unlock(&w->next_mu);
    if (!cfg)
        return;
    sl_config_unref(w->cfg);
    sl_router_unref(w->router);
    w->cfg = cfg;
    w->router = router;
}

const struct sl_keyset *sl_worker_keys(sl_worker_t *w)
{
    if (!w->app || !w->app->store)
        return NULL;
    /* Always the store's latest: every worker of a process sees a key appear (and go) at the
     * same moment, never one worker ahead of another. Costs one uncontended lock. */
    sl_keyset_unref(w->keys);
    w->keys = sl_store_keys(w->app->store);
    return w->keys;
}

void sl_worker_install(sl_worker_t *w, sl_config_t *cfg, sl_router_t *router)
{
    uv_mutex_lock(&w->next_mu);
    sl_config_unref(w->next_cfg); /* a newer reload wins over one not yet taken */
    sl_router_unref(w->next_router);
    w->next_cfg = sl_config_ref(cfg);
    w->next_router = sl_router_ref(router);
    uv_mutex_unlock(&w->next_mu);
    uv_async_send(&w->wake);
}

static void on_wake(uv_async_t *a)
{
    sl_worker_t *w = a->data;
    take_next(w);
    if (!__atomic_load_n(&w->stop_request, __ATOMIC_ACQUIRE) || w->draining)
        return;
    w->draining = true;
    uv_close((uv_handle_t *)&w->listener, NULL);
    if (w->cfg->drain_ms)
        uv_timer_start(&w->drain_timer, on_drain_timeout, w->cfg->drain_ms, 0);
    maybe_finish_drain(w);
    if (!w->cfg->drain_ms && !w->stopping)
        stop_loop(w);
}

static void run(void *arg)
{
    sl_worker_t *w = arg;
    uv_run(&w->loop, UV_RUN_DEFAULT);
    flush_log(w);
    /* Anything curl or a straggler left open gets closed so the loop can be freed. */
    uv_walk(&w->loop, close_walk, NULL);
    uv_run(&w->loop, UV_RUN_DEFAULT);
    flush_log(w);
    sl_buf_dispose(&w->access_log);
}

void sl_worker_set_ops(sl_worker_t *w, int fd, sl_router_t *router)
{
    w->ops_fd = fd;
    w->ops_router = sl_router_ref(router);
}

static int listen_ops(sl_worker_t *w)
{
    uv_tcp_init(&w->loop, &w->ops_listener);
    w->ops_listener.data = w;
    int rc = uv_tcp_open(&w->ops_listener, w->ops_fd);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&w->ops_listener, 128, on_connection);
    if (rc != 0)
        sl_log(SL_LOG_ERROR, "worker %d: metrics listen: %s", w->id, uv_strerror(rc));
    uv_unref((uv_handle_t *)&w->ops_listener);
    return rc;
}

int sl_worker_start(sl_worker_t *w, int id, int fd, sl_config_t *cfg, sl_router_t *router,
                    sl_store_t *store, struct sl_app *app)
{
    w->id = id;
    w->listen_fd = fd;
    w->cfg = sl_config_ref(cfg);
    w->router = sl_router_ref(router);
    w->app = app;
    w->metrics = sl_metrics_new();
    uv_mutex_init(&w->next_mu);
    uv_loop_init(&w->loop);
    w->multi = sl_multi_new(&w->loop);
    w->store = store ? sl_store_client_new(store, &w->loop) : NULL;
    w->redis = cfg->redis_url ? sl_redis_new(&w->loop, cfg->redis_url) : NULL;
    uv_tcp_init(&w->loop, &w->listener);
    w->listener.data = w;
    int rc = uv_tcp_open(&w->listener, fd);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&w->listener, 1024, on_connection);
    if (rc != 0) {
        sl_log(SL_LOG_ERROR, "worker %d: listen: %s", id, uv_strerror(rc));
        return SL_EINTERNAL;
    }
    if (rc == 0 && w->ops_router)
        rc = listen_ops(w);
    if (rc != 0)
        return SL_EINTERNAL;
    uv_async_init(&w->loop, &w->wake, on_wake);
    w->wake.data = w;
    uv_check_init(&w->loop, &w->flush);
    w->flush.data = w;
    uv_check_start(&w->flush, on_flush);
    uv_unref((uv_handle_t *)&w->flush);
    uv_prepare_init(&w->loop, &w->flush_pre);
    w->flush_pre.data = w;
    uv_prepare_start(&w->flush_pre, on_flush_pre);
    uv_unref((uv_handle_t *)&w->flush_pre);
    uv_timer_init(&w->loop, &w->drain_timer);
    w->drain_timer.data = w;
    if (uv_thread_create(&w->thread, run, w) != 0)
        return SL_EINTERNAL;
    return 0;
}

void sl_worker_stop(sl_worker_t *w)
{
    __atomic_store_n(&w->stop_request, 1, __ATOMIC_RELEASE);
    uv_async_send(&w->wake);
}

void sl_worker_join(sl_worker_t *w)
{
    uv_thread_join(&w->thread);
    (void)uv_loop_close(&w->loop); /* every handle was closed in run() */
    sl_metrics_free(w->metrics);
    w->metrics = NULL;
    sl_keyset_unref(w->keys);
    w->keys = NULL;
    sl_config_unref(w->cfg);
    sl_config_unref(w->next_cfg);
    sl_router_unref(w->router);
    sl_router_unref(w->next_router);
    sl_router_unref(w->ops_router);
    w->ops_router = NULL;
    uv_mutex_destroy(&w->next_mu);
    w->cfg = w->next_cfg = NULL;
    w->router = w->next_router = NULL;
}
