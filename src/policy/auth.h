/* Authentication (DESIGN §6): API keys — from the config or issued by `sluice keys` — compared
 * by SHA-256 in constant time and never logged; JWTs through policy/jwt. Each dialect names
 * its mode (none | key | jwt). */
#ifndef SL_POLICY_AUTH_H
#define SL_POLICY_AUTH_H
#include <stdbool.h>
#include <stddef.h>

#include "codec/canon.h"
#include "config/config.h"
#include "core/ctx.h"
#include "http/request.h"

struct sl_keyset;

/* Who a request is, once admitted. Strings owned (sl_free), NULL when not known. */
typedef struct sl_identity {
    char *key_name;      /* the API key's name (key auth) */
    char *user;          /* the JWT's user claim (jwt auth) */
    sl_key_policy_t key; /* the key's limits (key.present when a key matched) */
} sl_identity_t;

/* The API keys as the store last saw them (it re-reads them every SL_KEYS_REFRESH_MS), for
 * sl_auth_admit; NULL without a store. Borrowed: valid until the thread's next call. Always
 * the store's latest, so every worker of a process sees a key appear (and go) at the same
 * moment; costs one uncontended lock. */
const struct sl_keyset *sl_auth_keys(sl_ctx_t *x);
/* Admits a request under a dialect's auth mode: none lets it through; key checks the Bearer key
 * against auth.keys and the issued keys in ks (may be NULL); default is key when any key
 * exists, else none; jwt verifies the Bearer JWT — or token when given (an EventSource cannot
 * send headers, so a query parameter may carry it). 0, or SL_EAUTH with *why a message safe to
 * show the client. */
SL_MUST_CHECK int sl_auth_admit(const sl_config_t *cfg, sl_auth_mode_t mode,
                                const sl_http_req_t *req, const char *token,
                                const struct sl_keyset *ks, sl_identity_t *id, const char **why);
/* Is the request's Bearer token one of auth.admin_keys? Compared against all of them without an
 * early exit. */
bool sl_auth_is_admin(const sl_config_t *cfg, const sl_http_req_t *req);
/* Does the request carry a Bearer token at all? */
bool sl_auth_has_bearer(const sl_http_req_t *req);
void sl_identity_dispose(sl_identity_t *id);
/* A key's model list as a policy holds it: a copy, or NULL for "every model" (empty or NULL). */
char *sl_key_models_dup(const char *models);
/* Moves the identity's key name, user and limits into a request's meta (id is left empty). */
void sl_identity_to_meta(sl_identity_t *id, sl_chat_meta_t *meta);

/* Compares without an early exit, so timing does not tell how much of a guess was right. */
bool sl_auth_equal(const char *a, size_t alen, const char *b, size_t blen);

#endif
