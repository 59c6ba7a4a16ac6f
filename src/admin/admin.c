/* Operations endpoints (DESIGN §9): GET /healthz, GET /readyz, GET /metrics, and
 * POST /admin/reload (admin key only). */
#include "admin/admin.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/alloc.h"
#include "core/ctx.h"
#include "core/tokens.h"
#include "net/conn.h"
#include "obs/logq.h"
#include "obs/metrics.h"
#include "policy/auth.h"
#include "relay/breaker.h"
#include "server/app.h"
#include "server/worker.h"
#include "store/keys.h"
#include "store/store.h"

static void json(sl_conn_t *c, int status, const char *body)
{
    sl_conn_respond(c, status, "application/json", body, strlen(body),
                    "Cache-Control: no-store\r\n");
}

static void healthz(sl_conn_t *c, const sl_http_req_t *hr, const sl_route_match_t *m)
{
    json(c, 200, "{\"status\":\"ok\"}");
}

/* Ready while the workers serve and a config is loaded; a draining worker says so, so a load
 * balancer stops sending before the connections close. */
static void readyz(sl_conn_t *c, const sl_http_req_t *hr, const sl_route_match_t *m)
{
    if (sl_conn_ctx(c)->draining)
        json(c, 503, "{\"status\":\"draining\"}");
    else
        json(c, 200, "{\"status\":\"ready\"}");
}

/* observability.metrics.auth as it applies now: the default follows the keys that exist,
 * issued ones included (as a dialect's default auth does). */
static sl_metrics_auth_t metrics_auth(sl_conn_t *c)
{
    const sl_config_t *cfg = sl_conn_ctx(c)->cfg;
    if (cfg->metrics_auth != SL_METRICS_AUTH_DEFAULT)
        return cfg->metrics_auth;
    if (cfg->nadmin_keys)
        return SL_METRICS_AUTH_ADMIN;
    const struct sl_keyset *ks = sl_auth_keys(sl_conn_ctx(c));
    return cfg->nkeys || (ks && sl_keyset_count(ks)) ? SL_METRICS_AUTH_KEY : SL_METRICS_AUTH_NONE;
}

/* Answers 401/403 itself (OpenAI-shaped) when the caller may not read the metrics. */
static bool metrics_allowed(sl_conn_t *c, const sl_http_req_t *hr)
{
    const sl_config_t *cfg = sl_conn_ctx(c)->cfg;
    sl_metrics_auth_t mode = metrics_auth(c);
    if (mode == SL_METRICS_AUTH_NONE || sl_auth_is_admin(cfg, hr))
        return true;
    if (mode == SL_METRICS_AUTH_ADMIN && !cfg->nadmin_keys) {
        sl_conn_respond_err(c, SL_EFORBIDDEN, "admin_disabled", NULL,
                            "metrics need an admin key: configure auth.admin_keys", NULL);
        return false;
    }
    if (!sl_auth_has_bearer(hr)) {
        sl_conn_respond_err(c, SL_EAUTH, "invalid_api_key", NULL,
                            mode == SL_METRICS_AUTH_ADMIN
                                ? "an admin key is required (Authorization: Bearer <key>)"
                                : "an API key is required (Authorization: Bearer <key>)",
                            "WWW-Authenticate: Bearer\r\n");
        return false;
    }
    sl_identity_t id;
    const char *why = NULL;
    bool valid =
        sl_auth_admit(cfg, SL_AUTH_KEY, hr, NULL, sl_auth_keys(sl_conn_ctx(c)), &id, &why) == 0;
    sl_identity_dispose(&id);
    if (valid && mode == SL_METRICS_AUTH_KEY)
        return true;
    if (valid)
        sl_conn_respond_err(c, SL_EFORBIDDEN, "forbidden", NULL,
                            "this key may not read the metrics (an admin key is required)", NULL);
    else
        sl_conn_respond_err(c, SL_EAUTH, "invalid_api_key", NULL,
                            why ? why : "Incorrect API key provided.",
                            "WWW-Authenticate: Bearer\r\n");
    return false;
}

static void metrics(sl_conn_t *c, const sl_http_req_t *hr, const sl_route_match_t *m)
{
    sl_app_t *app = sl_conn_ctx(c)->app;
    if (!sl_conn_ctx(c)->cfg->metrics || !app) {
        sl_conn_respond_err(c, SL_ENOTFOUND, "metrics_disabled", NULL,
                            "metrics are disabled (observability.metrics: false)", NULL);
        return;
    }
    if (sl_conn_ctx(c)->ops_router && !sl_conn_is_ops(c)) {
        sl_conn_respond_err(c, SL_ENOTFOUND, "not_found", NULL,
                            "metrics are served on their own listener "
                            "(observability.metrics.listen)",
                            NULL);
        return;
    }
    if (!metrics_allowed(c, hr))
        return;
    sl_metrics_t *shards[256];
    size_t n = 0;
    for (int i = 0; i < app->nworkers && n < 256; i++)
        shards[n++] = sl_worker_ctx(app->workers[i])->metrics;
    sl_metrics_process_t p = {
        .reloads_ok = __atomic_load_n(&app->reloads_ok, __ATOMIC_RELAXED),
        .reloads_failed = __atomic_load_n(&app->reloads_failed, __ATOMIC_RELAXED),
        .store_dropped = app->store ? sl_store_dropped(app->store) : 0,
        .access_log_dropped = sl_logq_dropped(app->logq),
        .workers = (unsigned)app->nworkers,
        .start_time_s = app->start_time_s,
    };
    sl_buf_t out;
    sl_buf_init(&out);
    sl_metrics_render(shards, n, &p, &out);
    /* The breakers are the process's, not a worker's: rendered from the one table. */
    const sl_config_t *cfg = sl_conn_ctx(c)->cfg;
    const char *providers[256];
    size_t np = 0;
    for (size_t i = 0; i < cfg->nproviders && np < 256; i++)
        providers[np++] = cfg->providers[i].name;
    sl_breakers_render(app->breakers, providers, np, &out);
    sl_conn_respond(c, 200, "text/plain; version=0.0.4; charset=utf-8", out.data ? out.data : "",
                    out.len, "Cache-Control: no-store\r\n");
    sl_buf_dispose(&out);
}

/* ---- admin API ---- */

/* Admin keys only (DESIGN §6): none configured means the admin API is off. */
static bool admin_ok(sl_conn_t *c, const sl_http_req_t *hr)
{
    const sl_config_t *cfg = sl_conn_ctx(c)->cfg;
    const char *h = sl_http_req_header(hr, "authorization");
    if (!cfg->nadmin_keys) {
        sl_conn_respond_err(c, SL_EFORBIDDEN, "admin_disabled", NULL,
                            "the admin API is disabled: configure auth.admin_keys", NULL);
        return false;
    }
    if (!h || strncasecmp(h, "Bearer ", 7) != 0) {
        sl_conn_respond_err(c, SL_EAUTH, "invalid_api_key", NULL,
                            "an admin key is required (Authorization: Bearer <key>)",
                            "WWW-Authenticate: Bearer\r\n");
        return false;
    }
    const char *tok = h + 7;
    bool ok = false;
    for (size_t i = 0; i < cfg->nadmin_keys; i++) /* constant time, no early exit */
        ok |= sl_auth_equal(tok, strlen(tok), cfg->admin_keys[i], strlen(cfg->admin_keys[i]));
    if (!ok)
        sl_conn_respond_err(c, SL_EFORBIDDEN, "forbidden", NULL,
                            "this key may not use the admin API", NULL);
    return ok;
}

/* A reload reads a file: it runs in libuv's thread pool, never on the worker's loop. */
typedef struct reload_job {
    uv_work_t work;
    sl_conn_t *c; /* weak: cleared when the client leaves */
    sl_app_t *app;
    sl_buf_t err;
    int rc;
} reload_job_t;

static void job_gone(void *ud)
{
    ((reload_job_t *)ud)->c = NULL;
}

static const sl_conn_hooks_t job_hooks = {.gone = job_gone};

static void reload_work(uv_work_t *w)
{
    reload_job_t *j = w->data;
    j->rc = sl_app_reload(j->app, &j->err);
}

static void reload_done(uv_work_t *w, int status)
{
    reload_job_t *j = w->data;
    if (j->c) {
        sl_conn_set_hooks(j->c, NULL, NULL);
        if (j->rc == 0)
            json(j->c, 200, "{\"reloaded\":true}");
        else
            sl_conn_respond_err(j->c, SL_EINVAL, "invalid_config", NULL,
                                j->err.data ? j->err.data : "invalid config", NULL);
    }
    sl_buf_dispose(&j->err);
    sl_free(j);
}

static void reload(sl_conn_t *c, const sl_http_req_t *hr, const sl_route_match_t *m)
{
    if (!admin_ok(c, hr))
        return;
    reload_job_t *j = sl_calloc(1, sizeof *j);
    j->c = c;
    j->app = sl_conn_ctx(c)->app;
    j->work.data = j;
    sl_buf_init(&j->err);
    sl_conn_set_hooks(c, &job_hooks, j);
    if (uv_queue_work(&sl_conn_ctx(c)->loop, &j->work, reload_work, reload_done) != 0) {
        sl_conn_set_hooks(c, NULL, NULL);
        sl_free(j);
        sl_conn_respond_err(c, SL_EUNAVAIL, "busy", NULL, "cannot reload right now", NULL);
    }
}

/* ---- GET /admin/usage ---- */

typedef struct usage_wait {
    sl_conn_t *c; /* weak: cleared when the client leaves */
    sl_store_op_t *op;
} usage_wait_t;

static void usage_gone(void *ud)
{
    usage_wait_t *u = ud;
    sl_store_op_cancel(u->op);
    sl_free(u);
}

static const sl_conn_hooks_t usage_hooks = {.gone = usage_gone};

static void on_usage(void *ud, int err, const sl_usage_sum_t *rows, size_t n)
{
    usage_wait_t *u = ud;
    sl_conn_t *c = u->c;
    sl_free(u);
    sl_conn_set_hooks(c, NULL, NULL);
    if (err) {
        sl_conn_respond_err(c, err == SL_EINVAL ? SL_EINVAL : SL_EUNAVAIL, NULL,
                            err == SL_EINVAL ? "group_by" : NULL,
                            err == SL_EINVAL ? "group_by must be one of key, user, model, "
                                               "dialect, provider, day"
                                             : "usage is unavailable right now",
                            NULL);
        return;
    }
    sl_buf_t b;
    sl_buf_init(&b);
    sl_buf_puts(&b, "{\"object\":\"list\",\"data\":[");
    for (size_t i = 0; i < n; i++) {
        const sl_usage_sum_t *r = &rows[i];
        sl_buf_puts(&b, i ? ",{\"group\":\"" : "{\"group\":\"");
        sl_buf_json_escape(&b, r->group, strlen(r->group));
        sl_buf_printf(&b,
                      "\",\"requests\":%lld,\"prompt_tokens\":%lld,\"completion_tokens\":%lld,"
                      "\"total_tokens\":%lld,\"errors\":%lld,\"cancelled\":%lld}",
                      (long long)r->requests, (long long)r->prompt_tokens,
                      (long long)r->completion_tokens,
                      (long long)sl_tokens_add(r->prompt_tokens, r->completion_tokens),
                      (long long)r->errors, (long long)r->cancelled);
    }
    sl_buf_puts(&b, "]}");
    sl_conn_respond(c, 200, "application/json", b.data, b.len, "Cache-Control: no-store\r\n");
    sl_buf_dispose(&b);
}

static bool query_time(const sl_http_req_t *hr, const char *name, sl_buf_t *v, int64_t *out)
{
    if (!sl_http_req_query(hr, name, v))
        return true;
    char *end;
    long long t = strtoll(v->data ? v->data : "", &end, 10);
    *out = t;
    return v->len && !*end && t >= 0;
}

static void usage(sl_conn_t *c, const sl_http_req_t *hr, const sl_route_match_t *m)
{
    if (!admin_ok(c, hr))
        return;
    if (!sl_conn_ctx(c)->store) {
        sl_conn_respond_err(c, SL_EUNAVAIL, NULL, NULL, "no store", NULL);
        return;
    }
    sl_buf_t key, user, model, group, t;
    sl_buf_init(&key), sl_buf_init(&user), sl_buf_init(&model), sl_buf_init(&group);
    sl_buf_init(&t);
    sl_usage_query_t q = {0};
    q.key_name = sl_http_req_query(hr, "key", &key) ? key.data : NULL;
    q.user_id = sl_http_req_query(hr, "user", &user) ? user.data : NULL;
    q.model = sl_http_req_query(hr, "model", &model) ? model.data : NULL;
    q.group_by = sl_http_req_query(hr, "group_by", &group) && group.len ? group.data : NULL;
    if (!query_time(hr, "since", &t, &q.since) || !query_time(hr, "until", &t, &q.until)) {
        sl_conn_respond_err(c, SL_EINVAL, NULL, "since",
                            "since and until are unix times in seconds", NULL);
    } else {
        usage_wait_t *u = sl_calloc(1, sizeof *u);
        u->c = c;
        sl_conn_set_hooks(c, &usage_hooks, u);
        /* The op copies the strings: the buffers can go now. */
        u->op = sl_store_usage_query(sl_conn_ctx(c)->store, &q, on_usage, u);
    }
    sl_buf_dispose(&key), sl_buf_dispose(&user), sl_buf_dispose(&model);
    sl_buf_dispose(&group), sl_buf_dispose(&t);
}

static const sl_route_t routes[] = {
    {"GET", "/admin/usage", usage}, {"GET", "/healthz", healthz},      {"GET", "/readyz", readyz},
    {"GET", "/metrics", metrics},   {"POST", "/admin/reload", reload},
};

const sl_route_t *const sl_admin_routes = routes;
const size_t sl_admin_nroutes = sizeof routes / sizeof routes[0];

/* The metrics listener (observability.metrics.listen) serves these and nothing else. */
static const sl_route_t ops_routes[] = {
    {"GET", "/metrics", metrics},
    {"GET", "/healthz", healthz},
    {"GET", "/readyz", readyz},
};

const sl_route_t *const sl_admin_ops_routes = ops_routes;
const size_t sl_admin_nops_routes = sizeof ops_routes / sizeof ops_routes[0];
