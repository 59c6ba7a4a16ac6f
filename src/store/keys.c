/* API keys (DESIGN §6): the secret's hash, the allowed-model globs, and the `sluice keys`
 * administration (create, list, revoke), run synchronously against the store's database. */
#include "store/keys.h"

#include "core/sha256.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#include "config/config.h"
#include "core/alloc.h"
#include "core/glob.h"
#include "core/log.h"
#include "store/db.h"
#include "store/db_sql.h"

#define SECRET_PREFIX "sk-sl-"
#define SECRET_BYTES  ((size_t)24) /* 48 hex digits: 192 bits, beyond any guessing */
#define ID_BYTES      ((size_t)8)  /* 16 hex digits: an id only has to be unique, not secret */
#define SECRET_LEN    (sizeof SECRET_PREFIX - 1 + 2 * SECRET_BYTES)

void sl_key_hash(const char *secret, size_t len, uint8_t out[32])
{
    sl_sha256(secret, len, out);
}

bool sl_key_models_allow(const char *globs, const char *model)
{
    if (!globs[0])
        return true;
    for (const char *p = globs; *p;) {
        size_t len = strcspn(p, ",");
        const char *s = p;
        size_t n = len;
        while (n > 0 && *s == ' ')
            s++, n--;
        while (n > 0 && s[n - 1] == ' ')
            n--;
        char pat[256];
        if (n > 0 && n < sizeof pat) {
            memcpy(pat, s, n);
            pat[n] = '\0';
            if (sl_glob_match(pat, model ? model : ""))
                return true;
        }
        p += len + (p[len] == ',');
    }
    return false;
}

bool sl_key_allows_model(const sl_key_rec_t *k, const char *model)
{
    return sl_key_models_allow(k->models, model);
}

/* ---- administration ---- */

/* 2n hex digits of kernel randomness into out (2n + 1 bytes). */
static int random_hex(size_t n, char *out, sl_buf_t *err)
{
    uint8_t b[SECRET_BYTES];
    SL_ASSERT(n <= sizeof b);
    for (size_t got = 0; got < n;) {
        ssize_t r = getrandom(b + got, n - got, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            sl_buf_printf(err, "keys: getrandom: %s", strerror(errno));
            return SL_EINTERNAL;
        }
        got += (size_t)r;
    }
    sl_db_hex(b, n, out);
    explicit_bzero(b, sizeof b);
    return 0;
}

static bool printable(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return false;
    return true;
}

static int check_template(const sl_key_rec_t *t, size_t secret_cap, sl_buf_t *err)
{
    const char *why = NULL;
    if (secret_cap < SECRET_LEN + 1)
        why = "no room for the secret";
    else if (!t->name[0] || strnlen(t->name, sizeof t->name) == sizeof t->name)
        why = "a name of 1 to 63 bytes is required";
    else if (strnlen(t->models, sizeof t->models) == sizeof t->models)
        why = "the model list is longer than 255 bytes";
    else if (!printable(t->name) || !printable(t->models))
        why = "the name and model list must not hold control characters";
    else if (t->rpm < 0 || t->tpm < 0 || t->budget_tokens < 0 || t->expires_at < 0)
        why = "limits, budget and expiry cannot be negative";
    if (!why)
        return 0;
    sl_buf_printf(err, "keys: %s", why);
    return SL_EINVAL;
}

static int open_db(const char *db, sl_db_t **out, sl_buf_t *err)
{
    bool url = sl_db_is_url(db);
    return sl_db_open(url ? NULL : db, url ? db : NULL, out, err);
}

static int insert(const char *db, const sl_key_rec_t *k, sl_buf_t *err)
{
    sl_db_t *d = NULL;
    int rc = open_db(db, &d, err);
    if (!rc && (rc = d->ops->key_insert(d, k)) != 0)
        sl_buf_printf(err, "keys: %s", d->errmsg);
    sl_db_close(d);
    return rc;
}

int sl_keys_create(const char *db, const sl_key_rec_t *tmpl, char *secret, size_t secret_cap,
                   sl_key_rec_t *out, sl_buf_t *err)
{
    int rc = check_template(tmpl, secret_cap, err);
    if (rc)
        return rc;
    sl_key_rec_t k = {.rpm = tmpl->rpm,
                      .tpm = tmpl->tpm,
                      .budget_tokens = tmpl->budget_tokens,
                      .expires_at = tmpl->expires_at,
                      .created_at = sl_wall_s()};
    memcpy(k.name, tmpl->name, sizeof k.name);
    memcpy(k.models, tmpl->models, sizeof k.models);
    char s[SECRET_LEN + 1] = SECRET_PREFIX, id[2 * ID_BYTES + 1];
    rc = random_hex(SECRET_BYTES, s + sizeof SECRET_PREFIX - 1, err);
    if (!rc)
        rc = random_hex(ID_BYTES, id, err);
    if (!rc) {
        snprintf(k.id, sizeof k.id, "key_%s", id);
        sl_key_hash(s, SECRET_LEN, k.hash);
        rc = insert(db, &k, err);
    }
    if (!rc) {
        memcpy(secret, s, sizeof s);
        *out = k;
    }
    explicit_bzero(s, sizeof s); /* the caller's copy is the only one left */
    return rc;
}

int sl_keys_list(const char *db, void (*cb)(void *ud, const sl_key_rec_t *k), void *ud,
                 sl_buf_t *err)
{
    sl_db_t *d = NULL;
    sl_key_rec_t *rows = NULL;
    size_t n = 0;
    int rc = open_db(db, &d, err);
    if (!rc && (rc = d->ops->keys_read(d, &rows, &n)) != 0)
        sl_buf_printf(err, "keys: %s", d->errmsg);
    sl_db_close(d);
    for (size_t i = 0; !rc && i < n; i++)
        cb(ud, &rows[i]);
    sl_free(rows);
    return rc;
}

int sl_keys_revoke(const char *db, const char *id, sl_buf_t *err)
{
    sl_db_t *d = NULL;
    bool found = false;
    int rc = open_db(db, &d, err);
    if (!rc && (rc = d->ops->key_revoke(d, id, &found)) != 0)
        sl_buf_printf(err, "keys: %s", d->errmsg);
    sl_db_close(d);
    if (!rc && !found) {
        sl_buf_printf(err, "keys: no key has the id %s", id);
        rc = SL_ENOTFOUND;
    }
    return rc;
}
