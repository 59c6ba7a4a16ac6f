/* The one place that calls the C allocator; everything else goes through sl_malloc & co. */
#include "core/alloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void oom(size_t n, const char *file, int line)
{
    fprintf(stderr, "sluice: out of memory allocating %zu bytes at %s:%d\n", n, file, line);
    abort();
}

void *sl_malloc_at(size_t n, const char *file, int line)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        oom(n, file, line);
    return p;
}

void *sl_calloc_at(size_t n, size_t size, const char *file, int line)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        oom(n * size, file, line);
    return p;
}

void *sl_realloc_at(void *p, size_t n, const char *file, int line)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        oom(n, file, line);
    return q;
}

char *sl_strdup_at(const char *s, const char *file, int line)
{
    return sl_strndup_at(s, strlen(s), file, line);
}

char *sl_strndup_at(const char *s, size_t n, const char *file, int line)
{
    char *p = sl_malloc_at(n + 1, file, line);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

void sl_free(void *p)
{
    free(p);
}

void *sl_malloc_fn(size_t n)
{
    return sl_malloc_at(n, "jansson", 0);
}
