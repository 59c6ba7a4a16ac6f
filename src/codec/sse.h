/* Server-Sent Events: an incremental parser for upstream streams and an encoder for clients.
 * The parser follows the WHATWG rules: lines end in \n, \r\n or \r (also split across reads),
 * "field: value" with one optional space removed, multi-line data joined with \n, comment
 * lines (":...") ignored, an event dispatched at a blank line only if it has data. Pure: no I/O. */
#ifndef SL_CODEC_SSE_H
#define SL_CODEC_SSE_H
#include <stdbool.h>
#include <stddef.h>

#include "core/buf.h"
#include "core/err.h"

typedef struct sl_sse_event {
    const char *event; /* "" when the stream gave no event: field */
    size_t event_len;
    const char *data; /* the joined data lines, without the final \n (not NUL-terminated) */
    size_t data_len;
    const char *id; /* "" when none */
    size_t id_len;
} sl_sse_event_t;

/* Called once per dispatched event; the pointers are valid only during the call.
 * Return 0 to go on, anything else stops sl_sse_parser_feed, which returns that value. */
typedef int (*sl_sse_event_cb)(void *ud, const sl_sse_event_t *ev);

typedef struct sl_sse_parser {
    sl_buf_t line; /* owned; the unfinished line carried over from an earlier read */
    sl_buf_t data; /* owned; data lines of the event being built, each ending in \n */
    /* An event's only data line so far, where it lies in the bytes being fed: most events are
     * one line inside one read, and are handed over without a copy. Copied into data before
     * feed returns, or when a second line comes. */
    const char *pend;
    size_t pend_len;
    sl_buf_t event; /* owned */
    sl_buf_t id;    /* owned */
    bool after_cr;  /* last byte seen was \r: a following \n belongs to the same line end */
    bool have_data;
    size_t max_event; /* cap on one event's bytes (line + data); over it feed returns SL_ETOOBIG */
} sl_sse_parser_t;

void sl_sse_parser_init(sl_sse_parser_t *p, size_t max_event);
void sl_sse_parser_dispose(sl_sse_parser_t *p);
/* Feeds bytes as they arrived; events complete in them are dispatched to cb in order.
 * Returns 0, SL_ETOOBIG (event over max_event; the parser must not be fed again), or the
 * first nonzero value cb returned. */
SL_MUST_CHECK int sl_sse_parser_feed(sl_sse_parser_t *p, const char *buf, size_t len,
                                     sl_sse_event_cb cb, void *ud);

/* Appends one event "data: <line>\n" per line of data (split on \n), then "\n". */
void sl_sse_encode_data(sl_buf_t *out, const char *data, size_t len);

#endif
