/* API keys and JWT admission. */
#include "policy/auth.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "core/alloc.h"
#include "core/log.h"
#include "core/sha256.h"
#include "policy/jwt.h"
#include "store/keys.h"
#include "store/keyset.h"
#include "store/store.h"

bool sl_auth_equal(const char *a, size_t alen, const char *b, size_t blen)
{
    /* Walk the longer length so a short guess costs the same as a long one. */
    size_t n = alen > blen ? alen : blen;
    unsigned char diff = (unsigned char)(alen != blen);
    for (size_t i = 0; i < n; i++) {
        unsigned char x = i < alen ? (unsigned char)a[i] : 0;
        unsigned char y = i < blen ? (unsigned char)b[i] : 0;
        diff |= x ^ y;
    }
    return diff == 0;
}

void sl_identity_dispose(sl_identity_t *id)
{
    sl_free(id->key_name);
    sl_free(id->user);
    sl_free(id->key.models);
    id->key_name = id->user = NULL;
    id->key.models = NULL;
}

char *sl_key_models_dup(const char *models)
{
    return models && *models ? sl_strdup(models) : NULL;
}

void sl_identity_to_meta(sl_identity_t *id, sl_chat_meta_t *meta)
{
    sl_free(meta->key_name);
    meta->key_name = id->key_name;
    if (id->user) {
        sl_free(meta->user_id);
        meta->user_id = id->user;
    }
    sl_free(meta->key.models);
    meta->key = id->key;
    id->key_name = id->user = NULL;
    id->key.models = NULL;
}

static const char *bearer(const sl_http_req_t *req)
{
    const char *h = sl_http_req_header(req, "authorization");
    if (!h || strncasecmp(h, "Bearer ", 7) != 0)
        return NULL;
    h += 7;
    while (*h == ' ')
        h++;
    return *h ? h : NULL;
}

bool sl_auth_has_bearer(const sl_http_req_t *req)
{
    return bearer(req) != NULL;
}

bool sl_auth_is_admin(const sl_config_t *cfg, const sl_http_req_t *req)
{
    const char *tok = bearer(req);
    if (!tok)
        return false;
    size_t len = strlen(tok);
    while (len && (tok[len - 1] == ' ' || tok[len - 1] == '\t'))
        len--;
    bool ok = false;
    for (size_t i = 0; i < cfg->nadmin_keys; i++) /* no early exit */
        ok |= sl_auth_equal(tok, len, cfg->admin_keys[i], strlen(cfg->admin_keys[i]));
    return ok;
}

static void from_config(const sl_key_cfg_t *k, const struct sl_keyset *ks, sl_identity_t *id)
{
    id->key_name = sl_strdup(k->name);
    id->key.present = true;
    snprintf(id->key.id, sizeof id->key.id, "cfg:%s", k->name);
    id->key.rpm = k->rpm;
    id->key.tpm = k->tpm;
    id->key.budget_tokens = k->budget_tokens;
    id->key.budget_spent = ks && k->budget_tokens ? sl_keyset_spent(ks, k->name) : 0;
    id->key.models = sl_key_models_dup(k->models);
}

static int from_issued(const sl_key_rec_t *k, sl_identity_t *id, const char **why)
{
    if (k->revoked) {
        *why = "This API key has been revoked.";
        return SL_EAUTH;
    }
    if (k->expires_at && sl_wall_s() >= k->expires_at) {
        *why = "This API key has expired.";
        return SL_EAUTH;
    }
    id->key_name = sl_strdup(k->name);
    id->key.present = true;
    snprintf(id->key.id, sizeof id->key.id, "%s", k->id);
    id->key.rpm = k->rpm;
    id->key.tpm = k->tpm;
    id->key.budget_tokens = k->budget_tokens;
    id->key.budget_spent = k->spent_tokens;
    id->key.models = sl_key_models_dup(k->models);
    return 0;
}

/* Keys are compared as SHA-256 digests: fixed length, constant time, and the issued ones are
 * only ever stored that way. */
static int check_key(const sl_config_t *cfg, const sl_http_req_t *req, const struct sl_keyset *ks,
                     sl_identity_t *id, const char **why)
{
    const char *tok = bearer(req);
    if (!tok) {
        *why = "You didn't provide an API key. Send it as 'Authorization: Bearer <key>'.";
        return SL_EAUTH;
    }
    size_t len = strlen(tok);
    while (len && (tok[len - 1] == ' ' || tok[len - 1] == '\t'))
        len--;
    uint8_t h[32];
    sl_sha256(tok, len, h);
    const sl_key_cfg_t *match = NULL;
    for (size_t i = 0; i < cfg->nkeys; i++) { /* no early exit */
        bool eq = sl_auth_equal((const char *)h, 32, (const char *)cfg->keys[i].sha256, 32);
        if (eq && !match)
            match = &cfg->keys[i];
    }
    if (match) {
        from_config(match, ks, id);
        return 0;
    }
    const sl_key_rec_t *k = ks ? sl_keyset_find(ks, h) : NULL;
    if (k)
        return from_issued(k, id, why);
    *why = "Incorrect API key provided.";
    return SL_EAUTH;
}

static int admit_jwt(const sl_config_t *cfg, const sl_http_req_t *req, const char *token,
                     sl_identity_t *id, const char **why)
{
    if (!cfg->jwt.alg) {
        *why = "JWT authentication is not configured";
        return SL_EAUTH;
    }
    if (!token)
        token = bearer(req);
    while (token && *token == ' ')
        token++;
    if (!token || !*token) {
        *why = "a bearer token is required";
        return SL_EAUTH;
    }
    return sl_jwt_verify(&cfg->jwt, token, sl_wall_s(), &id->user, why);
}

int sl_auth_admit(const sl_config_t *cfg, sl_auth_mode_t mode, const sl_http_req_t *req,
                  const char *token, const struct sl_keyset *ks, sl_identity_t *id,
                  const char **why)
{
    memset(id, 0, sizeof *id);
    *why = NULL;
    switch (mode) {
    case SL_AUTH_NONE: return 0;
    case SL_AUTH_JWT: return admit_jwt(cfg, req, token, id, why);
    case SL_AUTH_DEFAULT:
        /* Keys issued at run time count: once one exists, requests need one. */
        if (!cfg->nkeys && (!ks || sl_keyset_count(ks) == 0))
            return 0;
        break;
    case SL_AUTH_KEY: break;
    }
    return check_key(cfg, req, ks, id, why);
}

const struct sl_keyset *sl_auth_keys(sl_ctx_t *x)
{
    if (!x->store_thread)
        return NULL;
    sl_keyset_unref(x->keys);
    x->keys = sl_store_keys(x->store_thread);
    return x->keys;
}
