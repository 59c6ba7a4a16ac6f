/* Token-count arithmetic that never overflows. Counts come from outside: a client's max_tokens
 * (up to INT64_MAX), an upstream's usage (any int64, negative too). A signed overflow is
 * undefined (UBSan stops the process) and in release a wrapped sum could turn a huge request
 * into a small or negative one that every limit lets through; so sums saturate, and usage is
 * pinned to a sane range where it enters. */
#ifndef SL_CORE_TOKENS_H
#define SL_CORE_TOKENS_H
#include <stdint.h>

/* No single answer is billed more tokens than this: 2^40 (about 1.1e12) is a million times any
 * context window, and keeps the store's running totals (sums over many requests) far from
 * int64's end. An upstream that reports more is pinned here: still enough to spend any budget. */
#define SL_TOKENS_MAX ((int64_t)1 << 40)

/* A usage count as reported, pinned to [0, SL_TOKENS_MAX]. */
static inline int64_t sl_tokens_sane(int64_t n)
{
    return n < 0 ? 0 : n > SL_TOKENS_MAX ? SL_TOKENS_MAX : n;
}

/* a + b, pinned to [INT64_MIN, INT64_MAX] instead of overflowing. */
static inline int64_t sl_tokens_add(int64_t a, int64_t b)
{
    int64_t sum;
    if (__builtin_add_overflow(a, b, &sum))
        return b > 0 ? INT64_MAX : INT64_MIN;
    return sum;
}

#endif
