/* The Anthropic Messages API as a pure translation, no I/O: an OpenAI Chat Completions body
 * (the canonical request) becomes a Messages request, and Messages answers — stream events, a
 * whole message, an error body — become canonical events. The provider (anthropic.c) runs it
 * on the shared transfer; the unit tests run it on recorded bytes. */
#ifndef SL_UPSTREAM_ANTHROPIC_CODEC_H
#define SL_UPSTREAM_ANTHROPIC_CODEC_H
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "codec/canon.h"

/* Where decoded events go. The event and its strings are valid only during the call. */
typedef void (*sl_anth_emit_cb)(void *ud, const sl_event_t *ev);

/* What a decode call left behind. */
typedef enum sl_anth_status {
    SL_ANTH_MORE,   /* nothing terminal yet: keep reading */
    SL_ANTH_DONE,   /* the answer finished: FINISH, USAGE and END were emitted */
    SL_ANTH_FAILED, /* one ERROR was emitted: read no further */
} sl_anth_status_t;

/* The state a stream needs between events; embedded by its owner, nothing to dispose. */
typedef struct sl_anth_dec {
    int64_t created; /* START's created: Anthropic sends no timestamp */
    /* usage as last reported: message_start has the prompt side, message_delta's counts are
     * cumulative, so each report replaces the one before */
    int64_t input;       /* input_tokens: the uncached part of the prompt */
    int64_t cache_write; /* cache_creation_input_tokens */
    int64_t cached;      /* cache_read_input_tokens, -1 when not reported */
    int64_t output;      /* output_tokens */
    const char *finish;  /* static string: the mapped stop_reason, NULL until message_delta */
    int ntools;          /* tool_use blocks seen: the next one's OpenAI tool_calls index */
    int tool_block;      /* content block index of the open tool_use block, -1 none */
    bool started;        /* message_start was seen */
} sl_anth_dec_t;

/* The Messages request for an OpenAI Chat Completions body (borrowed, not changed): system
 * messages become `system`, tool calls and tool results become tool_use / tool_result blocks,
 * parameters are renamed, fields Anthropic would reject are dropped. model is the upstream
 * name; max_tokens applies when the body sets none. Returns a new reference. */
json_t *sl_anth_request(json_t *oai, const char *model, bool stream, uint64_t max_tokens);

void sl_anth_dec_init(sl_anth_dec_t *d, int64_t created);
/* One SSE event of a streamed answer (event is the SSE event name, may be ""; data the JSON
 * payload). message_stop yields FINISH, USAGE, END and SL_ANTH_DONE; an error event yields one
 * ERROR and SL_ANTH_FAILED. */
sl_anth_status_t sl_anth_decode_event(sl_anth_dec_t *d, const char *event, const char *data,
                                      size_t len, sl_anth_emit_cb emit, void *ud);
/* A whole (non-streamed) message: START, DELTA (role and the joined text), one DELTA per
 * tool_use block, FINISH, USAGE, END — never raw, so OpenAI clients get a synthesised
 * chat.completion. A body that is not a message yields one ERROR. */
sl_anth_status_t sl_anth_decode_message(int64_t created, const char *body, size_t len,
                                        sl_anth_emit_cb emit, void *ud);
/* An error answer (HTTP status >= 400) → exactly one ERROR: upstream message kept, 529
 * overloaded answered as 503, retry_after (seconds, -1 none) carried along. */
void sl_anth_decode_error(int status, const char *body, size_t len, int retry_after,
                          sl_anth_emit_cb emit, void *ud);

#endif
