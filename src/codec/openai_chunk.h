/* Encoding canonical events as OpenAI Chat Completions stream chunks, for answers sluice
 * synthesises (mock, Anthropic, a forced non-stream answer). Shaped as the SDKs validate them
 * (DESIGN §3): every choice and tool-call delta has its index, the role comes with the first
 * delta, the finish carries finish_reason, a usage chunk has "choices": [], an error event is
 * data: {"error": {...}}. Pure. */
#ifndef SL_CODEC_OPENAI_CHUNK_H
#define SL_CODEC_OPENAI_CHUNK_H
#include <stdint.h>

#include "codec/canon.h"
#include "core/buf.h"

typedef struct sl_oai_meta {
    const char *id;
    int64_t created;
    const char *model;
} sl_oai_meta_t;

/* "data: {chat.completion.chunk with one choice delta}\n\n" for a DELTA (or FINISH as a delta
 * with only finish_reason). */
void sl_oai_encode_delta(sl_buf_t *b, const sl_oai_meta_t *m, const sl_event_t *ev);
/* "data: {... "choices": [], "usage": {...}}\n\n" */
void sl_oai_encode_usage_chunk(sl_buf_t *b, const sl_oai_meta_t *m, const sl_usage_t *u);
/* "\"usage\":{prompt_tokens, completion_tokens, total_tokens[, prompt_tokens_details]}" */
void sl_oai_encode_usage(sl_buf_t *b, const sl_usage_t *u);
/* "data: {"error": {message, type, param, code}}\n\n" */
void sl_oai_encode_error_event(sl_buf_t *b, const sl_error_info_t *e);

#endif
