/* What the seed dialects (chat, monoai, aichat) share: reading a JSON body, admitting the
 * request under the dialect's auth mode, building the canonical OpenAI request from a prompt
 * (system prompt, history, max_tokens, preset parameters), and writing JSON SSE events. */
#ifndef SL_DIALECT_SEED_H
#define SL_DIALECT_SEED_H
#include <jansson.h>
#include <stdbool.h>

#include "codec/canon.h"
#include "config/config.h"
#include "http/request.h"
#include "policy/auth.h"

typedef struct sl_conn sl_conn_t;
typedef struct sl_relay sl_relay_t;

/* The request body as a JSON object, or NULL with *why set ("invalid JSON ...", "the body
 * must be a JSON object"). The result is owned by the caller. */
json_t *sl_seed_body(const sl_http_req_t *hr, char *why, size_t why_cap);

/* A chat request for the dialect's model: [system] + history + user message. history
 * (borrowed, may be NULL) must be an array of {role, content}; params (borrowed, may be NULL)
 * are merged in (an agent's temperature, max_tokens...). stream asks the upstream to stream. */
void sl_seed_request(sl_chat_req_t *out, const char *model, const char *system_prompt,
                     json_t *history, const char *user_msg, uint64_t max_tokens, json_t *params,
                     bool stream);

/* Checks a client-sent history: an array of {role: user|assistant|system, content: string}. */
bool sl_seed_history_ok(json_t *history);

/* Writes "data: <compact JSON>\n\n" (with "id: <n>\n" first when id > 0) and decrefs obj. */
void sl_seed_sse(sl_relay_t *r, json_t *obj, unsigned id);
/* A complete JSON response; decrefs obj. */
void sl_seed_json(sl_conn_t *c, int status, json_t *obj);
void sl_seed_json_relay(sl_relay_t *r, int status, json_t *obj);
/* The usage object seeds show: {prompt_tokens, completion_tokens, total_tokens}. */
json_t *sl_seed_usage(sl_relay_t *r);

/* Makes a new session id when the client sent none (meta.session_new) or takes the client's
 * (to be checked against the store by the relay); owner from the identity. */
void sl_seed_session(sl_chat_req_t *req, const char *client_session_id, const char *owner,
                     unsigned history_turns);

#endif
