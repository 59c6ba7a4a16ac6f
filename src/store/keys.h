/* API keys issued by sluice (DESIGN §6): stored as SHA-256 hashes (never the secret), with
 * their limits, budget, allowed models and expiry. Workers read an immutable, refcounted
 * snapshot that the store thread rebuilds every SL_KEYS_REFRESH_MS from the database, so a
 * key revoked or expired on any instance is refused everywhere within a second. */
#ifndef SL_STORE_KEYS_H
#define SL_STORE_KEYS_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/err.h"

#define SL_KEYS_REFRESH_MS 500

typedef struct sl_key_rec {
    char id[40]; /* public id, "key_" + 16 hex; safe to log */
    char name[64];
    uint8_t hash[32];               /* SHA-256 of the secret */
    int64_t rpm, tpm;               /* 0 = the rate_limits.per_key default */
    int64_t budget_tokens;          /* 0 = no budget */
    int64_t spent_tokens;           /* prompt + completion recorded so far (as of the snapshot) */
    char models[256];               /* comma-separated globs; "" = every model */
    int64_t created_at, expires_at; /* unix seconds; expires_at 0 = never */
    bool revoked;
} sl_key_rec_t;

typedef struct sl_keyset sl_keyset_t;

sl_keyset_t *sl_keyset_ref(sl_keyset_t *ks);
void sl_keyset_unref(sl_keyset_t *ks); /* NULL is a no-op */
/* The key whose secret hashes to hash, or NULL. Revoked and expired keys are found too (the
 * caller says why they are refused). */
const sl_key_rec_t *sl_keyset_find(const sl_keyset_t *ks, const uint8_t hash[32]);

/* How many keys the snapshot holds (revoked ones included): with none issued and none in
 * the config, the default auth mode lets requests through. */
size_t sl_keyset_count(const sl_keyset_t *ks);
/* Tokens recorded in usage for key_name (config keys' budgets; issued keys carry theirs in
 * spent_tokens). 0 when unknown. */
int64_t sl_keyset_spent(const sl_keyset_t *ks, const char *key_name);

/* SHA-256 of a secret. */
void sl_key_hash(const char *secret, size_t len, uint8_t out[32]);
/* Whether model matches comma-separated globs ("" = every model). */
bool sl_key_models_allow(const char *globs, const char *model);
/* Whether model matches the key's allowed globs. */
bool sl_key_allows_model(const sl_key_rec_t *k, const char *model);

/* ---- administration (the `sluice keys` command; synchronous, outside any worker) ----
 * db is the store config: an SQLite path, or a postgresql:// URL. */

/* Creates a key from tmpl (name, rpm, tpm, budget_tokens, models, expires_at); writes the
 * secret ("sk-sl-" + 48 hex, shown once) into secret and the record into out. */
SL_MUST_CHECK int sl_keys_create(const char *db, const sl_key_rec_t *tmpl, char *secret,
                                 size_t secret_cap, sl_key_rec_t *out, sl_buf_t *err);
/* Calls cb for every key, newest first. */
SL_MUST_CHECK int sl_keys_list(const char *db, void (*cb)(void *ud, const sl_key_rec_t *k),
                               void *ud, sl_buf_t *err);
/* Marks a key revoked; SL_ENOTFOUND when no key has that id. */
SL_MUST_CHECK int sl_keys_revoke(const char *db, const char *id, sl_buf_t *err);

#endif
