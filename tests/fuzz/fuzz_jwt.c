/* policy/jwt: any bearer text gives either a user id (non-empty, no reason) or SL_EAUTH with a
 * static reason and no user. Tokens signed here with the configured HS256 secret, over a header
 * and claims taken from the input, must get the verdict an independent reading of RFC 7519 and
 * the config gives: the pinned alg, typ JWT if any, no crit, claims an object without duplicate
 * members, exp (required unless require_exp is off) and nbf within the leeway, issuer and
 * audience when configured, and the user claim (a non-empty string, or an integer in decimal).
 *
 * Input: [mode][bytes]. mode % 3: 0 the bytes are the token; 1 they are the claims, under
 * {"alg":"HS256","typ":"JWT"}; 2 they are "header\nclaims". bit 2: issuer "iss-x" and audience
 * "aud-x" are required. bit 3: require_exp is off (auth.jwt.require_exp: false). */
#include "fuzz.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <strings.h>

#include "policy/jwt.h"

#define NOW    1700000000
#define LEEWAY 30
#define SECRET "fuzz-secret-0123456789abcdef"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fuzz_init_json();
    return 0;
}

static void b64url(sl_buf_t *out, const void *p, size_t n)
{
    char *enc = sl_malloc(4 * ((n + 2) / 3) + 1);
    int len = EVP_EncodeBlock((unsigned char *)enc, p, (int)n);
    while (len > 0 && enc[len - 1] == '=')
        len--;
    for (int i = 0; i < len; i++)
        enc[i] = enc[i] == '+' ? '-' : enc[i] == '/' ? '_' : enc[i];
    sl_buf_append(out, enc, (size_t)len);
    sl_free(enc);
}

/* header.claims.HMAC-SHA256(secret), as any HS256 issuer signs. */
static char *sign(const char *hdr, size_t hn, const char *claims, size_t cn)
{
    sl_buf_t t;
    sl_buf_init(&t);
    b64url(&t, hdr, hn);
    sl_buf_putc(&t, '.');
    b64url(&t, claims, cn);
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    FUZZ_CHECK(HMAC(EVP_sha256(), SECRET, (int)strlen(SECRET), (const unsigned char *)t.data, t.len,
                    mac, &mac_len) != NULL);
    sl_buf_putc(&t, '.');
    b64url(&t, mac, mac_len);
    return t.data; /* NUL-terminated, the caller's */
}

/* An object from JSON text as the verifier must read it: no NUL, no duplicate members. */
static json_t *object_of(const char *s, size_t n)
{
    if (memchr(s, '\0', n))
        return NULL;
    json_t *j = json_loadb(s, n, JSON_REJECT_DUPLICATES, NULL);
    if (j && !json_is_object(j)) {
        json_decref(j);
        j = NULL;
    }
    return j;
}

static bool header_ok(json_t *h)
{
    const char *alg = json_string_value(json_object_get(h, "alg"));
    json_t *typ = json_object_get(h, "typ");
    return alg && !strcmp(alg, "HS256") && !json_object_get(h, "crit") &&
           (!typ || (json_is_string(typ) && !strcasecmp(json_string_value(typ), "JWT")));
}

/* require: a missing claim fails (exp under require_exp). */
static bool date_ok(json_t *c, const char *name, bool is_exp, bool require)
{
    json_t *v = json_object_get(c, name);
    if (!v)
        return !require;
    if (!json_is_number(v))
        return false;
    double t = json_number_value(v);
    if (is_exp)
        return (double)NOW - LEEWAY < t;
    if (!strcmp(name, "nbf"))
        return t <= (double)NOW + LEEWAY;
    return true;
}

static bool aud_ok(json_t *aud)
{
    if (json_is_string(aud))
        return !strcmp(json_string_value(aud), "aud-x");
    size_t i;
    json_t *v;
    json_array_foreach (aud, i, v) {
        if (json_is_string(v) && !strcmp(json_string_value(v), "aud-x"))
            return true;
    }
    return false;
}

/* The user the verifier must return for these claims, or NULL when it must refuse. */
static char *expected_user(json_t *c, bool strict, bool require_exp)
{
    if (!date_ok(c, "exp", true, require_exp) || !date_ok(c, "nbf", false, false) ||
        !date_ok(c, "iat", false, false))
        return NULL;
    if (strict) {
        const char *iss = json_string_value(json_object_get(c, "iss"));
        if (!iss || strcmp(iss, "iss-x") || !aud_ok(json_object_get(c, "aud")))
            return NULL;
    }
    json_t *sub = json_object_get(c, "sub");
    if (json_is_string(sub) && json_string_length(sub) > 0)
        return sl_strdup(json_string_value(sub));
    if (json_is_integer(sub)) {
        char num[32];
        snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(sub));
        return sl_strdup(num);
    }
    return NULL;
}

static int verify(const char *token, bool strict, bool require_exp, char **user)
{
    sl_jwt_cfg_t cfg = {
        .alg = (char *)"HS256",
        .key = (char *)SECRET,
        .key_len = strlen(SECRET),
        .user_claim = (char *)"sub",
        .leeway_s = LEEWAY,
        .require_exp = require_exp,
        .issuer = strict ? (char *)"iss-x" : NULL,
        .audience = strict ? (char *)"aud-x" : NULL,
    };
    const char *why = (const char *)1;
    int rc = sl_jwt_verify(&cfg, token, NOW, user, &why);
    if (rc == 0) {
        FUZZ_CHECK(*user && **user && why == NULL);
    } else {
        FUZZ_CHECK(rc == SL_EAUTH && *user == NULL && why && *why);
    }
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_t f = {data, size};
    uint8_t mode = fz_u8(&f);
    bool strict = mode & 4;
    bool require_exp = !(mode & 8);
    const char *in = (const char *)f.p;
    size_t n = f.n;
    char *user = NULL;
    if (mode % 3 == 0) {
        char *tok = fz_rest_str(&f);
        (void)verify(tok, strict, require_exp, &user);
        sl_free(tok);
        sl_free(user);
        return 0;
    }
    static const char fixed[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
    const char *hdr = fixed, *claims = in;
    size_t hn = sizeof fixed - 1, cn = n;
    if (mode % 3 == 2) {
        const char *nl = memchr(in, '\n', n);
        if (!nl)
            return 0;
        hdr = in;
        hn = (size_t)(nl - in);
        claims = nl + 1;
        cn = n - hn - 1;
    }
    char *tok = sign(hdr, hn, claims, cn);
    json_t *h = object_of(hdr, hn), *c = object_of(claims, cn);
    char *want = h && c && header_ok(h) && strlen(tok) <= 8192
                     ? expected_user(c, strict, require_exp)
                     : NULL;
    int rc = verify(tok, strict, require_exp, &user);
    if ((rc == 0) != (want != NULL) || (want && strcmp(user, want) != 0)) {
        fprintf(stderr, "token %s: verifier %s, expected %s\n", tok, rc ? "refuses" : user,
                want ? want : "a refusal");
        FUZZ_CHECK(!"a signed token gets the verdict its header and claims call for");
    }
    json_decref(h);
    json_decref(c);
    sl_free(want);
    sl_free(user);
    sl_free(tok);
    return 0;
}
