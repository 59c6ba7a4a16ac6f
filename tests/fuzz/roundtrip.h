/* Canonical events checked and sent through the OpenAI chunk encoder (codec/openai_chunk) and
 * back through the decoder (upstream/openai_decode): what a provider's events become on the
 * wire must read back as the same events. Shared by the targets whose parsers produce events. */
#ifndef SL_FUZZ_ROUNDTRIP_H
#define SL_FUZZ_ROUNDTRIP_H
#include "fuzz.h"

#include "codec/openai_chunk.h"
#include "upstream/openai_decode.h"

static bool same_str(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static bool same_bytes(const char *a, size_t an, const char *b, size_t bn)
{
    return (!a && !b) || (a && b && an == bn && memcmp(a, b, an) == 0);
}

/* Reads every byte an event points at; raw must lie in in[0..n) (in NULL: no raw allowed). */
static void touch(const sl_event_t *ev, const char *in, size_t n)
{
    volatile size_t sum = 0;
    const char *strs[] = {ev->id,          ev->model,         ev->role,       ev->tool.id,
                          ev->tool.name,   ev->finish_reason, ev->error.type, ev->error.code,
                          ev->error.param, ev->error.message};
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++)
        sum += strs[i] ? strlen(strs[i]) : 0;
    for (size_t i = 0; ev->content && i < ev->content_len; i++)
        sum += (unsigned char)ev->content[i];
    for (size_t i = 0; ev->tool.args && i < ev->tool.args_len; i++)
        sum += (unsigned char)ev->tool.args[i];
    if (ev->raw)
        FUZZ_CHECK(in && ev->raw >= in && ev->raw + ev->raw_len <= in + n);
    if (ev->type == SL_EV_ERROR)
        FUZZ_CHECK(ev->error.message && ev->error.type && ev->error.status >= 400);
    (void)sum;
}

/* The events of one encoded chunk ("data: {...}\n\n"), decoded as a parsed first chunk. */
static void decode_encoded(const sl_buf_t *b, sl_oai_chunk_t *out)
{
    FUZZ_CHECK(b->len > 8 && memcmp(b->data, "data: ", 6) == 0);
    FUZZ_CHECK(memcmp(b->data + b->len - 2, "\n\n", 2) == 0);
    sl_oai_decode_chunk(b->data + 6, b->len - 8, false, true, out);
    FUZZ_CHECK(!out->error || out->nevents == 1);
}

static const sl_event_t *find(const sl_oai_chunk_t *c, sl_event_type_t type, bool tool)
{
    for (size_t i = 0; i < c->nevents; i++)
        if (c->events[i].type == type && c->events[i].tool.present == tool)
            return &c->events[i];
    return NULL;
}

static void check_start(const sl_oai_chunk_t *back, const sl_oai_meta_t *m)
{
    const sl_event_t *s = find(back, SL_EV_START, false);
    FUZZ_CHECK(s && same_str(s->id, m->id ? m->id : "") &&
               same_str(s->model, m->model ? m->model : ""));
    FUZZ_CHECK(s->created == m->created);
}

static void round_trip_delta(const sl_event_t *ev, const sl_oai_meta_t *m)
{
    sl_buf_t b;
    sl_buf_init(&b);
    sl_oai_encode_delta(&b, m, ev);
    sl_oai_chunk_t back;
    decode_encoded(&b, &back);
    FUZZ_CHECK(!back.error);
    check_start(&back, m);
    const sl_event_t *d = find(&back, SL_EV_DELTA, false);
    FUZZ_CHECK(d && d->choice == ev->choice);
    FUZZ_CHECK(same_str(d->role, ev->role));
    FUZZ_CHECK(same_bytes(d->content, d->content_len, ev->content, ev->content_len));
    if (ev->tool.present) {
        const sl_event_t *t = find(&back, SL_EV_DELTA, true);
        FUZZ_CHECK(t && t->tool.index == ev->tool.index);
        FUZZ_CHECK(same_str(t->tool.id, ev->tool.id) && same_str(t->tool.name, ev->tool.name));
        FUZZ_CHECK(same_bytes(t->tool.args, t->tool.args_len, ev->tool.args ? ev->tool.args : "",
                              ev->tool.args_len));
    }
    const sl_event_t *fin = find(&back, SL_EV_FINISH, false);
    FUZZ_CHECK(same_str(fin ? fin->finish_reason : NULL, ev->finish_reason));
    sl_oai_chunk_dispose(&back);
    sl_buf_dispose(&b);
}

/* FINISH goes out as the openai dialect writes it: a delta with only finish_reason. */
static void round_trip_finish(const sl_event_t *ev, const sl_oai_meta_t *m)
{
    sl_event_t fin = {
        .type = SL_EV_DELTA, .choice = ev->choice, .finish_reason = ev->finish_reason};
    round_trip_delta(&fin, m);
}

static void round_trip_usage(const sl_event_t *ev, const sl_oai_meta_t *m)
{
    sl_buf_t b;
    sl_buf_init(&b);
    sl_oai_encode_usage_chunk(&b, m, &ev->usage);
    sl_oai_chunk_t back;
    decode_encoded(&b, &back);
    const sl_event_t *u = find(&back, SL_EV_USAGE, false);
    FUZZ_CHECK(u && u->usage.prompt == ev->usage.prompt);
    FUZZ_CHECK(u->usage.completion == ev->usage.completion);
    FUZZ_CHECK(u->usage.cached == (ev->usage.cached < 0 ? -1 : ev->usage.cached));
    sl_oai_chunk_dispose(&back);
    sl_buf_dispose(&b);
}

static void round_trip_error(const sl_event_t *ev)
{
    sl_buf_t b;
    sl_buf_init(&b);
    sl_oai_encode_error_event(&b, &ev->error);
    sl_oai_chunk_t back;
    decode_encoded(&b, &back);
    FUZZ_CHECK(back.error && back.nevents == 1 && back.events[0].type == SL_EV_ERROR);
    const sl_error_info_t *e = &back.events[0].error;
    FUZZ_CHECK(same_str(e->message, ev->error.message) && same_str(e->type, ev->error.type));
    FUZZ_CHECK(same_str(e->code, ev->error.code));
    sl_oai_chunk_dispose(&back);
    sl_buf_dispose(&b);
}

/* The round trip of one event as the openai dialect would write it. */
static void round_trip(const sl_event_t *ev, const sl_oai_meta_t *m)
{
    if (ev->raw)
        return; /* forwarded as it came: nothing was decoded */
    if (ev->type == SL_EV_DELTA)
        round_trip_delta(ev, m);
    else if (ev->type == SL_EV_FINISH)
        round_trip_finish(ev, m);
    else if (ev->type == SL_EV_USAGE)
        round_trip_usage(ev, m);
    else if (ev->type == SL_EV_ERROR)
        round_trip_error(ev);
}

#endif
