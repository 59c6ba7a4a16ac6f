/* Config generations and reload. */
#include "server/app.h"

#include <string.h>

#include "core/log.h"
#include "http/router.h"
#include "policy/budget.h"
#include "policy/ratelimit.h"
#include "relay/breaker.h"
#include "server/worker.h"

void sl_app_init(sl_app_t *app, const char *config_path, sl_config_t *cfg, sl_router_t *router,
                 sl_router_t *(*build_router)(const sl_config_t *cfg))
{
    app->config_path = config_path;
    app->cfg = sl_config_ref(cfg);
    app->router = sl_router_ref(router);
    app->build_router = build_router;
    app->start_time_s = (double)sl_wall_s();
    app->limiter = sl_limiter_new();
    app->breakers = sl_breakers_new();
    app->budgets = sl_budgets_new();
    uv_mutex_init(&app->mu);
}

void sl_app_dispose(sl_app_t *app)
{
    sl_config_unref(app->cfg);
    sl_router_unref(app->router);
    app->cfg = NULL;
    app->router = NULL;
    sl_limiter_free(app->limiter);
    app->limiter = NULL;
    sl_breakers_free(app->breakers);
    app->breakers = NULL;
    sl_budgets_free(app->budgets);
    app->budgets = NULL;
    uv_mutex_destroy(&app->mu);
}

/* What a reload cannot change in a running process: said, not silently ignored. */
static void warn_restart_only(const sl_config_t *old, const sl_config_t *next)
{
    if (strcmp(old->listen_host, next->listen_host) || old->listen_port != next->listen_port)
        sl_log(SL_LOG_WARN, "reload: listen changed; it takes effect after a restart");
    if (old->workers != next->workers)
        sl_log(SL_LOG_WARN, "reload: workers changed; it takes effect after a restart");
    if (strcmp(old->sqlite_path, next->sqlite_path))
        sl_log(SL_LOG_WARN, "reload: store.sqlite changed; it takes effect after a restart");
}

int sl_app_reload(sl_app_t *app, sl_buf_t *err)
{
    if (!app->config_path) {
        sl_buf_puts(err, "sluice runs on its embedded default config: there is no file to reload");
        __atomic_add_fetch(&app->reloads_failed, 1, __ATOMIC_RELAXED);
        return SL_EINVAL;
    }
    sl_config_t *next = NULL;
    int rc = sl_config_load(app->config_path, &next, err);
    if (rc != 0) {
        sl_log(SL_LOG_ERROR, "reload refused, the running config stays: %s",
               err->data ? err->data : "invalid config");
        __atomic_add_fetch(&app->reloads_failed, 1, __ATOMIC_RELAXED);
        return rc;
    }
    sl_router_t *router = app->build_router(next);
    uv_mutex_lock(&app->mu);
    warn_restart_only(app->cfg, next);
    for (int i = 0; i < app->nworkers; i++)
        sl_worker_install(app->workers[i], next, router);
    sl_config_unref(app->cfg);
    sl_router_unref(app->router);
    app->cfg = next; /* our refs */
    app->router = router;
    uv_mutex_unlock(&app->mu);
    __atomic_add_fetch(&app->reloads_ok, 1, __ATOMIC_RELAXED);
    sl_log(SL_LOG_INFO, "reloaded %s", app->config_path);
    return 0;
}
