/* Limits and budgets shared by several instances (DESIGN §6, §8): one hiredis async
 * connection per worker on the worker's loop, one Lua script doing policy/ratelimit.c's bucket
 * arithmetic atomically on Redis's clock, and a reconnect loop with backoff. */
#include "policy/ratelimit_redis.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/log.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
/* While connecting or up, a tick checks that Redis still answers. A silent Redis (host gone,
 * no RST) would otherwise hold every admission until TCP gives up, minutes later; past these
 * we drop the connection and the callers fall back to the local limiter. */
#define WATCH_MS           250
#define CONNECT_TIMEOUT_MS 2000
#define REPLY_TIMEOUT_MS   2000
/* EVAL(SHA) script numkeys, a key per limit + 3 for a budget, 5 fixed values, rpm and tpm per
 * limit, 5 budget values. */
#define ARGC_MAX       (3 + SL_LIMITS_MAX + 3 + 5 + 2 * SL_LIMITS_MAX + 5)
#define TAKE_REPLY_LEN 13
/* A reservation whose holder never settles (the instance died) is dropped after this. */
#define BUDGET_HOLD_MS (15 * 60 * 1000)

/* The bucket arithmetic of policy/ratelimit.c (change both together): levels in 1/60000 of
 * a token, refilled by rate units a ms up to rate * 60000, debt capped at one window, keys
 * expiring when they would be full anyway. KEYS: a hash per limit (r, t, ts), then for a
 * budget its spent counter, its reservations (a sorted set: member "id|tokens", score the
 * expiry) and their sum. ARGV: mode, n, estimate, actual, budget, rpm, tpm per limit, then the
 * budget's worst case, strict (1: all of it must fit), member id, hold ms and floor (spent as
 * the usage records know it: a Redis that lost its data starts from there, policy/budget.h).
 * take answers {allowed, refusing limit (-1 budget), wait ms, requests limit index, limit,
 * remaining, reset ms, the same for tokens, tokens reserved, budget left before it}. */
static const char SCRIPT[] =
    "local U, KEEP = 60000, 120000\n"
    "pcall(redis.replicate_commands)\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local n, est, act = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])\n"
    "local function clamp(x, lo, hi) return math.max(lo, math.min(hi, x)) end\n"
    "local function waitms(level, need, rate)\n"
    "  if rate == 0 or level >= need then return 0 end\n"
    "  return math.ceil((need - level) / rate)\n"
    "end\n"
    "local function rem(level) return level > 0 and math.floor(level / U) or 0 end\n"
    "local function num(x) return string.format('%.0f', x) end\n"
    "local B = {}\n"
    "for i = 1, n do\n"
    "  local b = {rpm = tonumber(ARGV[4 + 2 * i]), tpm = tonumber(ARGV[5 + 2 * i])}\n"
    "  local v = redis.call('HMGET', KEYS[i], 'r', 't', 'ts')\n"
    "  local ts = tonumber(v[3]) or now\n"
    "  local el = math.max(now - ts, 0)\n"
    "  b.r = math.min((tonumber(v[1]) or b.rpm * U) + el * b.rpm, b.rpm * U)\n"
    "  b.t = math.min((tonumber(v[2]) or b.tpm * U) + el * b.tpm, b.tpm * U)\n"
    "  b.ts = math.max(ts, now)\n"
    "  B[i] = b\n"
    "end\n"
    "local function save(i)\n"
    "  redis.call('HSET', KEYS[i], 'r', num(B[i].r), 't', num(B[i].t), 'ts', num(B[i].ts))\n"
    "  redis.call('PEXPIRE', KEYS[i], KEEP)\n"
    "end\n"
    "if ARGV[1] == 'settle' then\n"
    "  for i = 1, n do\n"
    "    local b = B[i]\n"
    "    if b.tpm > 0 then\n"
    "      local d = clamp(math.max(act, 0) - clamp(est, 0, b.tpm), -2 * b.tpm, 2 * b.tpm)\n"
    "      b.t = clamp(b.t - d * U, -b.tpm * U, b.tpm * U)\n"
    "      save(i)\n"
    "    end\n"
    "  end\n"
    "  if #KEYS > n then\n"
    "    local m = ARGV[8 + 2 * n]\n"
    "    if m ~= '' and redis.call('ZREM', KEYS[n + 2], m) == 1 then\n"
    "      redis.call('DECRBY', KEYS[n + 3], num(tonumber(string.match(m, '|(%d+)$')) or 0))\n"
    "    end\n"
    "    if act > 0 then redis.call('INCRBY', KEYS[n + 1], num(act)) end\n"
    "  end\n"
    "  return 1\n"
    "end\n"
    "local worst, wait = 0, 0\n"
    "for i = 1, n do\n"
    "  local b = B[i]\n"
    "  b.nr, b.nt = b.rpm > 0 and U or 0, clamp(est, 0, b.tpm) * U\n"
    "  local w = math.max(waitms(b.r, b.nr, b.rpm), waitms(b.t, b.nt, b.tpm))\n"
    "  if w > wait then worst, wait = i, w end\n"
    "end\n"
    "local grant, bud, left = 0, #KEYS > n, 0\n"
    "if bud then\n"
    "  local need, strict, floor = tonumber(ARGV[6 + 2 * n]), ARGV[7 + 2 * n] == '1',\n"
    "    tonumber(ARGV[10 + 2 * n])\n"
    "  local spent = tonumber(redis.call('GET', KEYS[n + 1]) or '-1')\n"
    "  if spent < floor then spent = floor; redis.call('SET', KEYS[n + 1], num(floor)) end\n"
    "  local gone = redis.call('ZRANGEBYSCORE', KEYS[n + 2], '-inf', now)\n"
    "  if #gone > 0 then\n"
    "    local sub = 0\n"
    "    for _, m in ipairs(gone) do sub = sub + (tonumber(string.match(m, '|(%d+)$')) or 0) end\n"
    "    redis.call('ZREMRANGEBYSCORE', KEYS[n + 2], '-inf', now)\n"
    "    redis.call('DECRBY', KEYS[n + 3], num(sub))\n"
    "  end\n"
    "  left = tonumber(ARGV[5]) - spent -\n"
    "    math.max(tonumber(redis.call('GET', KEYS[n + 3]) or '0'), 0)\n"
    "  if left <= 0 or (strict and need > left) then worst, wait = -1, 0\n"
    "  else grant = math.min(math.max(need, 1), left) end\n"
    "end\n"
    "if worst == 0 then for i = 1, n do\n"
    "  B[i].r, B[i].t = B[i].r - B[i].nr, B[i].t - B[i].nt\n"
    "  save(i)\n"
    "end end\n"
    "if worst == 0 and grant > 0 then\n"
    "  local hold = tonumber(ARGV[9 + 2 * n])\n"
    "  redis.call('ZADD', KEYS[n + 2], now + hold, ARGV[8 + 2 * n] .. '|' .. num(grant))\n"
    "  redis.call('INCRBY', KEYS[n + 3], num(grant))\n"
    "  redis.call('PEXPIRE', KEYS[n + 2], 2 * hold)\n"
    "  redis.call('PEXPIRE', KEYS[n + 3], 2 * hold)\n"
    "else grant = 0 end\n"
    "local o = {worst == 0 and 1 or 0, worst, wait, 0, 0, 0, 0, 0, 0, 0, 0, grant, left}\n"
    "for i = 1, n do\n"
    "  local b = B[i]\n"
    "  if b.rpm > 0 and (o[4] == 0 or rem(b.r) < o[6]) then\n"
    "    o[4], o[5], o[6], o[7] = i, b.rpm, rem(b.r), waitms(b.r, b.rpm * U, b.rpm)\n"
    "  end\n"
    "  if b.tpm > 0 and (o[8] == 0 or rem(b.t) < o[10]) then\n"
    "    o[8], o[9], o[10], o[11] = i, b.tpm, rem(b.t), waitms(b.t, b.tpm * U, b.tpm)\n"
    "  end\n"
    "end\n"
    "return o\n";

typedef enum { ST_WAIT, ST_RESOLVING, ST_CONNECTING, ST_UP, ST_CLOSING } state_t;

typedef struct resolve {
    uv_getaddrinfo_t req;
    sl_redis_t *r; /* weak: cleared when r stops waiting for the answer */
} resolve_t;

struct sl_redis {
    uv_loop_t *loop; /* borrowed: the worker's, which outlives us */
    char *host;      /* owned */
    char *user;      /* owned; NULL without ACL user */
    char *pass;      /* owned; NULL without AUTH */
    char *where;     /* owned: "host:port", what the logs name (never the password) */
    int port, db;
    state_t state;
    bool warned;           /* a failure was logged since the last time we were up */
    bool reloading;        /* a SCRIPT LOAD is on its way after NOSCRIPT */
    char sha[41];          /* the script's, as SCRIPT LOAD answered */
    redisAsyncContext *ac; /* weak: hiredis frees it; cleared by lost() */
    resolve_t *rq;         /* weak: frees itself in on_resolved; cleared by lost() */
    uv_timer_t timer;      /* retries while down, watches while connecting or up */
    uint64_t attempt_ms;   /* when the current attempt started */
    uint64_t backoff_ms;   /* the next wait before retrying */
    sl_redis_op_t *oldest; /* weak: ops in flight, oldest first (replies come in order) */
    sl_redis_op_t *newest; /* weak */
};

struct sl_redis_op {
    sl_redis_t *r;                /* borrowed: hiredis hands every op back before r is freed */
    sl_redis_op_t *newer, *older; /* weak: r's in-flight list, from send to reply */
    sl_redis_take_cb cb;          /* NULL for a settle, or once cancelled */
    void *ud;                     /* borrowed: the caller's */
    uint64_t sent_ms;
    bool eval; /* re-sent as EVAL after NOSCRIPT */
    bool take; /* a take (answers a decision), not a settle */
    size_t n;  /* limits sent */
    int argc;  /* arguments after the command and the script */
    size_t off[ARGC_MAX], len[ARGC_MAX], scope_off[SL_LIMITS_MAX];
    sl_redis_budget_t budget; /* a take's budget, its strings in bid/member: released if the
                                 caller cancelled before the answer came */
    char bid[96], member[48];
    sl_buf_t args; /* owned: the arguments and the limits' scopes, each NUL-ended */
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

static void ev_closed(uv_handle_t *h)
{
    sl_free(h->data);
}

static void ev_cleanup(void *p)
{
    ev_t *e = p;
    e->ac = NULL;
    uv_close((uv_handle_t *)&e->poll, ev_closed);
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
static void set_state(sl_redis_t *r, state_t to, const char *why)
{
    static const char *names[] = {"waiting", "resolving", "connecting", "up", "closed"};
    sl_log(SL_LOG_DEBUG, "redis %s: %s -> %s (%s)", r->where, names[r->state], names[to], why);
    if (to == ST_UP) {
        sl_log(SL_LOG_INFO, "redis %s: connected", r->where);
        r->warned = false;
    } else if (to == ST_WAIT && (r->state == ST_UP || !r->warned)) {
        sl_log(SL_LOG_WARN, "redis %s: %s %s; limits are local until it is back", r->where,
               r->state == ST_UP ? "lost:" : "cannot connect:", why);
        r->warned = true;
    }
    r->state = to;
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
static void lost(sl_redis_t *r, const char *why)
{
    if (r->state == ST_WAIT || r->state == ST_CLOSING)
        return;
    forget_lookup(r);
    r->ac = NULL;
    set_state(r, ST_WAIT, why);
    SL_ASSERT(uv_timer_start(&r->timer, on_timer, r->backoff_ms, 0) == 0);
    r->backoff_ms = r->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : r->backoff_ms * 2;
}

/* We give up on the connection: ops in flight are answered SL_EUNAVAIL from here. */
static void drop(sl_redis_t *r, const char *why)
{
    redisAsyncContext *ac = r->ac;
    lost(r, why);
    if (ac) {
        ac->data = NULL; /* so on_disconnect knows it was us */
        redisAsyncFree(ac);
    }
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    sl_redis_t *r = ac->data;
    if (r && status != REDIS_OK)
        lost(r, ac->errstr); /* hiredis frees ac when we return */
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    sl_redis_t *r = ac->data;
    if (r)
        lost(r, status == REDIS_OK ? "closed" : ac->errstr);
}

static void on_setup_reply(redisAsyncContext *ac, void *reply_, void *priv)
{
    redisReply *reply = reply_;
    sl_redis_t *r = priv;
    if (reply && reply->type == REDIS_REPLY_ERROR && r->state == ST_CONNECTING) {
        char why[256];
        (void)snprintf(why, sizeof why, "AUTH or SELECT refused: %s", reply->str);
        drop(r, why);
    }
}

static void on_script_loaded(redisAsyncContext *ac, void *reply_, void *priv)
{
    redisReply *reply = reply_;
    sl_redis_t *r = priv;
    if (!reply) /* the connection went: lost() saw to it */
        return;
    r->reloading = false;
    if (reply->type == REDIS_REPLY_STRING && reply->len == 40) {
        memcpy(r->sha, reply->str, 40);
        if (r->state == ST_CONNECTING) {
            set_state(r, ST_UP, "script loaded");
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

SL_MUST_CHECK static int load_script(sl_redis_t *r)
{
    r->reloading = true;
    int rc = redisAsyncCommand(r->ac, on_script_loaded, r, "SCRIPT LOAD %s", SCRIPT);
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
    return load_script(r);
}

static void connect_to(sl_redis_t *r, const char *ip)
{
    set_state(r, ST_CONNECTING, ip);
    /* ip is numeric: hiredis's getaddrinfo() answers without a lookup, so this never blocks. */
    redisAsyncContext *ac = redisAsyncConnect(ip, r->port);
    if (!ac || ac->err || ev_attach(ac, r->loop) != 0) {
        char why[256];
        (void)snprintf(why, sizeof why, "%s", ac && ac->err ? ac->errstr : "cannot watch socket");
        if (ac)
            redisAsyncFree(ac);
        lost(r, why);
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
    resolve_t *rq = req->data;
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
        lost(r, uv_strerror(status));
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
    set_state(r, ST_RESOLVING, r->host);
    resolve_t *rq = sl_calloc(1, sizeof *rq);
    rq->r = r;
    rq->req.data = rq;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    int rc = uv_getaddrinfo(r->loop, &rq->req, on_resolved, r->host, NULL, &hints);
    if (rc < 0) {
        sl_free(rq);
        lost(r, uv_strerror(rc));
        return;
    }
    r->rq = rq;
}

static void on_timer(uv_timer_t *t)
{
    sl_redis_t *r = t->data;
    uint64_t now = uv_now(r->loop);
    switch (r->state) {
    case ST_WAIT: start_attempt(r); break;
    case ST_RESOLVING:
    case ST_CONNECTING:
        if (now - r->attempt_ms >= CONNECT_TIMEOUT_MS)
            drop(r, "connect timed out");
        break;
    case ST_UP:
        if (r->oldest && now - r->oldest->sent_ms >= REPLY_TIMEOUT_MS)
            drop(r, "no reply within the timeout");
        break;
    case ST_CLOSING: break;
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

/* ---- operations ---- */

static void link_op(sl_redis_t *r, sl_redis_op_t *op)
{
    op->sent_ms = uv_now(r->loop);
    op->older = r->newest;
    op->newer = NULL;
    *(r->newest ? &r->newest->newer : &r->oldest) = op;
    r->newest = op;
}

static void unlink_op(sl_redis_t *r, sl_redis_op_t *op)
{
    *(op->newer ? &op->newer->older : &r->newest) = op->older;
    *(op->older ? &op->older->newer : &r->oldest) = op->newer;
}

/* op is not in flight: never sent, or its reply came. */
static void op_free(sl_redis_op_t *op)
{
    sl_buf_dispose(&op->args);
    sl_free(op);
}

static void arg_begin(sl_redis_op_t *op)
{
    SL_ASSERT(op->argc < ARGC_MAX);
    op->off[op->argc] = op->args.len;
}

static void arg_end(sl_redis_op_t *op)
{
    op->len[op->argc] = op->args.len - op->off[op->argc];
    op->argc++;
    sl_buf_putc(&op->args, '\0'); /* ends the argument, so it reads as a C string too */
}

#define ADD_ARG(op, ...) (arg_begin(op), sl_buf_printf(&(op)->args, __VA_ARGS__), arg_end(op))

static int64_t clamp_rate(int64_t v)
{
    return v < 0 ? 0 : v > SL_LIMIT_RATE_MAX ? SL_LIMIT_RATE_MAX : v;
}

/* The script's arguments for these limits (those limiting nothing are left out, as the local
 * limiter does); the budget key only when there is a budget. */
static sl_redis_op_t *op_new(sl_redis_t *r, const sl_limit_t *limits, size_t n, const char *mode,
                             int64_t estimate, int64_t actual, const sl_redis_budget_t *budget)
{
    sl_redis_op_t *op = sl_calloc(1, sizeof *op);
    op->r = r;
    sl_buf_init(&op->args);
    const sl_limit_t *use[SL_LIMITS_MAX];
    size_t m = 0;
    SL_ASSERT(n <= SL_LIMITS_MAX); /* checked by the callers */
    for (size_t i = 0; i < n; i++) {
        if (clamp_rate(limits[i].rpm) > 0 || clamp_rate(limits[i].tpm) > 0)
            use[m++] = &limits[i];
    }
    op->n = m;
    bool has_budget = budget && budget->id && budget->budget_tokens > 0;
    ADD_ARG(op, "%zu", m + (has_budget ? 3 : 0));
    for (size_t i = 0; i < m; i++) {
        ADD_ARG(op, "sluice:rl:%s:%s", use[i]->scope, use[i]->id);
        op->scope_off[i] = op->args.len; /* not an argument: the answer names it */
        sl_buf_append(&op->args, use[i]->scope, strlen(use[i]->scope) + 1);
    }
    if (has_budget) {
        ADD_ARG(op, "sluice:budget:%s", budget->id);
        ADD_ARG(op, "sluice:budres:%s", budget->id);
        ADD_ARG(op, "sluice:budsum:%s", budget->id);
    }
    ADD_ARG(op, "%s", mode);
    ADD_ARG(op, "%zu", m);
    ADD_ARG(op, "%" PRId64, estimate);
    ADD_ARG(op, "%" PRId64, actual);
    ADD_ARG(op, "%" PRId64, has_budget ? budget->budget_tokens : 0);
    for (size_t i = 0; i < m; i++) {
        ADD_ARG(op, "%" PRId64, clamp_rate(use[i]->rpm));
        ADD_ARG(op, "%" PRId64, clamp_rate(use[i]->tpm));
    }
    if (has_budget) {
        ADD_ARG(op, "%" PRId64, budget->worst);
        ADD_ARG(op, "%d", budget->strict ? 1 : 0);
        ADD_ARG(op, "%s", budget->member ? budget->member : "");
        ADD_ARG(op, "%d", BUDGET_HOLD_MS);
        ADD_ARG(op, "%" PRId64, budget->floor > 0 ? budget->floor : 0);
        op->budget = *budget;
        (void)snprintf(op->bid, sizeof op->bid, "%s", budget->id);
        (void)snprintf(op->member, sizeof op->member, "%s", budget->member ? budget->member : "");
        op->budget.id = op->bid;
        op->budget.member = op->member;
    }
    return op;
}

static void on_op_reply(redisAsyncContext *ac, void *reply, void *priv);

SL_MUST_CHECK static int send_op(sl_redis_t *r, sl_redis_op_t *op)
{
    if (r->state != ST_UP || !r->ac)
        return SL_EUNAVAIL;
    const char *argv[ARGC_MAX + 2];
    size_t lens[ARGC_MAX + 2];
    argv[0] = op->eval ? "EVAL" : "EVALSHA";
    argv[1] = op->eval ? SCRIPT : r->sha;
    lens[0] = strlen(argv[0]);
    lens[1] = op->eval ? sizeof SCRIPT - 1 : 40;
    for (int i = 0; i < op->argc; i++) {
        argv[i + 2] = op->args.data + op->off[i];
        lens[i + 2] = op->len[i];
    }
    /* hiredis copies the arguments into its output buffer; ours stay for a NOSCRIPT retry. */
    if (redisAsyncCommandArgv(r->ac, on_op_reply, op, op->argc + 2, argv, lens) != REDIS_OK)
        return SL_EUNAVAIL;
    link_op(r, op);
    return 0;
}

/* Reads the take script's answer; SL_EUNAVAIL if it is not what the script returns. */
SL_MUST_CHECK static int parse_take(const sl_redis_op_t *op, const redisReply *reply,
                                    sl_limit_result_t *res)
{
    long long v[TAKE_REPLY_LEN];
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != TAKE_REPLY_LEN)
        return SL_EUNAVAIL;
    for (size_t i = 0; i < TAKE_REPLY_LEN; i++) {
        if (reply->element[i]->type != REDIS_REPLY_INTEGER)
            return SL_EUNAVAIL;
        v[i] = reply->element[i]->integer;
    }
    long long n = (long long)op->n;
    if (v[1] < -1 || v[1] > n || v[3] < 0 || v[3] > n || v[7] < 0 || v[7] > n)
        return SL_EUNAVAIL;
    *res = (sl_limit_result_t){.allowed = v[0] == 1,
                               .retry_after_s = (int)((v[2] + 999) / 1000),
                               .limit_requests = v[4],
                               .remaining_requests = v[5],
                               .reset_requests_ms = v[6],
                               .limit_tokens = v[8],
                               .remaining_tokens = v[9],
                               .reset_tokens_ms = v[10],
                               .budget_granted = v[11],
                               .budget_left = v[12]};
    long long at = v[1] ? v[1] : v[3] ? v[3] : v[7];
    res->scope = at == -1 ? "budget" : at > 0 ? op->args.data + op->scope_off[at - 1] : NULL;
    return 0;
}

/* Runs the caller's callback, unless it cancelled or r is closing, then frees op. */
static void finish(sl_redis_op_t *op, int err, const redisReply *reply)
{
    sl_limit_result_t res;
    if (!err && reply->type == REDIS_REPLY_ERROR) {
        sl_log(SL_LOG_ERROR, "redis %s: script failed: %s", op->r->where, reply->str);
        err = SL_EUNAVAIL;
    }
    if (op->cb && !err && parse_take(op, reply, &res) != 0) {
        sl_log(SL_LOG_ERROR, "redis %s: unexpected answer to a take", op->r->where);
        err = SL_EUNAVAIL;
    }
    if (op->cb && op->r->state != ST_CLOSING) {
        op->cb(op->ud, err, err ? NULL : &res);
    } else if (op->take && !op->cb && op->budget.id && !err && op->r->state == ST_UP &&
               parse_take(op, reply, &res) == 0 && res.allowed && res.budget_granted > 0) {
        /* The caller left before the answer: give its reservation back now, not in 15 min. */
        char member[80];
        (void)snprintf(member, sizeof member, "%s|%" PRId64, op->member, res.budget_granted);
        sl_redis_budget_t b = op->budget;
        b.member = member;
        sl_redis_settle(op->r, NULL, 0, 0, 0, &b);
    }
    op_free(op);
}

static void on_op_reply(redisAsyncContext *ac, void *reply_, void *priv)
{
    redisReply *reply = reply_;
    sl_redis_op_t *op = priv;
    sl_redis_t *r = op->r;
    unlink_op(r, op);
    if (!reply) {
        /* First, so a callback asking again hears SL_EUNAVAIL. */
        lost(r, ac->err ? ac->errstr : "connection lost");
        finish(op, SL_EUNAVAIL, NULL);
        return;
    }
    /* The script cache was flushed (SCRIPT FLUSH, a restart behind a proxy, a failover):
     * send this one with its source, and load it again for the next ones. */
    if (reply->type == REDIS_REPLY_ERROR && !op->eval && strncmp(reply->str, "NOSCRIPT", 8) == 0) {
        sl_log(SL_LOG_INFO, "redis %s: script cache flushed; loading the script again", r->where);
        op->eval = true;
        if (!r->reloading && load_script(r) != 0)
            sl_log(SL_LOG_WARN, "redis %s: cannot queue SCRIPT LOAD", r->where);
        if (send_op(r, op) != 0)
            finish(op, SL_EUNAVAIL, NULL);
        return;
    }
    finish(op, 0, reply);
}

/* ---- API ---- */

static void redis_free(sl_redis_t *r)
{
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
    r->state = ST_WAIT;
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

static void on_timer_closed(uv_handle_t *h)
{
    redis_free(h->data);
}

void sl_redis_close(sl_redis_t *r)
{
    if (!r || r->state == ST_CLOSING)
        return;
    redisAsyncContext *ac = r->ac;
    forget_lookup(r);
    set_state(r, ST_CLOSING, "closed by its owner");
    r->ac = NULL;
    if (ac) {
        ac->data = NULL;
        redisAsyncFree(ac); /* pending ops come back with no reply; finish() stays silent */
    }
    uv_close((uv_handle_t *)&r->timer, on_timer_closed);
}

bool sl_redis_up(const sl_redis_t *r)
{
    return r && r->state == ST_UP;
}

int sl_redis_take(sl_redis_t *r, const sl_limit_t *limits, size_t n, int64_t tokens_estimate,
                  const sl_redis_budget_t *budget, sl_redis_take_cb cb, void *ud,
                  sl_redis_op_t **op)
{
    if (op)
        *op = NULL;
    if (n > SL_LIMITS_MAX)
        return SL_EINVAL;
    if (!sl_redis_up(r))
        return SL_EUNAVAIL;
    sl_redis_op_t *o = op_new(r, limits, n, "take", tokens_estimate, 0, budget);
    o->take = true;
    o->cb = cb;
    o->ud = ud;
    int err = send_op(r, o);
    if (err) {
        op_free(o);
        return err;
    }
    if (op)
        *op = o;
    return 0;
}

void sl_redis_op_cancel(sl_redis_op_t *op)
{
    if (!op)
        return;
    op->cb = NULL; /* hiredis still holds op; it goes when the reply (or the end) comes */
    op->ud = NULL;
}

void sl_redis_settle(sl_redis_t *r, const sl_limit_t *limits, size_t n, int64_t estimate,
                     int64_t actual, const sl_redis_budget_t *budget)
{
    if (n > SL_LIMITS_MAX || !sl_redis_up(r)) {
        /* Usage still reaches the store; only the shared buckets miss this correction. */
        sl_log(SL_LOG_DEBUG, "redis: settle dropped while Redis is unavailable");
        return;
    }
    sl_redis_op_t *o = op_new(r, limits, n, "settle", estimate, actual, budget);
    if (send_op(r, o) != 0)
        op_free(o);
}
