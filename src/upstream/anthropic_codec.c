/* OpenAI Chat Completions → Anthropic Messages requests, and Messages answers → canonical
 * events. Pure: JSON in, JSON or events out. */
#include "upstream/anthropic_codec.h"

#include <string.h>

#include "core/alloc.h"
#include "core/buf.h"

/* ---- small helpers ---- */

static const char *str(json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

static bool is(const char *s, const char *lit)
{
    return s && strcmp(s, lit) == 0;
}

static sl_event_t event(sl_event_type_t type)
{
    sl_event_t ev;
    memset(&ev, 0, sizeof ev);
    ev.type = type;
    ev.usage.cached = -1;
    ev.error.retry_after = -1;
    return ev;
}

/* ---- request: content ---- */

/* An image_url part: a data: URL carries the bytes (base64 block), any other URL is fetched
 * by Anthropic (url block). */
static json_t *image_block(const char *url)
{
    const char *comma = strchr(url, ',');
    const char *semi = comma ? memchr(url, ';', (size_t)(comma - url)) : NULL;
    json_t *src;
    if (strncmp(url, "data:", 5) == 0 && semi && strncmp(semi, ";base64,", 8) == 0)
        src = json_pack("{s:s, s:s%, s:s}", "type", "base64", "media_type", url + 5,
                        (size_t)(semi - url - 5), "data", comma + 1);
    else
        src = json_pack("{s:s, s:s}", "type", "url", "url", url);
    return json_pack("{s:s, s:o}", "type", "image", "source", src);
}

/* One OpenAI content part as an Anthropic block, or NULL for parts Anthropic has no use for
 * (empty text is rejected by Anthropic, so it is dropped too). */
static json_t *part_block(json_t *part)
{
    const char *type = str(part, "type");
    json_t *text = json_object_get(part, "text");
    if (is(type, "text") && json_string_length(text) > 0)
        return json_pack("{s:s, s:O}", "type", "text", "text", text);
    if (is(type, "image_url")) {
        json_t *iu = json_object_get(part, "image_url");
        const char *url = json_is_string(iu) ? json_string_value(iu) : str(iu, "url");
        if (url)
            return image_block(url);
    }
    return NULL;
}

/* Appends the blocks of an OpenAI content value (a string or an array of parts). */
static void add_blocks(json_t *blocks, json_t *content)
{
    if (json_is_string(content) && json_string_length(content) > 0) {
        json_array_append_new(blocks, json_pack("{s:s, s:O}", "type", "text", "text", content));
        return;
    }
    size_t i;
    json_t *part, *b;
    json_array_foreach (content, i, part) {
        if ((b = part_block(part)))
            json_array_append_new(blocks, b);
    }
}

/* A message's content in block form (new array); a string becomes one text block. */
static json_t *as_blocks(json_t *content)
{
    if (json_is_array(content))
        return json_copy(content); /* shallow: the blocks themselves are shared */
    json_t *blocks = json_array();
    add_blocks(blocks, content);
    return blocks;
}

/* Appends a message (content: a non-empty string or block array, reference stolen). When the
 * role repeats, the content joins the previous message: OpenAI sends one `tool` message per
 * result, Anthropic wants the results of one turn in one user message. */
static void push_message(json_t *msgs, const char *role, json_t *content)
{
    json_t *last = json_array_get(msgs, json_array_size(msgs) - 1);
    if (last && is(str(last, "role"), role)) {
        json_t *merged = as_blocks(json_object_get(last, "content"));
        json_t *more = as_blocks(content);
        json_array_extend(merged, more);
        json_decref(more);
        json_decref(content);
        json_object_set_new(last, "content", merged);
        return;
    }
    json_array_append_new(msgs, json_pack("{s:s, s:o}", "role", role, "content", content));
}

/* A user or plain assistant message; empty content is skipped (Anthropic rejects it). */
static void add_plain(json_t *msgs, const char *role, json_t *content)
{
    if (json_is_string(content)) {
        if (json_string_length(content) > 0)
            push_message(msgs, role, json_incref(content));
        return;
    }
    json_t *blocks = json_array();
    add_blocks(blocks, content);
    if (json_array_size(blocks) > 0)
        push_message(msgs, role, blocks);
    else
        json_decref(blocks);
}

/* OpenAI carries tool arguments as JSON text, Anthropic as an object: text that does not
 * parse to an object becomes {} rather than a request Anthropic would refuse. */
static json_t *tool_use_block(json_t *call)
{
    json_t *fn = json_object_get(call, "function");
    const char *id = str(call, "id"), *name = str(fn, "name"), *args = str(fn, "arguments");
    json_t *input = args ? json_loads(args, 0, NULL) : NULL;
    if (!json_is_object(input)) {
        json_decref(input);
        input = json_object();
    }
    return json_pack("{s:s, s:s, s:s, s:o}", "type", "tool_use", "id", id ? id : "", "name",
                     name ? name : "", "input", input);
}

static void add_assistant(json_t *msgs, json_t *m)
{
    json_t *calls = json_object_get(m, "tool_calls");
    if (json_array_size(calls) == 0) {
        add_plain(msgs, "assistant", json_object_get(m, "content"));
        return;
    }
    json_t *blocks = json_array();
    add_blocks(blocks, json_object_get(m, "content"));
    size_t i;
    json_t *call;
    json_array_foreach (calls, i, call)
        json_array_append_new(blocks, tool_use_block(call));
    push_message(msgs, "assistant", blocks);
}

/* A `tool` message answers one tool_use: it becomes a tool_result block in a user turn. */
static void add_tool_result(json_t *msgs, json_t *m)
{
    const char *id = str(m, "tool_call_id");
    json_t *content = json_object_get(m, "content");
    json_t *res = json_pack("{s:s, s:s}", "type", "tool_result", "tool_use_id", id ? id : "");
    if (json_is_string(content)) {
        json_object_set(res, "content", content);
    } else if (json_is_array(content)) {
        json_t *blocks = json_array();
        add_blocks(blocks, content);
        json_object_set_new(res, "content", blocks);
    }
    push_message(msgs, "user", json_pack("[o]", res));
}

/* System and developer text joined into one top-level `system` (Anthropic has no system role
 * inside messages). */
static void add_system(sl_buf_t *sys, json_t *content)
{
    json_t *blocks = as_blocks(content);
    size_t i;
    json_t *b;
    json_array_foreach (blocks, i, b) {
        const char *text = str(b, "text");
        if (!is(str(b, "type"), "text") || !text || !*text)
            continue;
        if (sys->len)
            sl_buf_puts(sys, "\n\n");
        sl_buf_puts(sys, text);
    }
    json_decref(blocks);
}

static void translate_messages(json_t *out, json_t *messages)
{
    json_t *msgs = json_array();
    sl_buf_t sys;
    sl_buf_init(&sys);
    size_t i;
    json_t *m;
    json_array_foreach (messages, i, m) {
        const char *role = str(m, "role");
        if (is(role, "system") || is(role, "developer"))
            add_system(&sys, json_object_get(m, "content"));
        else if (is(role, "user"))
            add_plain(msgs, "user", json_object_get(m, "content"));
        else if (is(role, "assistant"))
            add_assistant(msgs, m);
        else if (is(role, "tool"))
            add_tool_result(msgs, m);
    }
    if (sys.len)
        json_object_set_new(out, "system", json_stringn(sys.data, sys.len));
    json_object_set_new(out, "messages", msgs);
    sl_buf_dispose(&sys);
}

/* ---- request: parameters ---- */

static json_t *tool_def(json_t *t)
{
    json_t *fn = json_object_get(t, "function");
    const char *name = str(fn, "name");
    if (!name || (str(t, "type") && !is(str(t, "type"), "function")))
        return NULL;
    json_t *d = json_pack("{s:s}", "name", name);
    json_t *desc = json_object_get(fn, "description");
    if (json_is_string(desc))
        json_object_set(d, "description", desc);
    /* input_schema is required and must be an object schema; OpenAI allows it left out. */
    json_t *params = json_object_get(fn, "parameters");
    json_t *schema = json_is_object(params) ? json_copy(params) : json_object();
    if (!json_object_get(schema, "type"))
        json_object_set_new(schema, "type", json_string("object"));
    json_object_set_new(d, "input_schema", schema);
    return d;
}

static json_t *tool_choice(json_t *tc)
{
    const char *s = json_string_value(tc);
    if (is(s, "auto"))
        return json_pack("{s:s}", "type", "auto");
    if (is(s, "required"))
        return json_pack("{s:s}", "type", "any");
    if (is(s, "none"))
        return json_pack("{s:s}", "type", "none");
    const char *name = str(json_object_get(tc, "function"), "name");
    if (is(str(tc, "type"), "function") && name)
        return json_pack("{s:s, s:s}", "type", "tool", "name", name);
    return NULL;
}

/* tools and tool_choice; parallel_tool_calls: false is Anthropic's disable_parallel_tool_use,
 * which lives inside tool_choice. A choice without tools is dropped (Anthropic refuses it). */
static void translate_tools(json_t *out, json_t *oai)
{
    json_t *tools = json_array();
    size_t i;
    json_t *t, *d;
    json_array_foreach (json_object_get(oai, "tools"), i, t) {
        if ((d = tool_def(t)))
            json_array_append_new(tools, d);
    }
    if (json_array_size(tools) == 0) {
        json_decref(tools);
        return;
    }
    json_object_set_new(out, "tools", tools);
    json_t *choice = tool_choice(json_object_get(oai, "tool_choice"));
    if (json_is_false(json_object_get(oai, "parallel_tool_calls"))) {
        if (!choice)
            choice = json_pack("{s:s}", "type", "auto");
        if (!is(str(choice, "type"), "none"))
            json_object_set_new(choice, "disable_parallel_tool_use", json_true());
    }
    if (choice)
        json_object_set_new(out, "tool_choice", choice);
}

static void translate_stop(json_t *out, json_t *stop)
{
    json_t *seqs = json_array();
    size_t i;
    json_t *s;
    if (json_string_length(stop) > 0)
        json_array_append(seqs, stop);
    json_array_foreach (stop, i, s) {
        if (json_string_length(s) > 0)
            json_array_append(seqs, s);
    }
    if (json_array_size(seqs) > 0)
        json_object_set_new(out, "stop_sequences", seqs);
    else
        json_decref(seqs);
}

static void translate_sampling(json_t *out, json_t *oai, uint64_t max_tokens)
{
    json_t *mt = json_object_get(oai, "max_tokens");
    if (!json_is_integer(mt) || json_integer_value(mt) <= 0)
        mt = json_object_get(oai, "max_completion_tokens");
    if (json_is_integer(mt) && json_integer_value(mt) > 0)
        json_object_set(out, "max_tokens", mt);
    else
        json_object_set_new(out, "max_tokens", json_integer((json_int_t)max_tokens));
    /* OpenAI's temperature goes to 2, Anthropic's to 1: clamp rather than fail the request. */
    json_t *temp = json_object_get(oai, "temperature");
    if (json_is_number(temp)) {
        double v = json_number_value(temp);
        json_object_set_new(out, "temperature", json_real(v > 1.0 ? 1.0 : v < 0 ? 0 : v));
    }
    json_t *top_p = json_object_get(oai, "top_p");
    if (json_is_number(top_p))
        json_object_set(out, "top_p", top_p);
    translate_stop(out, json_object_get(oai, "stop"));
}

json_t *sl_anth_request(json_t *oai, const char *model, bool stream, uint64_t max_tokens)
{
    json_t *out = json_object();
    json_object_set_new(out, "model", json_string(model ? model : ""));
    translate_messages(out, json_object_get(oai, "messages"));
    translate_sampling(out, oai, max_tokens);
    translate_tools(out, oai);
    json_t *user = json_object_get(oai, "user");
    if (json_string_length(user) > 0)
        json_object_set_new(out, "metadata", json_pack("{s:O}", "user_id", user));
    json_object_set_new(out, "stream", json_boolean(stream));
    return out;
}

/* ---- answers: shared pieces ---- */

typedef struct sink {
    sl_anth_emit_cb emit;
    void *ud;
} sink_t;

static const char *finish_reason(const char *stop_reason)
{
    if (is(stop_reason, "max_tokens") || is(stop_reason, "model_context_window_exceeded"))
        return "length";
    if (is(stop_reason, "tool_use"))
        return "tool_calls";
    if (is(stop_reason, "refusal"))
        return "content_filter";
    return "stop"; /* end_turn, stop_sequence, pause_turn, and whatever comes next */
}

static void read_usage(sl_anth_dec_t *d, json_t *u)
{
    json_t *v;
    if (json_is_integer(v = json_object_get(u, "input_tokens")))
        d->input = json_integer_value(v);
    if (json_is_integer(v = json_object_get(u, "cache_creation_input_tokens")))
        d->cache_write = json_integer_value(v);
    if (json_is_integer(v = json_object_get(u, "cache_read_input_tokens")))
        d->cached = json_integer_value(v);
    if (json_is_integer(v = json_object_get(u, "output_tokens")))
        d->output = json_integer_value(v);
}

/* The counts are the upstream's numbers: a sum past int64 is pinned, never overflowed. */
static int64_t add_pinned(int64_t a, int64_t b)
{
    int64_t sum;
    if (__builtin_add_overflow(a, b, &sum))
        return b > 0 ? INT64_MAX : INT64_MIN;
    return sum;
}

/* FINISH, USAGE, END: the tail of every answer that finished. Anthropic counts cached prompt
 * tokens apart from input_tokens; OpenAI's prompt_tokens includes them. */
static void emit_tail(const sl_anth_dec_t *d, const char *finish, sink_t *s)
{
    sl_event_t ev = event(SL_EV_FINISH);
    ev.finish_reason = finish ? finish : "stop";
    s->emit(s->ud, &ev);
    ev = event(SL_EV_USAGE);
    ev.usage.prompt =
        add_pinned(add_pinned(d->input, d->cache_write), d->cached > 0 ? d->cached : 0);
    ev.usage.completion = d->output;
    ev.usage.cached = d->cached;
    s->emit(s->ud, &ev);
    ev = event(SL_EV_END);
    s->emit(s->ud, &ev);
}

static void emit_tool(sink_t *s, int index, const char *id, const char *name, const char *args)
{
    sl_event_t ev = event(SL_EV_DELTA);
    ev.tool.present = true;
    ev.tool.index = index;
    ev.tool.id = id;
    ev.tool.name = name;
    ev.tool.args = args ? args : "";
    ev.tool.args_len = strlen(ev.tool.args);
    s->emit(s->ud, &ev);
}

/* An Anthropic error object → ERROR. http is the answer's status, 0 for an error event inside
 * a 200 stream (answered as 502: the provider failed mid-answer). Overloaded is 529 at
 * Anthropic, a status OpenAI clients do not know: it becomes 503, which they retry. */
static void emit_error(sink_t *s, int http, json_t *err, int retry_after)
{
    const char *atype = str(err, "type"), *msg = str(err, "message");
    int status = http ? http : 502;
    bool overloaded = http == 529 || is(atype, "overloaded_error");
    sl_event_t ev = event(SL_EV_ERROR);
    ev.error.status = overloaded ? 503 : status;
    ev.error.code = overloaded ? "overloaded" : atype;
    if (overloaded || is(atype, "api_error") || (!atype && status >= 500))
        ev.error.type = "server_error";
    else if (status == 429)
        ev.error.type = "rate_limit_error";
    else
        ev.error.type = atype ? atype : "invalid_request_error";
    ev.error.message = msg          ? msg
                       : overloaded ? "the upstream provider is overloaded"
                                    : "the upstream provider returned an error";
    ev.error.retry_after = retry_after;
    s->emit(s->ud, &ev);
}

static void emit_bad(sink_t *s, const char *code, const char *message)
{
    sl_event_t ev = event(SL_EV_ERROR);
    ev.error.status = 502;
    ev.error.type = "server_error";
    ev.error.code = code;
    ev.error.message = message;
    s->emit(s->ud, &ev);
}

/* ---- answers: the stream ---- */

void sl_anth_dec_init(sl_anth_dec_t *d, int64_t created)
{
    memset(d, 0, sizeof *d);
    d->created = created;
    d->cached = -1;
    d->tool_block = -1;
}

/* START, then the first delta with role "assistant": OpenAI clients require the role on the
 * first chunk (DESIGN §3, "What real clients require"). */
static sl_anth_status_t on_message_start(sl_anth_dec_t *d, json_t *root, sink_t *s)
{
    json_t *msg = json_object_get(root, "message");
    read_usage(d, json_object_get(msg, "usage"));
    if (d->started)
        return SL_ANTH_MORE;
    d->started = true;
    sl_event_t ev = event(SL_EV_START);
    ev.id = str(msg, "id");
    ev.model = str(msg, "model");
    ev.created = d->created;
    s->emit(s->ud, &ev);
    ev = event(SL_EV_DELTA);
    ev.role = "assistant";
    ev.content = "";
    s->emit(s->ud, &ev);
    return SL_ANTH_MORE;
}

/* A tool_use block opens a tool call: OpenAI numbers them 0, 1, ... across the answer, while
 * Anthropic's index counts every block (text included). */
static sl_anth_status_t on_block_start(sl_anth_dec_t *d, json_t *root, sink_t *s)
{
    json_t *cb = json_object_get(root, "content_block");
    const char *type = str(cb, "type");
    json_t *text = json_object_get(cb, "text");
    if (is(type, "text") && json_string_length(text) > 0) {
        sl_event_t ev = event(SL_EV_DELTA);
        ev.content = json_string_value(text);
        ev.content_len = json_string_length(text);
        s->emit(s->ud, &ev);
    } else if (is(type, "tool_use")) {
        d->tool_block = (int)json_integer_value(json_object_get(root, "index"));
        json_t *input = json_object_get(cb, "input");
        /* Streams open with input {} and send the JSON as deltas; a non-empty input here is
         * the whole of it. */
        char *args = json_object_size(input) ? json_dumps(input, JSON_COMPACT) : NULL;
        emit_tool(s, d->ntools++, str(cb, "id"), str(cb, "name"), args);
        sl_free(args); /* jansson allocates through sl_malloc (main sets the hooks) */
    }
    return SL_ANTH_MORE;
}

/* Relies on Anthropic's order: a block's deltas come between its start and its stop, and
 * blocks do not interleave, so the open tool_use block is the only one input JSON goes to. */
static sl_anth_status_t on_block_delta(sl_anth_dec_t *d, json_t *root, sink_t *s)
{
    json_t *delta = json_object_get(root, "delta");
    const char *type = str(delta, "type");
    int index = (int)json_integer_value(json_object_get(root, "index"));
    if (is(type, "text_delta")) {
        json_t *text = json_object_get(delta, "text");
        if (json_string_length(text) == 0)
            return SL_ANTH_MORE;
        sl_event_t ev = event(SL_EV_DELTA);
        ev.content = json_string_value(text);
        ev.content_len = json_string_length(text);
        s->emit(s->ud, &ev);
    } else if (is(type, "input_json_delta") && index == d->tool_block && d->ntools > 0) {
        const char *part = str(delta, "partial_json");
        if (part && *part)
            emit_tool(s, d->ntools - 1, NULL, NULL, part);
    }
    return SL_ANTH_MORE; /* thinking, signature and citation deltas have no OpenAI form */
}

static sl_anth_status_t on_block_stop(sl_anth_dec_t *d, json_t *root, sink_t *s)
{
    if (json_integer_value(json_object_get(root, "index")) == d->tool_block)
        d->tool_block = -1;
    return SL_ANTH_MORE;
}

static sl_anth_status_t on_message_delta(sl_anth_dec_t *d, json_t *root, sink_t *s)
{
    const char *stop = str(json_object_get(root, "delta"), "stop_reason");
    if (stop)
        d->finish = finish_reason(stop);
    read_usage(d, json_object_get(root, "usage"));
    return SL_ANTH_MORE;
}

static sl_anth_status_t on_message_stop(sl_anth_dec_t *d, json_t *root, sink_t *s)
{
    emit_tail(d, d->finish, s);
    return SL_ANTH_DONE;
}

static sl_anth_status_t on_error(sl_anth_dec_t *d, json_t *root, sink_t *s)
{
    emit_error(s, 0, json_object_get(root, "error"), -1);
    return SL_ANTH_FAILED;
}

typedef sl_anth_status_t (*handler_fn)(sl_anth_dec_t *d, json_t *root, sink_t *s);

static const struct {
    const char *type;
    handler_fn fn;
} handlers[] = {
    {"content_block_delta", on_block_delta}, /* by far the most frequent: first */
    {"content_block_start", on_block_start}, {"content_block_stop", on_block_stop},
    {"message_start", on_message_start},     {"message_delta", on_message_delta},
    {"message_stop", on_message_stop},       {"error", on_error},
};

sl_anth_status_t sl_anth_decode_event(sl_anth_dec_t *d, const char *event_name, const char *data,
                                      size_t len, sl_anth_emit_cb emit, void *ud)
{
    if (is(event_name, "ping"))
        return SL_ANTH_MORE; /* keepalive: nothing to parse */
    sink_t s = {emit, ud};
    json_t *root = json_loadb(data, len, 0, NULL);
    if (!json_is_object(root)) {
        json_decref(root);
        emit_bad(&s, "upstream_bad_chunk", "the upstream sent a stream event that is not JSON");
        return SL_ANTH_FAILED;
    }
    /* The payload names its type; the SSE event name is the fallback. */
    const char *type = str(root, "type");
    if (!type)
        type = event_name;
    sl_anth_status_t st = SL_ANTH_MORE; /* ping and unknown events: ignored, as documented */
    for (size_t i = 0; i < sizeof handlers / sizeof handlers[0]; i++) {
        if (is(type, handlers[i].type)) {
            st = handlers[i].fn(d, root, &s);
            break;
        }
    }
    json_decref(root);
    return st;
}

/* ---- answers: whole message and error bodies ---- */

/* DELTA with the role and every text block joined (they are consecutive pieces of one
 * answer, split only where citations attach), then one DELTA per tool_use block. */
static void emit_content(json_t *content, sink_t *s)
{
    sl_buf_t text;
    sl_buf_init(&text);
    size_t i;
    json_t *b;
    json_array_foreach (content, i, b) {
        if (is(str(b, "type"), "text") && str(b, "text"))
            sl_buf_puts(&text, str(b, "text"));
    }
    sl_event_t ev = event(SL_EV_DELTA);
    ev.role = "assistant";
    ev.content = text.data ? text.data : "";
    ev.content_len = text.len;
    s->emit(s->ud, &ev);
    sl_buf_dispose(&text);
    int ntools = 0;
    json_array_foreach (content, i, b) {
        if (!is(str(b, "type"), "tool_use"))
            continue;
        json_t *input = json_object_get(b, "input");
        char *args = input ? json_dumps(input, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
        emit_tool(s, ntools++, str(b, "id"), str(b, "name"), args ? args : "{}");
        sl_free(args);
    }
}

sl_anth_status_t sl_anth_decode_message(int64_t created, const char *body, size_t len,
                                        sl_anth_emit_cb emit, void *ud)
{
    sink_t s = {emit, ud};
    json_t *root = json_loadb(body, len, 0, NULL);
    json_t *content = json_object_get(root, "content");
    sl_anth_status_t st = SL_ANTH_DONE;
    if (is(str(root, "type"), "error")) {
        emit_error(&s, 0, json_object_get(root, "error"), -1);
        st = SL_ANTH_FAILED;
    } else if (!json_is_array(content)) {
        emit_bad(&s, "upstream_bad_response", "the upstream answer is not an Anthropic message");
        st = SL_ANTH_FAILED;
    } else {
        sl_anth_dec_t d;
        sl_anth_dec_init(&d, created);
        read_usage(&d, json_object_get(root, "usage"));
        sl_event_t ev = event(SL_EV_START);
        ev.id = str(root, "id");
        ev.model = str(root, "model");
        ev.created = created;
        emit(ud, &ev);
        emit_content(content, &s);
        emit_tail(&d, finish_reason(str(root, "stop_reason")), &s);
    }
    json_decref(root);
    return st;
}

void sl_anth_decode_error(int status, const char *body, size_t len, int retry_after,
                          sl_anth_emit_cb emit, void *ud)
{
    sink_t s = {emit, ud};
    json_t *root = json_loadb(body, len, 0, NULL);
    emit_error(&s, status, json_object_get(root, "error"), retry_after);
    json_decref(root);
}
