/* OpenAI chunk encoding (see openai_chunk.h). */
#include "codec/openai_chunk.h"

#include <inttypes.h>
#include <stdbool.h>
#include <string.h>

static void chunk_begin(sl_buf_t *b, const sl_oai_meta_t *st)
{
    sl_buf_puts(b, "data: {\"id\":\"");
    sl_buf_json_escape(b, st->id ? st->id : "", st->id ? strlen(st->id) : 0);
    sl_buf_printf(b, "\",\"object\":\"chat.completion.chunk\",\"created\":%" PRId64 ",\"model\":\"",
                  st->created);
    sl_buf_json_escape(b, st->model ? st->model : "", st->model ? strlen(st->model) : 0);
    sl_buf_puts(b, "\",\"choices\":");
}

static void put_str(sl_buf_t *b, const char *key, const char *s, size_t n)
{
    sl_buf_printf(b, "\"%s\":\"", key);
    sl_buf_json_escape(b, s, n);
    sl_buf_putc(b, '"');
}

void sl_oai_encode_delta(sl_buf_t *b, const sl_oai_meta_t *st, const sl_event_t *ev)
{
    chunk_begin(b, st);
    sl_buf_printf(b, "[{\"index\":%d,\"delta\":{", ev->choice);
    bool comma = false;
    if (ev->role) {
        put_str(b, "role", ev->role, strlen(ev->role));
        comma = true;
    }
    if (ev->content) {
        sl_buf_puts(b, comma ? "," : "");
        put_str(b, "content", ev->content, ev->content_len);
        comma = true;
    }
    if (ev->tool.present) {
        sl_buf_printf(b, "%s\"tool_calls\":[{\"index\":%d", comma ? "," : "", ev->tool.index);
        if (ev->tool.id) {
            sl_buf_putc(b, ',');
            put_str(b, "id", ev->tool.id, strlen(ev->tool.id));
            sl_buf_puts(b, ",\"type\":\"function\"");
        }
        sl_buf_puts(b, ",\"function\":{");
        if (ev->tool.name) {
            put_str(b, "name", ev->tool.name, strlen(ev->tool.name));
            sl_buf_putc(b, ',');
        }
        put_str(b, "arguments", ev->tool.args ? ev->tool.args : "", ev->tool.args_len);
        sl_buf_puts(b, "}}]");
    }
    sl_buf_puts(b, "},\"logprobs\":null,");
    /* Escaped: on a forced non-stream answer it is the upstream's text. */
    if (ev->finish_reason)
        put_str(b, "finish_reason", ev->finish_reason, strlen(ev->finish_reason));
    else
        sl_buf_puts(b, "\"finish_reason\":null");
    sl_buf_puts(b, "}]}\n\n");
}

/* The counts are the upstream's numbers: a sum past int64 is pinned, never overflowed. */
static int64_t add_pinned(int64_t a, int64_t b)
{
    int64_t sum;
    if (__builtin_add_overflow(a, b, &sum))
        return b > 0 ? INT64_MAX : INT64_MIN;
    return sum;
}

void sl_oai_encode_usage(sl_buf_t *b, const sl_usage_t *u)
{
    sl_buf_printf(b,
                  "\"usage\":{\"prompt_tokens\":%" PRId64 ",\"completion_tokens\":%" PRId64
                  ",\"total_tokens\":%" PRId64,
                  u->prompt, u->completion, add_pinned(u->prompt, u->completion));
    if (u->cached >= 0)
        sl_buf_printf(b, ",\"prompt_tokens_details\":{\"cached_tokens\":%" PRId64 "}", u->cached);
    sl_buf_putc(b, '}');
}

void sl_oai_encode_error_event(sl_buf_t *b, const sl_error_info_t *e)
{
    sl_buf_puts(b, "data: {\"error\":{");
    put_str(b, "message", e->message, strlen(e->message));
    sl_buf_putc(b, ',');
    put_str(b, "type", e->type ? e->type : "server_error",
            strlen(e->type ? e->type : "server_error"));
    sl_buf_puts(b, ",\"param\":null,\"code\":");
    if (e->code) {
        sl_buf_putc(b, '"');
        sl_buf_json_escape(b, e->code, strlen(e->code));
        sl_buf_puts(b, "\"}}\n\n");
    } else {
        sl_buf_puts(b, "null}}\n\n");
    }
}

void sl_oai_encode_usage_chunk(sl_buf_t *b, const sl_oai_meta_t *m, const sl_usage_t *u)
{
    chunk_begin(b, m);
    sl_buf_puts(b, "[],"); /* clients require an empty array here, not a missing key */
    sl_oai_encode_usage(b, u);
    sl_buf_puts(b, "}\n\n");
}
