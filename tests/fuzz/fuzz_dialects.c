/* The dialects' request side (dialect/openai, chat, monoai, aichat, seed) behind the real
 * request parser (http/request), router (http/router) and auth (policy/auth, policy/jwt): a
 * request built from the input goes to the route it names, on one of two configs (open, or
 * API keys + JWT + a monoai allow-list). The connection and the relay are stubbed at their
 * header's contract, so what a handler decides can be checked:
 * - every request is answered exactly once: one response, or one exchange started, or one
 *   WebSocket upgrade (then each message gets a reply or an exchange);
 * - a response has a real status and, when it says JSON, a JSON body;
 * - an exchange gets a canonical request that holds together: a model, a JSON object body that
 *   parses whenever it is needed (the lazy tree after the allocation-free scan), a non-empty
 *   messages array, and for the OpenAI dialect the same model, stream flag, usage option,
 *   max_tokens, user and prompt size whether read by the scanner or from jansson's tree.
 * Everything the handlers allocate is freed (LeakSanitizer runs per input).
 *
 * Input: [route][flags][payload]. route picks one of the four dialects' routes ("{name}" is
 * "helper", the configured agent), or raw mode (the payload is the whole HTTP request). flags
 * bit 0: the config with auth; bit 1: send the API key / JWT; bit 2: a GET route's payload is
 * its query string. The payload is the body, and on a WebSocket route the messages, one per
 * line. */
#include "fuzz.h"

#include "core/ctx.h"
#include "dialect/dialect.h"
#include "http/request.h"
#include "http/router.h"
#include "net/conn.h"
#include "net/conn_int.h" /* the stub below stands in for net/conn.c */
#include "relay/relay.h"
#include "store/store.h"
#include "stub_db.h"
#include "upstream/http_json.h"

#include "core/log.h"

/* Defined in the dialects' own files; the fuzzer drives all but rag (which needs the store). */
extern const sl_dialect_t sl_dialect_openai, sl_dialect_chat, sl_dialect_monoai, sl_dialect_aichat;
static const sl_dialect_t *const dialects[] = {&sl_dialect_openai, &sl_dialect_chat,
                                               &sl_dialect_monoai, &sl_dialect_aichat};
enum { D_OPENAI, D_CHAT, D_MONOAI, D_AICHAT }; /* indexes into dialects[] */

/* A valid HS256 JWT for sub "fuzz-user", signed with the secret below, no expiry (hence
 * require_exp: false below). */
#define JWT_SECRET "fuzz-secret-0123456789abcdef"
#define JWT                                                                                        \
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJmdXp6LXVzZXIifQ."                             \
    "5qkmguI9pOTaTJrE-ANBdFEXkVYYiJtzDjySj8y4I2A"

static const char open_yaml[] = "dialects:\n"
                                "  monoai:\n"
                                "    agents: { helper: { system_prompt: be brief, params: "
                                "{ temperature: 0.2, max_tokens: 50 } } }\n";
static const char auth_yaml[] =
    "auth:\n"
    "  keys: [ { name: dev, key: sk-fuzz, models: \"gpt-*, default\" } ]\n"
    "  jwt: { alg: HS256, secret: " JWT_SECRET ", require_exp: false }\n"
    "dialects:\n"
    "  chat: { prefix: /seed000, system_prompt: hi, max_tokens: 100 }\n"
    "  monoai:\n"
    "    agents: { helper: { model: gpt-4o } }\n"
    "    users: { allow: [ alice, fuzz-user ] }\n"
    "  aichat: { auth: jwt }\n";

typedef struct setup {
    sl_config_t *cfg;
    sl_router_t *router;
} setup_t;

static setup_t setups[2];
static sl_ctx_t worker;

/* ---- what the handler did ---- */

static struct {
    int responses, exchanges, upgrades, ws_replies, ws_exchanges;
    const sl_ws_hooks_t *ws_hooks;
    void *ws_ud;
    const sl_http_req_t *req; /* the request being handled */
    bool taken;               /* sl_conn_take_body was called; taken_copy holds what it gave */
    int dialect_hint;         /* the OpenAI dialect's exchange: compare scan and tree */
} rec;

static void check_json(const char *body, size_t len)
{
    json_t *j = json_loadb(body, len, JSON_DECODE_ANY, NULL);
    FUZZ_CHECK(j != NULL);
    json_decref(j);
}

/* ---- the connection, stubbed at conn.h's contract ---- */

void sl_conn_respond(sl_conn_t *c, int status, const char *content_type, const char *body,
                     size_t len, const char *extra)
{
    FUZZ_CHECK(status >= 100 && status <= 599);
    if (content_type && strstr(content_type, "json"))
        check_json(body, len);
    if (c->state == SL_CONN_WS)
        rec.ws_replies++;
    else
        rec.responses++;
}

void sl_conn_respond_error(sl_conn_t *c, int status, const char *type, const char *code,
                           const char *param, const char *message, const char *extra)
{
    FUZZ_CHECK(status >= 400 && status <= 599 && type && message);
    rec.responses++;
}

void sl_conn_head(sl_conn_t *c, int status, const char *content_type, long content_length,
                  const char *extra)
{
    FUZZ_CHECK(!c->head_sent);
    c->head_sent = true;
}

void sl_conn_body(sl_conn_t *c, const void *p, size_t n)
{
    if (c->state == SL_CONN_WS)
        rec.ws_replies++;
}

void sl_conn_end(sl_conn_t *c, bool close)
{
    if (c->state == SL_CONN_WS)
        c->ws_busy = false;
    else
        rec.responses++;
}

void sl_conn_set_hooks(sl_conn_t *c, const sl_conn_hooks_t *hooks, void *ud)
{
    c->hooks = hooks;
    c->hooks_ud = ud;
}

bool sl_conn_ws_upgrade(sl_conn_t *c, const sl_ws_hooks_t *hooks, void *ud)
{
    FUZZ_CHECK(c->state != SL_CONN_WS);
    c->state = SL_CONN_WS;
    rec.upgrades++;
    rec.ws_hooks = hooks;
    rec.ws_ud = ud;
    return true;
}

void sl_conn_ws_begin(sl_conn_t *c)
{
    FUZZ_CHECK(c->state == SL_CONN_WS && !c->ws_busy);
    c->ws_busy = true;
}

void sl_conn_ws_send(sl_conn_t *c, const char *msg, size_t len)
{
    FUZZ_CHECK(c->state == SL_CONN_WS);
    check_json(msg, len);
    rec.ws_replies++;
}

void sl_conn_ws_close(sl_conn_t *c, uint16_t code, const char *reason)
{
    FUZZ_CHECK(c->state == SL_CONN_WS);
}

void sl_conn_peer(sl_conn_t *c, char *out, size_t cap)
{
    snprintf(out, cap, "127.0.0.1");
}

const char *sl_conn_client_ip(sl_conn_t *c)
{
    return "127.0.0.1";
}

const char *sl_conn_tcp_peer(sl_conn_t *c)
{
    return "127.0.0.1";
}

void sl_conn_respond_err(sl_conn_t *c, int err, const char *code, const char *param,
                         const char *message, const char *extra)
{
    sl_conn_respond_error(c, sl_err_status(err), sl_err_type(err), code, param,
                          message ? message : sl_strerror(err), extra);
}

sl_ctx_t *sl_conn_ctx(const sl_conn_t *c)
{
    return c->x;
}
const sl_http_req_t *sl_conn_request(const sl_conn_t *c)
{
    return &c->req;
}

static sl_buf_t taken_copy; /* reused across inputs: reachable, not a leak */

/* As net/conn.c: the body moves out, the connection keeps none. */
char *sl_conn_take_body(sl_conn_t *c, size_t *len)
{
    FUZZ_CHECK(!rec.taken); /* once per request */
    rec.taken = true;
    sl_buf_reset(&taken_copy);
    sl_buf_append(&taken_copy, c->req.body.data ? c->req.body.data : "", c->req.body.len);
    *len = c->req.body.len;
    char *p = c->req.body.data ? c->req.body.data : sl_strdup("");
    sl_buf_init(&c->req.body);
    return p;
}
sl_buf_t *sl_conn_head_extra(sl_conn_t *c)
{
    return &c->head_extra;
}
sl_buf_t *sl_conn_log_extra(sl_conn_t *c)
{
    return &c->log_extra;
}
bool sl_conn_is_ws(const sl_conn_t *c)
{
    return c->state == SL_CONN_WS;
}
bool sl_conn_ws_busy(const sl_conn_t *c)
{
    return c->ws_busy;
}

/* No store on this worker (x->store_thread is NULL): no issued keys, the config's are the
 * only ones, so policy/auth never asks for a snapshot. */
struct sl_keyset *sl_store_keys(sl_store_t *s)
{
    abort();
}

/* ---- the relay, stubbed: the exchange is checked, then taken (and freed) ---- */

static void check_openai_request(sl_chat_req_t *r)
{
    /* The raw bytes: the body the connection handed over (its text), or still the connection's
     * (the jansson path); either way exactly what the client sent. */
    const char *raw = r->raw;
    bool raw_is_text = raw && raw == r->json_text;
    if (raw_is_text)
        FUZZ_CHECK(rec.taken && rec.req->body.len == 0 && r->raw_len == taken_copy.len &&
                   !memcmp(raw, taken_copy.data, r->raw_len));
    else if (raw)
        FUZZ_CHECK(raw == rec.req->body.data && r->raw_len == rec.req->body.len);
    /* What the scanner read, before the tree exists. */
    int64_t scanned_max = sl_chat_req_max_tokens(r);
    size_t scanned_prompt = r->prompt_bytes;
    json_t *body = sl_chat_req_json(r);
    FUZZ_CHECK(json_is_object(body));
    json_t *model = json_object_get(body, "model");
    FUZZ_CHECK(json_is_string(model) && !strcmp(json_string_value(model), r->model));
    FUZZ_CHECK(r->stream == json_is_true(json_object_get(body, "stream")));
    json_t *so = json_object_get(body, "stream_options");
    FUZZ_CHECK(r->has_stream_options == (so != NULL));
    FUZZ_CHECK(r->client_wants_usage == json_is_true(json_object_get(so, "include_usage")));
    FUZZ_CHECK(scanned_max == sl_chat_req_max_tokens(r));
    FUZZ_CHECK(scanned_prompt == sl_chat_prompt_bytes(json_object_get(body, "messages")));
    json_t *user = json_object_get(body, "user");
    if (r->meta.user_id && json_is_string(user) && json_string_length(user) < 256)
        FUZZ_CHECK(!strcmp(r->meta.user_id, json_string_value(user)));
    FUZZ_CHECK(!raw_is_text || !r->raw); /* parsing freed the text: the raw bytes went with it */
}

void sl_relay_start(sl_conn_t *c, sl_chat_req_t *req, const sl_dialect_enc_t *enc)
{
    FUZZ_CHECK(enc && enc->event);
    FUZZ_CHECK(req->model && *req->model);
    if (rec.dialect_hint == D_OPENAI && c->state != SL_CONN_WS)
        check_openai_request(req);
    json_t *body = sl_chat_req_json(req);
    FUZZ_CHECK(json_is_object(body));
    json_t *msgs = json_object_get(body, "messages");
    FUZZ_CHECK(json_is_array(msgs) && json_array_size(msgs) > 0);
    char *text = json_dumps(body, JSON_COMPACT);
    FUZZ_CHECK(text != NULL);
    sl_free(text);
    sl_chat_req_dispose(req); /* taken: *req is left empty */
    if (c->state == SL_CONN_WS) {
        c->ws_busy = false; /* the exchange ends at once here */
        rec.ws_exchanges++;
    } else {
        rec.exchanges++;
    }
}

/* The exchange never starts here, so nothing below is reached; defined for the linker. */
void sl_relay_info(const sl_relay_t *r, sl_relay_info_t *out)
{
    abort();
}
const char *sl_relay_text(const sl_relay_t *r, size_t *len)
{
    abort();
}
const sl_chat_req_t *sl_relay_req(const sl_relay_t *r)
{
    abort();
}
bool sl_relay_head_sent(const sl_relay_t *r)
{
    abort();
}
void sl_relay_stream_head(sl_relay_t *r, const char *extra)
{
    abort();
}
void sl_relay_send(sl_relay_t *r, const void *p, size_t n)
{
    abort();
}
void sl_relay_respond(sl_relay_t *r, int status, const char *content_type, const char *body,
                      size_t len, const char *extra)
{
    abort();
}
void sl_relay_respond_error(sl_relay_t *r, const sl_error_info_t *e)
{
    abort();
}
void sl_relay_end(sl_relay_t *r, bool close)
{
    abort();
}
sl_buf_t *sl_relay_scratch(sl_relay_t *r)
{
    abort();
}

/* No store on this worker (monoai's statistics answer 503) and no user validator URL. */
sl_store_op_t *sl_store_user_stats(sl_store_client_t *c, const char *user_id, sl_stats_cb cb,
                                   void *ud)
{
    abort();
}
sl_store_op_t *sl_store_user_stats_key(sl_store_client_t *c, const char *user_id,
                                       const char *key_name, sl_stats_cb cb, void *ud)
{
    abort();
}
void sl_store_op_cancel(sl_store_op_t *op)
{
    abort();
}
int sl_http_json_post(sl_multi_t *m, const char *url, const char *body,
                      const sl_http_json_opts_t *opts, sl_http_json_done_cb done, void *ud,
                      sl_http_json_t **out)
{
    abort();
}
void sl_http_json_cancel(sl_http_json_t *h)
{
    abort();
}

/* ---- setup ---- */

static void make_setup(setup_t *s, const char *yaml)
{
    sl_buf_t err;
    sl_buf_init(&err);
    if (sl_config_parse(yaml, strlen(yaml), "fuzz.yaml", &s->cfg, &err) != 0) {
        fprintf(stderr, "%s\n", err.data);
        abort();
    }
    sl_buf_dispose(&err);
    s->router = sl_router_new();
    for (size_t i = 0; i < sizeof dialects / sizeof dialects[0]; i++) {
        const sl_dialect_cfg_t *d = sl_config_dialect(s->cfg, dialects[i]->config);
        for (const char *const *m = dialects[i]->mounts; *m; m++) {
            sl_buf_t prefix;
            sl_buf_init(&prefix);
            sl_buf_puts(&prefix, d->prefix);
            sl_buf_puts(&prefix, *m);
            sl_router_add(s->router, prefix.data, dialects[i]->routes, dialects[i]->nroutes,
                          dialects[i]->route_error);
            sl_buf_dispose(&prefix);
        }
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fuzz_init_json();
    sl_log_set_level(SL_LOG_ERROR);
    for (size_t i = 0; i < sizeof dialects / sizeof dialects[0]; i++)
        sl_config_register_dialect(dialects[i]->config);
    make_setup(&setups[0], open_yaml);
    make_setup(&setups[1], auth_yaml);
    FUZZ_CHECK(uv_loop_init(&worker.loop) == 0);
    return 0;
}

/* ---- one input ---- */

static size_t nroutes(void)
{
    size_t n = 0;
    for (size_t i = 0; i < sizeof dialects / sizeof dialects[0]; i++)
        n += dialects[i]->nroutes;
    return n;
}

/* The request for route k (its dialect in *id), payload as body or query. */
static void build(const setup_t *s, size_t k, uint8_t flags, const char *p, size_t n, sl_buf_t *out,
                  int *id)
{
    const sl_route_t *rt = NULL;
    const sl_dialect_t *dl = NULL;
    for (size_t i = 0; i < sizeof dialects / sizeof dialects[0] && !rt; i++) {
        if (k < dialects[i]->nroutes) {
            dl = dialects[i];
            rt = &dl->routes[k];
            *id = (int)i;
        } else {
            k -= dialects[i]->nroutes;
        }
    }
    bool get = !strcmp(rt->method, "GET");
    sl_buf_printf(out, "%s %s%s", rt->method, sl_config_dialect(s->cfg, dl->config)->prefix,
                  dl->mounts[0]);
    for (const char *t = rt->path; *t; t++) { /* "{param}" becomes the configured agent */
        if (*t == '{') {
            sl_buf_puts(out, "helper");
            t = strchr(t, '}');
        } else {
            sl_buf_putc(out, *t);
        }
    }
    if (get && (flags & 4)) {
        sl_buf_putc(out, '?');
        for (size_t i = 0; i < n; i++) /* the query as typed: spaces and controls escaped */
            if ((unsigned char)p[i] <= ' ' || p[i] == '#' || (unsigned char)p[i] >= 0x7f)
                sl_buf_printf(out, "%%%02X", (unsigned char)p[i]);
            else
                sl_buf_putc(out, p[i]);
    }
    sl_buf_puts(out, " HTTP/1.1\r\nHost: fuzz\r\n");
    if (flags & 2)
        sl_buf_puts(out, *id == D_AICHAT ? "Authorization: Bearer " JWT "\r\n"
                                         : "Authorization: Bearer sk-fuzz\r\n");
    if (strstr(rt->path, "/ws"))
        sl_buf_puts(out, "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                         "Sec-WebSocket-Version: 13\r\n");
    if (!get) {
        sl_buf_printf(out, "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n", n);
        sl_buf_append(out, p, n);
    } else {
        sl_buf_puts(out, "\r\n");
    }
}

/* The WebSocket messages: one per line of the payload; each gets a reply or an exchange. */
static void ws_messages(sl_conn_t *c, const char *p, size_t n)
{
    for (int i = 0; i < 4 && n; i++) {
        const char *nl = memchr(p, '\n', n);
        size_t len = nl ? (size_t)(nl - p) : n;
        int before = rec.ws_replies + rec.ws_exchanges;
        rec.ws_hooks->message(c, rec.ws_ud, p, len);
        FUZZ_CHECK(!c->ws_busy);
        FUZZ_CHECK(rec.ws_replies + rec.ws_exchanges > before); /* every message is answered */
        p += len + (nl != NULL);
        n -= len + (nl != NULL);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_t f = {data, size};
    uint8_t route = fz_u8(&f), flags = fz_u8(&f);
    const setup_t *s = &setups[flags & 1];
    sl_buf_t raw;
    sl_buf_init(&raw);
    size_t total = nroutes();
    int id = -1;
    if (route % (total + 1) == total)
        sl_buf_append(&raw, f.p, f.n); /* raw mode: the whole request from the input */
    else
        build(s, route % (total + 1), flags, (const char *)f.p, f.n, &raw, &id);

    sl_http_req_t hr;
    sl_http_req_init(&hr, s->cfg->max_header, s->cfg->max_body);
    size_t used = raw.len ? sl_http_req_feed(&hr, raw.data, raw.len) : 0;
    (void)used;
    if (hr.complete) {
        memset(&rec, 0, sizeof rec);
        rec.req = &hr;
        rec.dialect_hint = id;
        worker.cfg = s->cfg;
        sl_conn_t c;
        memset(&c, 0, sizeof c);
        c.x = &worker;
        c.state = SL_CONN_HANDLING;
        c.req = hr; /* moved: handlers read the request through the connection too */
        size_t plen;
        const char *path = sl_http_req_path(&c.req, &plen);
        sl_route_found_t fd;
        int rc = sl_router_lookup(s->router, sl_http_req_method(&c.req), path, plen, &fd);
        rec.req = &c.req;
        if (rc == 0)
            fd.route->fn(&c, &c.req, &fd.match);
        else if (fd.on_error)
            fd.on_error(&c, rc, fd.allow.data);
        else
            sl_conn_respond_err(&c, rc, "unknown_url", NULL, NULL, fd.allow.data);
        FUZZ_CHECK((rc == SL_EMETHOD) == (fd.allow.len > 0));
        sl_buf_dispose(&fd.allow);
        sl_buf_dispose(&c.head_extra);
        sl_buf_dispose(&c.log_extra);
        hr = c.req;
        /* Answered exactly once: a response, an exchange or an upgrade. */
        int answers = rec.responses + rec.exchanges + rec.upgrades;
        if (answers != 1) {
            fprintf(stderr, "answers: %d responses, %d exchanges, %d upgrades\n", rec.responses,
                    rec.exchanges, rec.upgrades);
            FUZZ_CHECK(!"every request is answered exactly once");
        }
        if (rec.upgrades) {
            if (id >= 0)
                ws_messages(&c, (const char *)f.p, f.n);
            rec.ws_hooks->closed(rec.ws_ud);
        }
        FUZZ_CHECK(c.hooks == NULL); /* nothing left waiting on the connection */
    }
    sl_http_req_dispose(&hr);
    sl_buf_dispose(&raw);
    return 0;
}
