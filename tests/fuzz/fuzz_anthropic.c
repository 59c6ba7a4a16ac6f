/* upstream/anthropic_codec, both directions.
 * Answers: a Messages stream (SSE bytes, framed by the real SSE parser, each event decoded in
 * turn until the decoder says DONE or FAILED), a whole message, an error body. FAILED comes with
 * exactly one ERROR, last; DONE ends in FINISH, USAGE, END; START comes at most once; tool call
 * deltas number the calls from 0; every event, encoded as an OpenAI chunk, decodes back to
 * itself.
 * Requests: an OpenAI body (JSON) translated into a Messages request, which must be an object
 * with the model, a positive max_tokens, messages whose roles alternate and whose content is
 * never empty, a temperature within Anthropic's [0, 1], and must serialize.
 *
 * Input: [mode][status][bytes]. mode % 4: 0 stream, 1 whole message, 2 error body, 3 request. */
#include "roundtrip.h"

#include "codec/sse.h"
#include "upstream/anthropic_codec.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fuzz_init_json();
    return 0;
}

typedef struct sink {
    sl_oai_meta_t meta; /* strings: the copies below (event strings live only during the call) */
    char *id, *model;
    size_t events, starts, errors, tools_seen;
    int max_tool; /* highest tool index seen, -1 none */
    sl_event_type_t last[3];
    sl_anth_dec_t dec;
    sl_anth_status_t st;
    bool stopped;
} sink_t;

static void on_event(void *ud, const sl_event_t *ev)
{
    sink_t *s = ud;
    touch(ev, NULL, 0);
    if (ev->type == SL_EV_START) {
        s->starts++;
        FUZZ_CHECK(s->starts == 1);
        s->id = ev->id ? sl_strdup(ev->id) : NULL;
        s->model = ev->model ? sl_strdup(ev->model) : NULL;
        s->meta = (sl_oai_meta_t){s->id, ev->created, s->model};
    }
    if (ev->type == SL_EV_ERROR)
        s->errors++;
    if (ev->tool.present) {
        FUZZ_CHECK(ev->tool.index >= 0 && ev->tool.index <= s->max_tool + 1);
        FUZZ_CHECK(ev->tool.args != NULL);
        if (ev->tool.index > s->max_tool)
            s->max_tool = ev->tool.index;
    }
    s->last[0] = s->last[1];
    s->last[1] = s->last[2];
    s->last[2] = ev->type;
    s->events++;
    round_trip(ev, &s->meta);
}

static void sink_dispose(sink_t *s)
{
    sl_free(s->id);
    sl_free(s->model);
}

static void sink_init(sink_t *s)
{
    memset(s, 0, sizeof *s);
    s->meta = (sl_oai_meta_t){"msg", 1, "claude"};
    s->max_tool = -1;
    s->last[0] = s->last[1] = s->last[2] = SL_EV_START;
}

/* What a decode call that returned st must have emitted (events/errors before it given). */
static void check_status(const sink_t *s, sl_anth_status_t st, size_t events, size_t errors)
{
    if (st == SL_ANTH_FAILED) {
        FUZZ_CHECK(s->errors == errors + 1 && s->last[2] == SL_EV_ERROR);
    } else {
        FUZZ_CHECK(s->errors == errors);
        if (st == SL_ANTH_DONE)
            FUZZ_CHECK(s->events >= events + 3 && s->last[0] == SL_EV_FINISH &&
                       s->last[1] == SL_EV_USAGE && s->last[2] == SL_EV_END);
    }
}

static int on_sse(void *ud, const sl_sse_event_t *ev)
{
    sink_t *s = ud;
    FUZZ_CHECK(!s->stopped);
    size_t events = s->events, errors = s->errors;
    s->st = sl_anth_decode_event(&s->dec, ev->event, ev->data, ev->data_len, on_event, s);
    check_status(s, s->st, events, errors);
    if (s->st == SL_ANTH_MORE)
        return 0;
    s->stopped = true;
    return 1; /* the provider reads no further */
}

static void stream(const char *in, size_t n)
{
    sink_t s;
    sink_init(&s);
    sl_anth_dec_init(&s.dec, 1700000000);
    sl_sse_parser_t p;
    sl_sse_parser_init(&p, 1 << 20);
    int rc = sl_sse_parser_feed(&p, in, n, on_sse, &s);
    FUZZ_CHECK(rc == 0 || rc == 1 || rc == SL_ETOOBIG);
    sl_sse_parser_dispose(&p);
    sink_dispose(&s);
}

static void whole(const char *in, size_t n)
{
    sink_t s;
    sink_init(&s);
    sl_anth_status_t st = sl_anth_decode_message(1700000000, in, n, on_event, &s);
    FUZZ_CHECK(st != SL_ANTH_MORE);
    check_status(&s, st, 0, 0);
    if (st == SL_ANTH_FAILED)
        FUZZ_CHECK(s.events == 1);
    else
        FUZZ_CHECK(s.starts == 1);
    sink_dispose(&s);
}

static void error_body(const char *in, size_t n, int status)
{
    sink_t s;
    sink_init(&s);
    sl_anth_decode_error(status, in, n, 7, on_event, &s);
    FUZZ_CHECK(s.events == 1 && s.errors == 1);
    sink_dispose(&s);
}

/* Content Anthropic accepts: a non-empty string, or a non-empty array of blocks. */
static bool content_ok(json_t *c)
{
    return (json_is_string(c) && json_string_length(c) > 0) ||
           (json_is_array(c) && json_array_size(c) > 0);
}

static void request(const char *in, size_t n, uint8_t flags)
{
    json_t *oai = json_loadb(in, n, 0, NULL);
    if (!oai)
        return;
    json_t *out = sl_anth_request(oai, flags & 1 ? "claude-x" : NULL, flags & 2, 1024);
    FUZZ_CHECK(json_is_object(out));
    FUZZ_CHECK(json_is_string(json_object_get(out, "model")));
    json_t *mt = json_object_get(out, "max_tokens");
    FUZZ_CHECK(json_is_integer(mt) && json_integer_value(mt) > 0);
    FUZZ_CHECK(json_is_boolean(json_object_get(out, "stream")));
    json_t *temp = json_object_get(out, "temperature");
    if (temp) {
        double t = json_number_value(temp);
        FUZZ_CHECK(t >= 0.0 && t <= 1.0);
    }
    json_t *sys = json_object_get(out, "system");
    FUZZ_CHECK(!sys || (json_is_string(sys) && json_string_length(sys) > 0));
    json_t *msgs = json_object_get(out, "messages");
    FUZZ_CHECK(json_is_array(msgs));
    const char *prev = NULL;
    size_t i;
    json_t *m;
    json_array_foreach (msgs, i, m) {
        const char *role = json_string_value(json_object_get(m, "role"));
        FUZZ_CHECK(role && (!strcmp(role, "user") || !strcmp(role, "assistant")));
        FUZZ_CHECK(!prev || strcmp(prev, role) != 0); /* turns alternate */
        FUZZ_CHECK(content_ok(json_object_get(m, "content")));
        prev = role;
    }
    char *text = json_dumps(out, JSON_COMPACT);
    FUZZ_CHECK(text != NULL);
    sl_free(text);
    json_decref(out);
    json_decref(oai);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_t f = {data, size};
    uint8_t mode = fz_u8(&f);
    int status = 400 + fz_u8(&f) % 200;
    size_t n = f.n;
    char *in = sl_malloc(n ? n : 1);
    memcpy(in, f.p, n);
    switch (mode % 4) {
    case 0: stream(in, n); break;
    case 1: whole(in, n); break;
    case 2: error_body(in, n, status); break;
    default: request(in, n, mode >> 2); break;
    }
    sl_free(in);
    return 0;
}
