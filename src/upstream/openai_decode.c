/* OpenAI JSON → canonical events. */
#include "upstream/openai_decode.h"

#include <string.h>

#include "codec/json_scan.h"
#include "core/alloc.h"

static sl_event_t *push(sl_oai_chunk_t *c, sl_event_type_t type)
{
    if (!c->events) {
        c->events = c->inline_events;
        c->cap = sizeof c->inline_events / sizeof c->inline_events[0];
    }
    if (c->nevents == c->cap) {
        sl_event_t *grown = sl_malloc(c->cap * 2 * sizeof *grown);
        memcpy(grown, c->events, c->nevents * sizeof *grown);
        if (c->events != c->inline_events)
            sl_free(c->events);
        c->events = grown;
        c->cap *= 2;
    }
    sl_event_t *ev = &c->events[c->nevents++];
    memset(ev, 0, sizeof *ev);
    ev->type = type;
    ev->usage.cached = -1;
    ev->error.retry_after = -1;
    return ev;
}

/* Only the header: the inline events are cleared one by one as they are pushed. */
static void chunk_init(sl_oai_chunk_t *out)
{
    out->events = NULL;
    out->nevents = out->cap = 0;
    out->root = NULL;
    out->finish = out->error = false;
}

void sl_oai_chunk_dispose(sl_oai_chunk_t *c)
{
    if (c->events != c->inline_events)
        sl_free(c->events);
    json_decref(c->root);
    chunk_init(c);
}

static const char *str(json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

/* The value of a key starts at p (after the key's closing quote): skip ':' and blanks. */
static char value_start(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == ':' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p < end ? *p : '\0';
}

/* One pass over a chunk finds the three keys that decide something: a non-null "usage", an
 * "error", a non-null "finish_reason" (the hot path of every token: touch each byte once). */
/* Notes which of the deciding keys a string starting at q (its opening quote) would be. */
static void check_key(const char *q, const char *end, bool *usage, bool *error, bool *finish,
                      bool *no_choices)
{
    size_t left = (size_t)(end - q);
    if (left < 8)
        return;
    if (q[1] == 'u' && memcmp(q, "\"usage\"", 7) == 0) {
        *usage |= value_start(q + 7, end) == '{';
    } else if (q[1] == 'e' && memcmp(q, "\"error\"", 7) == 0) {
        char v = value_start(q + 7, end);
        *error |= v == '{' || v == '"';
    } else if (q[1] == 'f' && left > 15 && memcmp(q, "\"finish_reason\"", 15) == 0) {
        *finish |= value_start(q + 15, end) == '"';
    } else if (q[1] == 'c' && left > 9 && memcmp(q, "\"choices\"", 9) == 0 &&
               value_start(q + 9, end) == '[') {
        const char *b = memchr(q + 9, '[', (size_t)(end - q - 9)) + 1;
        *no_choices |= value_start(b, end) == ']';
    }
}

/* The hot path of every token: each quote may open a key (a key's closing quote is never an
 * escaped one, so text quoted inside a value does not match). memchr finds the quotes: a
 * chunk's bytes are mostly ids, names and content, skipped many at a time. */
static void scan_keys(const char *d, size_t n, bool *usage, bool *error, bool *finish,
                      bool *no_choices)
{
    const char *end = d + n, *p = d, *q;
    *usage = *error = *finish = *no_choices = false;
    while (p < end && (q = memchr(p, '"', (size_t)(end - p))) != NULL) {
        check_key(q, end, usage, error, finish, no_choices);
        p = q + 1;
    }
}

static void read_usage(json_t *u, sl_event_t *ev)
{
    ev->usage.prompt = json_integer_value(json_object_get(u, "prompt_tokens"));
    ev->usage.completion = json_integer_value(json_object_get(u, "completion_tokens"));
    json_t *cached = json_object_get(json_object_get(u, "prompt_tokens_details"), "cached_tokens");
    ev->usage.cached = json_is_integer(cached) ? json_integer_value(cached) : -1;
}

static void read_error(json_t *err, int status, sl_event_t *ev)
{
    ev->error.status = status;
    ev->error.message = str(err, "message");
    ev->error.type = str(err, "type");
    ev->error.code = str(err, "code");
    ev->error.param = str(err, "param");
    if (!ev->error.message)
        ev->error.message = json_string_value(err); /* {"error": "text"} */
    if (!ev->error.message)
        ev->error.message = "the upstream provider returned an error";
    if (!ev->error.type)
        ev->error.type = status == 429   ? "rate_limit_error"
                         : status >= 500 ? "server_error"
                                         : "invalid_request_error";
}

static void decode_start(sl_oai_chunk_t *c, json_t *root)
{
    sl_event_t *ev = push(c, SL_EV_START);
    ev->id = str(root, "id");
    ev->model = str(root, "model");
    ev->created = json_integer_value(json_object_get(root, "created"));
}

/* The parsed form of one choice's delta (or message): role, content, tool calls, finish. */
static void decode_choice(sl_oai_chunk_t *c, json_t *choice, const char *delta_key)
{
    int index = (int)json_integer_value(json_object_get(choice, "index"));
    json_t *d = json_object_get(choice, delta_key);
    const char *finish = str(choice, "finish_reason");
    sl_event_t *ev = push(c, SL_EV_DELTA);
    ev->choice = index;
    ev->role = str(d, "role");
    json_t *content = json_object_get(d, "content");
    ev->content = json_string_value(content);
    ev->content_len = json_string_length(content);
    json_t *tools = json_object_get(d, "tool_calls");
    size_t i;
    json_t *t;
    json_array_foreach (tools, i, t) {
        json_t *fn = json_object_get(t, "function");
        sl_event_t *tv = push(c, SL_EV_DELTA);
        tv->choice = index;
        tv->tool.present = true;
        tv->tool.index = json_is_integer(json_object_get(t, "index"))
                             ? (int)json_integer_value(json_object_get(t, "index"))
                             : (int)i;
        tv->tool.id = str(t, "id");
        tv->tool.name = str(fn, "name");
        json_t *args = json_object_get(fn, "arguments");
        tv->tool.args = json_string_value(args);
        tv->tool.args_len = json_string_length(args);
    }
    if (finish) {
        sl_event_t *fv = push(c, SL_EV_FINISH);
        fv->choice = index;
        fv->finish_reason = finish;
    }
}

static void scan_usage(const sl_jval_t *u, sl_event_t *ev);

/* A passthrough chunk that carries usage (the last of a stream, as a rule), read without a
 * tree: the same events as the jansson path below. False, with nothing pushed, for anything
 * that path must judge (not valid, not an object, an "error" member). */
static bool usage_raw(const char *data, size_t len, sl_oai_chunk_t *out)
{
    enum { CHOICES, USAGE, ERROR, N };
    static const char *const keys[N] = {"choices", "usage", "error"};
    sl_jval_t f[N], first;
    if (!sl_json_valid_get(data, len, keys, f, N) || sl_json_root(data, len).type != '{' ||
        f[ERROR].type)
        return false;
    size_t at = 0;
    bool choices = f[CHOICES].type == '[' && sl_json_next(&f[CHOICES], &at, NULL, &first);
    bool usage = f[USAGE].type == '{';
    if (choices || !usage) {
        sl_event_t *ev = push(out, SL_EV_DELTA);
        ev->raw = data;
        ev->raw_len = len;
        ev->raw_has_usage = usage;
    }
    if (usage) {
        sl_event_t *ev = push(out, SL_EV_USAGE);
        scan_usage(&f[USAGE], ev);
        if (!choices) {
            ev->raw = data; /* the usage-only chunk, forwarded if the client asked for it */
            ev->raw_len = len;
        }
    }
    return true;
}

void sl_oai_decode_chunk(const char *data, size_t len, bool want_raw, bool first,
                         sl_oai_chunk_t *out)
{
    chunk_init(out);
    bool has_usage, has_error, no_choices;
    scan_keys(data, len, &has_usage, &has_error, &out->finish, &no_choices);
    if (no_choices && !has_usage && !has_error)
        return; /* Azure's prompt_filter_results frame: nothing for the client, and SDKs that
                   read choices[0] of every chunk break on it */
    if (want_raw && !has_usage && !has_error) {
        sl_event_t *ev = push(out, SL_EV_DELTA); /* the fast path: forward bytes, parse nothing */
        ev->raw = data;
        ev->raw_len = len;
        return;
    }
    if (want_raw && !has_error && usage_raw(data, len, out))
        return;
    out->root = json_loadb(data, len, 0, NULL);
    json_t *root = out->root;
    if (!json_is_object(root)) {
        out->error = true;
        sl_event_t *ev = push(out, SL_EV_ERROR);
        ev->error.status = 502;
        ev->error.type = "server_error";
        ev->error.code = "upstream_bad_chunk";
        ev->error.message = "the upstream sent a stream chunk that is not a JSON object";
        return;
    }
    json_t *err = json_object_get(root, "error");
    if (err && !json_object_get(root, "choices")) {
        out->error = true;
        read_error(err, 502, push(out, SL_EV_ERROR));
        return;
    }
    json_t *choices = json_object_get(root, "choices");
    json_t *usage = json_object_get(root, "usage");
    if (want_raw) {
        if (json_array_size(choices) > 0 || !json_is_object(usage)) {
            sl_event_t *ev = push(out, SL_EV_DELTA);
            ev->raw = data;
            ev->raw_len = len;
            ev->raw_has_usage = json_is_object(usage);
        }
    } else {
        if (first)
            decode_start(out, root);
        size_t i;
        json_t *ch;
        json_array_foreach (choices, i, ch)
            decode_choice(out, ch, "delta");
    }
    if (json_is_object(usage)) {
        sl_event_t *ev = push(out, SL_EV_USAGE);
        read_usage(usage, ev);
        if (want_raw && json_array_size(choices) == 0) {
            ev->raw = data; /* the usage-only chunk, forwarded if the client asked for it */
            ev->raw_len = len;
        }
    }
}

/* The value after "key": in d, parsed alone (the rest of the document is not touched). */
static json_t *value_of(const char *d, size_t n, const char *key)
{
    size_t kl = strlen(key);
    const char *end = d + n;
    for (const char *p = d; (p = memmem(p, (size_t)(end - p), key, kl)); p += kl) {
        const char *q = p + kl;
        while (q < end && (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r'))
            q++;
        if (q >= end || *q != ':')
            continue;
        q++;
        while (q < end && (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r'))
            q++;
        if (q < end && *q == '{')
            return json_loadb(q, (size_t)(end - q), JSON_DISABLE_EOF_CHECK, NULL);
    }
    return NULL;
}

/* Passthrough of a whole answer: it goes to the client as it is; only usage is read. */
/* read_usage on validated text, without a tree: jansson's typing (a non-integer count is 0). */
static void scan_usage(const sl_jval_t *u, sl_event_t *ev)
{
    enum { PROMPT, COMPLETION, DETAILS, N };
    static const char *const keys[N] = {"prompt_tokens", "completion_tokens",
                                        "prompt_tokens_details"};
    sl_jval_t f[N], cached;
    sl_json_get_all(u, keys, f, N);
    int64_t v = 0;
    ev->usage.prompt = sl_json_int(&f[PROMPT], &v) ? v : 0;
    ev->usage.completion = sl_json_int(&f[COMPLETION], &v) ? v : 0;
    ev->usage.cached =
        sl_json_get(&f[DETAILS], "cached_tokens", &cached) && sl_json_int(&cached, &v) ? v : -1;
}

static void completion_raw(const char *data, size_t len, sl_oai_chunk_t *out)
{
    const char *p = data, *end = data + len;
    while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
        p++;
    if (p == end || *p != '{') {
        sl_event_t *ev = push(out, SL_EV_ERROR);
        ev->error.status = 502;
        ev->error.type = "server_error";
        ev->error.code = "upstream_bad_response";
        ev->error.message = "the upstream answer is not a chat completion";
        return;
    }
    static const char *const usage_key[] = {"usage"};
    sl_jval_t u;
    if (sl_json_valid_get(data, len, usage_key, &u, 1)) { /* the usual case: one pass, no tree */
        if (u.type == '{')
            scan_usage(&u, push(out, SL_EV_USAGE));
    } else {
        out->root = value_of(data, len, "\"usage\""); /* passed on as it came, usage if any */
        if (json_is_object(out->root))
            read_usage(out->root, push(out, SL_EV_USAGE));
    }
    sl_event_t *end_ev = push(out, SL_EV_END);
    end_ev->raw = data;
    end_ev->raw_len = len;
}

void sl_oai_decode_completion(const char *data, size_t len, bool want_raw, sl_oai_chunk_t *out)
{
    chunk_init(out);
    if (want_raw) {
        completion_raw(data, len, out);
        return;
    }
    out->root = json_loadb(data, len, 0, NULL);
    json_t *root = out->root;
    json_t *choices = json_object_get(root, "choices");
    if (!json_is_object(root) || !json_is_array(choices)) {
        sl_event_t *ev = push(out, SL_EV_ERROR);
        ev->error.status = 502;
        ev->error.type = "server_error";
        ev->error.code = "upstream_bad_response";
        ev->error.message = "the upstream answer is not a chat completion";
        return;
    }
    decode_start(out, root);
    if (!want_raw) {
        size_t i;
        json_t *ch;
        json_array_foreach (choices, i, ch)
            decode_choice(out, ch, "message");
    }
    json_t *usage = json_object_get(root, "usage");
    if (json_is_object(usage))
        read_usage(usage, push(out, SL_EV_USAGE));
    sl_event_t *end = push(out, SL_EV_END);
    end->raw = data;
    end->raw_len = len;
}

void sl_oai_decode_error(const char *body, size_t len, int status, int retry_after,
                         sl_oai_chunk_t *out)
{
    chunk_init(out);
    out->error = true;
    out->root = json_loadb(body, len, 0, NULL);
    sl_event_t *ev = push(out, SL_EV_ERROR);
    json_t *err = json_object_get(out->root, "error");
    if (err) {
        read_error(err, status, ev);
    } else {
        read_error(NULL, status, ev);
        json_t *detail = json_object_get(out->root, "detail"); /* FastAPI-style servers */
        if (json_is_string(detail))
            ev->error.message = json_string_value(detail);
    }
    ev->error.retry_after = retry_after;
}
