/* A growable byte buffer: data[0..len) is valid, data is always NUL-terminated so it can be
 * handed to C string functions. The struct is embedded by its owner (init/dispose). */
#ifndef SL_CORE_BUF_H
#define SL_CORE_BUF_H
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

typedef struct sl_buf {
    char *data; /* owned; NULL until the first append */
    size_t len;
    size_t cap;
} sl_buf_t;

void sl_buf_init(sl_buf_t *b);
void sl_buf_dispose(sl_buf_t *b);
/* Makes room for n more bytes and returns where they go; commit them with sl_buf_commit. */
char *sl_buf_reserve(sl_buf_t *b, size_t n);
void sl_buf_commit(sl_buf_t *b, size_t n);
void sl_buf_append(sl_buf_t *b, const void *p, size_t n);
void sl_buf_puts(sl_buf_t *b, const char *s);
void sl_buf_putc(sl_buf_t *b, char c);
void sl_buf_printf(sl_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Decimal numbers without printf, for the hot paths (response heads, access-log lines):
 * glibc's vfprintf costs more than the rest of a short line. put_ms is printf's "%.3f" (the
 * last digit may differ on exact ties, which no latency cares about). */
void sl_buf_put_u64(sl_buf_t *b, uint64_t v);
void sl_buf_put_i64(sl_buf_t *b, int64_t v);
void sl_buf_put_ms(sl_buf_t *b, double v);
/* Drops the first n bytes (keeps the rest, moved to the front). */
void sl_buf_consume(sl_buf_t *b, size_t n);
void sl_buf_reset(sl_buf_t *b);
/* Gives up storage above keep bytes of capacity, so an idle owner stays small. */
void sl_buf_shrink(sl_buf_t *b, size_t keep);
/* Appends s as the inside of a JSON string (quotes not included): escapes ", \ and controls;
 * bytes >= 0x80 are copied as they are, so UTF-8 passes through byte-exact. */
void sl_buf_json_escape(sl_buf_t *b, const char *s, size_t n);

#endif
