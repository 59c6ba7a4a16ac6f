/* The configuration: one immutable, reference-counted snapshot loaded from YAML (DESIGN §7).
 * Loading is strict: unknown keys, wrong types and bad values fail with "file:line:col: what was
 * expected"; ${ENV} expands inside scalar values. Workers hold a ref for as long as they use it. */
#ifndef SL_CONFIG_CONFIG_H
#define SL_CONFIG_CONFIG_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "core/buf.h"
#include "core/err.h"
#include "http/client_ip.h"

typedef enum sl_provider_type {
    SL_PROVIDER_MOCK,
    SL_PROVIDER_OPENAI,
    SL_PROVIDER_AZURE,
    SL_PROVIDER_ANTHROPIC,
} sl_provider_type_t;

typedef struct sl_provider_cfg {
    char *name; /* owned; the key under providers: */
    sl_provider_type_t type;
    /* openai: base URL without a trailing slash, e.g. https://api.openai.com/v1 */
    char *base_url;      /* owned; NULL for mock */
    char *api_key;       /* owned; NULL when unset (sent as Authorization: Bearer) */
    char *api_version;   /* owned; azure: api-version query value (default 2024-06-01) and
                            anthropic: anthropic-version header (default 2023-06-01) */
    char *deployment;    /* owned; azure: deployment name, NULL = the target's model name */
    uint64_t max_tokens; /* anthropic: max_tokens when the request has none (default 1024) */
    /* circuit breaker of each of its targets (relay/breaker.h, DESIGN §5): after this many
     * upstream failures in a row a target is skipped for cooldown, then one request probes
     * it; a failed probe doubles the period up to max_cooldown. A 429 skips the target for
     * its Retry-After, at most max_rate_limit. */
    unsigned breaker_failures;          /* default 5; 0 = never opens */
    uint64_t breaker_cooldown_ms;       /* default 10 s */
    uint64_t breaker_max_cooldown_ms;   /* default 2 min */
    uint64_t breaker_max_rate_limit_ms; /* default 60 s */
    /* mock: when the first token comes, how fast the rest follow, how many there are */
    uint64_t ttft_ms;    /* default 200 */
    double tokens_per_s; /* default 40; > 0 */
    unsigned tokens;     /* default 48; completion length in tokens, >= 1 */
} sl_provider_cfg_t;

typedef struct sl_target_cfg {
    size_t provider;  /* index into sl_config_t.providers */
    char *model;      /* owned; upstream model name, NULL = the client's name passes through */
    unsigned retries; /* extra attempts on this target before the next one (default 0) */
    bool fallback_to_non_stream; /* a stream that fails before output is retried whole */
} sl_target_cfg_t;

typedef struct sl_model_cfg {
    char *pattern;            /* owned; exact name or glob with * and ? */
    sl_target_cfg_t *targets; /* owned array, ntargets >= 1, in fallback order */
    size_t ntargets;
} sl_model_cfg_t;

typedef struct sl_key_cfg {
    char *name;            /* owned; shown in logs instead of the key */
    char *key;             /* owned; never logged; NULL when given as key_sha256 */
    uint8_t sha256[32];    /* SHA-256 of the key: what requests are compared against */
    int64_t rpm, tpm;      /* 0 = rate_limits.per_key */
    int64_t budget_tokens; /* 0 = none */
    char *models;          /* owned; comma-separated globs, NULL = every model */
} sl_key_cfg_t;

/* A requests/minute + tokens/minute pair; 0 = unlimited. */
typedef struct sl_rate_cfg {
    int64_t rpm, tpm;
} sl_rate_cfg_t;

/* auth.jwt: how bearer JWTs are verified (policy/jwt.c). */
typedef struct sl_jwt_cfg {
    char *alg; /* "HS256", "RS256" or "ES256" (owned) */
    char *key; /* HS256: the secret; RS256/ES256: PEM public key text (owned) */
    size_t key_len;
    char *user_claim;  /* default "sub" (owned) */
    uint64_t leeway_s; /* default 30 */
    bool require_exp;  /* default true: a token without "exp" is refused (it would never expire) */
    char *issuer;      /* when set, "iss" must equal it (owned, may be NULL) */
    char *audience;    /* when set, "aud" must equal or contain it (owned, may be NULL) */
} sl_jwt_cfg_t;

/* observability.metrics.auth: who may read /metrics. */
typedef enum sl_metrics_auth {
    SL_METRICS_AUTH_DEFAULT = 0, /* admin when auth.admin_keys is set, else key when any key
                                    exists (config or issued, at request time), else none */
    SL_METRICS_AUTH_NONE,
    SL_METRICS_AUTH_KEY,   /* any valid key: auth.keys, issued keys or an admin key */
    SL_METRICS_AUTH_ADMIN, /* an auth.admin_keys key */
} sl_metrics_auth_t;

typedef enum sl_auth_mode {
    SL_AUTH_DEFAULT =
        0, /* key when auth.keys is set, else none; aichat: jwt when auth.jwt is set */
    SL_AUTH_NONE,
    SL_AUTH_KEY,
    SL_AUTH_JWT,
} sl_auth_mode_t;

/* The settings every dialect has, under dialects.<name> (DESIGN §4). What else a dialect reads
 * is its own (config/dialect_section.h): the config module never names a dialect. */
#define SL_CONFIG_MAX_DIALECTS 8
struct sl_dialect_section;
typedef struct sl_dialect_cfg {
    const struct sl_dialect_section *section; /* whose settings these are */
    unsigned index;                           /* position in dialects[], the same in every config */
    bool enabled;                             /* default true */
    char *prefix;                             /* owned; mount prefix, default "" */
    char *model;            /* owned; model name routed for this dialect, default "default" */
    char *system_prompt;    /* owned; NULL = none */
    uint64_t max_tokens;    /* 0 = not sent */
    sl_auth_mode_t auth;    /* resolved at load: DEFAULT only while no key exists */
    unsigned history_turns; /* sessions: earlier turns sent upstream, default 20 */
    void *own;              /* owned; the dialect's own settings (section->own_size), or NULL */
} sl_dialect_cfg_t;

typedef struct sl_config {
    int refs;     /* atomic; see sl_config_ref */
    char *source; /* owned; file path, or "<embedded>" */

    char *listen_host; /* owned; default 127.0.0.1 */
    int listen_port;   /* default 8080; 0 = any free port */
    int workers;       /* default 0 = auto (number of cores) */

    /* limits: */
    size_t max_body;          /* default 4 MiB */
    size_t max_header;        /* default 16 KiB (all request header bytes) */
    unsigned max_connections; /* default 20000 per process */
    size_t stream_buffer;     /* default 256 KiB: client output high-water mark */

    /* timeouts (milliseconds; 0 = none): */
    uint64_t connect_ms;       /* default 5 s */
    uint64_t first_byte_ms;    /* default 60 s */
    uint64_t idle_ms;          /* default 60 s */
    uint64_t keepalive_ms;     /* default 15 s: ": keepalive" comment period */
    uint64_t client_header_ms; /* default 10 s: a request must arrive whole within this */
    uint64_t client_idle_ms;   /* default 60 s: idle keep-alive connection lifetime */
    uint64_t ws_ping_ms;       /* default 30 s: a WebSocket client silent this long is pinged */
    uint64_t ws_idle_ms;       /* default 120 s: a WebSocket client silent this long is closed */
    uint64_t drain_ms;         /* default 10 s: SIGTERM waits this long for streams */

    /* retry: backoff between attempts on a target, doubling from backoff up to max_backoff,
     * with jitter; an upstream's Retry-After is honoured up to max_retry_after. */
    uint64_t retry_backoff_ms;     /* default 100 ms */
    uint64_t retry_max_backoff_ms; /* default 2 s */
    uint64_t retry_max_after_ms;   /* default 10 s */
    /* retry.fail_open: when every target of a route is skipped by its breaker, try them
     * anyway, least recently failed first (default true); false answers 503 with Retry-After
     * = the shortest remaining cooldown. */
    bool fail_open;

    bool metrics;    /* observability.metrics: /metrics is served and counted (default true) */
    bool access_log; /* observability.access_log: one JSON line per request (default true) */

    sl_key_cfg_t *keys; /* owned; auth.keys */
    size_t nkeys;
    char **admin_keys; /* owned; auth.admin_keys */
    size_t nadmin_keys;

    sl_provider_cfg_t *providers; /* owned; in file order */
    size_t nproviders;
    sl_model_cfg_t *models; /* owned; in file order */
    size_t nmodels;

    sl_jwt_cfg_t jwt; /* auth.jwt; jwt.alg == NULL when not configured */

    sl_dialect_cfg_t dialects[SL_CONFIG_MAX_DIALECTS]; /* one per registered section */
    size_t ndialects;

    char *sqlite_path;  /* owned; store.sqlite, default ./sluice.db */
    char *redis_url;    /* owned; store.redis: shared limits and budgets, NULL = local */
    char *postgres_url; /* owned; store.postgres: keys, usage, sessions, NULL = SQLite */

    sl_rate_cfg_t rl_key, rl_user, rl_ip; /* rate_limits.per_key / per_user / per_ip */
    /* rate_limits.budget_reserve: the completion tokens a request without max_tokens reserves
     * of its key's budget (default 4096; policy/budget.h) */
    int64_t budget_reserve;

    char **cors_origins; /* owned; cors.origins ("*" allowed) */
    size_t ncors_origins;
    uint64_t cors_max_age_s; /* default 600 */

    /* trusted_proxies: peers whose X-Forwarded-For / Forwarded name the client (default none:
     * the TCP peer is the client) */
    sl_cidr_t *trusted_proxies; /* owned */
    size_t ntrusted_proxies;
    /* observability.metrics (map form; the boolean form sets only `metrics` above) */
    sl_metrics_auth_t metrics_auth;
    char *metrics_listen_host; /* owned; NULL = /metrics on the main listener */
    int metrics_listen_port;   /* with a host: its own listener (0 = any free port) */
} sl_config_t;

/* The settings of the dialect whose section is s; s must be registered. */
const sl_dialect_cfg_t *sl_config_dialect(const sl_config_t *c, const struct sl_dialect_section *s);
/* The settings of the dialect called name ("openai", "rag", ...), or NULL when none is. */
const sl_dialect_cfg_t *sl_config_dialect_named(const sl_config_t *c, const char *name);

/* Parses YAML text. name is used in error messages (usually the file path). On success *out
 * holds one ref; on failure err holds "name:line:col: message" and the result is SL_ECONFIG. */
SL_MUST_CHECK int sl_config_parse(const char *yaml, size_t len, const char *name, sl_config_t **out,
                                  sl_buf_t *err);
/* Reads and parses a file; a missing/unreadable file is an error naming the path. */
SL_MUST_CHECK int sl_config_load(const char *path, sl_config_t **out, sl_buf_t *err);
/* The embedded default: 127.0.0.1:8080, every model answered by the mock provider, no auth. */
sl_config_t *sl_config_default(void);

sl_config_t *sl_config_ref(sl_config_t *c);
void sl_config_unref(sl_config_t *c); /* NULL is a no-op; the last unref frees */

/* The model entry answering a client's model name: an exact pattern wins, else the first glob
 * in file order that matches. NULL when none does. */
const sl_model_cfg_t *sl_config_route(const sl_config_t *c, const char *model);

#endif
