/* Growable byte buffer used for every queue of bytes: input, output, JSON building. */
#include "core/buf.h"

#include <stdio.h>
#include <string.h>

#include "core/alloc.h"

void sl_buf_init(sl_buf_t *b)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void sl_buf_dispose(sl_buf_t *b)
{
    sl_free(b->data);
    sl_buf_init(b);
}

char *sl_buf_reserve(sl_buf_t *b, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        b->data = sl_realloc(b->data, cap);
        b->cap = cap;
    }
    return b->data + b->len;
}

void sl_buf_commit(sl_buf_t *b, size_t n)
{
    b->len += n;
    b->data[b->len] = '\0';
}

void sl_buf_append(sl_buf_t *b, const void *p, size_t n)
{
    if (n == 0) {
        sl_buf_reserve(b, 0);
        b->data[b->len] = '\0';
        return;
    }
    memcpy(sl_buf_reserve(b, n), p, n);
    sl_buf_commit(b, n);
}

void sl_buf_puts(sl_buf_t *b, const char *s)
{
    sl_buf_append(b, s, strlen(s));
}

void sl_buf_putc(sl_buf_t *b, char c)
{
    sl_buf_append(b, &c, 1);
}

void sl_buf_printf(sl_buf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char tmp[256];
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n < sizeof tmp) {
        sl_buf_append(b, tmp, (size_t)n);
        return;
    }
    char *dst = sl_buf_reserve(b, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(dst, (size_t)n + 1, fmt, ap);
    va_end(ap);
    sl_buf_commit(b, (size_t)n);
}

void sl_buf_put_u64(sl_buf_t *b, uint64_t v)
{
    char tmp[20];
    size_t i = sizeof tmp;
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    sl_buf_append(b, tmp + i, sizeof tmp - i);
}

void sl_buf_put_i64(sl_buf_t *b, int64_t v)
{
    if (v < 0) {
        sl_buf_putc(b, '-');
        sl_buf_put_u64(b, (uint64_t)0 - (uint64_t)v); /* INT64_MIN has no positive twin */
        return;
    }
    sl_buf_put_u64(b, (uint64_t)v);
}

void sl_buf_put_ms(sl_buf_t *b, double v)
{
    /* Beyond 2^53 thousandths the scaled value is no longer exact; NaN and inf too. */
    if (!(v > -9e12 && v < 9e12)) {
        sl_buf_printf(b, "%.3f", v);
        return;
    }
    if (v < 0) {
        double m = -v * 1000.0 + 0.5;
        if ((uint64_t)m == 0) { /* printf keeps the sign of a negative that rounds to 0 */
            sl_buf_puts(b, "-0.000");
            return;
        }
        sl_buf_putc(b, '-');
        v = -v;
    }
    uint64_t t = (uint64_t)(v * 1000.0 + 0.5);
    sl_buf_put_u64(b, t / 1000);
    char frac[4] = {'.', (char)('0' + t / 100 % 10), (char)('0' + t / 10 % 10),
                    (char)('0' + t % 10)};
    sl_buf_append(b, frac, sizeof frac);
}

void sl_buf_consume(sl_buf_t *b, size_t n)
{
    if (n >= b->len) {
        b->len = 0;
        if (b->data)
            b->data[0] = '\0';
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
    b->data[b->len] = '\0';
}

void sl_buf_reset(sl_buf_t *b)
{
    sl_buf_consume(b, b->len);
}

void sl_buf_shrink(sl_buf_t *b, size_t keep)
{
    if (b->len == 0 && b->cap > keep)
        sl_buf_dispose(b);
}

void sl_buf_json_escape(sl_buf_t *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t start = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        sl_buf_append(b, s + start, i - start);
        start = i + 1;
        switch (c) {
        case '"': sl_buf_append(b, "\\\"", 2); break;
        case '\\': sl_buf_append(b, "\\\\", 2); break;
        case '\n': sl_buf_append(b, "\\n", 2); break;
        case '\r': sl_buf_append(b, "\\r", 2); break;
        case '\t': sl_buf_append(b, "\\t", 2); break;
        default: {
            char u[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            sl_buf_append(b, u, 6);
        }
        }
    }
    sl_buf_append(b, s + start, n - start);
}
