/* upstream/openai_decode (OpenAI JSON → canonical events) and codec/openai_chunk (events → the
 * chunks sluice writes): every decoded event is readable and shaped as canon.h says (an error
 * chunk is one ERROR with a message and a type, raw bytes point into the input, the error decoder
 * gives exactly one ERROR with the status it was given); and a decoded event encoded as a chunk
 * decodes back to the same event (START, DELTA with role/content/tool call, FINISH, USAGE,
 * ERROR).
 *
 * Input: [mode][status][retry][JSON]. mode % 4: 0-1 a stream chunk, 2 a whole completion, 3 an
 * error body; bit 2: raw (passthrough) mode; bit 3: the first chunk. */
#include "roundtrip.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fuzz_init_json();
    return 0;
}

static void check_events(const sl_oai_chunk_t *c, const char *in, size_t n)
{
    FUZZ_CHECK(c->nevents <= c->cap || c->nevents == 0);
    sl_oai_meta_t m = {"chatcmpl-fuzz", 1700000000, "m"};
    for (size_t i = 0; i < c->nevents; i++) {
        const sl_event_t *ev = &c->events[i];
        touch(ev, in, n);
        if (ev->type == SL_EV_START)
            m = (sl_oai_meta_t){ev->id, ev->created, ev->model};
        round_trip(ev, &m);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_t f = {data, size};
    uint8_t mode = fz_u8(&f);
    int status = 400 + fz_u8(&f) % 200;
    int retry = (int)fz_u8(&f) - 1;
    bool raw = mode & 4, first = mode & 8;
    /* A copy of exactly the payload, so reading past it is caught. */
    size_t n = f.n;
    char *in = sl_malloc(n ? n : 1);
    memcpy(in, f.p, n);

    sl_oai_chunk_t c;
    switch (mode % 4) {
    case 0:
    case 1:
        sl_oai_decode_chunk(in, n, raw, first, &c);
        /* An error chunk is exactly one ERROR. */
        FUZZ_CHECK(!c.error || (c.nevents == 1 && c.events[0].type == SL_EV_ERROR));
        if (raw && !c.root && !c.error) {
            /* No tree: the bytes as they are (a DELTA), and the usage they carry (a USAGE,
             * itself forwardable only when no DELTA is), or nothing. */
            FUZZ_CHECK(c.nevents <= 2);
            for (size_t i = 0; i < c.nevents; i++) {
                const sl_event_t *ev = &c.events[i];
                FUZZ_CHECK(
                    (ev->type == SL_EV_DELTA && i == 0 && ev->raw == in && ev->raw_len == n) ||
                    (ev->type == SL_EV_USAGE && i == c.nevents - 1 &&
                     (c.nevents == 2 ? !ev->raw : ev->raw == in)));
            }
        }
        check_events(&c, in, n);
        break;
    case 2:
        sl_oai_decode_completion(in, n, raw, &c);
        FUZZ_CHECK(c.nevents >= 1);
        /* A completion ends with END carrying it whole, or is one ERROR. */
        FUZZ_CHECK((c.nevents == 1 && c.events[0].type == SL_EV_ERROR) ||
                   (c.events[c.nevents - 1].type == SL_EV_END &&
                    c.events[c.nevents - 1].raw == in && c.events[c.nevents - 1].raw_len == n));
        check_events(&c, in, n);
        break;
    default:
        sl_oai_decode_error(in, n, status, retry, &c);
        FUZZ_CHECK(c.error && c.nevents == 1 && c.events[0].type == SL_EV_ERROR);
        FUZZ_CHECK(c.events[0].error.status == status && c.events[0].error.retry_after == retry);
        check_events(&c, in, n);
        break;
    }
    sl_oai_chunk_dispose(&c);
    sl_free(in);
    return 0;
}
