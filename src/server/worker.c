/* Worker threads: the thread and its context, accept, flush once per loop turn, drain on stop. */
#include "server/worker.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/log.h"
#include "http/router.h"
#include "net/conn.h"
#include "obs/logq.h"
#include "obs/metrics.h"
#include "policy/ratelimit_redis.h"
#include "server/app.h"
#include "store/keys.h"
#include "store/store.h"
#include "upstream/upstream.h"

/* Accept queue of a client listener: room for a burst of thousands of connects (a fleet of
 * clients reconnecting at once) without SYN drops; the kernel caps it at net.core.somaxconn. */
#define LISTEN_BACKLOG 4096

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
        bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, LISTEN_BACKLOG) != 0) {
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

/* The worker's own: the thread, its listeners and the handles that drive the turn. Everything
 * code on the thread uses is in x. */
struct sl_worker {
    sl_ctx_t x;
    uv_tcp_t listener;
    /* observability.metrics.listen: a second listener for /metrics, /healthz and /readyz only,
     * routed by x.ops_router. Unref'd, so it never holds the loop open; it is closed with the
     * loop's last handles. */
    uv_tcp_t ops_listener;
    int ops_fd;
    uv_async_t wake; /* another thread asks us to drain and stop, or a reload waits */
    /* Output is flushed once per loop turn, from two points: after the poll phase (what I/O
     * callbacks produced) and before it (what timers produced, so it never waits on poll). */
    uv_check_t flush;
    uv_prepare_t flush_pre;
    uv_timer_t drain_timer;
    uv_thread_t thread;
    int listen_fd;
    /* A reload hands the next config here (under next_mu) and wakes the loop. */
    uv_mutex_t next_mu;
    sl_config_t *next_cfg;    /* owned ref, or NULL */
    sl_router_t *next_router; /* owned ref, or NULL */
    bool stopping;
    int stop_request; /* atomic: set by sl_worker_stop */
};

sl_worker_t *sl_worker_new(void)
{
    return sl_calloc(1, sizeof(sl_worker_t));
}

void sl_worker_free(sl_worker_t *w)
{
    sl_free(w);
}

sl_ctx_t *sl_worker_ctx(sl_worker_t *w)
{
    return &w->x;
}

static void maybe_finish_drain(sl_worker_t *w);

static void on_conn_gone(sl_ctx_t *x)
{
    if (x->draining)
        maybe_finish_drain(x->owner);
}

/* Runs after every poll phase: everything this turn queued goes out in one write per
 * connection (DESIGN §3.2). */
static void flush_log(sl_worker_t *w)
{
    sl_buf_t *log = &w->x.access_log;
    if (!log->len)
        return;
    if (w->x.app && w->x.app->logq)
        sl_logq_push(w->x.app->logq, log->data, log->len); /* the disk never stalls this loop */
    else
        sl_log_batch(log->data, log->len);
    sl_buf_reset(log);
    sl_buf_shrink(log, (size_t)64 * 1024);
}

static void flush_pending(sl_worker_t *w)
{
    sl_conns_flush(&w->x);
    flush_log(w); /* one write per turn for every request that ended in it */
    if (w->x.draining)
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
    if (status < 0 || w->x.draining)
        return;
    sl_conn_accept(&w->x, server, server == (uv_stream_t *)&w->ops_listener);
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
    sl_conns_close_all(&w->x); /* cancels what is still in flight */
    sl_upstream_close(w->x.upstream);
    w->x.upstream = NULL;
    sl_store_client_close(w->x.store);
    w->x.store = NULL;
    sl_redis_close(w->x.redis);
    w->x.redis = NULL;
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
    sl_conns_close_idle(&w->x);
    /* Connections with an answer still going out close themselves once it is written. */
    if (w->x.nconns == 0 && !w->stopping)
        stop_loop(w);
    busy = false;
}

/* Time to write the error events of the cut streams before the last connections go. */
#define CUT_GRACE_MS 1000

static void on_cut_grace_over(uv_timer_t *t)
{
    sl_worker_t *w = t->data;
    sl_log(SL_LOG_WARN, "worker %d: closing %u connection(s) that did not take their last bytes",
           w->x.id, w->x.nconns);
    stop_loop(w);
}

/* The drain time is over: every exchange still running ends now with its dialect's error
 * event (never a silent cut, and never logged as the client's doing); the connections close
 * once that is written, or after CUT_GRACE_MS for clients that do not read. */
static void on_drain_timeout(uv_timer_t *t)
{
    sl_worker_t *w = t->data;
    sl_log(SL_LOG_WARN, "worker %d: drain time over, cutting %u connection(s)", w->x.id,
           w->x.nconns);
    sl_conns_cut(&w->x);
    uv_timer_start(&w->drain_timer, on_cut_grace_over, CUT_GRACE_MS, 0);
    maybe_finish_drain(w);
}

/* A reload left a new config: switch to it. Connections read x.cfg when they start a request,
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
    sl_config_unref(w->x.cfg);
    sl_router_unref(w->x.router);
    w->x.cfg = cfg;
    w->x.router = router;
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
    if (!__atomic_load_n(&w->stop_request, __ATOMIC_ACQUIRE) || w->x.draining)
        return;
    w->x.draining = true;
    uv_close((uv_handle_t *)&w->listener, NULL);
    if (w->x.cfg->drain_ms)
        uv_timer_start(&w->drain_timer, on_drain_timeout, w->x.cfg->drain_ms, 0);
    maybe_finish_drain(w);
    if (!w->x.cfg->drain_ms && !w->stopping)
        stop_loop(w);
}

static void run(void *arg)
{
    sl_worker_t *w = arg;
    uv_run(&w->x.loop, UV_RUN_DEFAULT);
    flush_log(w);
    /* Anything curl or a straggler left open gets closed so the loop can be freed. */
    uv_walk(&w->x.loop, close_walk, NULL);
    uv_run(&w->x.loop, UV_RUN_DEFAULT);
    flush_log(w);
    sl_buf_dispose(&w->x.access_log);
    sl_buf_dispose(&w->x.scratch);
}

void sl_worker_set_ops(sl_worker_t *w, int fd, sl_router_t *router)
{
    w->ops_fd = fd;
    w->x.ops_router = sl_router_ref(router);
}

static int listen_ops(sl_worker_t *w)
{
    uv_tcp_init(&w->x.loop, &w->ops_listener);
    w->ops_listener.data = w;
    int rc = uv_tcp_open(&w->ops_listener, w->ops_fd);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&w->ops_listener, 128, on_connection);
    if (rc != 0)
        sl_log(SL_LOG_ERROR, "worker %d: metrics listen: %s", w->x.id, uv_strerror(rc));
    uv_unref((uv_handle_t *)&w->ops_listener);
    return rc;
}

int sl_worker_start(sl_worker_t *w, int id, int fd, sl_config_t *cfg, sl_router_t *router,
                    sl_store_t *store, struct sl_app *app)
{
    sl_ctx_t *x = &w->x;
    x->id = id;
    x->owner = w;
    x->conn_gone = on_conn_gone;
    w->listen_fd = fd;
    x->cfg = sl_config_ref(cfg);
    x->router = sl_router_ref(router);
    x->app = app;
    if (app) {
        x->store_thread = app->store;
        x->limiter = app->limiter;
        x->budgets = app->budgets;
        x->breakers = app->breakers;
    }
    x->metrics = sl_metrics_new();
    uv_mutex_init(&w->next_mu);
    uv_loop_init(&x->loop);
    x->upstream = sl_upstream_new(&x->loop);
    x->store = store ? sl_store_client_new(store, &x->loop) : NULL;
    x->redis = cfg->redis_url ? sl_redis_new(&x->loop, cfg->redis_url) : NULL;
    uv_tcp_init(&x->loop, &w->listener);
    w->listener.data = w;
    int rc = uv_tcp_open(&w->listener, fd);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&w->listener, LISTEN_BACKLOG, on_connection);
    if (rc != 0) {
        sl_log(SL_LOG_ERROR, "worker %d: listen: %s", id, uv_strerror(rc));
        return SL_EINTERNAL;
    }
    if (rc == 0 && x->ops_router)
        rc = listen_ops(w);
    if (rc != 0)
        return SL_EINTERNAL;
    uv_async_init(&x->loop, &w->wake, on_wake);
    w->wake.data = w;
    uv_check_init(&x->loop, &w->flush);
    w->flush.data = w;
    uv_check_start(&w->flush, on_flush);
    uv_unref((uv_handle_t *)&w->flush);
    uv_prepare_init(&x->loop, &w->flush_pre);
    w->flush_pre.data = w;
    uv_prepare_start(&w->flush_pre, on_flush_pre);
    uv_unref((uv_handle_t *)&w->flush_pre);
    uv_timer_init(&x->loop, &w->drain_timer);
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
    sl_ctx_t *x = &w->x;
    uv_thread_join(&w->thread);
    (void)uv_loop_close(&x->loop); /* every handle was closed in run() */
    for (int i = 0; i < SL_CTX_SLOTS; i++)
        if (x->slot[i] && x->free_slot[i])
            x->free_slot[i](x->slot[i]);
    sl_metrics_free(x->metrics);
    x->metrics = NULL;
    sl_keyset_unref(x->keys);
    x->keys = NULL;
    sl_config_unref(x->cfg);
    sl_config_unref(w->next_cfg);
    sl_router_unref(x->router);
    sl_router_unref(w->next_router);
    sl_router_unref(x->ops_router);
    x->ops_router = NULL;
    uv_mutex_destroy(&w->next_mu);
    x->cfg = w->next_cfg = NULL;
    x->router = w->next_router = NULL;
}
