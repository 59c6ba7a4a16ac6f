/* A fast fake OpenAI upstream for the benchmark: answers POST .../chat/completions from
 * memory with a fixed chat.completion or an SSE stream of OpenAI-shaped chunks, optionally
 * paced (for time-to-first-token and idle-stream tests). HTTP/1.1 keep-alive, epoll, one
 * loop per thread, SO_REUSEPORT between threads.
 *
 * Stream shape is picked from the request, headers first, then the model name:
 *   X-Bench-Chunks: N   / model contains "chunks-N"  choice chunks (role, N-2 tokens, finish)
 *   X-Bench-First: MS   / model contains "first-MS"  delay before the first chunk
 *   X-Bench-Interval: MS/ model contains "slow-MS"   delay between chunks
 * then a usage chunk (choices: []) and "data: [DONE]". Defaults: 64 chunks, no delays.
 * GET /stats answers {"connections":accepted,"requests":served} for the whole process.
 * With --close-log FIFO, a paced stream whose model carries "cid-K" writes "K NS\n" there
 * (NS: CLOCK_MONOTONIC) the moment its client goes away: the load tool's --cancel mode times a
 * gateway's disconnect-to-cancel from it. */
#include <arpa/inet.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "bench.h"

#define MAX_REQ        (1 << 20) /* a request bigger than this is refused */
#define MAX_CHUNKS     100000
#define MAX_DELAY_MS   600000
#define DEFAULT_CHUNKS 64

typedef struct conn {
    heap_item_t timer; /* first: the heap hands back this pointer */
    int fd;
    char *in; /* owned: bytes read, not yet consumed */
    size_t inlen, incap;
    char *out; /* owned: bytes to write from outoff */
    size_t outlen, outoff, outcap;
    bool epollout;      /* EPOLLOUT armed */
    bool sent_continue; /* "100 Continue" already sent for the pending request */
    bool close_after;   /* client asked for Connection: close */
    bool streaming;     /* a paced stream is in progress: requests wait */
    int next_chunk, nchunks;
    long cid; /* "cid-K" in the model: K, reported on a mid-stream close; -1 if none */
    uint64_t interval_ns;
    char model[64];
} conn_t;

typedef struct loop {
    int ep, lfd;
    heap_t timers;
    uint64_t requests;
} loop_t;

static volatile sig_atomic_t stopping;
static int close_log = -1; /* --close-log: O_RDWR|O_NONBLOCK, so it never blocks or fails */
/* Process-wide counters for GET /stats: tells whether a gateway reuses upstream connections. */
static uint64_t n_accepted, n_requests;

static void on_term(int sig)
{
    (void)sig;
    stopping = 1;
}

static void out_append(conn_t *c, const char *p, size_t n)
{
    if (c->outlen + n > c->outcap) {
        while (c->outlen + n > c->outcap)
            c->outcap = c->outcap ? c->outcap * 2 : 16384;
        c->out = xrealloc(c->out, c->outcap);
    }
    memcpy(c->out + c->outlen, p, n);
    c->outlen += n;
}

static void out_printf(conn_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void out_printf(conn_t *c, const char *fmt, ...)
{
    char tmp[4096];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0)
        out_append(c, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

static void conn_free(loop_t *L, conn_t *c)
{
    if (c->streaming && c->cid >= 0 && close_log >= 0) { /* the client left mid-stream */
        char line[64];
        int n = snprintf(line, sizeof line, "%ld %llu\n", c->cid, (unsigned long long)now_ns());
        (void)!write(close_log, line, (size_t)n); /* a full FIFO loses the line: seen as unseen */
    }
    heap_remove(&L->timers, &c->timer);
    (void)epoll_ctl(L->ep, EPOLL_CTL_DEL, c->fd, NULL); /* close() would drop it anyway */
    close(c->fd);
    free(c->in);
    free(c->out);
    free(c);
}

/* Writes what is queued; arms EPOLLOUT only for a leftover. Returns -1 if the peer is gone. */
static int flush(loop_t *L, conn_t *c)
{
    while (c->outoff < c->outlen) {
        ssize_t w = write(c->fd, c->out + c->outoff, c->outlen - c->outoff);
        if (w > 0) {
            c->outoff += (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        return -1;
    }
    if (c->outoff == c->outlen)
        c->outoff = c->outlen = 0;
    bool want = c->outlen > 0;
    if (want != c->epollout) {
        struct epoll_event ev = {.events = EPOLLIN | (want ? EPOLLOUT : 0), .data.ptr = c};
        if (epoll_ctl(L->ep, EPOLL_CTL_MOD, c->fd, &ev) != 0)
            return -1;
        c->epollout = want;
    }
    return 0;
}

/* ---- response bodies ---- */

static const char completion_fmt[] =
    "{\"id\":\"chatcmpl-bench0000000000000000000000\",\"object\":\"chat.completion\","
    "\"created\":1700000000,\"model\":\"%s\",\"system_fingerprint\":\"fp_bench\","
    "\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":"
    "\"Hello! This is a fixed answer from the sluice benchmark upstream. It is about as long as "
    "a short chat reply, sixty-odd tokens, so the gateway has a realistic body to relay.\","
    "\"refusal\":null},\"logprobs\":null,\"finish_reason\":\"stop\"}],"
    "\"usage\":{\"prompt_tokens\":24,\"completion_tokens\":64,\"total_tokens\":88}}";

#define CHUNK_HEAD                                                                                 \
    "{\"id\":\"chatcmpl-bench0000000000000000000000\",\"object\":\"chat.completion.chunk\","       \
    "\"created\":1700000000,\"model\":\"%s\",\"system_fingerprint\":\"fp_bench\",\"choices\":"

/* Appends one SSE event as one HTTP chunk. */
static void send_event(conn_t *c, const char *json, size_t n)
{
    out_printf(c, "%zx\r\ndata: ", n + 8);
    out_append(c, json, n);
    out_append(c, "\n\n\r\n", 4);
}

static void send_chunk(conn_t *c, int k)
{
    char j[1024];
    int n;
    if (k == 0)
        n = snprintf(j, sizeof j,
                     CHUNK_HEAD "[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\","
                                "\"refusal\":null},\"logprobs\":null,\"finish_reason\":null}]}",
                     c->model);
    else if (k < c->nchunks - 1)
        n = snprintf(j, sizeof j,
                     CHUNK_HEAD "[{\"index\":0,\"delta\":{\"content\":\" token%d\"},"
                                "\"logprobs\":null,\"finish_reason\":null}]}",
                     c->model, k);
    else
        n = snprintf(j, sizeof j,
                     CHUNK_HEAD "[{\"index\":0,\"delta\":{},\"logprobs\":null,"
                                "\"finish_reason\":\"stop\"}]}",
                     c->model);
    send_event(c, j, (size_t)n);
    if (k == c->nchunks - 1) {
        n = snprintf(j, sizeof j,
                     CHUNK_HEAD "[],\"usage\":{\"prompt_tokens\":24,\"completion_tokens\":%d,"
                                "\"total_tokens\":%d}}",
                     c->model, c->nchunks - 2, c->nchunks + 22);
        send_event(c, j, (size_t)n);
        static const char done[] = "e\r\ndata: [DONE]\n\n\r\n0\r\n\r\n";
        out_append(c, done, sizeof done - 1);
    }
}

/* ---- request parsing ---- */

/* Reads an integer after "key" in s (e.g. "chunks-" in "bench-chunks-64"); -1 if absent. */
static long num_after(const char *s, size_t n, const char *key)
{
    size_t kl = strlen(key);
    for (size_t i = 0; i + kl < n; i++) {
        if (memcmp(s + i, key, kl) != 0 || s[i + kl] < '0' || s[i + kl] > '9')
            continue;
        long v = 0;
        for (size_t j = i + kl; j < n && s[j] >= '0' && s[j] <= '9' && v < 100000000; j++)
            v = v * 10 + (s[j] - '0');
        return v;
    }
    return -1;
}

static long header_num(const char *h, size_t hl, const char *name)
{
    size_t vl;
    const char *v = find_header(h, hl, name, &vl);
    return v ? num_after(v, vl, "") : -1;
}

/* Finds "key" : <value> in a JSON body without a parser: good enough for our own clients. */
static const char *json_value(const char *b, size_t n, const char *key)
{
    size_t kl = strlen(key);
    const char *end = b + n, *p = b;
    while ((p = memmem(p, (size_t)(end - p), key, kl)) != NULL) {
        const char *q = p + kl;
        p = q;
        while (q < end && (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r'))
            q++;
        if (q >= end || *q != ':')
            continue;
        q++;
        while (q < end && (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r'))
            q++;
        return q < end ? q : NULL;
    }
    return NULL;
}

/* Decodes a chunked body in place-independent fashion: returns bytes consumed from p, or 0 when
 * incomplete, -1 when malformed. The decoded body is appended to dst (capacity cap). */
static long dechunk(const char *p, size_t n, char *dst, size_t cap, size_t *dlen)
{
    size_t i = 0;
    *dlen = 0;
    for (;;) {
        const char *nl = memchr(p + i, '\n', n - i);
        if (!nl)
            return 0;
        char *e;
        unsigned long sz = strtoul(p + i, &e, 16);
        if (e == p + i)
            return -1;
        i = (size_t)(nl - p) + 1;
        if (sz == 0) { /* skip trailers up to the empty line */
            for (;;) {
                nl = memchr(p + i, '\n', n - i);
                if (!nl)
                    return 0;
                bool empty = nl == p + i || (nl == p + i + 1 && p[i] == '\r');
                i = (size_t)(nl - p) + 1;
                if (empty)
                    return (long)i;
            }
        }
        if (sz > MAX_REQ || n - i < sz + 2)
            return sz > MAX_REQ ? -1 : 0;
        if (*dlen + sz <= cap)
            memcpy(dst + *dlen, p + i, sz);
        *dlen += sz;
        i += sz + 2;
    }
}

static void start_stream(loop_t *L, conn_t *c, const char *h, size_t hl)
{
    long chunks = header_num(h, hl, "X-Bench-Chunks");
    long first = header_num(h, hl, "X-Bench-First");
    long interval = header_num(h, hl, "X-Bench-Interval");
    size_t ml = strlen(c->model);
    if (chunks < 0)
        chunks = num_after(c->model, ml, "chunks-");
    if (first < 0)
        first = num_after(c->model, ml, "first-");
    if (interval < 0)
        interval = num_after(c->model, ml, "slow-");
    c->cid = num_after(c->model, ml, "cid-");
    c->nchunks = chunks < 2 ? (chunks < 0 ? DEFAULT_CHUNKS : 2)
                            : (chunks > MAX_CHUNKS ? MAX_CHUNKS : (int)chunks);
    c->interval_ns =
        (uint64_t)(interval > MAX_DELAY_MS ? MAX_DELAY_MS : (interval < 0 ? 0 : interval)) *
        NS_PER_MS;
    uint64_t first_ns =
        (uint64_t)(first > MAX_DELAY_MS ? MAX_DELAY_MS : (first < 0 ? 0 : first)) * NS_PER_MS;
    out_printf(c,
               "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
               "Cache-Control: no-cache\r\nopenai-processing-ms: 1\r\n"
               "x-request-id: req_bench\r\nTransfer-Encoding: chunked\r\n%s\r\n",
               c->close_after ? "Connection: close\r\n" : "");
    c->next_chunk = 0;
    if (first_ns == 0 && c->interval_ns == 0) { /* burst: the whole answer in one write */
        for (int k = 0; k < c->nchunks; k++)
            send_chunk(c, k);
        return;
    }
    if (first_ns == 0)
        send_chunk(c, c->next_chunk++);
    c->streaming = true;
    c->timer.when = now_ns() + (first_ns ? first_ns : c->interval_ns);
    heap_push(&L->timers, &c->timer);
}

static void respond_simple(conn_t *c, const char *status, const char *body)
{
    out_printf(c, "HTTP/1.1 %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n%s\r\n%s",
               status, strlen(body), c->close_after ? "Connection: close\r\n" : "", body);
}

static void handle(loop_t *L, conn_t *c, const char *h, size_t hl, const char *body, size_t bl)
{
    L->requests++;
    __atomic_fetch_add(&n_requests, 1, __ATOMIC_RELAXED);
    bool post = hl > 5 && memcmp(h, "POST ", 5) == 0;
    const char *sp = memchr(h, ' ', hl);
    const char *path = sp ? sp + 1 : h;
    const char *pe = memchr(path, ' ', hl - (size_t)(path - h));
    size_t pl = pe ? (size_t)(pe - path) : 0;
    if (!post && pl >= 6 && memcmp(path, "/stats", 6) == 0) {
        char j[128];
        snprintf(j, sizeof j, "{\"connections\":%llu,\"requests\":%llu}\n",
                 (unsigned long long)__atomic_load_n(&n_accepted, __ATOMIC_RELAXED),
                 (unsigned long long)__atomic_load_n(&n_requests, __ATOMIC_RELAXED));
        respond_simple(c, "200 OK", j);
        return;
    }
    if (!post && pl >= 7 && memcmp(path, "/health", 7) == 0) {
        respond_simple(c, "200 OK", "ok\n");
        return;
    }
    static const char suffix[] = "/chat/completions";
    if (!post || pl < sizeof suffix - 1 ||
        memcmp(path + pl - (sizeof suffix - 1), suffix, sizeof suffix - 1) != 0) {
        respond_simple(c, "404 Not Found", "not found\n");
        return;
    }
    const char *m = json_value(body, bl, "\"model\"");
    size_t ml = 0;
    if (m && *m == '"') {
        m++;
        /* copy only JSON-safe characters: the model is echoed into our JSON */
        while (m + ml < body + bl && ml < sizeof c->model - 1 && m[ml] != '"' && m[ml] != '\\')
            ml++;
        memcpy(c->model, m, ml);
    }
    c->model[ml] = '\0';
    const char *s = json_value(body, bl, "\"stream\"");
    if (s && body + bl - s >= 4 && memcmp(s, "true", 4) == 0) {
        start_stream(L, c, h, hl);
        return;
    }
    char j[2048];
    int n = snprintf(j, sizeof j, completion_fmt, c->model);
    out_printf(c,
               "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nopenai-processing-ms: 1\r\n"
               "x-request-id: req_bench\r\nContent-Length: %d\r\n%s\r\n",
               n, c->close_after ? "Connection: close\r\n" : "");
    out_append(c, j, (size_t)n);
}

/* Consumes complete requests from c->in. Returns -1 on a malformed request (connection closed). */
static int process(loop_t *L, conn_t *c)
{
    size_t off = 0;
    while (!c->streaming && off < c->inlen) {
        const char *p = c->in + off;
        size_t n = c->inlen - off;
        const char *eoh = memmem(p, n, "\r\n\r\n", 4);
        if (!eoh)
            break;
        size_t hl = (size_t)(eoh - p) + 4, vl;
        const char *v = find_header(p, hl, "Content-Length", &vl);
        long long cl = v ? strtoll(v, NULL, 10) : 0;
        bool chunked = false;
        v = find_header(p, hl, "Transfer-Encoding", &vl);
        if (v && vl >= 7 && strncasecmp(v, "chunked", 7) == 0)
            chunked = true;
        v = find_header(p, hl, "Connection", &vl);
        c->close_after = v && vl >= 5 && strncasecmp(v, "close", 5) == 0;
        if (cl < 0 || cl > MAX_REQ)
            return -1;
        const char *body = p + hl;
        size_t bl = (size_t)cl, used = hl + (size_t)cl;
        static __thread char dbody[65536];
        if (chunked) {
            long r = dechunk(p + hl, n - hl, dbody, sizeof dbody, &bl);
            if (r < 0)
                return -1;
            if (r == 0)
                goto incomplete;
            body = dbody;
            bl = bl < sizeof dbody ? bl : sizeof dbody;
            used = hl + (size_t)r;
        } else if (n < used) {
            goto incomplete;
        }
        c->sent_continue = false;
        handle(L, c, p, hl, body, bl);
        off += used;
        continue;
    incomplete:
        v = find_header(p, hl, "Expect", &vl);
        if (v && !c->sent_continue) {
            static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
            out_append(c, cont, sizeof cont - 1);
            c->sent_continue = true;
        }
        break;
    }
    if (off) {
        memmove(c->in, c->in + off, c->inlen - off);
        c->inlen -= off;
    }
    return 0;
}

static void on_readable(loop_t *L, conn_t *c)
{
    for (;;) {
        if (c->incap - c->inlen < 16384) {
            if (c->incap >= MAX_REQ + 65536) {
                conn_free(L, c);
                return;
            }
            c->incap = c->incap ? c->incap * 2 : 32768;
            c->in = xrealloc(c->in, c->incap);
        }
        ssize_t r = read(c->fd, c->in + c->inlen, c->incap - c->inlen);
        if (r > 0) {
            c->inlen += (size_t)r;
            if ((size_t)r < 16384)
                break;
            continue;
        }
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        conn_free(L, c); /* EOF or error: a paced stream the client left is simply dropped */
        return;
    }
    if (process(L, c) != 0 || flush(L, c) != 0 ||
        (c->close_after && !c->streaming && c->outlen == 0))
        conn_free(L, c);
}

static void on_timer(loop_t *L, conn_t *c)
{
    send_chunk(c, c->next_chunk++);
    if (c->next_chunk < c->nchunks) {
        c->timer.when += c->interval_ns;
        heap_push(&L->timers, &c->timer);
    } else {
        c->streaming = false;
    }
    if (flush(L, c) != 0) {
        conn_free(L, c);
        return;
    }
    if (!c->streaming && (process(L, c) != 0 || flush(L, c) != 0))
        conn_free(L, c);
}

static void on_accept(loop_t *L)
{
    for (int i = 0; i < 256; i++) {
        int fd = accept4(L->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return; /* EAGAIN, or EMFILE: the next wakeup retries */
        set_nodelay(fd);
        __atomic_fetch_add(&n_accepted, 1, __ATOMIC_RELAXED);
        conn_t *c = xcalloc(1, sizeof *c);
        c->fd = fd;
        c->timer.slot = -1;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(L->ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
            close(fd);
            free(c);
        }
    }
}

static void *run(void *arg)
{
    loop_t *L = arg;
    struct epoll_event evs[256];
    while (!stopping) {
        int timeout = 200; /* wake regularly to notice SIGTERM */
        heap_item_t *t = heap_top(&L->timers);
        uint64_t now = now_ns();
        if (t) {
            uint64_t ms = t->when > now ? (t->when - now + NS_PER_MS - 1) / NS_PER_MS : 0;
            timeout = ms < (uint64_t)timeout ? (int)ms : timeout;
        }
        int n = epoll_wait(L->ep, evs, 256, timeout);
        for (int i = 0; i < n; i++) {
            conn_t *c = evs[i].data.ptr;
            if (!c) {
                on_accept(L);
            } else if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
                on_readable(L, c);
            } else if (evs[i].events & EPOLLOUT) {
                if (flush(L, c) != 0 || (c->close_after && !c->streaming && c->outlen == 0))
                    conn_free(L, c);
            }
        }
        /* A conn freed above is never in the heap: conn_free removes it. */
        now = now_ns();
        while ((t = heap_top(&L->timers)) && t->when <= now) {
            heap_remove(&L->timers, t);
            on_timer(L, (conn_t *)t);
        }
    }
    return NULL;
}

static int listen_on(const char *host, int port, int *bound)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (fd < 0 || inet_pton(AF_INET, host, &sa.sin_addr) != 1)
        return -1;
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    socklen_t sl = sizeof sa;
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(fd, 4096) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &sl) != 0) {
        close(fd);
        return -1;
    }
    *bound = ntohs(sa.sin_port);
    return fd;
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1";
    int port = 0, nthreads = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--port") && i + 1 < argc)
            port = (int)parse_num("--port", argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            nthreads = (int)parse_num("--threads", argv[++i]);
        else if (!strcmp(argv[i], "--host") && i + 1 < argc)
            host = argv[++i];
        else if (!strcmp(argv[i], "--close-log") && i + 1 < argc) {
            close_log = open(argv[++i], O_RDWR | O_NONBLOCK | O_CLOEXEC);
            if (close_log < 0) {
                fprintf(stderr, "upstream: cannot open %s: %s\n", argv[i], strerror(errno));
                return 2;
            }
        } else {
            fprintf(stderr, "usage: upstream [--host 127.0.0.1] [--port 0] [--threads 1] "
                            "[--close-log FIFO]\n");
            return 2;
        }
    }
    if (nthreads < 1 || nthreads > 64 || port > 65535) {
        fprintf(stderr, "upstream: bad --threads or --port\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = {.sa_handler = on_term};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    loop_t *loops = xcalloc((size_t)nthreads, sizeof *loops);
    pthread_t *th = xcalloc((size_t)nthreads, sizeof *th);
    for (int i = 0; i < nthreads; i++) {
        loops[i].lfd = listen_on(host, port, &port); /* the first bind resolves port 0 */
        loops[i].ep = epoll_create1(EPOLL_CLOEXEC);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
        if (loops[i].lfd < 0 || loops[i].ep < 0 ||
            epoll_ctl(loops[i].ep, EPOLL_CTL_ADD, loops[i].lfd, &ev) != 0) {
            fprintf(stderr, "upstream: cannot listen on %s:%d: %s\n", host, port, strerror(errno));
            return 1;
        }
    }
    printf("listening on http://%s:%d\n", host, port);
    fflush(stdout);
    for (int i = 0; i < nthreads; i++)
        if (pthread_create(&th[i], NULL, run, &loops[i]) != 0) {
            fprintf(stderr, "upstream: pthread_create failed\n");
            return 1;
        }
    uint64_t total = 0;
    for (int i = 0; i < nthreads; i++) {
        pthread_join(th[i], NULL);
        total += loops[i].requests;
    }
    fprintf(stderr, "upstream: stopped after %llu requests\n", (unsigned long long)total);
    return 0;
}
