/* Helpers shared by the benchmark tools: clocks, a min-heap of deadlines, socket setup.
 * Header-only (everything static) so each tool stays one translation unit. */
#ifndef SL_BENCH_H
#define SL_BENCH_H

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#define NS_PER_MS 1000000ULL
#define NS_PER_S  1000000000ULL

static inline uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

static inline void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) {
        fprintf(stderr, "bench: out of memory\n");
        exit(2);
    }
    return p;
}

static inline void *xrealloc(void *p, size_t size)
{
    p = realloc(p, size ? size : 1);
    if (!p) {
        fprintf(stderr, "bench: out of memory\n");
        exit(2);
    }
    return p;
}

/* Parses a non-negative decimal; exits on garbage so a typo never runs an unbounded test. */
static inline long long parse_num(const char *what, const char *s)
{
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < 0) {
        fprintf(stderr, "bench: bad number for %s: '%s'\n", what, s);
        exit(2);
    }
    return v;
}

static inline double parse_dbl(const char *what, const char *s)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || v < 0) {
        fprintf(stderr, "bench: bad number for %s: '%s'\n", what, s);
        exit(2);
    }
    return v;
}

static inline void set_nodelay(int fd)
{
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); /* best effort */
}

/* A binary min-heap of items keyed by a deadline; each item remembers its slot so it can be
 * removed in O(log n). Items are opaque: the owner supplies key and slot accessors. */
typedef struct heap_item {
    uint64_t when;
    int slot; /* -1 when not in the heap */
} heap_item_t;

typedef struct heap {
    heap_item_t **v; /* owned array of borrowed item pointers */
    int n, cap;
} heap_t;

static inline void heap_swap(heap_t *h, int a, int b)
{
    heap_item_t *t = h->v[a];
    h->v[a] = h->v[b];
    h->v[b] = t;
    h->v[a]->slot = a;
    h->v[b]->slot = b;
}

static inline void heap_up(heap_t *h, int i)
{
    while (i > 0) {
        int p = (i - 1) / 2;
        if (h->v[p]->when <= h->v[i]->when)
            break;
        heap_swap(h, p, i);
        i = p;
    }
}

static inline void heap_down(heap_t *h, int i)
{
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < h->n && h->v[l]->when < h->v[m]->when)
            m = l;
        if (r < h->n && h->v[r]->when < h->v[m]->when)
            m = r;
        if (m == i)
            break;
        heap_swap(h, i, m);
        i = m;
    }
}

static inline void heap_push(heap_t *h, heap_item_t *it)
{
    if (h->n == h->cap) {
        h->cap = h->cap ? h->cap * 2 : 256;
        h->v = xrealloc(h->v, (size_t)h->cap * sizeof *h->v);
    }
    it->slot = h->n;
    h->v[h->n++] = it;
    heap_up(h, it->slot);
}

static inline void heap_remove(heap_t *h, heap_item_t *it)
{
    int i = it->slot;
    if (i < 0)
        return;
    it->slot = -1;
    h->n--;
    if (i == h->n)
        return;
    h->v[i] = h->v[h->n];
    h->v[i]->slot = i;
    heap_up(h, i);
    heap_down(h, h->v[i]->slot);
}

static inline heap_item_t *heap_top(const heap_t *h)
{
    return h->n ? h->v[0] : NULL;
}

/* Case-insensitive search for a header line "name:" inside [p, p+n); returns the value start
 * (leading blanks skipped) and its length up to CR/LF, or NULL. */
static inline const char *find_header(const char *p, size_t n, const char *name, size_t *vlen)
{
    size_t nl = strlen(name);
    const char *end = p + n;
    const char *line = memchr(p, '\n', n); /* skip the start line */
    while (line && line + 1 < end) {
        line++;
        if ((size_t)(end - line) > nl && line[nl] == ':' && strncasecmp(line, name, nl) == 0) {
            const char *v = line + nl + 1;
            while (v < end && (*v == ' ' || *v == '\t'))
                v++;
            const char *e = v;
            while (e < end && *e != '\r' && *e != '\n')
                e++;
            *vlen = (size_t)(e - v);
            return v;
        }
        line = memchr(line, '\n', (size_t)(end - line));
    }
    return NULL;
}

#endif
