/* The built-in HTTP/1.1 client (h1.h): one request at a time per connection, http-parser for
 * responses, a per-worker keep-alive pool keyed by address. It is only a transport: everything
 * a response means (deadlines, SSE, caps, errors) is decided in xfer.c. */
#include "upstream/h1.h"

#include <http_parser.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/closer.h"
#include "core/fsm.h"
#include "core/log.h"
#include "upstream/xfer_transport.h"

#define IDLE_PER_HOST 256   /* idle connections kept per upstream address */
#define IDLE_MAX_MS   30000 /* an idle connection older than this is closed by the sweep */
#define SWEEP_MS      5000
#define RBUF_SIZE     (64 * 1024)
#define RBUF_SPARE    4096 /* when the shared buffer is in use (never in practice) */

typedef struct h1_conn h1_conn_t;
typedef struct h1_req h1_req_t;
typedef struct h1_host h1_host_t;

struct h1_host {
    struct sockaddr_storage addr;
    h1_conn_t *idle; /* owned: LIFO, so the warmest connection goes out first */
    unsigned nidle;
    h1_host_t *next;
};

struct sl_h1_pool {
    uv_loop_t *loop; /* borrowed: the worker's */
    uv_timer_t sweep;
    h1_host_t *hosts;   /* owned */
    h1_req_t *active;   /* weak: requests in flight (each unlinks itself), ended by close */
    char *rbuf;         /* owned: one read buffer for every connection, lent per read */
    sl_closer_t closer; /* holds the sweep timer and each connection: memory goes after both */
    bool rbuf_lent, closing;
    sl_h1_env_t env; /* read once: proxy variables do not change under a running process */
    sl_h1_stats_t stats;
    /* sl_h1_eligible is a pure function of the URL (env is fixed): its last answers, so a
     * request to a provider seen before does not parse its URL again */
    struct {
        char *url; /* owned; NULL: empty slot */
        bool ok;
        sl_h1_target_t t; /* t.path is re-pointed per use: into the caller's URL at path_off */
        size_t path_off;  /* SIZE_MAX: t.path is not in the URL (the static "/") */
    } seen[4];
    unsigned seen_next;
};

struct h1_conn {
    uv_tcp_t tcp;
    sl_closer_t closer; /* frees c once tcp has closed (a waiting request hears of it then) */
    http_parser parser;
    sl_h1_pool_t *pool;     /* borrowed: freed only after every connection closed */
    h1_host_t *host;        /* borrowed: lives as long as the pool */
    h1_req_t *req;          /* weak: the request using it, cleared when it lets go; NULL if idle */
    h1_conn_t *next, *prev; /* the host's idle list */
    uint64_t idle_since;
    unsigned writes; /* uv_write requests in flight */
    bool reused, reading;
};

/* A request's lifecycle. Until the first response byte a failed reused connection is retried
 * once on a fresh one; from then the request's bytes can go. Every end passes through STOPPED:
 * the transfer let go (h1_stop), from its done or on its own. */
typedef enum h1_state {
    H1_CONNECTING,   /* a fresh connection is being made */
    H1_SENDING,      /* the request is going (or went) out; no response byte yet */
    H1_READING_HEAD, /* the response began: its status line and headers (1xx ones included) */
    H1_READING_BODY, /* the final status went to the transfer: body bytes follow */
    H1_PAUSED,       /* the transfer is congested: parsing stops, bytes are held until resume */
    H1_DONE,         /* a complete response: done(OK) follows at once */
    /* The transfer let go: r is freed now, or on the way out of our own processing. */
    H1_STOPPED,
    H1_NSTATES
} h1_state_t;

struct h1_req {
    sl_xfer_t *x;               /* borrowed: the transfer owns us and stops us before it goes */
    const sl_xfer_sink_t *sink; /* borrowed (static): where x hears us */
    sl_h1_pool_t *pool;         /* borrowed */
    h1_host_t *host;            /* borrowed */
    h1_conn_t *conn;            /* owned while attached */
    sl_buf_t head, body;        /* the request, kept until the response starts (to retry) */
    sl_buf_t hdr;               /* the response header being read: name, then value */
    size_t hdr_name;            /* length of the name in hdr */
    sl_buf_t held;              /* body bytes the transfer paused on */
    sl_buf_t pend;              /* raw response bytes not parsed yet (paused) */
    h1_req_t *prev, *next;
    uint64_t id; /* per worker thread: names r in debug lines */
    int busy;    /* inside our own processing: a stop is deferred to its end */
    h1_state_t state;
    bool keep_alive; /* set on a complete response the server lets us reuse */
    bool retried, in_value;
    bool refused; /* the transfer answered stop: said in done's detail */
};

#define TO(s) SL_FSM_TO(H1_##s)
/* Any state may stop (the transfer's cancel, deadline, or done after a failure). */
static const uint32_t edges[H1_NSTATES] = {
    [H1_CONNECTING] = TO(SENDING) | TO(STOPPED),
    /* A reused connection failed before any response byte: once more on a fresh one. */
    [H1_SENDING] = TO(CONNECTING) | TO(READING_HEAD) | TO(STOPPED),
    [H1_READING_HEAD] = TO(READING_BODY) | TO(STOPPED),
    [H1_READING_BODY] = TO(PAUSED) | TO(DONE) | TO(STOPPED),
    [H1_PAUSED] = TO(READING_BODY) | TO(STOPPED),
    [H1_DONE] = TO(STOPPED),
    [H1_STOPPED] = 0,
};
static const char *const names[H1_NSTATES] = {
    [H1_CONNECTING] = "CONNECTING",
    [H1_SENDING] = "SENDING",
    [H1_READING_HEAD] = "READING_HEAD",
    [H1_READING_BODY] = "READING_BODY",
    [H1_PAUSED] = "PAUSED",
    [H1_DONE] = "DONE",
    [H1_STOPPED] = "STOPPED",
};
static const sl_fsm_t h1_fsm = {"h1", names, edges, H1_NSTATES};

static void set_state(h1_req_t *r, h1_state_t to, const char *why)
{
    char id[24] = "";
    if (sl_fsm_speaks(&h1_fsm, r->state, to))
        snprintf(id, sizeof id, "%" PRIu64, r->id);
    r->state = (h1_state_t)sl_fsm_step(&h1_fsm, r->state, to, id, why);
}

/* A response byte came: no retry any more, and the request's bytes can go. */
static bool answering(const h1_req_t *r)
{
    return SL_FSM_TO(r->state) & (TO(READING_HEAD) | TO(READING_BODY) | TO(PAUSED) | TO(DONE));
}

static void finish(h1_req_t *r, sl_xfer_result_t res, const char *detail);
static void conn_connect(h1_req_t *r);

/* ---- connections ---- */

/* The pool's closer is done: sl_h1_pool_close ran, the sweep timer and every connection closed. */
static void free_pool(void *owner)
{
    sl_h1_pool_t *p = owner;
    while (p->hosts) {
        h1_host_t *h = p->hosts;
        p->hosts = h->next;
        sl_free(h);
    }
    sl_free(p->rbuf);
    for (size_t i = 0; i < sizeof p->seen / sizeof p->seen[0]; i++)
        sl_free(p->seen[i].url);
    sl_free(p);
}

static void idle_unlink(h1_conn_t *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else if (c->host->idle == c)
        c->host->idle = c->next;
    else
        return; /* not on the list */
    if (c->next)
        c->next->prev = c->prev;
    c->next = c->prev = NULL;
    c->host->nidle--;
    c->pool->stats.idle--;
}

/* A connection's closer: its tcp has closed. */
static void conn_freed(void *owner)
{
    h1_conn_t *c = owner;
    sl_h1_pool_t *p = c->pool;
    h1_req_t *r = c->req;
    sl_free(c);
    if (r) { /* closed under a request that is still waiting: a connect that failed at once */
        r->conn = NULL;
        finish(r, SL_XFER_UNREACHABLE, "connect failed");
    }
    sl_closer_release(&p->closer);
}

static bool conn_closing(h1_conn_t *c)
{
    return uv_is_closing((uv_handle_t *)&c->tcp);
}

static void conn_close(h1_conn_t *c)
{
    if (conn_closing(c))
        return;
    idle_unlink(c);
    sl_closer_close(&c->closer, (uv_handle_t *)&c->tcp); /* tcp.data is the closer's now */
    sl_closer_finish(&c->closer);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    sl_h1_pool_t *p = ((h1_conn_t *)h->data)->pool;
    if (p->rbuf_lent) {
        *b = uv_buf_init(sl_malloc(RBUF_SPARE), RBUF_SPARE);
        return;
    }
    /* Lazily, once per worker: an idle or open connection owns no read memory. */
    if (!p->rbuf)
        p->rbuf = sl_malloc(RBUF_SIZE);
    p->rbuf_lent = true;
    *b = uv_buf_init(p->rbuf, RBUF_SIZE);
}

static void conn_reading(h1_conn_t *c, bool on);

static void on_sweep(uv_timer_t *t)
{
    sl_h1_pool_t *p = t->data;
    uint64_t now = uv_now(p->loop);
    for (h1_host_t *h = p->hosts; h; h = h->next)
        for (h1_conn_t *c = h->idle, *next; c; c = next) {
            next = c->next;
            if (now - c->idle_since >= IDLE_MAX_MS)
                conn_close(c);
        }
    if (!p->stats.idle)
        uv_timer_stop(t);
}

/* A complete response left the connection clean: keep it for the next request. Idle
 * connections stay read-watched, so a server that closes one is noticed (and it is dropped)
 * without a syscall per request. */
static void conn_pool(h1_conn_t *c)
{
    sl_h1_pool_t *p = c->pool;
    h1_host_t *h = c->host;
    if (p->closing || h->nidle >= IDLE_PER_HOST) {
        conn_close(c);
        return;
    }
    http_parser_init(&c->parser, HTTP_RESPONSE);
    c->parser.data = NULL;
    c->reused = true;
    c->idle_since = uv_now(p->loop);
    c->next = h->idle;
    if (h->idle)
        h->idle->prev = c;
    h->idle = c;
    h->nidle++;
    p->stats.idle++;
    conn_reading(c, true);
    if (!uv_is_active((uv_handle_t *)&p->sweep))
        uv_timer_start(&p->sweep, on_sweep, SWEEP_MS, SWEEP_MS);
}

/* ---- requests: parsing the response ---- */

static void flush_header(h1_req_t *r, http_parser *hp)
{
    if (!r->in_value)
        return;
    r->in_value = false;
    if (hp->status_code / 100 != 1) /* a 1xx's headers are not the answer's */
        r->sink->header(r->x, r->hdr.data, r->hdr_name, r->hdr.data + r->hdr_name,
                        r->hdr.len - r->hdr_name);
    sl_buf_reset(&r->hdr);
}

static int on_header_field(http_parser *hp, const char *at, size_t n)
{
    h1_req_t *r = hp->data;
    flush_header(r, hp);
    sl_buf_append(&r->hdr, at, n);
    return 0;
}

static int on_header_value(http_parser *hp, const char *at, size_t n)
{
    h1_req_t *r = hp->data;
    if (!r->in_value) {
        r->hdr_name = r->hdr.len;
        r->in_value = true;
    }
    sl_buf_append(&r->hdr, at, n);
    return 0;
}

static int on_headers_complete(http_parser *hp)
{
    h1_req_t *r = hp->data;
    flush_header(r, hp);
    sl_buf_dispose(&r->hdr);
    /* A 1xx ends at its header section (RFC 9110 §15.2), whatever length it announces: 1 tells
     * http-parser it has no body, so its bytes never reach the transfer before a status. */
    if (hp->status_code / 100 == 1)
        return 1;
    set_state(r, H1_READING_BODY, "status");
    r->sink->status(r->x, hp->status_code);
    return 0;
}

static int on_body(http_parser *hp, const char *at, size_t n)
{
    h1_req_t *r = hp->data;
    int a = r->sink->body(r->x, at, n);
    if (r->state == H1_STOPPED)
        return 1;
    if (a == SL_XFER_PAUSE) {
        /* http-parser counts this piece as parsed: keep it ourselves, stop before the next. */
        sl_buf_append(&r->held, at, n);
        set_state(r, H1_PAUSED, "transfer congested");
        http_parser_pause(hp, 1);
    } else if (a == SL_XFER_STOP) {
        r->refused = true;
        return 1;
    }
    return 0;
}

static int on_message_complete(http_parser *hp)
{
    h1_req_t *r = hp->data;
    if (hp->status_code / 100 == 1)
        return 0; /* an interim answer: the real one follows */
    set_state(r, H1_DONE, "response complete");
    r->keep_alive = http_should_keep_alive(hp);
    http_parser_pause(hp, 1); /* anything after the answer is not ours: it stays unparsed */
    return 0;
}

static const http_parser_settings settings = {
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

static void req_free(h1_req_t *r);

/* Parses response bytes (len 0: the server closed). False when r is gone. */
static bool req_feed(h1_req_t *r, const char *data, size_t len)
{
    http_parser *hp = &r->conn->parser;
    r->busy++;
    size_t n = http_parser_execute(hp, &settings, data, len);
    r->busy--;
    if (r->state == H1_STOPPED) {
        req_free(r);
        return false;
    }
    enum http_errno e = HTTP_PARSER_ERRNO(hp);
    if (e == HPE_PAUSED && n < len)
        sl_buf_append(&r->pend, data + n, len - n);
    if (r->state == H1_DONE) {
        finish(r, SL_XFER_OK, NULL);
        return false;
    }
    if (e == HPE_PAUSED) {
        conn_reading(r->conn, false); /* the transfer paused: the socket buffers fill, the
                                         upstream slows down; resume goes on */
        return true;
    }
    if (e != HPE_OK || len == 0) {
        finish(r, SL_XFER_DISCONNECTED,
               r->refused ? "stopped reading"
               : len == 0 ? "closed mid-response"
                          : http_errno_description(e));
        return false;
    }
    return true;
}

/* ---- requests: sending ---- */

typedef struct h1_write {
    uv_write_t w;
    h1_conn_t *c; /* borrowed: a pending write's callback runs before the close callback */
} h1_write_t;

/* The response has begun: a retry is out, so the request's bytes can go. */
static void release_request(h1_req_t *r)
{
    if (answering(r) && r->conn && !r->conn->writes) {
        sl_buf_dispose(&r->head);
        sl_buf_dispose(&r->body);
    }
}

/* The connection failed (EOF, reset, write error). A reused connection that failed before any
 * byte of the response is retried once on a fresh one, as curl does: the server closed it
 * while it was idle, racing our request. */
static void conn_failed(h1_req_t *r, int err)
{
    h1_conn_t *c = r->conn;
    bool retry = !answering(r) && c->reused && !r->retried;
    c->req = NULL;
    r->conn = NULL;
    conn_close(c);
    if (retry) {
        r->retried = true;
        r->pool->stats.retries++;
        set_state(r, H1_CONNECTING, "retry: the reused connection failed");
        conn_connect(r);
        return;
    }
    finish(r, SL_XFER_DISCONNECTED, uv_strerror(err));
}

static void on_write(uv_write_t *w, int status)
{
    h1_write_t *hw = (h1_write_t *)w;
    h1_conn_t *c = hw->c;
    sl_free(hw);
    c->writes--;
    h1_req_t *r = c->req;
    if (status == UV_ECANCELED || !r)
        return;
    if (status < 0 && !answering(r))
        conn_failed(r, status);
    else
        release_request(r); /* a failure after the response began: reading tells the rest */
}

/* One writev in the common case; uv_write only for what the socket did not take. */
static void req_send(h1_req_t *r)
{
    h1_conn_t *c = r->conn;
    uv_buf_t b[2] = {uv_buf_init(r->head.data, (unsigned)r->head.len),
                     uv_buf_init(r->body.data ? r->body.data : "", (unsigned)r->body.len)};
    unsigned nb = r->body.len ? 2 : 1;
    r->pool->stats.requests++;
    int n = uv_try_write((uv_stream_t *)&c->tcp, b, nb);
    if (n == UV_EAGAIN)
        n = 0;
    if (n < 0) {
        conn_failed(r, n);
        return;
    }
    unsigned i = 0;
    for (size_t left = (size_t)n; i < nb && left >= b[i].len; i++)
        left -= b[i].len, n -= (int)b[i].len;
    if (i == nb)
        return;
    b[i].base += n;
    b[i].len -= (size_t)n;
    h1_write_t *hw = sl_malloc(sizeof *hw);
    hw->c = c;
    int rc = uv_write(&hw->w, (uv_stream_t *)&c->tcp, b + i, nb - i, on_write);
    if (rc != 0) {
        sl_free(hw);
        conn_failed(r, rc);
        return;
    }
    c->writes++;
}

/* ---- reading ---- */

static void conn_read(h1_conn_t *c, ssize_t n, const char *data)
{
    if (n == 0)
        return;
    h1_req_t *r = c->req;
    if (!r) {
        conn_close(c); /* idle: the server closed it (or sent what nobody asked for) */
        return;
    }
    if (n == UV_EOF && answering(r)) {
        (void)req_feed(r, NULL, 0); /* a body read until close ends here, others are cut */
        return;
    }
    if (n < 0) {
        conn_failed(r, (int)n);
        return;
    }
    if (r->state == H1_SENDING)
        set_state(r, H1_READING_HEAD, "first response byte");
    release_request(r);
    (void)req_feed(r, data, (size_t)n); /* r may be gone: nothing after this */
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    h1_conn_t *c = s->data;
    sl_h1_pool_t *p = c->pool; /* outlives this call: freed in a close callback */
    conn_read(c, n, b->base);
    if (b->base == p->rbuf)
        p->rbuf_lent = false;
    else
        sl_free(b->base);
}

static void conn_reading(h1_conn_t *c, bool on)
{
    if (c->reading == on || conn_closing(c))
        return;
    c->reading = on;
    if (on)
        (void)uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    else
        (void)uv_read_stop((uv_stream_t *)&c->tcp);
}

/* ---- connecting ---- */

static void attach(h1_req_t *r, h1_conn_t *c)
{
    r->conn = c;
    c->req = r;
    c->parser.data = r;
}

static void on_connect(uv_connect_t *cr, int status)
{
    h1_conn_t *c = cr->data;
    sl_free(cr);
    if (status == UV_ECANCELED)
        return; /* closed while connecting: the close callback follows */
    h1_req_t *r = c->req;
    if (!r) {
        conn_close(c);
        return;
    }
    if (status < 0) {
        c->req = NULL;
        r->conn = NULL;
        conn_close(c);
        finish(r, SL_XFER_UNREACHABLE, uv_strerror(status));
        return;
    }
    set_state(r, H1_SENDING, "connected");
    r->sink->connected(r->x);
    conn_reading(c, true);
    req_send(r);
}

static void conn_connect(h1_req_t *r)
{
    sl_h1_pool_t *p = r->pool;
    h1_conn_t *c = sl_calloc(1, sizeof *c);
    c->pool = p;
    c->host = r->host;
    http_parser_init(&c->parser, HTTP_RESPONSE);
    uv_tcp_init(p->loop, &c->tcp);
    c->tcp.data = c;
    sl_closer_init(&c->closer, conn_freed, c);
    sl_closer_hold(&p->closer); /* released once c has closed */
    p->stats.connects++;
    attach(r, c);
    (void)uv_tcp_nodelay(&c->tcp, 1); /* applied when the socket is made (DESIGN §3.1) */
    uv_connect_t *cr = sl_malloc(sizeof *cr);
    cr->data = c;
    int rc = uv_tcp_connect(cr, &c->tcp, (const struct sockaddr *)&r->host->addr, on_connect);
    if (rc != 0) {
        /* Reported from the close callback: never from inside start. */
        sl_free(cr);
        sl_log(SL_LOG_DEBUG, "upstream connect: %s", uv_strerror(rc));
        conn_close(c);
    }
}

/* ---- the transport ---- */

static void finish(h1_req_t *r, sl_xfer_result_t res, const char *detail)
{
    /* The transfer stops us from in here (h1_stop): r is freed when this returns. */
    r->sink->done(r->x, res, detail);
}

static void req_free(h1_req_t *r)
{
    h1_conn_t *c = r->conn;
    if (c) {
        c->req = NULL;
        c->parser.data = NULL;
        if (r->keep_alive && !r->pend.len && !c->writes && !conn_closing(c))
            conn_pool(c);
        else
            conn_close(c); /* mid-response (a cancel) or unclean: never reused */
    }
    if (r->prev)
        r->prev->next = r->next;
    else
        r->pool->active = r->next;
    if (r->next)
        r->next->prev = r->prev;
    sl_buf_dispose(&r->head);
    sl_buf_dispose(&r->body);
    sl_buf_dispose(&r->hdr);
    sl_buf_dispose(&r->held);
    sl_buf_dispose(&r->pend);
    sl_free(r);
}

static void h1_stop(void *state)
{
    h1_req_t *r = state;
    set_state(r, H1_STOPPED, "stopped");
    if (r->busy)
        return; /* inside our own processing: it frees r on the way out */
    req_free(r);
}

static void h1_resume(void *state)
{
    h1_req_t *r = state;
    if (r->state != H1_PAUSED || !r->conn)
        return;
    if (r->held.len) {
        r->busy++;
        int a = r->sink->body(r->x, r->held.data, r->held.len);
        r->busy--;
        if (r->state == H1_STOPPED) {
            req_free(r);
            return;
        }
        if (a == SL_XFER_PAUSE)
            return; /* still congested: keep holding */
        if (a == SL_XFER_STOP) {
            finish(r, SL_XFER_DISCONNECTED, "stopped reading");
            return;
        }
        sl_buf_dispose(&r->held);
    }
    set_state(r, H1_READING_BODY, "resumed");
    http_parser_pause(&r->conn->parser, 0);
    if (r->pend.len) {
        sl_buf_t in = r->pend;
        sl_buf_init(&r->pend);
        bool alive = req_feed(r, in.data, in.len);
        sl_buf_dispose(&in);
        if (!alive || r->state == H1_PAUSED)
            return;
    }
    conn_reading(r->conn, true);
}

static h1_host_t *host_get(sl_h1_pool_t *p, const struct sockaddr_storage *a)
{
    for (h1_host_t *h = p->hosts; h; h = h->next) {
        if (h->addr.ss_family != a->ss_family)
            continue;
        if (a->ss_family == AF_INET) {
            const struct sockaddr_in *x = (const void *)&h->addr, *y = (const void *)a;
            if (x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr)
                return h;
        } else {
            const struct sockaddr_in6 *x = (const void *)&h->addr, *y = (const void *)a;
            if (x->sin6_port == y->sin6_port &&
                memcmp(&x->sin6_addr, &y->sin6_addr, sizeof x->sin6_addr) == 0)
                return h;
        }
    }
    h1_host_t *h = sl_calloc(1, sizeof *h);
    h->addr = *a;
    h->next = p->hosts;
    p->hosts = h;
    return h;
}

/* The request head. The wire's header lines go in as they are (headers.h keeps CR and LF out
 * of values); its omit list names headers only curl adds, so there is nothing to leave out. */
static void build_head(h1_req_t *r, const sl_h1_target_t *t, const sl_headers_t *h)
{
    sl_buf_puts(&r->head, "POST ");
    sl_buf_append(&r->head, t->path, t->path_len);
    sl_buf_puts(&r->head, " HTTP/1.1\r\nHost: ");
    sl_buf_puts(&r->head, t->host);
    sl_buf_puts(&r->head, "\r\nContent-Length: ");
    sl_buf_put_u64(&r->head, r->body.len);
    sl_buf_puts(&r->head, "\r\n");
    sl_buf_append(&r->head, h->send.data, h->send.len);
    sl_buf_puts(&r->head, "\r\n");
}

/* sl_h1_eligible(url), answered from the pool's memory of recent URLs when it can be. */
static bool eligible(sl_h1_pool_t *p, const char *url, sl_h1_target_t *t)
{
    const size_t n = sizeof p->seen / sizeof p->seen[0];
    for (size_t i = 0; url && i < n; i++) {
        if (!p->seen[i].url || strcmp(p->seen[i].url, url) != 0)
            continue;
        if (p->seen[i].ok) {
            *t = p->seen[i].t;
            if (p->seen[i].path_off != SIZE_MAX)
                t->path = url + p->seen[i].path_off; /* borrowed from the caller's URL */
        }
        return p->seen[i].ok;
    }
    bool ok = sl_h1_eligible(url, &p->env, t);
    if (!url)
        return ok;
    unsigned k = p->seen_next++ % n;
    sl_free(p->seen[k].url);
    p->seen[k].url = sl_strdup(url);
    p->seen[k].ok = ok;
    if (ok) {
        p->seen[k].t = *t;
        uintptr_t at = (uintptr_t)t->path, u0 = (uintptr_t)url;
        p->seen[k].path_off = at >= u0 && at <= u0 + strlen(url) ? (size_t)(at - u0) : SIZE_MAX;
    }
    return ok;
}

static int h1_start(sl_xfer_t *x, sl_xfer_wire_t *w, void **state)
{
    sl_h1_pool_t *p = w->h1;
    sl_h1_target_t t;
    if (!p || p->closing || !eligible(p, w->url, &t))
        return SL_EAGAIN;
    static __thread uint64_t seq; /* per worker, like the transfers' ids */
    h1_req_t *r = sl_calloc(1, sizeof *r);
    r->id = ++seq;
    r->x = x;
    r->sink = w->sink;
    r->pool = p;
    r->host = host_get(p, &t.addr);
    r->body = w->body; /* taken */
    build_head(r, &t, &w->headers);
    sl_headers_dispose(&w->headers); /* taken: they live on in head */
    r->next = p->active;
    if (p->active)
        p->active->prev = r;
    p->active = r;
    *state = r;
    h1_conn_t *c = r->host->idle;
    if (!c) {
        r->state = H1_CONNECTING; /* born here: no edge taken */
        conn_connect(r);
        return 0;
    }
    r->state = H1_SENDING; /* born here, on a warm connection */
    idle_unlink(c);
    p->stats.reused++;
    attach(r, c);
    w->sink->connected(x);
    req_send(r); /* a failure here retries on a fresh connection: nothing is reported yet */
    return 0;
}

const sl_xfer_transport_t sl_xfer_h1 = {
    .name = "builtin",
    .core_connect_deadline = true,
    .start = h1_start,
    .stop = h1_stop,
    .resume = h1_resume,
};

/* ---- the pool ---- */

sl_h1_pool_t *sl_h1_pool_new(uv_loop_t *loop)
{
    sl_h1_pool_t *p = sl_calloc(1, sizeof *p);
    p->loop = loop;
    sl_h1_env_load(&p->env);
    uv_timer_init(loop, &p->sweep);
    p->sweep.data = p;
    sl_closer_init(&p->closer, free_pool, p);
    return p;
}

void sl_h1_pool_close(sl_h1_pool_t *p)
{
    if (!p)
        return;
    p->closing = true;
    /* A transfer can outlive its exchange (reading the last bytes after [DONE]): it hears
     * that it was cut, as on any other end, and stops (which unlinks it). */
    while (p->active) {
        h1_req_t *r = p->active;
        finish(r, SL_XFER_DISCONNECTED, "worker stopping");
        SL_ASSERT(p->active != r);
    }
    for (h1_host_t *h = p->hosts; h; h = h->next)
        while (h->idle)
            conn_close(h->idle);
    sl_closer_close(&p->closer, (uv_handle_t *)&p->sweep);
    sl_closer_finish(&p->closer); /* p goes once the sweep and every connection have closed */
}

void sl_h1_pool_stats(const sl_h1_pool_t *p, sl_h1_stats_t *out)
{
    *out = p->stats;
}
