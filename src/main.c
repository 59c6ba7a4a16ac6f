/* sluice: command line, config, signals, workers. Nothing else lives here. */
#include <curl/curl.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "admin/admin.h"
#include "admin/cli.h"
#include "admin/web.h"
#include "config/config.h"
#include "core/alloc.h"
#include "core/log.h"
#include "dialect/dialect.h"
#include "http/router.h"
#include "obs/logq.h"
#include "server/app.h"
#include "server/worker.h"
#include "store/store.h"

#define SLUICE_VERSION "0.1.0"

typedef struct app {
    sl_worker_t **workers; /* owned: nalloc made, the first nworkers started */
    int nworkers, nalloc;
    uv_signal_t sigterm, sigint, sighup;
    bool stopping;
    sl_app_t shared; /* what the admin endpoints see */
} app_t;

static void usage(FILE *f)
{
    fprintf(f, "usage: sluice [--config FILE]\n"
               "       sluice --check-config FILE\n"
               "       sluice keys create|list|revoke ... (sluice keys for help)\n"
               "       sluice --version\n"
               "Without --config sluice runs on its embedded default: 127.0.0.1:8080, every\n"
               "model answered by the built-in mock provider.\n");
}

/* Every enabled dialect, at its configured prefix (DESIGN §4). */
static sl_router_t *build_router(const sl_config_t *cfg)
{
    sl_router_t *r = sl_router_new();
    size_t n;
    const sl_dialect_t *const *dialects = sl_dialects(&n);
    for (size_t i = 0; i < n; i++) {
        const sl_dialect_cfg_t *d = sl_config_dialect(cfg, dialects[i]->config);
        if (!d->enabled)
            continue;
        for (const char *const *m = dialects[i]->mounts; *m; m++) {
            sl_buf_t prefix;
            sl_buf_init(&prefix);
            sl_buf_puts(&prefix, d->prefix);
            sl_buf_puts(&prefix, *m);
            sl_router_add(r, prefix.data, dialects[i]->routes, dialects[i]->nroutes,
                          dialects[i]->route_error);
            sl_buf_dispose(&prefix);
        }
    }
    sl_router_add(r, "", sl_admin_routes, sl_admin_nroutes, NULL);
    sl_router_add(r, "", sl_web_routes, sl_web_nroutes, NULL);
    return r;
}

static void on_sighup(uv_signal_t *s, int signum)
{
    app_t *app = s->data;
    sl_buf_t err;
    sl_buf_init(&err);
    if (sl_app_reload(&app->shared, &err) != 0) {
        /* logged by the reload; the running config stays in place */
    }
    sl_buf_dispose(&err);
}

static void on_signal(uv_signal_t *s, int signum)
{
    app_t *app = s->data;
    if (app->stopping)
        return;
    app->stopping = true;
    sl_log(SL_LOG_INFO, "%s: draining (up to the configured drain time), then exiting",
           strsignal(signum));
    for (int i = 0; i < app->nworkers; i++)
        sl_worker_stop(app->workers[i]);
    uv_close((uv_handle_t *)&app->sigterm, NULL);
    uv_close((uv_handle_t *)&app->sigint, NULL);
    uv_close((uv_handle_t *)&app->sighup, NULL);
}

static int load_config(const char *path, sl_config_t **cfg)
{
    if (!path) {
        *cfg = sl_config_default();
        return 0;
    }
    sl_buf_t err;
    sl_buf_init(&err);
    int rc = sl_config_load(path, cfg, &err);
    if (rc != 0)
        fprintf(stderr, "%s\n", err.data ? err.data : "invalid configuration");
    sl_buf_dispose(&err);
    return rc;
}

/* observability.metrics.listen: every worker also listens there (SO_REUSEPORT, like the main
 * port) for the operations endpoints alone. Fixed at start, like listen. */
static int listen_ops(sl_worker_t *w, const sl_config_t *cfg, sl_router_t *ops, int *port)
{
    int fd, bound;
    if (sl_worker_listen_fd(cfg->metrics_listen_host, *port, &fd, &bound) != 0)
        return SL_ECONFIG;
    *port = bound;
    sl_worker_set_ops(w, fd, ops);
    return 0;
}

static int start_workers(app_t *app, sl_config_t *cfg, sl_router_t *router, sl_store_t *store)
{
    int n = cfg->workers > 0 ? cfg->workers : (int)uv_available_parallelism();
    app->workers = sl_calloc((size_t)n, sizeof *app->workers);
    for (int i = 0; i < n; i++)
        app->workers[i] = sl_worker_new();
    app->nalloc = n;
    app->shared.workers = app->workers;
    app->shared.store = store;
    int port = cfg->listen_port, ops_port = cfg->metrics_listen_port;
    sl_router_t *ops = NULL;
    if (cfg->metrics && cfg->metrics_listen_host) {
        ops = sl_router_new();
        sl_router_add(ops, "", sl_admin_ops_routes, sl_admin_nops_routes, NULL);
    }
    for (int i = 0; i < n; i++) {
        int fd, bound;
        /* The first bind resolves port 0; the others join that port (SO_REUSEPORT). */
        if (sl_worker_listen_fd(cfg->listen_host, port, &fd, &bound) != 0 ||
            (ops && listen_ops(app->workers[i], cfg, ops, &ops_port) != 0)) {
            sl_router_unref(ops);
            return SL_ECONFIG;
        }
        port = bound;
        if (sl_worker_start(app->workers[i], i, fd, cfg, router, store, &app->shared) != 0) {
            sl_router_unref(ops);
            return SL_EINTERNAL;
        }
        app->nworkers++;
        app->shared.nworkers = app->nworkers;
    }
    if (ops)
        sl_log(SL_LOG_INFO, "metrics served on http://%s:%d/metrics (not on the main port)",
               cfg->metrics_listen_host, ops_port);
    sl_router_unref(ops);
    sl_log(SL_LOG_INFO, "listening on http://%s:%d (%d workers)", cfg->listen_host, port, n);
    return 0;
}

/* SLUICE_LOG=debug shows every connection's and exchange's state changes; unknown values are
 * said and ignored. */
static void log_level_from_env(void)
{
    static const char *const names[] = {"debug", "info", "warn", "error"};
    const char *v = getenv("SLUICE_LOG");
    if (!v || !*v)
        return;
    for (int i = 0; i < 4; i++) {
        if (!strcmp(v, names[i])) {
            sl_log_set_level((sl_log_level_t)i);
            return;
        }
    }
    sl_log(SL_LOG_WARN, "SLUICE_LOG=%s: expected debug, info, warn or error; ignored", v);
}

int main(int argc, char **argv)
{
    log_level_from_env();
    sl_dialects_register(); /* before any config is read: each dialect's section */
    const char *config_path = NULL;
    bool check_only = false;
    if (argc > 1 && !strcmp(argv[1], "keys")) {
        json_set_alloc_funcs(sl_malloc_fn, sl_free);
        return sl_cli_keys(argc - 1, argv + 1);
    }
    for (int i = 1; i < argc; i++) {
        if ((!strcmp(argv[i], "--config") || !strcmp(argv[i], "-c")) && i + 1 < argc) {
            config_path = argv[++i];
        } else if (!strcmp(argv[i], "--check-config") && i + 1 < argc) {
            config_path = argv[++i];
            check_only = true;
        } else if (!strcmp(argv[i], "--version")) {
            printf("sluice %s\n", SLUICE_VERSION);
            return 0;
        } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "sluice: unknown argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    json_set_alloc_funcs(sl_malloc_fn, sl_free);
    sl_config_t *cfg = NULL;
    if (load_config(config_path, &cfg) != 0)
        return 1;
    if (check_only) {
        printf("%s: ok\n", config_path);
        sl_config_unref(cfg);
        return 0;
    }

    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT); /* before any thread exists */
    sl_store_t *store = NULL;
    sl_buf_t err;
    sl_buf_init(&err);
    if (sl_store_start(cfg->sqlite_path, cfg->postgres_url, 65536, &store, &err) != 0) {
        fprintf(stderr, "sluice: %s\n", err.data ? err.data : "cannot open the store");
        sl_buf_dispose(&err);
        sl_config_unref(cfg);
        return 1;
    }
    sl_buf_dispose(&err);
    /* Store work a dialect needs before the first request (rag: index its corpus). */
    size_t ndialects;
    const sl_dialect_t *const *dialects = sl_dialects(&ndialects);
    for (size_t i = 0; i < ndialects; i++)
        if (dialects[i]->prepare && sl_config_dialect(cfg, dialects[i]->config)->enabled)
            dialects[i]->prepare(cfg, store);
    sl_router_t *router = build_router(cfg);
    app_t app = {0};
    sl_app_init(&app.shared, config_path, cfg, router, build_router);
    /* Access-log lines leave the workers through their own thread (obs/logq.h). */
    app.shared.logq = sl_logq_start(STDERR_FILENO, SL_LOGQ_CAP);
    if (!app.shared.logq)
        sl_log(SL_LOG_WARN, "cannot start the access-log writer; workers write the log inline");
    uv_loop_t *loop = uv_default_loop();
    uv_signal_init(loop, &app.sigterm);
    uv_signal_init(loop, &app.sigint);
    uv_signal_init(loop, &app.sighup);
    app.sigterm.data = app.sigint.data = app.sighup.data = &app;
    uv_signal_start(&app.sigterm, on_signal, SIGTERM);
    uv_signal_start(&app.sigint, on_signal, SIGINT);
    uv_signal_start(&app.sighup, on_sighup, SIGHUP);

    int rc = start_workers(&app, cfg, router, store);
    if (rc != 0) {
        for (int i = 0; i < app.nworkers; i++)
            sl_worker_stop(app.workers[i]);
        uv_close((uv_handle_t *)&app.sigterm, NULL);
        uv_close((uv_handle_t *)&app.sigint, NULL);
        uv_close((uv_handle_t *)&app.sighup, NULL);
    }
    uv_run(loop, UV_RUN_DEFAULT);
    for (int i = 0; i < app.nworkers; i++)
        sl_worker_join(app.workers[i]);
    (void)uv_loop_close(loop);
    sl_logq_stop(app.shared.logq); /* after the workers: every line is queued by now */
    sl_store_stop(store);          /* after the workers: every usage record is queued by now */
    for (int i = 0; i < app.nalloc; i++)
        sl_worker_free(app.workers[i]);
    sl_free(app.workers);
    sl_app_dispose(&app.shared);
    sl_router_unref(router);
    sl_config_unref(cfg);
    curl_global_cleanup();
    if (rc == 0)
        sl_log(SL_LOG_INFO, "stopped");
    return rc == 0 ? 0 : 1;
}
