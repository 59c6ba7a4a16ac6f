/* Decoding OpenAI Chat Completions JSON into canonical events: stream chunks, whole answers and
 * error bodies. Pure. In raw mode a chunk is parsed only when it must be (usage, error); its
 * bytes ride along in the event for a dialect that forwards them unchanged. */
#ifndef SL_UPSTREAM_OPENAI_DECODE_H
#define SL_UPSTREAM_OPENAI_DECODE_H
#include <stdbool.h>
#include <stddef.h>

#include "codec/canon.h"

typedef struct sl_oai_chunk {
    sl_event_t *events; /* inline, or an owned array; strings point into root or the input */
    size_t nevents, cap;
    sl_event_t inline_events[3]; /* most chunks give 1-2 events: no allocation per chunk */
    json_t *root;                /* owned; NULL when the chunk was not parsed */
    bool finish;                 /* the chunk carried a finish_reason */
    bool error;                  /* the chunk was an error object */
} sl_oai_chunk_t;

/* One SSE data payload. first=true also yields START (id, model, created). */
void sl_oai_decode_chunk(const char *data, size_t len, bool want_raw, bool first,
                         sl_oai_chunk_t *out);
/* A whole chat.completion (non-streaming answer): START, DELTAs (unless raw), FINISH, USAGE,
 * then END carrying the body as raw. A body that is not a completion gives one ERROR. */
void sl_oai_decode_completion(const char *data, size_t len, bool want_raw, sl_oai_chunk_t *out);
/* An upstream error answer (HTTP status >= 400) → exactly one ERROR event, keeping the
 * upstream's message/type/code/param when it sent an OpenAI-shaped body. */
void sl_oai_decode_error(const char *body, size_t len, int status, int retry_after,
                         sl_oai_chunk_t *out);
void sl_oai_chunk_dispose(sl_oai_chunk_t *c);

#endif
