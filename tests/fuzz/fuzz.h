/* What the fuzz targets share: a reader that takes choices and split points off the front of an
 * input, feeding in pieces, and a check that aborts with its reason (libFuzzer then saves the
 * input as a crash). Header-only: each target is one translation unit plus the sources it
 * tests. */
#ifndef SL_FUZZ_H
#define SL_FUZZ_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "core/alloc.h"

/* An invariant of the code under test; never used for input validity. */
#define FUZZ_CHECK(c) ((c) ? (void)0 : fuzz_fail(#c, __FILE__, __LINE__))

static inline __attribute__((noreturn)) void fuzz_fail(const char *what, const char *file, int line)
{
    fprintf(stderr, "fuzz invariant failed: %s (%s:%d)\n", what, file, line);
    abort();
}

/* The input being consumed: choices come off the front, the rest is the payload. */
typedef struct fz {
    const uint8_t *p;
    size_t n;
} fz_t;

static inline uint8_t fz_u8(fz_t *f)
{
    if (!f->n)
        return 0;
    f->n--;
    return *f->p++;
}

static inline uint16_t fz_u16(fz_t *f)
{
    uint16_t hi = fz_u8(f);
    return (uint16_t)(hi << 8 | fz_u8(f));
}

/* The next n bytes (fewer at the end of the input). */
static inline const char *fz_take(fz_t *f, size_t n, size_t *got)
{
    if (n > f->n)
        n = f->n;
    const char *s = (const char *)f->p;
    f->p += n;
    f->n -= n;
    *got = n;
    return s;
}

/* Everything left, as a NUL-terminated copy (sl_free it). */
static inline char *fz_rest_str(fz_t *f)
{
    char *s = sl_malloc(f->n + 1);
    memcpy(s, f->p, f->n);
    s[f->n] = '\0';
    f->p += f->n;
    f->n = 0;
    return s;
}

/* How a payload is cut into reads: four piece lengths taken from the input, used in turn
 * (1 to 64 bytes each; all four 1 is byte by byte). */
typedef struct fz_cuts {
    uint8_t len[4];
} fz_cuts_t;

static inline void fz_cuts_read(fz_t *f, fz_cuts_t *c)
{
    for (int i = 0; i < 4; i++)
        c->len[i] = (uint8_t)(1 + fz_u8(f) % 64);
}

/* The length of piece k of a payload with left bytes to go. */
static inline size_t fz_cut(const fz_cuts_t *c, size_t k, size_t left)
{
    size_t n = c->len[k % 4];
    return n < left ? n : left;
}

/* jansson allocates through sl_malloc, as main sets it up: code under test frees jansson's
 * strings with sl_free. */
static inline void fuzz_init_json(void)
{
    json_set_alloc_funcs(sl_malloc_fn, sl_free);
}

#endif
