/* The relay: one chat exchange from admission to the last byte. It routes the model to a
 * provider, passes canonical events from the provider to the dialect's encoder, and owns what
 * the streaming rules need in between (DESIGN §3): keepalive comments, backpressure between the
 * client's output buffer and the upstream, cancellation when the client leaves, the usage and
 * timing that go into the access log. Dialects use the sl_relay_* output calls below; adding a
 * dialect never changes this file. */
#ifndef SL_RELAY_RELAY_H
#define SL_RELAY_RELAY_H
#include <stdbool.h>
#include <stddef.h>

#include "codec/canon.h"
#include "core/buf.h"

typedef struct sl_conn sl_conn_t;
typedef struct sl_relay sl_relay_t;

/* A dialect's encoder: canonical events → the client's bytes. */
typedef struct sl_dialect_enc {
    const char *name;
    bool raw_openai;   /* understands ev->raw (OpenAI JSON): the passthrough fast path */
    size_t state_size; /* zeroed per exchange, handed to event() */
    /* Called once the exchange is admitted and its upstream call starts (after any session
     * history was loaded): where a dialect sends its opening event. May be NULL. */
    void (*begin)(sl_relay_t *r, void *state);
    /* Encodes one event. A terminal event (ERROR, END) must end the response (sl_relay_end). */
    void (*event)(sl_relay_t *r, void *state, const sl_event_t *ev);
    void (*dispose)(void *state); /* may be NULL */
} sl_dialect_enc_t;

/* Starts an exchange for the request being answered on c. Takes ownership of req (body and
 * meta; *req is left empty). When req->meta.session_id names an existing conversation of
 * meta.session_owner, its history is loaded first (from the store thread, never blocking) and
 * spliced in before the last message; an unknown one is replaced by a new id. When the answer
 * completes, the turn is stored. Every outcome, errors included, reaches the client through
 * enc. */
void sl_relay_start(sl_conn_t *c, sl_chat_req_t *req, const sl_dialect_enc_t *enc);

/* What dialects report about an exchange (monoai's usage and iterations). */
typedef struct sl_relay_info {
    const char *model;    /* the model the client asked for */
    const char *provider; /* the provider that answered, or NULL */
    const char *upstream_model;
    const char *finish; /* finish reason so far, "" if none */
    sl_usage_t usage;   /* reported by the upstream, or estimated */
    bool usage_estimated;
    double ttft_ms; /* < 0 before the first token */
} sl_relay_info_t;

void sl_relay_info(const sl_relay_t *r, sl_relay_info_t *out);
/* The assistant's text so far (choice 0); kept for dialects that do not pass OpenAI bytes
 * through. NUL-terminated, valid until the exchange ends. */
const char *sl_relay_text(const sl_relay_t *r, size_t *len);

/* ---- for dialect encoders ---- */
const sl_chat_req_t *sl_relay_req(const sl_relay_t *r);
bool sl_relay_head_sent(const sl_relay_t *r);
/* Sends the SSE response head (once); extra is "Name: v\r\n" lines or NULL. */
void sl_relay_stream_head(sl_relay_t *r, const char *extra);
void sl_relay_send(sl_relay_t *r, const void *p, size_t n);
/* A complete non-streamed response. */
void sl_relay_respond(sl_relay_t *r, int status, const char *content_type, const char *body,
                      size_t len, const char *extra);
/* An OpenAI-shaped error response (status from e), with Retry-After when e has one. */
void sl_relay_respond_error(sl_relay_t *r, const sl_error_info_t *e);
/* Ends the response; close=true closes the connection afterwards. */
void sl_relay_end(sl_relay_t *r, bool close);
/* A scratch buffer, empty on each call, valid until the next call. */
sl_buf_t *sl_relay_scratch(sl_relay_t *r);

#endif
