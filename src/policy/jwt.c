/* Bearer JWT verification: pin the algorithm from config, let libjwt check the signature, then
 * check exp/nbf/iss/aud and pull the user id out of the payload ourselves. */
#include "policy/jwt.h"

#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>
#include <jwt.h>

#include "core/alloc.h"

/* A bearer token is a header value; anything bigger is not a token we issued and would only cost
 * us base64 and JSON work. */
#define SL_JWT_MAX_TOKEN 8192

/* The three base64url segments of a compact JWS, pointing into the caller's token. */
typedef struct seg {
    const char *p;
    size_t n;
} seg_t;

/* The algorithms a config may pin. Everything else, "none" and HS384 included, is refused. */
static const struct {
    const char *name;
    jwt_alg_t alg;
} algs[] = {
    {"HS256", JWT_ALG_HS256},
    {"RS256", JWT_ALG_RS256},
    {"ES256", JWT_ALG_ES256},
};

static bool pinned_alg(const char *name, jwt_alg_t *alg)
{
    for (size_t i = 0; name && i < sizeof(algs) / sizeof(algs[0]); i++) {
        if (strcmp(name, algs[i].name) == 0) {
            *alg = algs[i].alg;
            return true;
        }
    }
    return false;
}

/* Exactly two dots, so exactly three segments. An empty one is left for the decoders to refuse,
 * so that "alg":"none" with its empty signature is reported as the disallowed alg it is. */
static bool split(const char *tok, size_t len, seg_t s[3])
{
    size_t k = 0, start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && tok[i] != '.')
            continue;
        if (k == 3)
            return false;
        s[k].p = tok + start;
        s[k].n = i - start;
        k++;
        start = i + 1;
    }
    return k == 3;
}

static int b64val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

/* Strict unpadded base64url (RFC 7515 §2): no '=', no '+' or '/', no whitespace, and the unused
 * low bits of the last character must be zero, so one token has exactly one spelling.
 * Returns a NUL-terminated sl_malloc'd copy (for jansson), or NULL if the text is not that. */
static char *b64url_decode(const char *s, size_t n, size_t *outlen)
{
    if (n % 4 == 1)
        return NULL;
    char *out = sl_malloc(n / 4 * 3 + 3);
    size_t o = 0;
    unsigned acc = 0, bits = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64val((unsigned char)s[i]);
        if (v < 0)
            goto bad;
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (char)(acc >> bits);
            acc &= (1u << bits) - 1; /* keep only the bits not yet emitted */
        }
    }
    if (acc != 0)
        goto bad;
    out[o] = '\0';
    *outlen = o;
    return out;
bad:
    sl_free(out);
    return NULL;
}

/* Decodes one segment into a JSON object. Duplicate members are refused: libjwt parses the same
 * bytes again, and the two parsers must never disagree about which "alg" or "exp" counts. */
static json_t *segment_object(const seg_t *s)
{
    size_t n = 0;
    char *text = b64url_decode(s->p, s->n, &n);
    if (!text)
        return NULL;
    /* libjwt reads the same bytes as a C string: a NUL would end its view early but not ours. */
    json_t *obj = memchr(text, '\0', n) ? NULL : json_loadb(text, n, JSON_REJECT_DUPLICATES, NULL);
    sl_free(text);
    if (obj && !json_is_object(obj)) {
        json_decref(obj);
        obj = NULL;
    }
    return obj;
}

/* The pin: the token's own "alg" must name the configured algorithm exactly, so "none", HS256
 * over an RSA public key, or any other alg never reaches the verifier. */
static int check_header(const json_t *hdr, const char *want, const char **why)
{
    const char *alg = json_string_value(json_object_get(hdr, "alg"));
    if (!alg || strcmp(alg, want) != 0) {
        *why = "token algorithm not allowed";
        return SL_EAUTH;
    }
    /* libjwt refuses any other typ with the same error as a bad signature; say it first. */
    json_t *typ = json_object_get(hdr, "typ");
    if (typ && (!json_is_string(typ) || strcasecmp(json_string_value(typ), "JWT") != 0)) {
        *why = "token type is not JWT";
        return SL_EAUTH;
    }
    /* RFC 7515 §4.1.11: extensions listed in "crit" must be understood; we understand none. */
    if (json_object_get(hdr, "crit")) {
        *why = "token has critical header extensions";
        return SL_EAUTH;
    }
    return 0;
}

/* The signature segment is only looked at by libjwt; check its spelling here so a garbled one
 * reads as malformed rather than as a bad signature. Every pinned alg signs, so it is not empty. */
static bool sig_well_formed(const seg_t *s)
{
    if (s->n == 0)
        return false;
    size_t n = 0;
    char *raw = b64url_decode(s->p, s->n, &n);
    bool ok = raw != NULL;
    sl_free(raw);
    return ok;
}

static int check_signature(const sl_jwt_cfg_t *cfg, jwt_alg_t want, const char *token,
                           const char **why)
{
    jwt_t *jwt = NULL;
    int rc = jwt_decode(&jwt, token, (const unsigned char *)cfg->key, (int)cfg->key_len);
    /* Belt and braces: libjwt verifies with whatever alg the token names (an HS256 token passes
     * with a PEM key as the HMAC secret) and reports "none" when it checked nothing, so the alg
     * it actually used must still be the pinned one. */
    bool ok = rc == 0 && jwt && jwt_get_alg(jwt) == want;
    jwt_free(jwt);
    if (!ok) {
        *why = "bad signature";
        return SL_EAUTH;
    }
    return 0;
}

/* NumericDate (RFC 7519 §2): a JSON number, possibly with a fraction. */
static int numeric_date(const json_t *claims, const char *name, bool *present, double *out)
{
    json_t *v = json_object_get(claims, name);
    *present = v != NULL;
    if (!v)
        return 0;
    if (!json_is_number(v))
        return SL_EAUTH;
    *out = json_number_value(v);
    return 0;
}

/* exp is required unless the config says otherwise (a token without one would be valid forever,
 * past any key rotation or logout); "now" must be before it (give or take leeway). nbf likewise
 * must not be after now + leeway. Doubles are exact for every timestamp below 2^53. */
static int check_times(const json_t *claims, const sl_jwt_cfg_t *cfg, int64_t now, const char **why)
{
    double exp = 0, nbf = 0, iat = 0, t = (double)now, leeway = (double)cfg->leeway_s;
    bool has_exp, has_nbf, has_iat;
    if (numeric_date(claims, "exp", &has_exp, &exp) ||
        numeric_date(claims, "nbf", &has_nbf, &nbf) ||
        numeric_date(claims, "iat", &has_iat, &iat)) {
        *why = "token exp, nbf or iat is not a number";
        return SL_EAUTH;
    }
    if (!has_exp && cfg->require_exp) {
        *why = "token has no exp";
        return SL_EAUTH;
    }
    if (has_exp && t - leeway >= exp) {
        *why = "token expired";
        return SL_EAUTH;
    }
    if (has_nbf && nbf > t + leeway) {
        *why = "token not yet valid (nbf)";
        return SL_EAUTH;
    }
    return 0;
}

/* aud may be one string or an array of them (RFC 7519 §4.1.3); ours must be among them. */
static bool aud_matches(const json_t *aud, const char *want)
{
    if (json_is_string(aud))
        return strcmp(json_string_value(aud), want) == 0;
    size_t i;
    json_t *v;
    json_array_foreach (aud, i, v) {
        if (json_is_string(v) && strcmp(json_string_value(v), want) == 0)
            return true;
    }
    return false;
}

static int check_iss_aud(const json_t *claims, const sl_jwt_cfg_t *cfg, const char **why)
{
    if (cfg->issuer) {
        const char *iss = json_string_value(json_object_get(claims, "iss"));
        if (!iss || strcmp(iss, cfg->issuer) != 0) {
            *why = "token issuer not accepted";
            return SL_EAUTH;
        }
    }
    if (cfg->audience && !aud_matches(json_object_get(claims, "aud"), cfg->audience)) {
        *why = "token audience not accepted";
        return SL_EAUTH;
    }
    return 0;
}

/* The user id: a non-empty string is copied, an integer spelled in decimal; anything else (a
 * float, a bool, an object) has no single obvious spelling and is refused. */
static int user_of(const json_t *claims, const char *claim, char **user, const char **why)
{
    json_t *v = json_object_get(claims, claim);
    if (json_is_string(v) && json_string_length(v) > 0) {
        *user = sl_strdup(json_string_value(v));
        return 0;
    }
    if (json_is_integer(v)) {
        char num[32];
        int n = snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        SL_ASSERT(n > 0 && (size_t)n < sizeof(num));
        *user = sl_strdup(num);
        return 0;
    }
    /* *why must be static, so only the default claim can be named in it. */
    *why = strcmp(claim, "sub") == 0 ? "token has no user claim 'sub'"
                                     : "token has no usable configured user claim";
    return SL_EAUTH;
}

/* Config problems are the operator's, but the client still only learns that it was refused. */
static int check_cfg(const sl_jwt_cfg_t *cfg, jwt_alg_t *alg, const char **why)
{
    /* A NULL or empty key makes libjwt skip verification altogether, so it is never passed on. */
    if (!pinned_alg(cfg->alg, alg) || !cfg->key || cfg->key_len == 0 ||
        cfg->key_len > (size_t)INT_MAX) {
        *why = "JWT verification is not configured correctly";
        return SL_EAUTH;
    }
    return 0;
}

/* Everything that can be said about the token before its signature is checked. *hdr and *claims
 * are set as they are decoded and are the caller's to release, whatever this returns. */
static int decode(const char *token, size_t len, const char *alg, json_t **hdr, json_t **claims,
                  const char **why)
{
    seg_t s[3];
    if (!split(token, len, s) || !(*hdr = segment_object(&s[0]))) {
        *why = "malformed token";
        return SL_EAUTH;
    }
    int err = check_header(*hdr, alg, why);
    if (err)
        return err;
    if (!(*claims = segment_object(&s[1])) || !sig_well_formed(&s[2])) {
        *why = "malformed token";
        return SL_EAUTH;
    }
    return 0;
}

int sl_jwt_verify(const sl_jwt_cfg_t *cfg, const char *token, int64_t now, char **user,
                  const char **why)
{
    json_t *hdr = NULL, *claims = NULL;
    jwt_alg_t want = JWT_ALG_NONE;
    *user = NULL;
    *why = NULL;
    int err = check_cfg(cfg, &want, why);
    if (err)
        goto out;
    size_t len = token ? strnlen(token, SL_JWT_MAX_TOKEN + 1) : 0;
    if (len > SL_JWT_MAX_TOKEN) {
        *why = "token too large";
        err = SL_EAUTH;
        goto out;
    }
    err = decode(token, len, cfg->alg, &hdr, &claims, why);
    if (!err)
        err = check_signature(cfg, want, token, why);
    if (!err)
        err = check_times(claims, cfg, now, why);
    if (!err)
        err = check_iss_aud(claims, cfg, why);
    if (!err)
        err = user_of(claims, cfg->user_claim ? cfg->user_claim : "sub", user, why);
out:
    json_decref(hdr);
    json_decref(claims);
    return err;
}
