/* The OpenAI wire format as a request builder + decoder, shared by the openai provider and
 * the azure provider (same body and stream, different URL and key header). */
#ifndef SL_UPSTREAM_OPENAI_H
#define SL_UPSTREAM_OPENAI_H
#include <stdbool.h>

#include "upstream/xfer.h"

/* The request body for the upstream: the client's bytes when they can go as they are,
 * otherwise the client's JSON with model (renamed, or removed when !send_model), stream and
 * stream_options.include_usage set. */
void sl_oai_request_body(const sl_upstream_call_t *call, bool stream, bool send_model,
                         sl_buf_t *out);
/* Starts an OpenAI-format call at url with headers already holding the provider's auth; they
 * are taken whatever the result (*headers is left empty). *state is the transfer. */
SL_MUST_CHECK int sl_oai_start(const sl_upstream_call_t *call, const char *url,
                               sl_headers_t *headers, bool send_model, void **state);

#endif
