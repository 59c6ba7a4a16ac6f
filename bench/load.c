/* Load generator for the benchmark: M keep-alive HTTP/1.1 connections sending OpenAI chat
 * requests, closed-loop (as fast as answers come back) or open-loop at a fixed rate, where
 * latency counts from the *scheduled* send time so a stalled target cannot hide its stall
 * (no coordinated omission). A third mode opens C streams, holds them, then drops them (the
 * idle-stream memory test). A fourth (--cancel N) opens N streams one after another, hangs up
 * on each as its first event arrives and times how long until the fake upstream saw its own
 * connection close (read from the upstream's --close-log FIFO): the gateway's
 * disconnect-to-cancel latency. Always bounded by a request count and a duration. Prints one
 * JSON object on stdout. */
#include <arpa/inet.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include "bench.h"

#define HBUF_MAX   16384 /* response head larger than this is an error */
#define RING_CAP   (1u << 17)
#define MAX_HDRS   8
#define READ_CHUNK (256 * 1024)

enum { C_CLOSED, C_CONNECTING, C_IDLE, C_BUSY, C_HELD };
enum { P_HEAD, P_LENGTH, P_CHUNKED, P_EOF };
enum { CH_SIZE, CH_EXT, CH_DATA, CH_DATA_END, CH_TRAILER };
enum { E_CONNECT, E_STATUS, E_TIMEOUT, E_IO, E_PROTO, E_INCOMPLETE, E_DROPPED, E_NKINDS };
static const char *const err_names[E_NKINDS] = {"connect", "status",     "timeout", "io",
                                                "proto",   "incomplete", "dropped"};

typedef struct conn {
    int fd, state;
    uint64_t retry_at;
    /* the request in flight */
    uint64_t sched, ttfb;
    size_t woff;
    int phase, cstate, status;
    long long remaining; /* Content-Length left, or bytes left in the current chunk */
    bool close_after, chunk_digit;
    char *hbuf; /* owned: response head being assembled */
    size_t hlen;
    /* SSE line scanner over the decoded body */
    char lp[12];
    int lpos, trailer_len;
    int events;
    bool done;
    size_t body_bytes;
} conn_t;

typedef struct stats {
    uint64_t *lat, *ttfb, *lag, *cancel; /* owned: ns */
    size_t nlat, nttfb, nlag, ncancel, cap;
    uint64_t cancel_unseen; /* hang-ups whose upstream connection stayed open past 1 s */
    uint64_t errors[E_NKINDS];
    uint64_t ok, events, body_bytes;
    int last_status;
} stats_t;

typedef struct opts {
    char host[64], path[256];
    int port, conns, max_connecting;
    long long max_requests;
    double duration, rate, timeout, hold, open_timeout;
    const char *model, *label, *ready_file, *close_log;
    int cancel; /* --cancel N: N hang-ups, timed against the upstream's close log */
    bool stream;
    const char *headers[MAX_HDRS];
    int nheaders;
} opts_t;

typedef struct load {
    opts_t o;
    int ep;
    conn_t *c;
    char *req; /* owned: the request bytes, identical for every request */
    size_t reqlen;
    int *idle; /* owned: stack of idle conn indices */
    int nidle;
    uint64_t ring[RING_CAP]; /* open loop: scheduled times not yet sent */
    size_t rhead, rtail;
    uint64_t issued, busy, opening, opened, failed;
    uint64_t start, end, last_done;
    bool stop_issuing;
    stats_t st;
    struct sockaddr_in addr;
} load_t;

static char rbuf[READ_CHUNK];

/* ---- connections ---- */

static void set_events(load_t *L, conn_t *c, uint32_t ev)
{
    struct epoll_event e = {.events = ev, .data.u32 = (uint32_t)(c - L->c)};
    (void)epoll_ctl(L->ep, EPOLL_CTL_MOD, c->fd, &e); /* fd is registered while open */
}

static void conn_close(load_t *L, conn_t *c, uint64_t retry_at)
{
    if (c->state == C_BUSY || c->state == C_HELD)
        L->busy--;
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->state = C_CLOSED;
    c->retry_at = retry_at;
    c->hlen = 0;
}

static void conn_open(load_t *L, conn_t *c)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        L->st.errors[E_CONNECT]++;
        c->retry_at = now_ns() + 100 * NS_PER_MS;
        return;
    }
    set_nodelay(fd);
    int r = connect(fd, (struct sockaddr *)&L->addr, sizeof L->addr);
    if (r != 0 && errno != EINPROGRESS) {
        close(fd);
        L->st.errors[E_CONNECT]++;
        c->retry_at = now_ns() + 10 * NS_PER_MS;
        return;
    }
    c->fd = fd;
    c->state = C_CONNECTING;
    struct epoll_event e = {.events = EPOLLOUT, .data.u32 = (uint32_t)(c - L->c)};
    if (epoll_ctl(L->ep, EPOLL_CTL_ADD, fd, &e) != 0) {
        L->st.errors[E_CONNECT]++;
        conn_close(L, c, now_ns() + 10 * NS_PER_MS);
    }
}

static void fail(load_t *L, conn_t *c, int kind)
{
    L->st.errors[kind]++;
    if (c->state == C_HELD || (L->o.hold > 0 && c->state == C_BUSY)) {
        if (c->ttfb)
            L->opened--; /* it was counted open; it no longer is */
        L->failed++;
        if (!c->ttfb)
            L->opening--;
    }
    /* hold mode never retries: one stream per connection */
    conn_close(L, c, L->o.hold > 0 ? UINT64_MAX : now_ns() + 10 * NS_PER_MS);
}

static void send_request(load_t *L, conn_t *c, uint64_t sched)
{
    c->state = C_BUSY;
    L->busy++;
    c->sched = sched;
    if (L->o.rate > 0 && L->st.nlag < L->st.cap) /* how late the generator itself sent */
        L->st.lag[L->st.nlag++] = now_ns() - sched;
    c->ttfb = 0;
    c->woff = 0;
    c->phase = P_HEAD;
    c->hlen = 0;
    c->events = 0;
    c->done = false;
    c->lpos = 0;
    c->body_bytes = 0;
    ssize_t w = write(c->fd, L->req, L->reqlen);
    if (w == (ssize_t)L->reqlen)
        return;
    if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
        fail(L, c, E_IO);
        return;
    }
    c->woff = w > 0 ? (size_t)w : 0;
    set_events(L, c, EPOLLIN | EPOLLOUT);
}

static void make_idle(load_t *L, conn_t *c)
{
    c->state = C_IDLE;
    L->idle[L->nidle++] = (int)(c - L->c);
}

/* ---- response parsing ---- */

static void record(stats_t *st, uint64_t lat, uint64_t ttfb)
{
    if (st->nlat < st->cap)
        st->lat[st->nlat++] = lat;
    if (ttfb && st->nttfb < st->cap)
        st->ttfb[st->nttfb++] = ttfb;
}

/* Scans decoded body bytes for SSE lines: counts "data:" events, notes the first one's arrival
 * (time to first token) and "data: [DONE]". Only line starts are looked at. */
static void sse_feed(load_t *L, conn_t *c, const char *p, size_t n, uint64_t now)
{
    c->body_bytes += n;
    if (!L->o.stream)
        return;
    while (n) {
        if (c->lpos < 12) {
            char ch = *p++;
            n--;
            if (ch == '\n') {
                c->lpos = 0;
                continue;
            }
            c->lp[c->lpos++] = ch;
            if (c->lpos == 5 && memcmp(c->lp, "data:", 5) == 0) {
                c->events++;
                if (!c->ttfb) {
                    c->ttfb = now;
                    if (L->o.hold > 0 && c->state == C_BUSY) {
                        c->state = C_HELD;
                        L->opening--;
                        L->opened++;
                    }
                }
            }
            if (c->lpos == 12 && memcmp(c->lp, "data: [DONE]", 12) == 0)
                c->done = true;
            continue;
        }
        const char *nl = memchr(p, '\n', n);
        if (!nl)
            return;
        n -= (size_t)(nl + 1 - p);
        p = nl + 1;
        c->lpos = 0;
    }
}

/* Feeds body bytes; returns 1 once the response is complete, 0 for more, -1 on bad framing. */
static int body_feed(load_t *L, conn_t *c, const char *p, size_t n, uint64_t now)
{
    if (c->phase == P_EOF) {
        sse_feed(L, c, p, n, now);
        return 0;
    }
    if (c->phase == P_LENGTH) {
        size_t take = n < (size_t)c->remaining ? n : (size_t)c->remaining;
        sse_feed(L, c, p, take, now);
        c->remaining -= (long long)take;
        return c->remaining == 0;
    }
    const char *end = p + n;
    while (p < end) {
        switch (c->cstate) {
        case CH_SIZE: {
            char ch = *p++;
            int d = ch >= '0' && ch <= '9'   ? ch - '0'
                    : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
                    : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10
                                             : -1;
            if (d >= 0) {
                if (c->remaining > (1LL << 40))
                    return -1;
                c->remaining = c->remaining * 16 + d;
                c->chunk_digit = true;
            } else if (ch == ';' || ch == ' ') {
                c->cstate = CH_EXT;
            } else if (ch == '\n') {
                if (!c->chunk_digit)
                    return -1;
                c->cstate = c->remaining ? CH_DATA : CH_TRAILER;
                c->trailer_len = 0;
            } else if (ch != '\r') {
                return -1;
            }
            break;
        }
        case CH_EXT:
            if (*p++ == '\n') {
                c->cstate = c->remaining ? CH_DATA : CH_TRAILER;
                c->trailer_len = 0;
            }
            break;
        case CH_DATA: {
            size_t avail = (size_t)(end - p);
            size_t take = avail < (size_t)c->remaining ? avail : (size_t)c->remaining;
            sse_feed(L, c, p, take, now);
            p += take;
            c->remaining -= (long long)take;
            if (c->remaining == 0)
                c->cstate = CH_DATA_END;
            break;
        }
        case CH_DATA_END:
            if (*p == '\n') {
                c->cstate = CH_SIZE;
                c->remaining = 0;
                c->chunk_digit = false;
            } else if (*p != '\r') {
                return -1;
            }
            p++;
            break;
        case CH_TRAILER:
            if (*p == '\n') {
                if (c->trailer_len == 0)
                    return 1;
                c->trailer_len = 0;
            } else if (*p != '\r') {
                c->trailer_len++;
            }
            p++;
            break;
        }
    }
    return 0;
}

static void complete(load_t *L, conn_t *c, uint64_t now)
{
    stats_t *st = &L->st;
    L->busy--;
    L->last_done = now;
    st->events += (uint64_t)c->events;
    st->body_bytes += c->body_bytes;
    if (c->status != 200) {
        st->errors[E_STATUS]++;
        st->last_status = c->status;
    } else if (L->o.stream && !c->done) {
        st->errors[E_INCOMPLETE]++;
    } else {
        st->ok++;
        record(st, now - c->sched, c->ttfb ? c->ttfb - c->sched : 0);
    }
    if (L->o.hold > 0) {
        if (c->state == C_HELD)
            L->opened--;
        else
            L->opening--;
        L->failed++; /* a held stream that ends is no longer open */
        c->state = C_BUSY;
        L->busy++; /* conn_close below decrements */
        conn_close(L, c, UINT64_MAX);
        return;
    }
    if (c->close_after) {
        c->state = C_IDLE;
        conn_close(L, c, now);
        return;
    }
    make_idle(L, c);
}

/* Parses the response head in c->hbuf[0..hlen); returns its length, 0 if incomplete, -1 if bad. */
static long parse_head(conn_t *c)
{
    const char *h = c->hbuf;
    const char *eoh = memmem(h, c->hlen, "\r\n\r\n", 4);
    if (!eoh)
        return c->hlen >= HBUF_MAX ? -1 : 0;
    size_t hl = (size_t)(eoh - h) + 4, vl;
    if (hl < 12 || memcmp(h, "HTTP/1.", 7) != 0)
        return -1;
    c->status = (int)strtol(h + 9, NULL, 10);
    if (c->status == 100) /* interim: drop it and keep reading */
        return (long)hl | (1L << 40);
    const char *v = find_header(h, hl, "Connection", &vl);
    c->close_after = v && vl >= 5 && strncasecmp(v, "close", 5) == 0;
    v = find_header(h, hl, "Transfer-Encoding", &vl);
    if (v && vl >= 7 && strncasecmp(v, "chunked", 7) == 0) {
        c->phase = P_CHUNKED;
        c->cstate = CH_SIZE;
        c->remaining = 0;
        c->chunk_digit = false;
    } else if ((v = find_header(h, hl, "Content-Length", &vl)) != NULL) {
        c->phase = P_LENGTH;
        c->remaining = strtoll(v, NULL, 10);
        if (c->remaining < 0)
            return -1;
    } else {
        c->phase = P_EOF;
        c->close_after = true;
    }
    return (long)hl;
}

/* Handles bytes read on a busy connection. */
static void on_bytes(load_t *L, conn_t *c, const char *p, size_t n, uint64_t now)
{
    while (n && c->phase == P_HEAD) {
        size_t take = n < HBUF_MAX - c->hlen ? n : HBUF_MAX - c->hlen;
        memcpy(c->hbuf + c->hlen, p, take);
        size_t before = c->hlen;
        c->hlen += take;
        long hl = parse_head(c);
        if (hl < 0) {
            fail(L, c, E_PROTO);
            return;
        }
        if (hl == 0) {
            p += take;
            n -= take;
            continue;
        }
        bool interim = hl & (1L << 40);
        hl &= (1L << 40) - 1;
        size_t used = (size_t)hl - before; /* bytes of p that belonged to the head */
        p += used;
        n -= used;
        c->hlen = 0;
        if (interim)
            continue;
        if (c->phase == P_LENGTH && c->remaining == 0) {
            complete(L, c, now);
            return;
        }
    }
    if (!n)
        return;
    int r = body_feed(L, c, p, n, now);
    if (r < 0)
        fail(L, c, E_PROTO);
    else if (r > 0)
        complete(L, c, now);
}

static void on_event(load_t *L, conn_t *c, uint32_t ev, uint64_t now)
{
    if (c->state == C_CONNECTING) {
        int err = 0;
        socklen_t el = sizeof err;
        if ((ev & (EPOLLERR | EPOLLHUP)) ||
            getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0 || err) {
            L->st.errors[E_CONNECT]++;
            if (L->o.hold > 0) {
                L->failed++;
                L->opening--;
            }
            conn_close(L, c, L->o.hold > 0 ? UINT64_MAX : now + 10 * NS_PER_MS);
            return;
        }
        set_events(L, c, EPOLLIN);
        if (L->o.hold > 0) {
            send_request(L, c, now);
            return;
        }
        make_idle(L, c);
        return;
    }
    if ((ev & EPOLLOUT) && c->state == C_BUSY && c->woff < L->reqlen) {
        ssize_t w = write(c->fd, L->req + c->woff, L->reqlen - c->woff);
        if (w < 0 && errno != EAGAIN) {
            fail(L, c, E_IO);
            return;
        }
        c->woff += w > 0 ? (size_t)w : 0;
        if (c->woff == L->reqlen)
            set_events(L, c, EPOLLIN);
    }
    if (!(ev & (EPOLLIN | EPOLLERR | EPOLLHUP)))
        return;
    for (int i = 0; i < 64 && c->fd >= 0; i++) {
        ssize_t r = read(c->fd, rbuf, sizeof rbuf);
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (r <= 0) {
            if (c->state == C_BUSY && c->phase == P_EOF && r == 0) {
                complete(L, c, now);
                conn_close(L, c, now);
            } else if (c->state == C_BUSY || c->state == C_HELD) {
                fail(L, c, r == 0 ? E_INCOMPLETE : E_IO);
            } else { /* an idle keep-alive connection the server closed: reopen quietly */
                for (int k = 0; k < L->nidle; k++)
                    if (L->idle[k] == (int)(c - L->c)) {
                        L->idle[k] = L->idle[--L->nidle];
                        break;
                    }
                conn_close(L, c, now);
            }
            return;
        }
        if (c->state != C_BUSY && c->state != C_HELD) {
            L->st.errors[E_PROTO]++; /* bytes nobody asked for */
            continue;
        }
        on_bytes(L, c, rbuf, (size_t)r, now);
        if ((size_t)r < sizeof rbuf)
            return;
    }
}

/* ---- scheduling ---- */

static void dispatch(load_t *L, uint64_t now)
{
    opts_t *o = &L->o;
    if (o->rate > 0 && !L->stop_issuing) {
        double period = 1e9 / o->rate;
        for (;;) {
            uint64_t sched = L->start + (uint64_t)((double)L->issued * period);
            if (sched > now || (long long)L->issued >= o->max_requests || sched >= L->end)
                break;
            if (L->rtail - L->rhead == RING_CAP)
                L->st.errors[E_DROPPED]++;
            else
                L->ring[L->rtail++ % RING_CAP] = sched;
            L->issued++;
        }
    }
    while (L->nidle > 0) {
        uint64_t sched;
        if (o->rate > 0) {
            if (L->rhead == L->rtail)
                break;
            sched = L->ring[L->rhead++ % RING_CAP];
        } else {
            if (L->stop_issuing)
                break;
            L->issued++;
            sched = now;
        }
        conn_t *c = &L->c[L->idle[--L->nidle]];
        send_request(L, c, sched);
        if (o->rate <= 0 && (long long)L->issued >= o->max_requests)
            L->stop_issuing = true;
    }
}

static void check_timeouts(load_t *L, uint64_t now)
{
    uint64_t tmo = (uint64_t)(L->o.timeout * 1e9);
    for (int i = 0; i < L->o.conns; i++) {
        conn_t *c = &L->c[i];
        if (c->state == C_BUSY && L->o.hold <= 0 && now > c->sched + tmo)
            fail(L, c, E_TIMEOUT);
        else if (c->state == C_CLOSED && c->retry_at <= now && L->o.hold <= 0 && !L->stop_issuing)
            conn_open(L, c);
    }
}

/* Hold mode: open connections a few at a time so no listen backlog overflows. */
static void open_more(load_t *L)
{
    for (int i = 0; i < L->o.conns && (int)L->opening < L->o.max_connecting; i++) {
        conn_t *c = &L->c[i];
        if (c->state == C_CLOSED && c->retry_at == 0) {
            c->retry_at = UINT64_MAX; /* opened once, whatever happens */
            L->opening++;
            conn_open(L, c);
            if (c->state == C_CLOSED) {
                L->opening--;
                L->failed++;
            }
        }
    }
}

static void wait_events(load_t *L, uint64_t until)
{
    struct epoll_event evs[512];
    uint64_t now = now_ns();
    uint64_t d = until > now ? until - now : 0;
    struct timespec ts = {.tv_sec = (time_t)(d / NS_PER_S), .tv_nsec = (long)(d % NS_PER_S)};
    int n = epoll_pwait2(L->ep, evs, 512, &ts, NULL);
    now = now_ns();
    for (int i = 0; i < n; i++)
        on_event(L, &L->c[evs[i].data.u32], evs[i].events, now);
}

static void write_ready(load_t *L)
{
    if (!L->o.ready_file)
        return;
    FILE *f = fopen(L->o.ready_file, "w");
    if (!f)
        return;
    fprintf(f, "open %llu failed %llu\n", (unsigned long long)L->opened,
            (unsigned long long)L->failed);
    fclose(f);
}

static void run_hold(load_t *L)
{
    uint64_t open_deadline = L->start + (uint64_t)(L->o.open_timeout * 1e9);
    while (L->opened + L->failed < (uint64_t)L->o.conns && now_ns() < open_deadline) {
        open_more(L);
        wait_events(L, now_ns() + 5 * NS_PER_MS);
    }
    uint64_t ready = now_ns();
    fprintf(stderr, "load: %llu streams open, %llu failed, after %.2f s\n",
            (unsigned long long)L->opened, (unsigned long long)L->failed,
            (double)(ready - L->start) / 1e9);
    write_ready(L);
    uint64_t hold_end = ready + (uint64_t)(L->o.hold * 1e9);
    while (now_ns() < hold_end)
        wait_events(L, hold_end);
    L->last_done = now_ns();
}

static void run_load(load_t *L)
{
    uint64_t grace = (uint64_t)(L->o.timeout * 1e9) + NS_PER_S;
    uint64_t next_check = 0;
    for (;;) {
        uint64_t now = now_ns();
        if (!L->stop_issuing && (now >= L->end || (long long)L->issued >= L->o.max_requests))
            L->stop_issuing = true;
        if (now >= next_check) {
            check_timeouts(L, now);
            next_check = now + 10 * NS_PER_MS;
        }
        dispatch(L, now);
        if (L->stop_issuing && L->busy == 0 && (L->o.rate <= 0 || L->rhead == L->rtail))
            break;
        if (now > L->end + grace) { /* unanswered requests are errors, not silence */
            L->st.errors[E_TIMEOUT] += L->busy + (L->rtail - L->rhead);
            break;
        }
        uint64_t until = next_check;
        if (L->o.rate > 0 && !L->stop_issuing) {
            uint64_t sched = L->start + (uint64_t)((double)L->issued * (1e9 / L->o.rate));
            until = sched < until ? sched : until;
        }
        wait_events(L, until);
    }
}

/* ---- report ---- */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void print_dist(const char *name, uint64_t *v, size_t n)
{
    printf("\"%s\":{", name);
    if (n == 0) {
        printf("\"n\":0}");
        return;
    }
    qsort(v, n, sizeof *v, cmp_u64);
    static const double qs[] = {0.5, 0.9, 0.99, 0.999};
    static const char *const qn[] = {"p50", "p90", "p99", "p999"};
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += (double)v[i];
    printf("\"n\":%zu,\"min\":%.1f,", n, (double)v[0] / 1e3);
    for (int i = 0; i < 4; i++) {
        size_t k = (size_t)(qs[i] * (double)n + 0.999999);
        k = k == 0 ? 0 : (k > n ? n - 1 : k - 1);
        printf("\"%s\":%.1f,", qn[i], (double)v[k] / 1e3);
    }
    printf("\"max\":%.1f,\"mean\":%.1f}", (double)v[n - 1] / 1e3, sum / (double)n / 1e3);
}

static void report(load_t *L)
{
    stats_t *st = &L->st;
    uint64_t errs = 0;
    for (int i = 0; i < E_NKINDS; i++)
        errs += st->errors[i];
    uint64_t end = L->last_done > L->start ? L->last_done : now_ns();
    double secs = (double)(end - L->start) / 1e9;
    const opts_t *o = &L->o;
    printf("{\"label\":\"%s\",\"mode\":\"%s\",\"stream\":%s,\"model\":\"%s\",\"connections\":%d,"
           "\"rate\":%.0f,\"elapsed_s\":%.3f,\"issued\":%llu,\"ok\":%llu,\"errors\":%llu,",
           o->label,
           o->cancel > 0 ? "cancel"
           : o->hold > 0 ? "hold"
                         : (o->rate > 0 ? "open" : "closed"),
           o->stream ? "true" : "false", o->model, o->conns, o->rate, secs,
           (unsigned long long)L->issued, (unsigned long long)st->ok, (unsigned long long)errs);
    printf("\"error_kinds\":{");
    for (int i = 0; i < E_NKINDS; i++)
        printf("%s\"%s\":%llu", i ? "," : "", err_names[i], (unsigned long long)st->errors[i]);
    printf("},\"last_bad_status\":%d,\"rps\":%.1f,", st->last_status,
           secs > 0 ? (double)st->ok / secs : 0.0);
    uint64_t done = st->ok + st->errors[E_STATUS] + st->errors[E_INCOMPLETE];
    struct rusage ru;
    double cpu = 0;
    if (getrusage(RUSAGE_SELF, &ru) == 0)
        cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
              ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) / 1e6;
    printf("\"cpu_s\":%.3f,", cpu);
    printf("\"events_per_response\":%.2f,\"body_bytes_per_response\":%.1f,",
           done ? (double)st->events / (double)done : 0.0,
           done ? (double)st->body_bytes / (double)done : 0.0);
    if (o->hold > 0)
        printf("\"streams_open\":%llu,\"streams_failed\":%llu,", (unsigned long long)L->opened,
               (unsigned long long)L->failed);
    if (o->cancel > 0) {
        printf("\"cancels\":%d,\"cancel_unseen\":%llu,", o->cancel,
               (unsigned long long)st->cancel_unseen);
        print_dist("cancel_us", st->cancel, st->ncancel);
        printf(",");
    }
    print_dist("latency_us", st->lat, st->nlat);
    printf(",");
    print_dist("ttfb_us", st->ttfb, st->nttfb);
    printf(",");
    print_dist("send_lag_us", st->lag, st->nlag);
    printf("}\n");
}

/* ---- setup ---- */

static void usage(void)
{
    fprintf(stderr, "usage: load --url http://127.0.0.1:PORT/v1/chat/completions [options]\n"
                    "  -c N             connections (default 32)\n"
                    "  -n N             at most N requests (default 1000000)\n"
                    "  -d SECS          at most SECS of sending (default 10)\n"
                    "  --rate R         open loop at R req/s (default: closed loop)\n"
                    "  --stream         stream: true (TTFT = first 'data:' byte)\n"
                    "  --model NAME     model (upstream knobs: chunks-N, slow-MS, first-MS)\n"
                    "  -H 'K: V'        extra request header (repeatable)\n"
                    "  --timeout SECS   per-request timeout (default 10)\n"
                    "  --hold SECS      open -c streams, hold them SECS, close (memory test)\n"
                    "  --open-timeout S hold mode: give up opening after S (default 30)\n"
                    "  --max-connecting K  hold mode: streams being opened at once (default 200)\n"
                    "  --ready-file F   hold mode: write 'open N failed F' when all are open\n"
                    "  --cancel N       N streams in turn, each dropped at its first event; times\n"
                    "                   until the upstream closes its side (needs --close-log)\n"
                    "  --close-log F    the fake upstream's --close-log FIFO\n"
                    "  --label TEXT     copied into the JSON\n"
                    "  --free-port      print a free 127.0.0.1 TCP port and exit\n");
    exit(2);
}

static void parse_url(opts_t *o, const char *url)
{
    const char *p = url;
    if (strncmp(p, "http://", 7) == 0)
        p += 7;
    const char *colon = strchr(p, ':');
    const char *slash = strchr(p, '/');
    if (!colon || (slash && slash < colon) || (size_t)(colon - p) >= sizeof o->host)
        usage();
    memcpy(o->host, p, (size_t)(colon - p));
    o->host[colon - p] = '\0';
    o->port = (int)strtol(colon + 1, NULL, 10);
    snprintf(o->path, sizeof o->path, "%s", slash ? slash : "/v1/chat/completions");
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &sl) != 0)
        return 1;
    printf("%d\n", ntohs(sa.sin_port));
    close(fd);
    return 0;
}

static void parse_args(opts_t *o, int argc, char **argv)
{
    *o = (opts_t){.conns = 32,
                  .max_connecting = 200,
                  .max_requests = 1000000,
                  .duration = 10,
                  .timeout = 10,
                  .open_timeout = 30,
                  .model = "bench",
                  .label = ""};
    bool have_url = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--free-port"))
            exit(free_port());
        if (!strcmp(a, "--stream")) {
            o->stream = true;
            continue;
        }
        if (!v)
            usage();
        i++;
        if (!strcmp(a, "--url")) {
            parse_url(o, v);
            have_url = true;
        } else if (!strcmp(a, "-c"))
            o->conns = (int)parse_num(a, v);
        else if (!strcmp(a, "-n"))
            o->max_requests = parse_num(a, v);
        else if (!strcmp(a, "-d"))
            o->duration = parse_dbl(a, v);
        else if (!strcmp(a, "--rate"))
            o->rate = parse_dbl(a, v);
        else if (!strcmp(a, "--model"))
            o->model = v;
        else if (!strcmp(a, "-H") && o->nheaders < MAX_HDRS)
            o->headers[o->nheaders++] = v;
        else if (!strcmp(a, "--timeout"))
            o->timeout = parse_dbl(a, v);
        else if (!strcmp(a, "--hold"))
            o->hold = parse_dbl(a, v);
        else if (!strcmp(a, "--open-timeout"))
            o->open_timeout = parse_dbl(a, v);
        else if (!strcmp(a, "--max-connecting"))
            o->max_connecting = (int)parse_num(a, v);
        else if (!strcmp(a, "--ready-file"))
            o->ready_file = v;
        else if (!strcmp(a, "--label"))
            o->label = v;
        else if (!strcmp(a, "--cancel"))
            o->cancel = (int)parse_num(a, v);
        else if (!strcmp(a, "--close-log"))
            o->close_log = v;
        else
            usage();
    }
    if (!have_url || o->conns < 1 || o->conns > 100000 || o->max_connecting < 1 ||
        o->duration <= 0 || o->duration > 3600 || o->timeout <= 0 || o->hold > 3600 ||
        o->open_timeout > 600 || o->max_requests < 1 || o->cancel > 100000 ||
        (o->cancel > 0 && !o->close_log))
        usage();
    if (o->hold > 0 || o->cancel > 0)
        o->stream = true;
}

/* Formats the request for `model` into buf; returns its length (exits if it does not fit). */
static size_t format_request(const opts_t *o, const char *model, char *buf, size_t cap)
{
    char body[1024], extra[2048] = "";
    int bl = snprintf(body, sizeof body,
                      "{\"model\":\"%s\",\"messages\":[{\"role\":\"system\",\"content\":\"You "
                      "are a helpful assistant.\"},{\"role\":\"user\",\"content\":\"Say hello "
                      "in about sixty tokens.\"}],\"max_tokens\":64%s}",
                      model, o->stream ? ",\"stream\":true" : "");
    size_t el = 0;
    for (int i = 0; i < o->nheaders && el < sizeof extra; i++)
        el += (size_t)snprintf(extra + el, sizeof extra - el, "%s\r\n", o->headers[i]);
    int n = snprintf(buf, cap,
                     "POST %s HTTP/1.1\r\nHost: %s:%d\r\nUser-Agent: sluice-bench\r\n"
                     "Content-Type: application/json\r\nAccept: application/json\r\n"
                     "Authorization: Bearer sk-bench\r\n%sContent-Length: %d\r\n\r\n%s",
                     o->path, o->host, o->port, extra, bl, body);
    if (bl <= 0 || (size_t)bl >= sizeof body || n <= 0 || (size_t)n >= cap) {
        fprintf(stderr, "load: request too large\n");
        exit(2);
    }
    return (size_t)n;
}

static void build_request(load_t *L)
{
    size_t cap = 4096;
    L->req = xcalloc(1, cap);
    L->reqlen = format_request(&L->o, L->o.model, L->req, cap);
}

/* ---- cancel mode ---- */

/* Reads close-log lines ("CID NS\n") until the one for `cid` arrives or `deadline` passes;
 * returns its timestamp, 0 if it never came. Lines of earlier (late) hang-ups are skipped. */
static uint64_t await_close(int fifo, long cid, uint64_t deadline)
{
    static char lb[4096];
    static size_t ll;
    for (;;) {
        char *nl;
        while ((nl = memchr(lb, '\n', ll)) != NULL) {
            *nl = '\0';
            char *e = NULL;
            long id = strtol(lb, &e, 10);
            unsigned long long ns = e ? strtoull(e, NULL, 10) : 0;
            size_t used = (size_t)(nl + 1 - lb);
            memmove(lb, nl + 1, ll - used);
            ll -= used;
            if (id == cid && ns)
                return (uint64_t)ns;
        }
        if (ll == sizeof lb)
            ll = 0; /* a line this long is garbage */
        uint64_t now = now_ns();
        if (now >= deadline)
            return 0;
        struct pollfd pf = {.fd = fifo, .events = POLLIN};
        int ms = (int)((deadline - now + NS_PER_MS - 1) / NS_PER_MS);
        if (poll(&pf, 1, ms) <= 0)
            continue;
        ssize_t r = read(fifo, lb + ll, sizeof lb - ll);
        if (r > 0)
            ll += (size_t)r;
    }
}

/* Opens one stream and waits, at most 5 s, for its first SSE event; returns the socket, or -1
 * (counted in the error kinds). */
static int open_until_first_event(load_t *L, const char *req, size_t reqlen)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct timeval tv = {.tv_sec = 5};
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) != 0 ||
        connect(fd, (struct sockaddr *)&L->addr, sizeof L->addr) != 0) {
        L->st.errors[E_CONNECT]++;
        if (fd >= 0)
            close(fd);
        return -1;
    }
    set_nodelay(fd);
    if (write(fd, req, reqlen) != (ssize_t)reqlen) {
        L->st.errors[E_IO]++;
        close(fd);
        return -1;
    }
    char buf[HBUF_MAX];
    size_t n = 0;
    for (;;) {
        ssize_t r = read(fd, buf + n, sizeof buf - 1 - n);
        if (r <= 0) {
            L->st.errors[r == 0 ? E_INCOMPLETE : (errno == EAGAIN ? E_TIMEOUT : E_IO)]++;
            close(fd);
            return -1;
        }
        n += (size_t)r;
        buf[n] = '\0';
        if (n >= 12 && memcmp(buf, "HTTP/1.1 200", 12) != 0) {
            L->st.errors[E_STATUS]++;
            L->st.last_status = (int)strtol(buf + 9, NULL, 10);
            close(fd);
            return -1;
        }
        const char *body = strstr(buf, "\r\n\r\n");
        if (body && strstr(body, "data:"))
            return fd;
        if (n == sizeof buf - 1) {
            L->st.errors[E_PROTO]++;
            close(fd);
            return -1;
        }
    }
}

/* One hang-up at a time, so each upstream close is unambiguous and nothing else is in flight:
 * the model carries a "cid-K" tag that the upstream writes back with its close time. */
static void run_cancel(load_t *L)
{
    int fifo = open(L->o.close_log, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fifo < 0) {
        fprintf(stderr, "load: cannot open %s: %s\n", L->o.close_log, strerror(errno));
        exit(2);
    }
    char stale[4096];
    while (read(fifo, stale, sizeof stale) > 0) /* lines of earlier runs */
        ;
    char model[256], req[4096];
    for (int k = 0; k < L->o.cancel && now_ns() < L->end; k++) {
        snprintf(model, sizeof model, "%s-cid-%d", L->o.model, k);
        size_t reqlen = format_request(&L->o, model, req, sizeof req);
        L->issued++;
        int fd = open_until_first_event(L, req, reqlen);
        if (fd < 0)
            continue;
        uint64_t t0 = now_ns();
        close(fd);
        uint64_t t1 = await_close(fifo, k, t0 + NS_PER_S);
        if (!t1 || t1 < t0) {
            L->st.cancel_unseen++;
            continue;
        }
        L->st.ok++;
        if (L->st.ncancel < L->st.cap)
            L->st.cancel[L->st.ncancel++] = t1 - t0;
        L->last_done = t1;
    }
    close(fifo);
}

int main(int argc, char **argv)
{
    static load_t L; /* large (the ring): static, not on the stack */
    parse_args(&L.o, argc, argv);
    signal(SIGPIPE, SIG_IGN);
    (void)prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0); /* open-loop send times to the microsecond */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl); /* best effort; connect errors will show */
    }
    L.addr = (struct sockaddr_in){.sin_family = AF_INET, .sin_port = htons((uint16_t)L.o.port)};
    if (inet_pton(AF_INET, L.o.host, &L.addr.sin_addr) != 1) {
        fprintf(stderr, "load: host must be an IPv4 address: %s\n", L.o.host);
        return 2;
    }
    build_request(&L);
    L.ep = epoll_create1(EPOLL_CLOEXEC);
    L.c = xcalloc((size_t)L.o.conns, sizeof *L.c);
    L.idle = xcalloc((size_t)L.o.conns, sizeof *L.idle);
    size_t cap = L.o.cancel > 0 ? (size_t)L.o.cancel
                 : L.o.hold > 0 ? (size_t)L.o.conns
                                : (size_t)L.o.max_requests;
    if (L.o.rate > 0 && (double)cap > L.o.rate * L.o.duration + 16)
        cap = (size_t)(L.o.rate * L.o.duration) + 16;
    if (cap > 20000000)
        cap = 20000000; /* samples beyond this still count, they are just not kept */
    L.st.cap = cap;
    L.st.lat = xcalloc(cap, sizeof *L.st.lat);
    L.st.ttfb = xcalloc(cap, sizeof *L.st.ttfb);
    L.st.lag = xcalloc(cap, sizeof *L.st.lag);
    L.st.cancel = xcalloc(cap, sizeof *L.st.cancel);
    for (int i = 0; i < L.o.conns; i++) {
        L.c[i].fd = -1;
        L.c[i].hbuf = xcalloc(1, HBUF_MAX);
    }
    L.start = now_ns();
    L.end = L.start + (uint64_t)(L.o.duration * 1e9);
    if (L.o.cancel > 0) {
        run_cancel(&L);
    } else if (L.o.hold > 0) {
        run_hold(&L);
    } else {
        for (int i = 0; i < L.o.conns; i++)
            conn_open(&L, &L.c[i]);
        /* connect first, then start the clock: the test measures requests, not handshakes */
        uint64_t deadline = now_ns() + 5 * NS_PER_S;
        while (L.nidle < L.o.conns && now_ns() < deadline)
            wait_events(&L, now_ns() + 10 * NS_PER_MS);
        L.start = now_ns();
        L.end = L.start + (uint64_t)(L.o.duration * 1e9);
        run_load(&L);
    }
    report(&L);
    return 0;
}
