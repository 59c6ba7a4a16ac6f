/* The Redis limiter's connection (DESIGN §6, §8): one hiredis async connection per worker on
 * the worker's loop, its handshake (AUTH, SELECT, loading the script), a reconnect loop with
 * backoff and a watch on a silent server. The take and settle ops are ratelimit_redis_ops.c's. */
#include "policy/ratelimit_redis.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/closer.h"
#include "core/fsm.h"
#include "core/log.h"
#include "policy/ratelimit_redis_conn.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
/* While connecting or up, a tick checks that Redis still answers. A silent Redis (host gone,
 * no RST) would otherwise hold every admission until TCP gives up, minutes later; past these
 * we drop the connection and the callers fall back to the local limiter. */
#define WATCH_MS           250
#define CONNECT_TIMEOUT_MS 2000
#define REPLY_TIMEOUT_MS   2000

struct sl_redis_resolve {
    uv_getaddrinfo_t req;
    sl_redis_t *r; /* weak: cleared when r stops waiting for the answer */
};

static void on_timer(uv_timer_t *t);

/* ---- hiredis on libuv ----
 * The adapter shipped with hiredis 0.14.1 ignores poll errors, but libuv reports a failed
 * connect (POLLERR) as status UV_EBADF and stops the handle: the attempt would hang forever.
 * This one hands an error to hiredis as readiness (as hiredis 1.x does), so hiredis reads
 * the socket error itself, and allocates through sl_. */

typedef struct ev {
    redisAsyncContext *ac; /* weak: cleared by ev_cleanup when hiredis frees the context */
    uv_poll_t poll;
    int events;
    sl_closer_t closer; /* frees e once the poll has closed */
} ev_t;

static void ev_on_poll(uv_poll_t *h, int status, int events)
{
    ev_t *e = h->data;
    int ready = status < 0 ? e->events : events;
    if (e->ac && (ready & UV_READABLE))
        redisAsyncHandleRead(e->ac);
    if (e->ac && (ready & UV_WRITABLE)) /* the read may have freed the context */
        redisAsyncHandleWrite(e->ac);
}

static void ev_update(ev_t *e, int add, int del)
{
    e->events = (e->events | add) & ~del;
    int rc = e->events ? uv_poll_start(&e->poll, e->events, ev_on_poll) : uv_poll_stop(&e->poll);
    if (rc < 0) /* the watch tick notices the silence and reconnects */
        sl_log(SL_LOG_WARN, "redis: cannot watch the socket: %s", uv_strerror(rc));
}

static void ev_add_read(void *p)
{
    ev_update(p, UV_READABLE, 0);
}

static void ev_del_read(void *p)
{
    ev_update(p, 0, UV_READABLE);
}

static void ev_add_write(void *p)
{
    ev_update(p, UV_WRITABLE, 0);
}

static void ev_del_write(void *p)
{
    ev_update(p, 0, UV_WRITABLE);
}

static void ev_cleanup(void *p)
{
    ev_t *e = p;
    e->ac = NULL;
    sl_closer_init(&e->closer, sl_free, e);
    sl_closer_close(&e->closer, (uv_handle_t *)&e->poll);
    sl_closer_finish(&e->closer);
}

SL_MUST_CHECK static int ev_attach(redisAsyncContext *ac, uv_loop_t *loop)
{
    ev_t *e = sl_calloc(1, sizeof *e);
    int rc = uv_poll_init(loop, &e->poll, ac->c.fd);
    if (rc < 0) {
        sl_free(e);
        return rc;
    }
    e->ac = ac;
    e->poll.data = e;
    ac->ev.data = e;
    ac->ev.addRead = ev_add_read;
    ac->ev.delRead = ev_del_read;
    ac->ev.addWrite = ev_add_write;
    ac->ev.delWrite = ev_del_write;
    ac->ev.cleanup = ev_cleanup;
    return 0;
}

/* ---- connection state ---- */

/* Every state change passes here, so the log tells the whole story at debug level and the
 * operator sees the edges that matter: up, lost, and the first failure while down. */
#define TO(s) SL_FSM_TO(SL_REDIS_##s)
/* WAIT (backing off, also the start) → a lookup or a connect; either may fail back to WAIT; a
 * connection is UP once its script is loaded, and WAIT again when lost. CLOSING is terminal. */
static const uint32_t redis_edges[] = {
    [SL_REDIS_WAIT] = TO(RESOLVING) | TO(CONNECTING) | TO(CLOSING),
    [SL_REDIS_RESOLVING] = TO(CONNECTING) | TO(WAIT) | TO(CLOSING),
    [SL_REDIS_CONNECTING] = TO(UP) | TO(WAIT) | TO(CLOSING),
    [SL_REDIS_UP] = TO(WAIT) | TO(CLOSING),
    [SL_REDIS_CLOSING] = 0,
};
static const char *const redis_names[] = {"waiting", "resolving", "connecting", "up", "closed"};
static const sl_fsm_t redis_fsm = {"redis", redis_names, redis_edges,
                                   sizeof redis_edges / sizeof redis_edges[0]};

static void set_state(sl_redis_t *r, sl_redis_state_t to, const char *why)
{
    sl_redis_state_t from = r->state;
    r->state = (sl_redis_state_t)sl_fsm_step(&redis_fsm, from, to, r->where, why);
    if (to == SL_REDIS_UP) {
        sl_log(SL_LOG_INFO, "redis %s: connected", r->where);
        r->warned = false;
    } else if (to == SL_REDIS_WAIT && (from == SL_REDIS_UP || !r->warned)) {
        sl_log(SL_LOG_WARN, "redis %s: %s %s; limits are local until it is back", r->where,
               from == SL_REDIS_UP ? "lost:" : "cannot connect:", why);
        r->warned = true;
    }
}

static void forget_lookup(sl_redis_t *r)
{
    if (r->rq) {
        r->rq->r = NULL;
        (void)uv_cancel((uv_req_t *)&r->rq->req); /* EBUSY: it ends soon, and finds r gone */
        r->rq = NULL;
    }
}

/* The connection is gone (hiredis frees the context itself): retry after the backoff. */
void sl_redis_lost(sl_redis_t *r, const char *why)
{
    if (r->state == SL_REDIS_WAIT || r->state == SL_REDIS_CLOSING)
        return;
    forget_lookup(r);
    r->ac = NULL;
    set_state(r, SL_REDIS_WAIT, why);
    SL_ASSERT(uv_timer_start(&r->timer, on_timer, r->backoff_ms, 0) == 0);
    r->backoff_ms = r->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : r->backoff_ms * 2;
}

/* We give up on the connection: ops in flight are answered SL_EUNAVAIL from here. */
static void drop(sl_redis_t *r, const char *why)
{
    redisAsyncContext *ac = r->ac;
    sl_redis_lost(r, why);
    if (ac) {
        ac->data = NULL; /* so on_disconnect knows it was us */
        redisAsyncFree(ac);
    }
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    sl_redis_t *r = ac->data;
    if (r && status != REDIS_OK)
        sl_redis_lost(r, ac->errstr); /* hiredis frees ac when we return */
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    sl_redis_t *r = ac->data;
    if (r)
        sl_redis_lost(r, status == REDIS_OK ? "closed" : ac->errstr);
}

static void on_setup_reply(redisAsyncContext *ac, void *reply_, void *priv)
{
    redisReply *reply = reply_;
    sl_redis_t *r = priv;
    if (reply && reply->type == REDIS_REPLY_ERROR && r->state == SL_REDIS_CONNECTING) {
        char why[256];
        (void)snprintf(why, sizeof why, "AUTH or SELECT refused: %s", reply->str);
        drop(r, why);
    }
}

static void on_script_loaded(redisAsyncContext *ac, void *reply_, void *priv)
{
    redisReply *reply = reply_;
    sl_redis_t *r = priv;
    if (!reply) /* the connection went: sl_redis_lost() saw to it */
        return;
    r->reloading = false;
    if (reply->type == REDIS_REPLY_STRING && reply->len == 40) {
        memcpy(r->sha, reply->str, 40);
        if (r->state == SL_REDIS_CONNECTING) {
            set_state(r, SL_REDIS_UP, "script loaded");
            r->backoff_ms = BACKOFF_MIN_MS;
        }
        return;
    }
    /* Without the script nothing works: start over (a new connection loads it again). */
    char why[256];
    (void)snprintf(why, sizeof why, "SCRIPT LOAD failed: %s",
                   reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected reply");
    drop(r, why);
}

int sl_redis_load_script(sl_redis_t *r)
{
    r->reloading = true;
    int rc = redisAsyncCommand(r->ac, on_script_loaded, r, "SCRIPT LOAD %s", sl_redis_script);
    return rc == REDIS_OK ? 0 : SL_EUNAVAIL;
}

/* AUTH, SELECT and SCRIPT LOAD go out at once, queued until the socket connects; we are up
 * when the script's sha comes back. */
SL_MUST_CHECK static int handshake(sl_redis_t *r)
{
    int rc = REDIS_OK;
    if (r->pass && r->user)
        rc = redisAsyncCommand(r->ac, on_setup_reply, r, "AUTH %s %s", r->user, r->pass);
    else if (r->pass)
        rc = redisAsyncCommand(r->ac, on_setup_reply, r, "AUTH %s", r->pass);
    if (rc == REDIS_OK && r->db > 0)
        rc = redisAsyncCommand(r->ac, on_setup_reply, r, "SELECT %d", r->db);
    if (rc != REDIS_OK)
        return SL_EUNAVAIL;
    return sl_redis_load_script(r);
}

static void connect_to(sl_redis_t *r, const char *ip)
{
    set_state(r, SL_REDIS_CONNECTING, ip);
    /* ip is numeric: hiredis's getaddrinfo() answers without a lookup, so this never blocks. */
    redisAsyncContext *ac = redisAsyncConnect(ip, r->port);
    if (!ac || ac->err || ev_attach(ac, r->loop) != 0) {
        char why[256];
        (void)snprintf(why, sizeof why, "%s", ac && ac->err ? ac->errstr : "cannot watch socket");
        if (ac)
            redisAsyncFree(ac);
        sl_redis_lost(r, why);
        return;
    }
    ac->data = r;
    r->ac = ac;
    /* Both only fail when a callback is already set, which a new context never has. */
    (void)redisAsyncSetConnectCallback(ac, on_connect);
    (void)redisAsyncSetDisconnectCallback(ac, on_disconnect);
    if (handshake(r) != 0)
        drop(r, "cannot queue the handshake");
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    sl_redis_resolve_t *rq = req->data;
    sl_redis_t *r = rq->r;
    sl_free(rq);
    /* hiredis takes one address: IPv4 first, where servers mostly listen ("localhost"). */
    struct addrinfo *a = res;
    while (a && a->ai_family != AF_INET && a->ai_next)
        a = a->ai_next;
    char ip[64] = "";
    if (status == 0 && a)
        status = uv_ip_name(a->ai_addr, ip, sizeof ip);
    uv_freeaddrinfo(res);
    if (!r)
        return;
    r->rq = NULL;
    if (status < 0)
        sl_redis_lost(r, uv_strerror(status));
    else
        connect_to(r, ip);
}

static void start_attempt(sl_redis_t *r)
{
    r->attempt_ms = uv_now(r->loop);
    SL_ASSERT(uv_timer_start(&r->timer, on_timer, WATCH_MS, WATCH_MS) == 0);
    unsigned char addr[sizeof(struct in6_addr)];
    if (inet_pton(AF_INET, r->host, addr) == 1 || inet_pton(AF_INET6, r->host, addr) == 1) {
        connect_to(r, r->host);
        return;
    }
    /* A name: resolve on libuv's threads, never on the loop. */
    set_state(r, SL_REDIS_RESOLVING, r->host);
    sl_redis_resolve_t *rq = sl_calloc(1, sizeof *rq);
    rq->r = r;
    rq->req.data = rq;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    int rc = uv_getaddrinfo(r->loop, &rq->req, on_resolved, r->host, NULL, &hints);
    if (rc < 0) {
        sl_free(rq);
        sl_redis_lost(r, uv_strerror(rc));
        return;
    }
    r->rq = rq;
}

static void on_timer(uv_timer_t *t)
{
    sl_redis_t *r = t->data;
    uint64_t now = uv_now(r->loop);
    switch (r->state) {
    case SL_REDIS_WAIT: start_attempt(r); break;
    case SL_REDIS_RESOLVING:
    case SL_REDIS_CONNECTING:
        if (now - r->attempt_ms >= CONNECT_TIMEOUT_MS)
            drop(r, "connect timed out");
        break;
    case SL_REDIS_UP:
        if (r->oldest && now - r->oldest->sent_ms >= REPLY_TIMEOUT_MS)
            drop(r, "no reply within the timeout");
        break;
    case SL_REDIS_CLOSING: break;
    }
}

/* ---- URL ---- */

/* Copies s[0..n) decoding %XX (a password may hold any byte). */
static char *pct_decode(const char *s, size_t n)
{
    char *out = sl_malloc(n + 1), *o = out;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%' && i + 2 < n && isxdigit((unsigned char)s[i + 1]) &&
            isxdigit((unsigned char)s[i + 2])) {
            char hex[3] = {s[i + 1], s[i + 2], 0};
            *o++ = (char)strtol(hex, NULL, 16);
            i += 2;
        } else {
            *o++ = s[i];
        }
    }
    *o = 0;
    return out;
}

/* A decimal number filling [s, end) within [lo, hi]. */
SL_MUST_CHECK static int parse_number(const char *s, const char *end, long lo, long hi, long *out)
{
    char *stop;
    if (s == end || !isdigit((unsigned char)*s))
        return SL_EINVAL;
    *out = strtol(s, &stop, 10);
    return stop != end || *out < lo || *out > hi ? SL_EINVAL : 0;
}

/* The [user:]password@ part; without a colon it is the password (what people mean). */
static void parse_userinfo(sl_redis_t *r, const char *s, size_t n)
{
    const char *colon = memchr(s, ':', n);
    if (colon && colon > s)
        r->user = pct_decode(s, (size_t)(colon - s));
    const char *pw = colon ? colon + 1 : s;
    r->pass = pct_decode(pw, (size_t)(s + n - pw));
}

/* host, [v6], :port and /db. */
SL_MUST_CHECK static int parse_hostport(sl_redis_t *r, const char *s, size_t n)
{
    const char *port = NULL, *host = s, *end = s + n;
    if (n > 0 && *s == '[') {
        const char *close = memchr(s, ']', n);
        if (!close)
            return SL_EINVAL;
        host = s + 1;
        port = close + 1 < end && close[1] == ':' ? close + 2 : NULL;
        end = close;
    } else {
        const char *colon = memchr(s, ':', n);
        port = colon ? colon + 1 : NULL;
        end = colon ? colon : end;
    }
    if (end == host)
        return SL_EINVAL;
    r->host = sl_strndup(host, (size_t)(end - host));
    long p = 6379;
    if (port && parse_number(port, s + n, 1, 65535, &p) != 0)
        return SL_EINVAL;
    r->port = (int)p;
    return 0;
}

SL_MUST_CHECK static int parse_url(sl_redis_t *r, const char *url)
{
    if (strncmp(url, "redis://", 8) != 0)
        return SL_EINVAL;
    const char *s = url + 8;
    const char *slash = strchr(s, '/');
    size_t n = slash ? (size_t)(slash - s) : strlen(s);
    const char *at = memrchr(s, '@', n);
    if (at) {
        parse_userinfo(r, s, (size_t)(at - s));
        n -= (size_t)(at + 1 - s);
        s = at + 1;
    }
    if (parse_hostport(r, s, n) != 0)
        return SL_EINVAL;
    long db = 0;
    if (slash && slash[1] && parse_number(slash + 1, slash + strlen(slash), 0, 1 << 20, &db) != 0)
        return SL_EINVAL;
    r->db = (int)db;
    return 0;
}

/* ---- API ---- */

static void redis_free(void *owner)
{
    sl_redis_t *r = owner;
    sl_free(r->host);
    sl_free(r->user);
    sl_free(r->pass);
    sl_free(r->where);
    sl_free(r);
}

sl_redis_t *sl_redis_new(uv_loop_t *loop, const char *url)
{
    sl_redis_t *r = sl_calloc(1, sizeof *r);
    r->loop = loop;
    r->state = SL_REDIS_WAIT;
    r->backoff_ms = BACKOFF_MIN_MS;
    if (parse_url(r, url) != 0) {
        /* The URL may hold a password: name the shape, not the value. */
        sl_log(SL_LOG_ERROR, "redis: bad URL, want redis://[[user]:password@]host[:port][/db]");
        redis_free(r);
        return NULL;
    }
    size_t wlen = strlen(r->host) + 16;
    r->where = sl_malloc(wlen);
    (void)snprintf(r->where, wlen, "%s:%d", r->host, r->port); /* sized to fit */
    SL_ASSERT(uv_timer_init(loop, &r->timer) == 0);
    r->timer.data = r;
    /* The first attempt runs from the loop, so new() may come before the loop runs. */
    SL_ASSERT(uv_timer_start(&r->timer, on_timer, 0, 0) == 0);
    return r;
}

void sl_redis_close(sl_redis_t *r)
{
    if (!r || r->state == SL_REDIS_CLOSING)
        return;
    redisAsyncContext *ac = r->ac;
    forget_lookup(r);
    set_state(r, SL_REDIS_CLOSING, "closed by its owner");
    r->ac = NULL;
    if (ac) {
        ac->data = NULL;
        redisAsyncFree(ac); /* pending ops come back with no reply; finish() stays silent */
    }
    sl_closer_init(&r->closer, redis_free, r);
    sl_closer_close(&r->closer, (uv_handle_t *)&r->timer);
    sl_closer_finish(&r->closer);
}

bool sl_redis_up(const sl_redis_t *r)
{
    return r && r->state == SL_REDIS_UP;
}
