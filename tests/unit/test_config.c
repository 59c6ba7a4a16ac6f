/* Unit tests for config: the schema, every kind of error with its line:col, ${ENV}, routing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "config/config.h"
#include "dialect/dialect.h"
#include "dialect/monoai_cfg.h"
#include "dialect/rag_cfg.h"

/* A dialect's settings by name: every dialect is registered before the first test. */
#define DIALECT(c, name) sl_config_dialect_named((c), (name))
#include "core/glob.h"

static sl_config_t *parse_ok(const char *yaml)
{
    sl_buf_t err;
    sl_buf_init(&err);
    sl_config_t *c = NULL;
    int rc = sl_config_parse(yaml, strlen(yaml), "t.yaml", &c, &err);
    if (rc != 0)
        print_error("unexpected error: %s\n", err.data);
    assert_int_equal(rc, 0);
    assert_non_null(c);
    assert_int_equal(err.len, 0);
    sl_buf_dispose(&err);
    return c;
}

/* want is the whole message, "t.yaml:line:col: ...", so every mark is pinned down. */
static void expect_error(const char *yaml, const char *want)
{
    sl_buf_t err;
    sl_buf_init(&err);
    sl_config_t *c = (sl_config_t *)1;
    int rc = sl_config_parse(yaml, strlen(yaml), "t.yaml", &c, &err);
    assert_int_equal(rc, SL_ECONFIG);
    assert_null(c);
    assert_non_null(err.data);
    assert_string_equal(err.data, want);
    sl_buf_dispose(&err);
}

static void assert_default_routing(const sl_config_t *c)
{
    assert_int_equal(c->nproviders, 1);
    assert_string_equal(c->providers[0].name, "mock");
    assert_int_equal(c->providers[0].type, SL_PROVIDER_MOCK);
    assert_int_equal(c->providers[0].ttft_ms, 200);
    assert_true(c->providers[0].tokens_per_s == 40.0);
    assert_int_equal(c->providers[0].tokens, 48);
    assert_null(c->providers[0].base_url);
    assert_null(c->providers[0].api_key);
    assert_int_equal(c->nmodels, 1);
    assert_string_equal(c->models[0].pattern, "*");
    assert_int_equal(c->models[0].ntargets, 1);
    assert_int_equal(c->models[0].targets[0].provider, 0);
    assert_null(c->models[0].targets[0].model);
}

static void assert_default_scalars(const sl_config_t *c)
{
    assert_string_equal(c->listen_host, "127.0.0.1");
    assert_int_equal(c->listen_port, 8080);
    assert_int_equal(c->workers, 0);
    assert_int_equal(c->max_body, 4 << 20);
    assert_int_equal(c->max_header, 16 << 10);
    assert_int_equal(c->max_connections, 20000);
    assert_int_equal(c->stream_buffer, 256 << 10);
    assert_int_equal(c->connect_ms, 5000);
    assert_int_equal(c->first_byte_ms, 60000);
    assert_int_equal(c->idle_ms, 60000);
    assert_int_equal(c->keepalive_ms, 15000);
    assert_int_equal(c->client_header_ms, 10000);
    assert_int_equal(c->client_idle_ms, 60000);
    assert_int_equal(c->ws_ping_ms, 30000);
    assert_int_equal(c->ws_idle_ms, 120000);
    assert_int_equal(c->drain_ms, 10000);
    assert_int_equal(c->nkeys, 0);
    assert_int_equal(c->nadmin_keys, 0);
}

static void test_config_full_file_sets_every_field(void **state)
{
    (void)state;
    sl_config_t *c = parse_ok("listen: 0.0.0.0:9000\n"
                              "workers: 4\n"
                              "limits:   { max_body: 1MiB, max_header: 8KiB, max_connections: "
                              "500, stream_buffer: 64KB }\n"
                              "timeouts:\n"
                              "  connect: 2s\n"
                              "  first_byte: 1m\n"
                              "  idle: 500ms\n"
                              "  keepalive: off\n"
                              "  client_header: 3s\n"
                              "  client_idle: 1h\n"
                              "  ws_ping: 10s\n"
                              "  ws_idle: 45s\n"
                              "  drain: 0\n"
                              "auth:\n"
                              "  keys: [ { name: dev, key: sk-dev }, sk-plain ]\n"
                              "  admin_keys: [ adm-1, adm-2 ]\n"
                              "models:\n"
                              "  gpt-4o-mini: [ { provider: openai }, { provider: local, model: "
                              "tiny } ]\n"
                              "  \"*\":         [ { provider: local } ]\n"
                              "providers:\n"
                              "  local:  { type: mock, ttft: 50ms, tokens_per_s: 2.5, tokens: 3 }\n"
                              "  openai: { type: openai, base_url: https://api.openai.com/v1/, "
                              "api_key: sk-up }\n");
    assert_string_equal(c->source, "t.yaml");
    assert_int_equal(c->refs, 1);
    assert_string_equal(c->listen_host, "0.0.0.0");
    assert_int_equal(c->listen_port, 9000);
    assert_int_equal(c->workers, 4);
    assert_int_equal(c->max_body, 1 << 20);
    assert_int_equal(c->max_header, 8 << 10);
    assert_int_equal(c->max_connections, 500);
    assert_int_equal(c->stream_buffer, 64000);
    assert_int_equal(c->connect_ms, 2000);
    assert_int_equal(c->first_byte_ms, 60000);
    assert_int_equal(c->idle_ms, 500);
    assert_int_equal(c->keepalive_ms, 0);
    assert_int_equal(c->client_header_ms, 3000);
    assert_int_equal(c->client_idle_ms, 3600000);
    assert_int_equal(c->ws_ping_ms, 10000);
    assert_int_equal(c->ws_idle_ms, 45000);
    assert_int_equal(c->drain_ms, 0);

    assert_int_equal(c->nkeys, 2);
    assert_string_equal(c->keys[0].name, "dev");
    assert_string_equal(c->keys[0].key, "sk-dev");
    assert_string_equal(c->keys[1].name, "key1");
    assert_string_equal(c->keys[1].key, "sk-plain");
    assert_int_equal(c->nadmin_keys, 2);
    assert_string_equal(c->admin_keys[0], "adm-1");
    assert_string_equal(c->admin_keys[1], "adm-2");

    assert_int_equal(c->nproviders, 2);
    assert_string_equal(c->providers[0].name, "local");
    assert_int_equal(c->providers[0].type, SL_PROVIDER_MOCK);
    assert_int_equal(c->providers[0].ttft_ms, 50);
    assert_true(c->providers[0].tokens_per_s == 2.5);
    assert_int_equal(c->providers[0].tokens, 3);
    assert_string_equal(c->providers[1].name, "openai");
    assert_int_equal(c->providers[1].type, SL_PROVIDER_OPENAI);
    assert_string_equal(c->providers[1].base_url, "https://api.openai.com/v1");
    assert_string_equal(c->providers[1].api_key, "sk-up");

    assert_int_equal(c->nmodels, 2);
    assert_string_equal(c->models[0].pattern, "gpt-4o-mini");
    assert_int_equal(c->models[0].ntargets, 2);
    assert_int_equal(c->models[0].targets[0].provider, 1);
    assert_null(c->models[0].targets[0].model);
    assert_int_equal(c->models[0].targets[1].provider, 0);
    assert_string_equal(c->models[0].targets[1].model, "tiny");
    assert_string_equal(c->models[1].pattern, "*");
    assert_int_equal(c->models[1].targets[0].provider, 0);
    sl_config_unref(c);
}

static void test_config_empty_document_gives_defaults(void **state)
{
    (void)state;
    static const char *const docs[] = {"", "# nothing set\n", "---\n", "~\n"};
    for (size_t i = 0; i < sizeof docs / sizeof docs[0]; i++) {
        sl_config_t *c = parse_ok(docs[i]);
        assert_default_scalars(c);
        assert_default_routing(c);
        sl_config_unref(c);
    }
}

static void test_config_without_providers_and_models_routes_all_to_mock(void **state)
{
    (void)state;
    sl_config_t *c = parse_ok("listen: 127.0.0.1:0\n");
    assert_int_equal(c->listen_port, 0);
    assert_default_routing(c);
    const sl_model_cfg_t *m = sl_config_route(c, "anything-at-all");
    assert_non_null(m);
    assert_string_equal(m->pattern, "*");
    sl_config_unref(c);
}

static void test_config_default_is_loopback_mock(void **state)
{
    (void)state;
    sl_config_t *c = sl_config_default();
    assert_string_equal(c->source, "<embedded>");
    assert_default_scalars(c);
    assert_default_routing(c);
    sl_config_unref(c);
}

static void test_config_ref_keeps_it_alive_until_last_unref(void **state)
{
    (void)state;
    sl_config_t *c = sl_config_default();
    assert_ptr_equal(sl_config_ref(c), c);
    assert_int_equal(c->refs, 2);
    sl_config_unref(c);
    assert_string_equal(c->listen_host, "127.0.0.1"); /* ASan would catch a use after free */
    sl_config_unref(c);
    sl_config_unref(NULL);
}

struct dur_case {
    const char *text;
    uint64_t ms;
};

static void test_config_durations(void **state)
{
    (void)state;
    static const struct dur_case ok[] = {
        {"500ms", 500},  {"5s", 5000},       {"2m", 120000},
        {"1h", 3600000}, {"0", 0},           {"off", 0},
        {"0s", 0},       {"\"30s\"", 30000}, {"596h", 596ull * 3600000},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        char yaml[64];
        snprintf(yaml, sizeof yaml, "timeouts: { idle: %s }", ok[i].text);
        sl_config_t *c = parse_ok(yaml);
        assert_int_equal(c->idle_ms, ok[i].ms);
        sl_config_unref(c);
    }
    static const char *const bad[] = {"30", "5 s",  "1.5s", "-1s",  "5S",  "ms",
                                      "s5", "5sec", "1d",   "null", "true"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char yaml[64];
        snprintf(yaml, sizeof yaml, "timeouts: { idle: %s }", bad[i]);
        expect_error(yaml, "t.yaml:1:19: idle: expected a duration like 30s or 500ms");
    }
    expect_error("timeouts:\n  drain: 597h\n", "t.yaml:2:10: drain: too long (the most is 596h)");
    expect_error("timeouts:\n  drain: 99999999999999999999999s\n",
                 "t.yaml:2:10: drain: too long (the most is 596h)");
    expect_error("timeouts:\n  connect:\n", "t.yaml:2:11: connect: expected a duration like 30s "
                                            "or 500ms");
}

struct size_case {
    const char *text;
    size_t bytes;
};

static void test_config_sizes(void **state)
{
    (void)state;
    static const struct size_case ok[] = {
        {"1024", 1024},    {"100B", 100},       {"512KiB", 512 << 10},
        {"4MiB", 4 << 20}, {"1GiB", 1ul << 30}, {"10KB", 10000},
        {"2MB", 2000000},  {"1GB", 1000000000}, {"'3MiB'", 3 << 20},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        char yaml[64];
        snprintf(yaml, sizeof yaml, "limits: { max_body: %s }", ok[i].text);
        sl_config_t *c = parse_ok(yaml);
        assert_int_equal(c->max_body, ok[i].bytes);
        sl_config_unref(c);
    }
    static const char *const bad[] = {"4mb", "4 MiB", "1.5MiB", "-1", "MiB", "4TiB", "4k", "0x10"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char yaml[64];
        snprintf(yaml, sizeof yaml, "limits: { max_body: %s }", bad[i]);
        expect_error(yaml, "t.yaml:1:21: max_body: expected a size like 4MiB, 512KiB or 1024 "
                           "(bytes)");
    }
    expect_error("limits:\n  max_header: 0\n",
                 "t.yaml:2:15: max_header: must be more than 0 bytes");
    expect_error("limits:\n  stream_buffer: 99999999999999999999\n",
                 "t.yaml:2:18: stream_buffer: too large");
    expect_error("limits:\n  stream_buffer: 99999999999GiB\n",
                 "t.yaml:2:18: stream_buffer: too large");
    expect_error("limits:\n  max_connections: 0\n",
                 "t.yaml:2:20: max_connections: expected a whole number from 1 to 10000000");
    expect_error("limits:\n  max_connections: 1k\n",
                 "t.yaml:2:20: max_connections: expected a whole number from 1 to 10000000");
}

static void test_config_listen_and_workers(void **state)
{
    (void)state;
    sl_config_t *c = parse_ok("listen: localhost:65535\nworkers: auto\n");
    assert_string_equal(c->listen_host, "localhost");
    assert_int_equal(c->listen_port, 65535);
    assert_int_equal(c->workers, 0);
    sl_config_unref(c);
    c = parse_ok("workers: 256\n");
    assert_int_equal(c->workers, 256);
    sl_config_unref(c);

    static const char listen_msg[] = "t.yaml:1:9: listen: expected host:port, like 127.0.0.1:8080";
    expect_error("listen: 8080", listen_msg);
    expect_error("listen: :8080", listen_msg);
    expect_error("listen: 'host:'", listen_msg);
    expect_error("listen: host:x", listen_msg);
    expect_error("listen: a b:80", listen_msg);
    expect_error("listen: host:-1", listen_msg);
    expect_error("listen: host:65536", "t.yaml:1:9: listen: the port must be from 0 to 65535");
    expect_error("listen: [1]", "t.yaml:1:9: listen: expected a string");

    static const char workers_msg[] =
        "t.yaml:1:10: workers: expected auto or a whole number from 1 to 256";
    expect_error("workers: 0", workers_msg);
    expect_error("workers: 257", workers_msg);
    expect_error("workers: many", workers_msg);
    expect_error("workers: 2.0", workers_msg);
}

/* Pings keep a quiet live client inside ws_idle only when they come more often; either may be
 * off. */
static void test_config_ws_ping_must_be_shorter_than_ws_idle(void **state)
{
    (void)state;
    expect_error("timeouts: { ws_ping: 2m }\n",
                 "t.yaml:1:22: ws_ping (120000 ms) must be shorter than ws_idle (120000 ms), or 0 "
                 "for no pings");
    expect_error("timeouts: { ws_idle: 20s }\n",
                 "t.yaml:1:22: ws_ping (30000 ms) must be shorter than ws_idle (20000 ms), or 0 "
                 "for no pings");
    sl_config_t *c = parse_ok("timeouts: { ws_ping: 0, ws_idle: 20s }\n");
    assert_int_equal(c->ws_ping_ms, 0);
    assert_int_equal(c->ws_idle_ms, 20000);
    sl_config_unref(c);
    c = parse_ok("timeouts: { ws_ping: 1h, ws_idle: off }\n");
    assert_int_equal(c->ws_ping_ms, 3600000);
    assert_int_equal(c->ws_idle_ms, 0);
    sl_config_unref(c);
}

static void test_config_unknown_keys_name_the_key_and_list_allowed(void **state)
{
    (void)state;
    expect_error(
        "workers: 2\nlisen: 1.2.3.4:5\n",
        "t.yaml:2:1: unknown key 'lisen' (allowed: listen, workers, limits, timeouts, "
        "auth, providers, models, dialects, store, retry, observability, rate_limits, cors, "
        "trusted_proxies)");
    expect_error("limits:\n  max_bdy: 1\n",
                 "t.yaml:2:3: unknown key 'max_bdy' in limits (allowed: max_body, max_header, "
                 "max_connections, stream_buffer)");
    expect_error("timeouts: { total: 5s }",
                 "t.yaml:1:13: unknown key 'total' in timeouts (allowed: connect, first_byte, "
                 "idle, keepalive, client_header, client_idle, ws_ping, ws_idle, drain)");
    expect_error(
        "providers:\n  p: { type: mock, speed: 3 }\n",
        "t.yaml:2:20: unknown key 'speed' in providers.p (allowed: type, base_url, "
        "api_key, ttft, tokens_per_s, tokens, breaker, api_version, deployment, max_tokens)");
    expect_error("providers: { p: { type: mock } }\nmodels:\n  x: [ { provider: p, modle: y } ]\n",
                 "t.yaml:3:23: unknown key 'modle' in a model target (allowed: provider, model, "
                 "retries, fallback_to_non_stream)");
}

static void test_config_rag_section(void **state)
{
    (void)state;
    sl_config_t *c = parse_ok("dialects:\n  rag: {}\n");
    assert_null(sl_rag_cfg(c)->corpus);
    assert_true(sl_rag_cfg(c)->streaming);
    assert_int_equal(sl_rag_cfg(c)->top_k, 4);
    assert_int_equal(sl_rag_cfg(c)->cache_ttl_ms, 0); /* the answer cache is off by default */
    uint64_t gen = sl_rag_cfg(c)->generation;
    sl_config_unref(c);
    c = parse_ok("dialects:\n  rag: { corpus: ./docs, streaming: false, top_k: 2, cache_ttl: 5m,"
                 " model: m, max_tokens: 300 }\n");
    assert_string_equal(sl_rag_cfg(c)->corpus, "./docs");
    assert_false(sl_rag_cfg(c)->streaming);
    assert_int_equal(sl_rag_cfg(c)->top_k, 2);
    assert_int_equal(sl_rag_cfg(c)->cache_ttl_ms, 300000);
    assert_string_equal(DIALECT(c, "rag")->model, "m");
    assert_true(sl_rag_cfg(c)->generation !=
                gen); /* each parse is a new generation: reload re-scans */
    sl_config_unref(c);
    expect_error("dialects:\n  rag: { top_k: 0 }\n",
                 "t.yaml:2:17: top_k: expected a whole number from 1 to 20");
    expect_error(
        "dialects:\n  chat: { corpus: ./docs }\n",
        "t.yaml:2:11: unknown key 'corpus' in chat "
        "(allowed: enabled, prefix, model, system_prompt, max_tokens, auth, history_turns)");
}

static void test_config_monoai_user_validator_url_and_cache(void **state)
{
    (void)state;
    sl_config_t *c = parse_ok("dialects:\n  monoai: { users: { url: 'http://127.0.0.1:9/v' } }\n");
    assert_string_equal(sl_monoai_cfg(c)->user_validator_url, "http://127.0.0.1:9/v");
    assert_int_equal(sl_monoai_cfg(c)->user_validator_cache_ms, 60000); /* the default TTL */
    assert_int_equal(sl_monoai_cfg(c)->nallowed_users, 0);
    sl_config_unref(c);
    c = parse_ok("dialects:\n  monoai: { users: { url: 'https://v.example/check', cache: 5m } }\n");
    assert_string_equal(sl_monoai_cfg(c)->user_validator_url, "https://v.example/check");
    assert_int_equal(sl_monoai_cfg(c)->user_validator_cache_ms, 300000);
    sl_config_unref(c);
    c = parse_ok("dialects:\n  monoai: { users: { url: 'http://h', cache: 0 } }\n");
    assert_int_equal(sl_monoai_cfg(c)->user_validator_cache_ms, 0); /* 0: every request asks */
    sl_config_unref(c);
    expect_error("dialects:\n  monoai: { users: { url: 'ftp://x' } }\n",
                 "t.yaml:2:27: url: expected an http:// or https:// URL");
    expect_error("dialects:\n  monoai: { users: { url: 'http://' } }\n",
                 "t.yaml:2:27: url: expected an http:// or https:// URL");
    expect_error("dialects:\n  monoai: { users: { allow: [a], cache: 1s } }\n",
                 "t.yaml:2:41: users: cache applies to url answers only");
    expect_error("dialects:\n  monoai: { users: { url: 'http://h', cache: soon } }\n",
                 "t.yaml:2:46: cache: expected a duration like 30s or 500ms");
}

static void test_config_dialects_defaults_and_overrides(void **state)
{
    (void)state;
    sl_config_t *c = parse_ok("auth: { keys: [ { name: a, key: k-1234 } ] }\n"
                              "dialects:\n"
                              "  chat: { model: gpt-x, system_prompt: be brief, auth: none,\n"
                              "          prefix: /seed000, history_turns: 3 }\n"
                              "  monoai:\n"
                              "    agents:\n"
                              "      support: { model: m2, system_prompt: help, params: "
                              "{ temperature: 0.2, max_tokens: 50, stop: '###' } }\n"
                              "    users: { allow: [ u1, u2 ] }\n");
    const sl_dialect_cfg_t *chat = DIALECT(c, "chat");
    assert_string_equal(chat->model, "gpt-x");
    assert_string_equal(chat->prefix, "/seed000");
    assert_int_equal(chat->max_tokens, 1000); /* seed 000's default stays */
    assert_int_equal(chat->history_turns, 3);
    assert_int_equal(chat->auth, SL_AUTH_NONE);
    assert_int_equal(DIALECT(c, "openai")->auth, SL_AUTH_KEY); /* keys set */
    assert_int_equal(DIALECT(c, "aichat")->auth, SL_AUTH_KEY); /* no jwt configured */
    assert_string_equal(DIALECT(c, "monoai")->model, "default");
    const sl_agent_cfg_t *a = sl_monoai_agent(c, "support");
    assert_non_null(a);
    assert_null(sl_monoai_agent(c, "nope"));
    assert_string_equal(a->model, "m2");
    assert_true(json_is_real(json_object_get(a->params, "temperature")));
    assert_int_equal(json_integer_value(json_object_get(a->params, "max_tokens")), 50);
    assert_string_equal(json_string_value(json_object_get(a->params, "stop")), "###");
    assert_int_equal(sl_monoai_cfg(c)->nallowed_users, 2);
    assert_string_equal(sl_monoai_cfg(c)->allowed_users[1], "u2");
    sl_config_unref(c);
}

static void test_config_breaker_settings(void **state)
{
    (void)state;
    sl_config_t *c = parse_ok("providers:\n"
                              "  m: { type: mock, breaker: { failures: 2, cooldown: 5m, "
                              "max_rate_limit: 5s } }\n"
                              "  n: { type: mock, breaker: { cooldown: 1s, max_cooldown: 30s } }\n"
                              "models: { '*': [ { provider: m }, { provider: n } ] }\n"
                              "retry: { fail_open: false }\n");
    assert_int_equal(c->providers[0].breaker_failures, 2);
    assert_int_equal(c->providers[0].breaker_cooldown_ms, 300000);
    assert_int_equal(c->providers[0].breaker_max_cooldown_ms, 300000); /* raised to cooldown */
    assert_int_equal(c->providers[0].breaker_max_rate_limit_ms, 5000);
    assert_int_equal(c->providers[1].breaker_cooldown_ms, 1000);
    assert_int_equal(c->providers[1].breaker_max_cooldown_ms, 30000);
    assert_false(c->fail_open);
    sl_config_unref(c);
    expect_error("providers:\n  m: { type: mock, breaker: { cooldown: 1m, max_cooldown: 1s } }\n"
                 "models: { '*': [ { provider: m } ] }\n",
                 "t.yaml:2:59: max_cooldown: must not be shorter than cooldown");
    expect_error("providers:\n  m: { type: mock, breaker: { probes: 2 } }\n"
                 "models: { '*': [ { provider: m } ] }\n",
                 "t.yaml:2:31: unknown key 'probes' in breaker (allowed: failures, cooldown, "
                 "max_cooldown, max_rate_limit)");
    expect_error("retry: { fail_open: maybe }\n", "t.yaml:1:21: fail_open: expected true or false");
}

static void test_config_fallback_and_provider_types(void **state)
{
    (void)state;
    sl_config_t *c = parse_ok("providers:\n"
                              "  az: { type: azure, base_url: 'https://x.openai.azure.com', "
                              "api_key: k, deployment: gpt4 }\n"
                              "  an: { type: anthropic, api_key: k, max_tokens: 2048, "
                              "breaker: { failures: 3, cooldown: 5s } }\n"
                              "models:\n"
                              "  m: [ { provider: az, retries: 2, fallback_to_non_stream: true },"
                              " { provider: an } ]\n"
                              "retry: { backoff: 50ms, max_backoff: 1s, max_retry_after: 3s }\n"
                              "observability: { metrics: false, access_log: false }\n");
    assert_int_equal(c->providers[0].type, SL_PROVIDER_AZURE);
    assert_string_equal(c->providers[0].api_version, "2024-06-01");
    assert_string_equal(c->providers[0].deployment, "gpt4");
    assert_int_equal(c->providers[1].type, SL_PROVIDER_ANTHROPIC);
    assert_string_equal(c->providers[1].base_url, "https://api.anthropic.com/v1");
    assert_string_equal(c->providers[1].api_version, "2023-06-01");
    assert_int_equal(c->providers[1].max_tokens, 2048);
    assert_int_equal(c->providers[1].breaker_failures, 3);
    assert_int_equal(c->providers[1].breaker_cooldown_ms, 5000);
    assert_int_equal(c->providers[0].breaker_failures, 5); /* default */
    assert_int_equal(c->providers[0].breaker_cooldown_ms, 10000);
    assert_int_equal(c->providers[0].breaker_max_cooldown_ms, 120000);
    assert_int_equal(c->providers[0].breaker_max_rate_limit_ms, 60000);
    assert_int_equal(c->providers[1].breaker_max_cooldown_ms, 120000);
    assert_true(c->fail_open); /* default */
    assert_int_equal(c->models[0].targets[0].retries, 2);
    assert_true(c->models[0].targets[0].fallback_to_non_stream);
    assert_false(c->models[0].targets[1].fallback_to_non_stream);
    assert_int_equal(c->retry_backoff_ms, 50);
    assert_int_equal(c->retry_max_backoff_ms, 1000);
    assert_int_equal(c->retry_max_after_ms, 3000);
    assert_false(c->metrics);
    assert_false(c->access_log);
    sl_config_unref(c);
    expect_error("providers: { a: { type: azure } }\nmodels: { m: [ { provider: a } ] }\n",
                 "t.yaml:1:17: providers.a: base_url is required for type azure");
    expect_error("providers: { a: { type: mock, deployment: x } }\n",
                 "t.yaml:1:31: deployment is not used by type mock");
    expect_error(
        "providers: { a: { type: mock } }\nmodels: { m: [ { provider: a, retries: 11 } ] }\n",
        "t.yaml:2:40: retries: expected a whole number from 0 to 10");
}

static void test_config_limits_cors_and_key_policies(void **state)
{
    (void)state;
    sl_config_t *c = parse_ok(
        "auth:\n  keys:\n"
        "    - { name: a, key: sk-a-1234, rpm: 5, tpm: 1000, budget_tokens: 500, models: 'x-*' }\n"
        "    - { name: b, key_sha256: "
        "'9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08' }\n"
        "rate_limits: { per_key: { rpm: 600, tpm: 200000 }, per_user: { rpm: 60 }, "
        "per_ip: { rpm: 120 } }\n"
        "cors: { origins: [ 'https://app.example', '*' ], max_age: 5m }\n"
        "store: { redis: 'redis://127.0.0.1:6379', postgres: 'postgresql://u@h/db' }\n");
    assert_int_equal(c->keys[0].rpm, 5);
    assert_int_equal(c->keys[0].tpm, 1000);
    assert_int_equal(c->keys[0].budget_tokens, 500);
    assert_string_equal(c->keys[0].models, "x-*");
    assert_null(c->keys[1].key);
    assert_int_equal(c->keys[1].sha256[0], 0x9f); /* sha256("test") */
    assert_int_equal(c->keys[1].sha256[31], 0x08);
    assert_int_equal(c->rl_key.rpm, 600);
    assert_int_equal(c->rl_key.tpm, 200000);
    assert_int_equal(c->rl_user.rpm, 60);
    assert_int_equal(c->rl_user.tpm, 0);
    assert_int_equal(c->rl_ip.rpm, 120);
    assert_int_equal(c->ncors_origins, 2);
    assert_int_equal(c->cors_max_age_s, 300);
    assert_string_equal(c->redis_url, "redis://127.0.0.1:6379");
    assert_string_equal(c->postgres_url, "postgresql://u@h/db");
    sl_config_unref(c);
    expect_error("auth:\n  keys: [ { name: a, key_sha256: abc } ]\n",
                 "t.yaml:2:34: key_sha256: expected 64 hex digits (sha256sum of the key)");
    expect_error("auth:\n  keys: [ { name: a } ]\n",
                 "t.yaml:2:11: auth.keys: an entry needs key: or key_sha256: (one)");
    expect_error("cors: { origins: [ app.example ] }\n",
                 "t.yaml:1:20: origin: expected \"*\" or a scheme://host[:port]");
    expect_error("store: { redis: 'localhost:6379' }\n",
                 "t.yaml:1:17: redis: expected a URL like redis://127.0.0.1:6379");
}

static void test_config_jwt_and_store(void **state)
{
    (void)state;
    sl_config_t *c = parse_ok("auth:\n  jwt: { alg: HS256, secret: 0123456789abcdef0123, "
                              "user_claim: uid, leeway: 5s }\n"
                              "store: { sqlite: /tmp/x.db }\n");
    assert_string_equal(c->jwt.alg, "HS256");
    assert_int_equal(c->jwt.key_len, 20);
    assert_string_equal(c->jwt.user_claim, "uid");
    assert_int_equal(c->jwt.leeway_s, 5);
    assert_true(c->jwt.require_exp); /* the default: a token without exp is refused */
    assert_string_equal(c->sqlite_path, "/tmp/x.db");
    assert_int_equal(DIALECT(c, "aichat")->auth, SL_AUTH_JWT);   /* jwt configured */
    assert_int_equal(DIALECT(c, "chat")->auth, SL_AUTH_DEFAULT); /* keys, if any are issued later */
    sl_config_unref(c);
    c = parse_ok(
        "auth:\n  jwt: { alg: HS256, secret: 0123456789abcdef0123, require_exp: false }\n");
    assert_false(c->jwt.require_exp);
    sl_config_unref(c);
    expect_error("auth:\n  jwt: { alg: HS256, secret: 0123456789abcdef0123, require_exp: 0 }\n",
                 "t.yaml:2:65: require_exp: expected true or false");
    expect_error("auth:\n  jwt: { alg: none, secret: x }\n",
                 "t.yaml:2:15: alg: expected HS256, RS256 or ES256");
    expect_error("auth:\n  jwt: { alg: HS256, secret: short }\n",
                 "t.yaml:2:30: secret: too short to be safe");
    expect_error("dialects:\n  aichat: { auth: jwt }\n",
                 "t.yaml:2:19: auth: jwt needs auth.jwt (alg and secret or public_key)");
    expect_error(
        "dialects:\n  chat: { agents: {} }\n",
        "t.yaml:2:11: unknown key 'agents' in chat "
        "(allowed: enabled, prefix, model, system_prompt, max_tokens, auth, history_turns)");
    expect_error("dialects:\n  chat: { prefix: seed }\n",
                 "t.yaml:2:19: prefix: expected a path like /seed000 (leading /, none trailing)");
    expect_error("dialects:\n  monoai: { users: { allow: [a], url: 'http://x' } }\n",
                 "t.yaml:2:39: users: give either allow or url, not both");
}

static void test_config_wrong_types_say_what_was_expected(void **state)
{
    (void)state;
    expect_error("- listen\n", "t.yaml:1:1: the top level must be a mapping of key: value lines");
    expect_error("just text\n", "t.yaml:1:1: the top level must be a mapping of key: value lines");
    expect_error("limits: 5\n", "t.yaml:1:9: limits: expected a mapping of key: value");
    expect_error("timeouts:\n", "t.yaml:1:10: timeouts: expected a mapping of key: value");
    expect_error("auth:\n  keys: { a: b }\n", "t.yaml:2:9: auth.keys: expected a list");
    expect_error("auth:\n  admin_keys: k\n", "t.yaml:2:15: auth.admin_keys: expected a list");
    expect_error("auth:\n  admin_keys: [ [k] ]\n", "t.yaml:2:17: admin key: expected a string");
    expect_error("providers: [ mock ]\n", "t.yaml:1:12: providers: expected a mapping of key: "
                                          "value");
    expect_error("providers: { p: { type: mock, tokens_per_s: fast } }\n",
                 "t.yaml:1:45: tokens_per_s: expected a number greater than 0, like 40 or 2.5");
    expect_error("? [a]\n: 1\n", "t.yaml:1:3: expected a key name, not a list or mapping");
    expect_error("workers: 1\nlimits: {}\nworkers: 2\n", "t.yaml:3:1: duplicate key 'workers'");
    expect_error("listen: \"a\\0b:1\"\n", "t.yaml:1:9: listen: must not contain a NUL character");
}

static void test_config_yaml_syntax_errors_carry_the_mark(void **state)
{
    (void)state;
    expect_error("listen: [\n", "t.yaml:2:1: did not find expected node content (while parsing "
                                "a flow node that started at 2:1)");
    expect_error("a: b\n c: d\n", "t.yaml:2:3: mapping values are not allowed in this context");
    expect_error("listen: 127.0.0.1:1\n---\nworkers: 2\n",
                 "t.yaml:3:1: only one YAML document is allowed");
    expect_error("models: *nope\n", "t.yaml:1:9: found undefined alias");
}

static void test_config_env_vars_expand_in_values(void **state)
{
    (void)state;
    assert_int_equal(setenv("SL_TEST_KEY", "sk-123", 1), 0);
    assert_int_equal(setenv("SL_TEST_HOST", "api.example.com", 1), 0);
    assert_int_equal(setenv("SL_TEST_WORKERS", "3", 1), 0);
    /* Inside { } or [ ] YAML ends a plain scalar at '{', so ${...} there must be quoted. */
    sl_config_t *c = parse_ok("workers: ${SL_TEST_WORKERS}\n"
                              "auth: { keys: [ \"a-${SL_TEST_KEY}-${SL_TEST_KEY}!\" ], "
                              "admin_keys: [ 'x$${SL_TEST_KEY}', cost $5 ] }\n"
                              "providers:\n"
                              "  o: { type: openai, base_url: 'https://${SL_TEST_HOST}/v1', "
                              "api_key: '${SL_TEST_KEY}' }\n"
                              "models: { '*': [ { provider: o } ] }\n");
    assert_int_equal(c->workers, 3);
    assert_string_equal(c->keys[0].key, "a-sk-123-sk-123!");
    assert_string_equal(c->admin_keys[0], "x$sk-123");
    assert_string_equal(c->admin_keys[1], "cost $5");
    assert_string_equal(c->providers[0].base_url, "https://api.example.com/v1");
    assert_string_equal(c->providers[0].api_key, "sk-123");
    sl_config_unref(c);
}

static void test_config_unset_env_var_is_an_error_at_its_value(void **state)
{
    (void)state;
    assert_int_equal(unsetenv("SL_TEST_UNSET"), 0);
    assert_int_equal(setenv("SL_TEST_EMPTY", "", 1), 0);
    expect_error("providers:\n  o: { type: openai, base_url: http://h,\n"
                 "       api_key: \"${SL_TEST_UNSET}\" }\n",
                 "t.yaml:3:17: environment variable 'SL_TEST_UNSET' is not set");
    expect_error("providers:\n  o:\n    type: openai\n    base_url: http://h\n"
                 "    api_key: ${SL_TEST_EMPTY}\n",
                 "t.yaml:5:14: api_key: must not be empty");
    static const char bad_msg[] = "t.yaml:1:9: expected ${NAME} with NAME of letters, digits and _";
    expect_error("listen: ${1X}", bad_msg);
    expect_error("listen: ${X", bad_msg);
    expect_error("listen: ${}", bad_msg);
    expect_error("listen: a${X-Y}", bad_msg);
}

static void test_config_providers(void **state)
{
    (void)state;
    sl_config_t *c = parse_ok("providers:\n"
                              "  m: { type: mock }\n"
                              "  o: { type: openai, base_url: 'http://127.0.0.1:1/v1//' }\n"
                              "models: { '*': [ { provider: m } ] }\n");
    assert_int_equal(c->providers[0].ttft_ms, 200);
    assert_true(c->providers[0].tokens_per_s == 40.0);
    assert_int_equal(c->providers[0].tokens, 48);
    assert_string_equal(c->providers[1].base_url, "http://127.0.0.1:1/v1/"); /* one / removed */
    assert_null(c->providers[1].api_key);
    sl_config_unref(c);

    expect_error("providers:\n  m: { type: mock, base_url: http://x }\n",
                 "t.yaml:2:20: base_url is not used by type mock");
    expect_error("providers:\n  m: { type: mock, api_key: k }\n",
                 "t.yaml:2:20: api_key is not used by type mock");
    expect_error("providers:\n  o: { base_url: http://x, type: openai, ttft: 1s }\n",
                 "t.yaml:2:42: ttft is not used by type openai");
    expect_error("providers:\n  o: { type: openai }\n",
                 "t.yaml:2:6: providers.o: base_url is required for type openai");
    expect_error("providers:\n  o: { api_key: k }\n",
                 "t.yaml:2:6: providers.o: type is required (known types: mock, openai, azure, "
                 "anthropic)");
    expect_error("providers:\n  o: { type: bedrock }\n",
                 "t.yaml:2:14: unknown provider type 'bedrock' (known types: mock, openai, azure, "
                 "anthropic)");
    expect_error("providers:\n  o: { type: openai, base_url: ftp://x }\n",
                 "t.yaml:2:32: base_url: expected an http:// or https:// URL");
    expect_error("providers:\n  o: { type: openai, base_url: 'https://' }\n",
                 "t.yaml:2:32: base_url: expected an http:// or https:// URL");
    expect_error("providers:\n  m: { type: mock, tokens_per_s: 0 }\n",
                 "t.yaml:2:34: tokens_per_s: expected a number greater than 0, like 40 or 2.5");
    expect_error("providers:\n  m: { type: mock, tokens_per_s: nan }\n",
                 "t.yaml:2:34: tokens_per_s: expected a number greater than 0, like 40 or 2.5");
    expect_error("providers:\n  m: { type: mock, tokens: 0 }\n",
                 "t.yaml:2:28: tokens: expected a whole number from 1 to 1000000");
    expect_error("providers:\n  my mock: { type: mock }\n",
                 "t.yaml:2:3: provider name 'my mock' may only use letters, digits, '_', '-' and "
                 "'.'");
    expect_error("providers: {}\n", "t.yaml:1:12: providers: expected at least one provider");
    expect_error("providers: { m: null }\n",
                 "t.yaml:1:17: providers.m: expected a mapping of key: value");
}

static void test_config_models_resolve_providers_in_any_order(void **state)
{
    (void)state;
    /* models before providers: resolved once both are read. */
    sl_config_t *c = parse_ok("models:\n  x: [ { provider: b }, { provider: a } ]\n"
                              "providers:\n  a: { type: mock }\n  b: { type: mock }\n");
    assert_int_equal(c->models[0].targets[0].provider, 1);
    assert_int_equal(c->models[0].targets[1].provider, 0);
    sl_config_unref(c);

    expect_error("models:\n  x: [ { provider: a }, { provider: zz } ]\n"
                 "providers:\n  a: { type: mock }\n  b: { type: mock }\n",
                 "t.yaml:2:37: unknown provider 'zz' (configured: a, b)");
    expect_error("models:\n  x: [ { provider: a } ]\n",
                 "t.yaml:2:20: unknown provider 'a' (no providers are configured)");
    expect_error("providers:\n  local: { type: mock }\n",
                 "t.yaml:1:1: providers are configured but no models route to them; add e.g. "
                 "models: { \"*\": [ { provider: local } ] }");
    expect_error("providers: { a: { type: mock } }\nmodels: {}\n",
                 "t.yaml:2:9: models: expected at least one model");
    expect_error("providers: { a: { type: mock } }\nmodels:\n  x: []\n",
                 "t.yaml:3:6: x: expected a list of targets like [ { provider: NAME } ]");
    expect_error("providers: { a: { type: mock } }\nmodels:\n  x: { provider: a }\n",
                 "t.yaml:3:6: x: expected a list of targets like [ { provider: NAME } ]");
    expect_error("providers: { a: { type: mock } }\nmodels:\n  x: [ { model: m } ]\n",
                 "t.yaml:3:8: a model target needs provider: NAME");
    expect_error("providers: { a: { type: mock } }\nmodels:\n  '': [ { provider: a } ]\n",
                 "t.yaml:3:3: models: a model name or pattern must not be empty");
    expect_error("providers: { a: { type: mock } }\nmodels:\n  x: [ { provider: a, model: '' } "
                 "]\n",
                 "t.yaml:3:30: model: must not be empty");
}

static void test_config_auth_keys(void **state)
{
    (void)state;
    sl_config_t *c = parse_ok("auth:\n  keys:\n    - plain\n    - { name: dev, key: k2 }\n"
                              "    - { key: k3 }\n");
    assert_int_equal(c->nkeys, 3);
    assert_string_equal(c->keys[0].name, "key0");
    assert_string_equal(c->keys[0].key, "plain");
    assert_string_equal(c->keys[1].name, "dev");
    assert_string_equal(c->keys[2].name, "key2");
    assert_string_equal(c->keys[2].key, "k3");
    sl_config_unref(c);

    expect_error("auth: { keys: [ '' ] }", "t.yaml:1:17: key: must not be empty");
    expect_error("auth: { keys: [ { name: x } ] }",
                 "t.yaml:1:17: auth.keys: an entry needs key: or key_sha256: (one)");
    expect_error("auth: { keys: [ { name: '', key: k } ] }",
                 "t.yaml:1:25: name: must not be empty");
    expect_error("auth: { admin_keys: [ a, '' ] }", "t.yaml:1:26: admin key: must not be empty");
    expect_error("auth: { keys: [ 'sk-1 ' ] }",
                 "t.yaml:1:17: key: starts or ends with a space or line break");
    expect_error("auth: { admin_keys: [ \"\\tadm\" ] }",
                 "t.yaml:1:23: admin key: starts or ends with a space or line break");
    assert_int_equal(setenv("SL_TEST_NEWLINE", "sk-up\n", 1), 0);
    expect_error("providers:\n  o:\n    type: openai\n    base_url: http://h\n"
                 "    api_key: ${SL_TEST_NEWLINE}\n",
                 "t.yaml:5:14: api_key: starts or ends with a space or line break");
    expect_error("auth:\n  keys: [ { name: a, key: k }, k ]\n",
                 "t.yaml:2:32: auth.keys: the same key is already listed as 'a'");
    expect_error("auth:\n  keys: [ { name: a, key: k1 }, { name: a, key: k2 } ]\n",
                 "t.yaml:2:33: auth.keys: the name 'a' is already used");
    expect_error(
        "auth:\n  keys: [ { key: k, nam: x } ]\n",
        "t.yaml:2:21: unknown key 'nam' in auth.keys (allowed: name, key, key_sha256, rpm, tpm, "
        "budget_tokens, models)");
}

struct glob_case {
    const char *pattern, *s;
    bool match;
};

static void test_config_glob_match(void **state)
{
    (void)state;
    static const struct glob_case cases[] = {
        {"*", "", true},
        {"*", "gpt-4o", true},
        {"", "", true},
        {"", "a", false},
        {"gpt-*", "gpt-4o", true},
        {"gpt-*", "gpt-", true},
        {"gpt-*", "gpt", false},
        {"gpt-?o", "gpt-4o", true},
        {"gpt-?o", "gpt-4", false},
        {"*-mini", "gpt-4o-mini", true},
        {"*-mini", "gpt-4o-mini-x", false},
        {"a*b*c", "axxbyyc", true},
        {"a*b*c", "axxbyy", false},
        {"a**b", "ab", true},
        {"*a*", "bab", true},
        {"?", "\xc3\xa9", true}, /* é is one character */
        {"??", "\xc3\xa9", false},
        {"*?", "\xe4\xb8\x96", true},
        {"x?y", "x\xf0\x9f\x8e\x89y", true},
        {"claude-*", "gpt-4o", false},
        {"exact", "exact", true},
        {"exact", "exac", false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (sl_glob_match(cases[i].pattern, cases[i].s) != cases[i].match)
            fail_msg("glob '%s' on '%s' should be %d", cases[i].pattern, cases[i].s,
                     cases[i].match);
    }
}

static void test_config_glob_match_has_no_exponential_backtracking(void **state)
{
    (void)state;
    /* A recursive matcher takes ~C(5000, 10) steps here; the iterative one a few million. */
    char s[5001];
    memset(s, 'a', sizeof s - 1);
    s[sizeof s - 1] = '\0';
    assert_false(sl_glob_match("a*a*a*a*a*a*a*a*a*a*b", s));
    assert_true(sl_glob_match("a*a*a*a*a*a*a*a*a*a*", s));
}

static void test_config_route_exact_beats_earlier_glob(void **state)
{
    (void)state;
    sl_config_t *c = parse_ok("providers: { p: { type: mock } }\n"
                              "models:\n"
                              "  gpt-*:  [ { provider: p, model: a } ]\n"
                              "  gpt-4?: [ { provider: p, model: b } ]\n"
                              "  gpt-4o: [ { provider: p, model: c } ]\n"
                              "  '*':    [ { provider: p, model: d } ]\n");
    assert_string_equal(sl_config_route(c, "gpt-4o")->pattern, "gpt-4o");
    assert_string_equal(sl_config_route(c, "gpt-4x")->pattern, "gpt-*"); /* first glob in file */
    assert_string_equal(sl_config_route(c, "claude")->pattern, "*");
    sl_config_unref(c);

    c = parse_ok("providers: { p: { type: mock } }\nmodels: { 'gpt-?': [ { provider: p } ], "
                 "gpt-4: [ { provider: p } ] }\n");
    assert_string_equal(sl_config_route(c, "gpt-4")->pattern, "gpt-4");
    assert_string_equal(sl_config_route(c, "gpt-5")->pattern, "gpt-?");
    assert_null(sl_config_route(c, "gpt-40"));
    assert_null(sl_config_route(c, ""));
    sl_config_unref(c);
}

static void test_config_load_reads_a_file_and_names_it(void **state)
{
    (void)state;
    char path[] = "/tmp/sluice-test-config-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    static const char text[] = "listen: 127.0.0.1:7000\nworkers: nope\n";
    assert_int_equal(write(fd, text, sizeof text - 1), (ssize_t)(sizeof text - 1));
    assert_int_equal(close(fd), 0);

    sl_buf_t err;
    sl_buf_init(&err);
    sl_config_t *c = NULL;
    assert_int_equal(sl_config_load(path, &c, &err), SL_ECONFIG);
    assert_null(c);
    char want[128];
    snprintf(want, sizeof want, "%s:2:10: workers: expected auto or a whole number from 1 to 256",
             path);
    assert_string_equal(err.data, want);

    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("listen: 127.0.0.1:7000\n", f);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(sl_config_load(path, &c, NULL), 0);
    assert_string_equal(c->source, path);
    assert_int_equal(c->listen_port, 7000);
    sl_config_unref(c);

    assert_int_equal(unlink(path), 0);
    sl_buf_reset(&err);
    assert_int_equal(sl_config_load(path, &c, &err), SL_ECONFIG);
    snprintf(want, sizeof want, "%s: cannot open: No such file or directory", path);
    assert_string_equal(err.data, want);
    sl_buf_dispose(&err);
}

static void test_config_trusted_proxies(void **state)
{
    sl_config_t *c = parse_ok("workers: 1\n");
    assert_int_equal(c->ntrusted_proxies, 0); /* default: trust nobody */
    sl_config_unref(c);
    c = parse_ok("trusted_proxies: [ \"10.0.0.0/8\", 127.0.0.1/32, \"::1/128\", 192.0.2.7 ]\n");
    assert_int_equal(c->ntrusted_proxies, 4);
    uint8_t a[16];
    assert_true(sl_ip_parse("10.20.30.40", 11, a));
    assert_true(sl_cidr_match(c->trusted_proxies, c->ntrusted_proxies, a));
    assert_true(sl_ip_parse("::1", 3, a));
    assert_true(sl_cidr_match(c->trusted_proxies, c->ntrusted_proxies, a));
    assert_true(sl_ip_parse("192.0.2.8", 9, a));
    assert_false(sl_cidr_match(c->trusted_proxies, c->ntrusted_proxies, a));
    assert_int_equal(c->trusted_proxies[3].bits, 128); /* a bare address is one host */
    sl_config_unref(c);
    c = parse_ok("trusted_proxies: []\n");
    assert_int_equal(c->ntrusted_proxies, 0);
    sl_config_unref(c);
    expect_error("trusted_proxies: 10.0.0.0/8\n", "t.yaml:1:18: trusted_proxies: expected a list");
    expect_error("trusted_proxies:\n  - 10.0.0.0/8\n  - 10.0.0.0/33\n",
                 "t.yaml:3:5: trusted_proxies: \"10.0.0.0/33\": an IPv4 prefix length is 0 to 32");
    expect_error("trusted_proxies: [ 10.1.0.0/8 ]\n",
                 "t.yaml:1:20: trusted_proxies: \"10.1.0.0/8\": bits are set below the prefix "
                 "length (write the network address, e.g. 10.0.0.0/8)");
    expect_error("trusted_proxies: [ localhost ]\n",
                 "t.yaml:1:20: trusted_proxies: \"localhost\": expected an address range like "
                 "10.0.0.0/8 or ::1/128");
    expect_error("trusted_proxies: [ { cidr: 10.0.0.0/8 } ]\n",
                 "t.yaml:1:20: trusted_proxies: expected a string");
}

static void test_config_observability_metrics_forms(void **state)
{
    /* defaults: on, auth decided by the keys at request time, on the main listener */
    sl_config_t *c = parse_ok("workers: 1\n");
    assert_true(c->metrics);
    assert_int_equal(c->metrics_auth, SL_METRICS_AUTH_DEFAULT);
    assert_null(c->metrics_listen_host);
    sl_config_unref(c);
    /* the boolean form still works */
    c = parse_ok("observability: { metrics: true }\n");
    assert_true(c->metrics);
    sl_config_unref(c);
    c = parse_ok("observability: { metrics: false }\n");
    assert_false(c->metrics);
    sl_config_unref(c);
    /* the map form */
    c = parse_ok("observability:\n"
                 "  metrics: { enabled: true, auth: admin, listen: 127.0.0.1:9464 }\n");
    assert_true(c->metrics);
    assert_int_equal(c->metrics_auth, SL_METRICS_AUTH_ADMIN);
    assert_string_equal(c->metrics_listen_host, "127.0.0.1");
    assert_int_equal(c->metrics_listen_port, 9464);
    sl_config_unref(c);
    c = parse_ok("observability: { metrics: { auth: key } }\n");
    assert_true(c->metrics); /* enabled unless said otherwise */
    assert_int_equal(c->metrics_auth, SL_METRICS_AUTH_KEY);
    sl_config_unref(c);
    c = parse_ok("observability:\n"
                 "  metrics: { auth: none, listen: 0.0.0.0:0 }\n"
                 "  access_log: true\n");
    assert_int_equal(c->metrics_auth, SL_METRICS_AUTH_NONE);
    assert_int_equal(c->metrics_listen_port, 0);
    sl_config_unref(c);
    c = parse_ok("observability: { metrics: { enabled: false } }\n");
    assert_false(c->metrics);
    sl_config_unref(c);
    /* strict: unknown keys, wrong types, bad values */
    expect_error("observability: { metrics: { enabld: true } }\n",
                 "t.yaml:1:29: unknown key 'enabld' in metrics (allowed: enabled, auth, listen)");
    expect_error("observability: { metrics: { auth: admins } }\n",
                 "t.yaml:1:35: metrics.auth: expected none, key or admin");
    expect_error("observability: { metrics: { enabled: yes } }\n",
                 "t.yaml:1:38: metrics.enabled: expected true or false");
    expect_error("observability: { metrics: { listen: 9464 } }\n",
                 "t.yaml:1:37: metrics.listen: expected host:port, like 127.0.0.1:8080");
    expect_error("observability: { metrics: { listen: 127.0.0.1:70000 } }\n",
                 "t.yaml:1:37: metrics.listen: the port must be from 0 to 65535");
    expect_error("observability: { metrics: [ true ] }\n",
                 "t.yaml:1:27: metrics: expected true, false or { enabled, auth, listen }");
    expect_error("observability: { metrics: { auth: [ key ] } }\n",
                 "t.yaml:1:35: metrics.auth: expected a string");
}

int main(void)
{
    sl_dialects_register();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_full_file_sets_every_field),
        cmocka_unit_test(test_config_empty_document_gives_defaults),
        cmocka_unit_test(test_config_without_providers_and_models_routes_all_to_mock),
        cmocka_unit_test(test_config_default_is_loopback_mock),
        cmocka_unit_test(test_config_ref_keeps_it_alive_until_last_unref),
        cmocka_unit_test(test_config_durations),
        cmocka_unit_test(test_config_sizes),
        cmocka_unit_test(test_config_listen_and_workers),
        cmocka_unit_test(test_config_ws_ping_must_be_shorter_than_ws_idle),
        cmocka_unit_test(test_config_unknown_keys_name_the_key_and_list_allowed),
        cmocka_unit_test(test_config_rag_section),
        cmocka_unit_test(test_config_monoai_user_validator_url_and_cache),
        cmocka_unit_test(test_config_wrong_types_say_what_was_expected),
        cmocka_unit_test(test_config_dialects_defaults_and_overrides),
        cmocka_unit_test(test_config_jwt_and_store),
        cmocka_unit_test(test_config_fallback_and_provider_types),
        cmocka_unit_test(test_config_breaker_settings),
        cmocka_unit_test(test_config_limits_cors_and_key_policies),
        cmocka_unit_test(test_config_yaml_syntax_errors_carry_the_mark),
        cmocka_unit_test(test_config_env_vars_expand_in_values),
        cmocka_unit_test(test_config_unset_env_var_is_an_error_at_its_value),
        cmocka_unit_test(test_config_providers),
        cmocka_unit_test(test_config_models_resolve_providers_in_any_order),
        cmocka_unit_test(test_config_auth_keys),
        cmocka_unit_test(test_config_glob_match),
        cmocka_unit_test(test_config_glob_match_has_no_exponential_backtracking),
        cmocka_unit_test(test_config_route_exact_beats_earlier_glob),
        cmocka_unit_test(test_config_load_reads_a_file_and_names_it),
        cmocka_unit_test(test_config_trusted_proxies),
        cmocka_unit_test(test_config_observability_metrics_forms),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
