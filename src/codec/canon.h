/* The canonical request and events: where dialects (client protocols) and providers (upstream
 * protocols) meet (DESIGN §1). Dialects build an sl_chat_req_t and encode sl_event_t; providers
 * read the request and produce events. Neither ever includes the other. */
#ifndef SL_CODEC_CANON_H
#define SL_CODEC_CANON_H
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The limits that come with an API key (config auth.keys or issued by `sluice keys`). */
typedef struct sl_key_policy {
    bool present;
    char id[48];           /* issued key id, or "cfg:" + the config key's name */
    int64_t rpm, tpm;      /* 0 = rate_limits.per_key */
    int64_t budget_tokens; /* 0 = none */
    int64_t budget_spent;  /* as last known */
    char *models;          /* owned: comma-separated globs; NULL = every model (no cost) */
} sl_key_policy_t;

/* Who asks and in which conversation: policy and the store read these; providers ignore them. */
typedef struct sl_chat_meta {
    char *user_id;          /* owned; NULL when unknown */
    char *key_name;         /* owned; the API key's name, NULL without key auth */
    char *session_id;       /* owned; set when the exchange belongs to a conversation */
    char *session_owner;    /* owned; whose conversation (NULL = anonymous) */
    char *user_message;     /* owned; the new user turn, stored with the answer */
    bool session_new;       /* session_id was just made: no history to load */
    bool session_named;     /* the client names its sessions (seed 003): an unknown id is
                               created as given, not replaced by a new one */
    unsigned history_turns; /* how many earlier turns to load (the dialect's setting) */
    char *tags;             /* owned; JSON object text recorded with usage, or NULL */
    char *preset;           /* owned; the named preset (monoai agent) answering, or NULL */
    sl_key_policy_t key;    /* the key's limits, when a key authenticated the request */
    /* The dialect's own data for this exchange (rag: sources, phase timings), read back by its
     * encoder through sl_relay_req; owned: ext_free(ext) runs when the request is disposed. */
    void *ext;
    void (*ext_free)(void *ext);
} sl_chat_meta_t;

/* The canonical request is an OpenAI Chat Completions body (the lingua franca every dialect
 * can express): model, messages, stream and whatever else the client or dialect set. */
typedef struct sl_chat_req {
    const char *model; /* borrowed from body, or model_own */
    bool stream;
    bool client_wants_usage; /* stream_options.include_usage as the client sent it */
    bool has_stream_options; /* the client sent stream_options (any value) */
    /* The dialect asks what a target's fallback_to_non_stream asks (seed 004 does it always):
     * a stream that fails before any output is retried on the same target, whole. */
    bool fallback_to_non_stream;
    /* Owned ref: the request object, every field as it came. NULL while only json_text is
     * known: sl_chat_req_json parses it on first use (the passthrough path never does). */
    json_t *body;
    char *json_text; /* owned: the request's JSON, already validated, until parsed or dropped */
    size_t json_len;
    char *model_own;     /* owned: the model when body is not parsed */
    int64_t max_tokens;  /* max_tokens (else max_completion_tokens) when body is not parsed */
    size_t prompt_bytes; /* bytes of message text, for the usage estimate */
    /* The client's body bytes exactly as sent, when they are an OpenAI request a provider may
     * forward as they are (the passthrough path); borrowed, valid until the provider's start()
     * returns, NULL otherwise. */
    const char *raw;
    size_t raw_len;
    sl_chat_meta_t meta;
} sl_chat_req_t;

/* Releases body and meta (the struct itself is the caller's). */
void sl_chat_req_dispose(sl_chat_req_t *r);
/* The request as a JSON object: body, parsed from json_text on first use. NULL only when out
 * of memory (json_text passed sl_json_valid, which accepts only what jansson accepts). */
json_t *sl_chat_req_json(sl_chat_req_t *r);
/* The completion budget the client asked for (max_tokens, else max_completion_tokens; 0). */
int64_t sl_chat_req_max_tokens(const sl_chat_req_t *r);
/* No attempt will need the request again: drop its JSON (a long stream need not keep it). */
void sl_chat_req_drop_json(sl_chat_req_t *r);
/* prompt_bytes of an OpenAI messages array: text lengths, a rough share for other parts. */
size_t sl_chat_prompt_bytes(json_t *messages);

typedef enum sl_event_type {
    SL_EV_START,  /* id, model, created */
    SL_EV_DELTA,  /* choice, role?, content?, tool?, finish_reason? */
    SL_EV_USAGE,  /* usage */
    SL_EV_FINISH, /* choice, finish_reason (when a provider reports it apart from a delta) */
    SL_EV_ERROR,  /* error; terminal */
    SL_EV_END,    /* the upstream finished; terminal */
} sl_event_type_t;

typedef struct sl_tool_delta {
    bool present;
    int index;
    const char *id;   /* NULL after the first fragment */
    const char *name; /* NULL after the first fragment */
    const char *args; /* argument fragment, may be NULL */
    size_t args_len;
} sl_tool_delta_t;

typedef struct sl_usage {
    int64_t prompt;
    int64_t completion;
    int64_t cached; /* -1 when not reported */
} sl_usage_t;

typedef struct sl_error_info {
    int status;          /* HTTP status to answer with before the stream started */
    const char *type;    /* OpenAI error.type */
    const char *code;    /* may be NULL */
    const char *param;   /* may be NULL */
    const char *message; /* never NULL */
    int retry_after;     /* seconds, -1 when none */
} sl_error_info_t;

/* All pointers are borrowed and valid only while the event is being delivered. */
typedef struct sl_event {
    sl_event_type_t type;
    /* The OpenAI JSON this event came from, exactly as the upstream sent it (a stream chunk, or
     * the whole chat.completion on END of a non-streaming call); NULL when synthesised. A dialect
     * speaking OpenAI forwards it unchanged: the passthrough fast path. */
    const char *raw;
    size_t raw_len;
    bool raw_has_usage; /* raw carries a "usage" object the client may not have asked for */

    const char *id; /* START */
    const char *model;
    int64_t created;

    int choice; /* DELTA, FINISH */
    const char *role;
    const char *content;
    size_t content_len;
    sl_tool_delta_t tool;
    const char *finish_reason; /* NULL, or "stop", "length", "tool_calls", ... */

    sl_usage_t usage;      /* USAGE */
    sl_error_info_t error; /* ERROR */
} sl_event_t;

#endif
