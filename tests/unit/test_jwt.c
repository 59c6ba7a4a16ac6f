/* Unit tests for policy/jwt: tokens made with libjwt's own encoder and forged by hand (alg none,
 * swapped algs, HS256 keyed with an RSA public key, tampered parts, malformed text). Keys are
 * generated at test time with libcrypto, so no key material lives in the tree. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jwt.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "core/alloc.h"
#include "policy/jwt.h"

#define NOW    1700000000LL
#define SECRET "correct horse battery staple, thirty-two bytes+"

/* Key pairs as PEM text, made once for the whole group (RSA generation is slow). */
typedef struct keys {
    char *rsa_pub, *rsa_priv;
    char *ec_pub, *ec_priv;
    char *ec_other_pub; /* a second P-256 key, for "signed by someone else" */
} keys_t;

static char *pem_of(EVP_PKEY *k, bool pub)
{
    BIO *b = BIO_new(BIO_s_mem());
    assert_non_null(b);
    int ok = pub ? PEM_write_bio_PUBKEY(b, k)
                 : PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL);
    assert_int_equal(ok, 1);
    char *data = NULL;
    long n = BIO_get_mem_data(b, &data);
    assert_true(n > 0);
    char *s = sl_strndup(data, (size_t)n);
    BIO_free(b);
    return s;
}

static int group_setup(void **state)
{
    keys_t *k = sl_calloc(1, sizeof(*k));
    EVP_PKEY *rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    EVP_PKEY *ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    EVP_PKEY *ec2 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    if (!rsa || !ec || !ec2)
        return -1;
    k->rsa_pub = pem_of(rsa, true);
    k->rsa_priv = pem_of(rsa, false);
    k->ec_pub = pem_of(ec, true);
    k->ec_priv = pem_of(ec, false);
    k->ec_other_pub = pem_of(ec2, true);
    EVP_PKEY_free(rsa);
    EVP_PKEY_free(ec);
    EVP_PKEY_free(ec2);
    *state = k;
    return 0;
}

static int group_teardown(void **state)
{
    keys_t *k = *state;
    sl_free(k->rsa_pub);
    sl_free(k->rsa_priv);
    sl_free(k->ec_pub);
    sl_free(k->ec_priv);
    sl_free(k->ec_other_pub);
    sl_free(k);
    return 0;
}

/* A config borrowing its strings: the verifier only reads them. The defaults of auth.jwt. */
static sl_jwt_cfg_t cfg_for(const char *alg, const char *key)
{
    sl_jwt_cfg_t c = {
        .alg = (char *)alg,
        .key = (char *)key,
        .key_len = strlen(key),
        .user_claim = (char *)"sub",
        .leeway_s = 30,
        .require_exp = true,
    };
    return c;
}

/* Signs the claims (printf-style JSON) with libjwt and returns an sl_malloc'd token. */
static char *make(jwt_alg_t alg, const char *key, const char *fmt, ...)
{
    char claims[16384];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(claims, sizeof(claims), fmt, ap);
    va_end(ap);
    assert_true(n > 0 && (size_t)n < sizeof(claims));
    jwt_t *jwt = NULL;
    assert_int_equal(jwt_new(&jwt), 0);
    assert_int_equal(jwt_add_grants_json(jwt, claims), 0);
    assert_int_equal(jwt_set_alg(jwt, alg, (const unsigned char *)key, key ? (int)strlen(key) : 0),
                     0);
    char *raw = jwt_encode_str(jwt);
    assert_non_null(raw);
    char *tok = sl_strdup(raw);
    free(raw); /* libjwt 1.10 allocates with malloc and has no jwt_free_str */
    jwt_free(jwt);
    return tok;
}

/* A token for claims (a JSON object's text) with an exp ten minutes ahead added, as auth.jwt
 * requires by default: for the tests about the other claims. */
static char *make_exp(jwt_alg_t alg, const char *key, const char *claims)
{
    assert_true(claims[0] == '{');
    return make(alg, key, "{\"exp\":%lld%s%s", NOW + 600, claims[1] == '}' ? "" : ",", claims + 1);
}

/* Unpadded base64url of n bytes, sl_malloc'd. */
static char *b64url(const char *s, size_t n)
{
    char *out = sl_malloc(4 * ((n + 2) / 3) + 1);
    int len = EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)s, (int)n);
    assert_true(len >= 0);
    while (len > 0 && out[len - 1] == '=')
        len--;
    out[len] = '\0';
    for (char *p = out; *p; p++)
        *p = *p == '+' ? '-' : *p == '/' ? '_' : *p;
    return out;
}

/* header.payload.sig from JSON texts and a signature segment taken verbatim. */
static char *forge(const char *hdr, const char *payload, const char *sig)
{
    char *h = b64url(hdr, strlen(hdr)), *p = b64url(payload, strlen(payload));
    size_t n = strlen(h) + strlen(p) + strlen(sig) + 3;
    char *tok = sl_malloc(n);
    int w = snprintf(tok, n, "%s.%s.%s", h, p, sig);
    assert_true(w > 0 && (size_t)w < n);
    sl_free(h);
    sl_free(p);
    return tok;
}

/* A copy of tok with segment idx (0..2) replaced by seg. */
static char *with_segment(const char *tok, int idx, const char *seg)
{
    size_t len = strlen(tok), d1 = strcspn(tok, "."), d2 = d1 + 1 + strcspn(tok + d1 + 1, ".");
    assert_true(d2 < len); /* three parts */
    const size_t start[3] = {0, d1 + 1, d2 + 1}, end[3] = {d1, d2, len};
    char *out = sl_malloc(len + strlen(seg) + 1);
    size_t o = 0;
    for (int i = 0; i < 3; i++) {
        const char *p = i == idx ? seg : tok + start[i];
        size_t n = i == idx ? strlen(seg) : end[i] - start[i];
        memcpy(out + o, p, n);
        o += n;
        if (i < 2)
            out[o++] = '.';
    }
    out[o] = '\0';
    return out;
}

static void expect_user(const sl_jwt_cfg_t *cfg, const char *tok, const char *want)
{
    char *user = NULL;
    const char *why = NULL;
    int rc = sl_jwt_verify(cfg, tok, NOW, &user, &why);
    if (rc != 0)
        fail_msg("refused (%s), wanted user %s", why, want);
    assert_string_equal(user, want);
    sl_free(user);
}

static void expect_refused(const sl_jwt_cfg_t *cfg, const char *tok, const char *want_why)
{
    char *user = (char *)"unset";
    const char *why = NULL;
    assert_int_equal(sl_jwt_verify(cfg, tok, NOW, &user, &why), SL_EAUTH);
    assert_null(user);
    assert_non_null(why);
    assert_string_equal(why, want_why);
    if (tok && *tok) /* the message is shown to the client and logged: never the token */
        assert_null(strstr(why, tok));
}

static void test_jwt_hs256_token_yields_sub(void **state)
{
    sl_jwt_cfg_t cfg = cfg_for("HS256", SECRET);
    char *tok = make(JWT_ALG_HS256, SECRET, "{\"sub\":\"alice\",\"exp\":%lld,\"iat\":%lld}",
                     NOW + 600, NOW);
    expect_user(&cfg, tok, "alice");
    sl_free(tok);
}

static void test_jwt_rs256_token_yields_sub(void **state)
{
    keys_t *k = *state;
    sl_jwt_cfg_t cfg = cfg_for("RS256", k->rsa_pub);
    char *tok = make(JWT_ALG_RS256, k->rsa_priv, "{\"sub\":\"bob\",\"exp\":%lld}", NOW + 600);
    expect_user(&cfg, tok, "bob");
    sl_free(tok);
}

static void test_jwt_es256_token_yields_sub(void **state)
{
    keys_t *k = *state;
    sl_jwt_cfg_t cfg = cfg_for("ES256", k->ec_pub);
    char *tok = make(JWT_ALG_ES256, k->ec_priv, "{\"sub\":\"carol\",\"exp\":%lld}", NOW + 600);
    expect_user(&cfg, tok, "carol");
    sl_free(tok);
}

static void test_jwt_wrong_secret_is_bad_signature(void **state)
{
    sl_jwt_cfg_t cfg = cfg_for("HS256", SECRET);
    char *tok = make(JWT_ALG_HS256, "some other secret", "{\"sub\":\"alice\"}");
    expect_refused(&cfg, tok, "bad signature");
    sl_free(tok);
}

static void test_jwt_es256_signed_by_other_key_is_bad_signature(void **state)
{
    keys_t *k = *state;
    sl_jwt_cfg_t cfg = cfg_for("ES256", k->ec_other_pub);
    char *tok = make(JWT_ALG_ES256, k->ec_priv, "{\"sub\":\"carol\"}");
    expect_refused(&cfg, tok, "bad signature");
    sl_free(tok);
}

static void test_jwt_expired_beyond_leeway_is_refused(void **state)
{
    sl_jwt_cfg_t cfg = cfg_for("HS256", SECRET);
    char *tok = make(JWT_ALG_HS256, SECRET, "{\"sub\":\"a\",\"exp\":%lld}", NOW - 31);
    expect_refused(&cfg, tok, "token expired");
    sl_free(tok);
    /* exp is the first instant the token is no longer valid (RFC 7519 §4.1.4). */
    cfg.leeway_s = 0;
    tok = make(JWT_ALG_HS256, SECRET, "{\"sub\":\"a\",\"exp\":%lld}", NOW);
    expect_refused(&cfg, tok, "token expired");
    sl_free(tok);
}

static void test_jwt_expired_within_leeway_is_accepted(void **state)
{
    sl_jwt_cfg_t cfg = cfg_for("HS256", SECRET);
    char *tok = make(JWT_ALG_HS256, SECRET, "{\"sub\":\"a\",\"exp\":%lld}", NOW - 29);
    expect_user(&cfg, tok, "a");
    sl_free(tok);
    tok = make(JWT_ALG_HS256, SECRET, "{\"sub\":\"a\",\"exp\":%lld.5}", NOW - 1);
    expect_user(&cfg, tok, "a");
    sl_free(tok);
}

static void test_jwt_without_exp_is_refused(void **state)
{
    sl_jwt_cfg_t cfg = cfg_for("HS256", SECRET);
    char *tok = make(JWT_ALG_HS256, SECRET, "{\"sub\":\"a\"}");
    expect_refused(&cfg, tok, "token has no exp");
    sl_free(tok);
    tok = make(JWT_ALG_HS256, SECRET, "{\"sub\":\"a\",\"iat\":%lld,\"nbf\":%lld}", NOW, NOW);
    expect_refused(&cfg, tok, "token has no exp");
    sl_free(tok);
}

static void test_jwt_without_exp_is_accepted_when_not_required(void **state)
{
    sl_jwt_cfg_t cfg = cfg_for("HS256", SECRET);
    cfg.require_exp = false; /* auth.jwt.require_exp: false, the old behaviour */
    char *tok = make(JWT_ALG_HS256, SECRET, "{\"sub\":\"a\"}");
    expect_user(&cfg, tok, "a");
    sl_free(tok);
    /* An exp that is there is still checked. */
    tok = make(JWT_ALG_HS256, SECRET, "{\"sub\":\"a\",\"exp\":%lld}", NOW - 31);
    expect_refused(&cfg, tok, "token expired");
    sl_free(tok);
}

static void test_jwt_nbf_in_future_is_refused(void **state)
{
    sl_jwt_cfg_t cfg = cfg_for("HS256", SECRET);
    char *tok = make(JWT_ALG_HS256, SECRET, "{\"sub\":\"a\",\"nbf\":%lld,\"exp\":%lld}", NOW + 31,
                     NOW + 600);
    expect_refused(&cfg, tok, "token not yet valid (nbf)");
    sl_free(tok);
    /* A clock a little behind the issuer's is what the leeway is for. */
    tok = make(JWT_ALG_HS256, SECRET, "{\"sub\":\"a\",\"nbf\":%lld,\"exp\":%lld}", NOW + 30,
               NOW + 600);
    expect_user(&cfg, tok, "a");
    sl_free(tok);
}

static void test_jwt_non_numeric_times_are_refused(void **state)
{
    sl_jwt_cfg_t cfg = cfg_for("HS256", SECRET);
    const char *claims[] = {
        "{\"sub\":\"a\",\"exp\":\"2099-01-01\"}",
        "{\"sub\":\"a\",\"nbf\":null}",
        "{\"sub\":\"a\",\"iat\":true}",
    };
    for (size_t i = 0; i < sizeof(claims) / sizeof(claims[0]); i++) {
        char *tok = make(JWT_ALG_HS256, SECRET, "%s", claims[i]);
        expect_refused(&cfg, tok, "token exp, nbf or iat is not a number");
        sl_free(tok);
    }
}

static void test_jwt_missing_user_claim_is_refused(void **state)
{
    sl_jwt_cfg_t cfg = cfg_for("HS256", SECRET);
    const char *claims[] = {
        "{\"name\":\"alice\"}", "{\"sub\":\"\"}",    "{\"sub\":true}",
        "{\"sub\":1.5}",        "{\"sub\":[\"a\"]}", "{\"sub\":{\"id\":\"a\"}}",
    };
    for (size_t i = 0; i < sizeof(claims) / sizeof(claims[0]); i++) {
        char *tok = make_exp(JWT_ALG_HS256, SECRET, claims[i]);
        expect_refused(&cfg, tok, "token has no user claim 'sub'");
        sl_free(tok);
    }
}

static void test_jwt_integer_sub_becomes_decimal(void **state)
{
    sl_jwt_cfg_t cfg = cfg_for("HS256", SECRET);
    char *tok = make_exp(JWT_ALG_HS256, SECRET, "{\"sub\":1234567890123}");
    expect_user(&cfg, tok, "1234567890123");
    sl_free(tok);
    tok = make_exp(JWT_ALG_HS256, SECRET, "{\"sub\":-7}");
    expect_user(&cfg, tok, "-7");
    sl_free(tok);
}

static void test_jwt_configured_user_claim_is_used(void **state)
{
    sl_jwt_cfg_t cfg = cfg_for("HS256", SECRET);
    cfg.user_claim = (char *)"email";
    char *tok = make_exp(JWT_ALG_HS256, SECRET, "{\"sub\":\"42\",\"email\":\"d@example.com\"}");
    expect_user(&cfg, tok, "d@example.com");
    sl_free(tok);
    tok = make_exp(JWT_ALG_HS256, SECRET, "{\"sub\":\"42\"}");
    expect_refused(&cfg, tok, "token has no usable configured user claim");
    sl_free(tok);
    cfg.user_claim = NULL; /* NULL means the default, "sub" */
    tok = make_exp(JWT_ALG_HS256, SECRET, "{\"sub\":\"42\"}");
    expect_user(&cfg, tok, "42");
    sl_free(tok);
}

static void test_jwt_issuer_must_match_when_configured(void **state)
{
    sl_jwt_cfg_t cfg = cfg_for("HS256", SECRET);
    cfg.issuer = (char *)"https://idp.example";
    char *tok = make_exp(JWT_ALG_HS256, SECRET, "{\"sub\":\"a\",\"iss\":\"https://idp.example\"}");
    expect_user(&cfg, tok, "a");
    sl_free(tok);
    const char *bad[] = {
        "{\"sub\":\"a\",\"iss\":\"https://evil.example\"}",
        "{\"sub\":\"a\",\"iss\":\"https://idp.example/\"}",
        "{\"sub\":\"a\"}",
        "{\"sub\":\"a\",\"iss\":[\"https://idp.example\"]}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        tok = make_exp(JWT_ALG_HS256, SECRET, bad[i]);
        expect_refused(&cfg, tok, "token issuer not accepted");
        sl_free(tok);
    }
}

static void test_jwt_audience_string_or_array_must_contain_ours(void **state)
{
    sl_jwt_cfg_t cfg = cfg_for("HS256", SECRET);
    cfg.audience = (char *)"sluice";
    const char *good[] = {
        "{\"sub\":\"a\",\"aud\":\"sluice\"}",
        "{\"sub\":\"a\",\"aud\":[\"other\",\"sluice\"]}",
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        char *tok = make_exp(JWT_ALG_HS256, SECRET, good[i]);
        expect_user(&cfg, tok, "a");
        sl_free(tok);
    }
    const char *bad[] = {
        "{\"sub\":\"a\",\"aud\":\"other\"}",
        "{\"sub\":\"a\",\"aud\":[\"other\",1]}",
        "{\"sub\":\"a\",\"aud\":[]}",
        "{\"sub\":\"a\"}",
        "{\"sub\":\"a\",\"aud\":{\"sluice\":true}}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char *tok = make_exp(JWT_ALG_HS256, SECRET, bad[i]);
        expect_refused(&cfg, tok, "token audience not accepted");
        sl_free(tok);
    }
}

static void test_jwt_alg_none_is_refused(void **state)
{
    keys_t *k = *state;
    sl_jwt_cfg_t hs = cfg_for("HS256", SECRET), rs = cfg_for("RS256", k->rsa_pub);
    const char *hdrs[] = {
        "{\"alg\":\"none\",\"typ\":\"JWT\"}",
        "{\"alg\":\"None\"}",
        "{\"alg\":\"NONE\"}",
    };
    for (size_t i = 0; i < sizeof(hdrs) / sizeof(hdrs[0]); i++) {
        char *tok = forge(hdrs[i], "{\"sub\":\"admin\"}", "");
        expect_refused(&hs, tok, "token algorithm not allowed");
        expect_refused(&rs, tok, "token algorithm not allowed");
        sl_free(tok);
    }
    /* A none token carrying a real signature from elsewhere changes nothing. */
    char *good = make(JWT_ALG_HS256, SECRET, "{\"sub\":\"admin\"}");
    const char *none_json = "{\"alg\":\"none\"}";
    char *none_hdr = b64url(none_json, strlen(none_json));
    char *tok = with_segment(good, 0, none_hdr);
    expect_refused(&hs, tok, "token algorithm not allowed");
    sl_free(tok);
    sl_free(none_hdr);
    sl_free(good);
    /* Nor does a config that names "none": it is not an algorithm we pin. */
    sl_jwt_cfg_t none = cfg_for("none", SECRET);
    tok = forge("{\"alg\":\"none\"}", "{\"sub\":\"admin\"}", "");
    expect_refused(&none, tok, "JWT verification is not configured correctly");
    sl_free(tok);
}

/* The classic confusion: the verifier holds an RSA (or EC) public key, and the attacker, who
 * knows it, signs HS256 with the PEM text as the HMAC secret. libjwt alone would accept it. */
static void test_jwt_alg_confusion_hs256_keyed_with_public_pem_is_refused(void **state)
{
    keys_t *k = *state;
    sl_jwt_cfg_t rs = cfg_for("RS256", k->rsa_pub);
    char *tok = make(JWT_ALG_HS256, k->rsa_pub, "{\"sub\":\"admin\"}");
    expect_refused(&rs, tok, "token algorithm not allowed");
    sl_free(tok);
    sl_jwt_cfg_t es = cfg_for("ES256", k->ec_pub);
    tok = make(JWT_ALG_HS256, k->ec_pub, "{\"sub\":\"admin\"}");
    expect_refused(&es, tok, "token algorithm not allowed");
    sl_free(tok);
}

static void test_jwt_header_alg_swapped_is_refused(void **state)
{
    keys_t *k = *state;
    sl_jwt_cfg_t rs = cfg_for("RS256", k->rsa_pub);
    char *good = make(JWT_ALG_RS256, k->rsa_priv, "{\"sub\":\"bob\"}");
    const char *hdrs[] = {
        "{\"alg\":\"HS256\",\"typ\":\"JWT\"}",
        "{\"alg\":\"RS512\",\"typ\":\"JWT\"}",
        "{\"alg\":\"ES256\",\"typ\":\"JWT\"}",
        "{\"alg\":\"rs256\",\"typ\":\"JWT\"}",
        "{\"alg\":\"RS256 \",\"typ\":\"JWT\"}",
        "{\"alg\":[\"RS256\"]}",
        "{\"alg\":null}",
        "{\"typ\":\"JWT\"}",
    };
    for (size_t i = 0; i < sizeof(hdrs) / sizeof(hdrs[0]); i++) {
        char *h = b64url(hdrs[i], strlen(hdrs[i]));
        char *tok = with_segment(good, 0, h);
        expect_refused(&rs, tok, "token algorithm not allowed");
        sl_free(tok);
        sl_free(h);
    }
    sl_free(good);
}

static void test_jwt_header_changed_keeping_alg_is_bad_signature(void **state)
{
    sl_jwt_cfg_t cfg = cfg_for("HS256", SECRET);
    char *good = make(JWT_ALG_HS256, SECRET, "{\"sub\":\"a\"}");
    const char *hdr = "{\"alg\":\"HS256\",\"typ\":\"JWT\",\"kid\":\"k2\"}";
    char *h = b64url(hdr, strlen(hdr));
    char *tok = with_segment(good, 0, h);
    expect_refused(&cfg, tok, "bad signature");
    sl_free(tok);
    sl_free(h);
    sl_free(good);
}

static void test_jwt_tampered_payload_is_bad_signature(void **state)
{
    keys_t *k = *state;
    const char *evil = "{\"sub\":\"admin\"}";
    char *p = b64url(evil, strlen(evil));
    sl_jwt_cfg_t cfgs[] = {cfg_for("HS256", SECRET), cfg_for("RS256", k->rsa_pub),
                           cfg_for("ES256", k->ec_pub)};
    char *toks[] = {
        make(JWT_ALG_HS256, SECRET, "{\"sub\":\"guest\"}"),
        make(JWT_ALG_RS256, k->rsa_priv, "{\"sub\":\"guest\"}"),
        make(JWT_ALG_ES256, k->ec_priv, "{\"sub\":\"guest\"}"),
    };
    for (size_t i = 0; i < 3; i++) {
        char *tok = with_segment(toks[i], 1, p);
        expect_refused(&cfgs[i], tok, "bad signature");
        sl_free(tok);
        sl_free(toks[i]);
    }
    sl_free(p);
}

static void test_jwt_other_type_or_crit_header_is_refused(void **state)
{
    sl_jwt_cfg_t cfg = cfg_for("HS256", SECRET);
    char *tok = forge("{\"alg\":\"HS256\",\"typ\":\"at+jwt\"}", "{\"sub\":\"a\"}", "AAAA");
    expect_refused(&cfg, tok, "token type is not JWT");
    sl_free(tok);
    tok = forge("{\"alg\":\"HS256\",\"crit\":[\"exp\"]}", "{\"sub\":\"a\"}", "AAAA");
    expect_refused(&cfg, tok, "token has critical header extensions");
    sl_free(tok);
    /* typ is case-insensitive (RFC 7519 §5.1) and optional. */
    tok = make_exp(JWT_ALG_HS256, SECRET, "{\"sub\":\"a\"}");
    expect_user(&cfg, tok, "a");
    sl_free(tok);
}

static void test_jwt_malformed_inputs_are_refused(void **state)
{
    sl_jwt_cfg_t cfg = cfg_for("HS256", SECRET);
    char *good = make(JWT_ALG_HS256, SECRET, "{\"sub\":\"a\"}");
    const char *d1 = strchr(good, '.');
    char two_parts[512], four_parts[512], padded[512], spaced[512];
    snprintf(two_parts, sizeof(two_parts), "%.*s", (int)(strrchr(good, '.') - good), good);
    snprintf(four_parts, sizeof(four_parts), "%s.AAAA", good);
    snprintf(padded, sizeof(padded), "%.*s=%s", (int)(d1 - good), good, d1);
    snprintf(spaced, sizeof(spaced), " %s", good);
    char *not_object = forge("[\"HS256\"]", "{\"sub\":\"a\"}", "AAAA");
    char *payload_array = forge("{\"alg\":\"HS256\"}", "[\"a\"]", "AAAA");
    char *payload_junk = forge("{\"alg\":\"HS256\"}", "{\"sub\":\"a\"} x", "AAAA");
    char *dup_alg = forge("{\"alg\":\"HS256\",\"alg\":\"none\"}", "{\"sub\":\"a\"}", "AAAA");
    char *dup_sub = forge("{\"alg\":\"HS256\"}", "{\"sub\":\"a\",\"sub\":\"b\"}", "AAAA");
    char *no_sig = forge("{\"alg\":\"HS256\"}", "{\"sub\":\"a\"}", "");
    char *bad_sig = forge("{\"alg\":\"HS256\"}", "{\"sub\":\"a\"}", "ab+/");
    const char *cases[] = {
        "",
        ".",
        "..",
        "abc",
        "a.b",
        "!!!.###.$$$",
        "eyJ.eyJ.AAAA",
        "e30.e30.AAAA",
        two_parts,
        four_parts,
        padded,
        spaced,
        not_object,
        payload_array,
        payload_junk,
        dup_alg,
        dup_sub,
        no_sig,
        bad_sig,
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.AAAAB", /* 4n+1 characters */
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.AB",    /* non-zero spare bits */
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn2.AAAA",  /* non-zero spare bits */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        /* "{}" decodes fine and has no alg: that is the alg check's to refuse. */
        const char *want = strcmp(cases[i], "e30.e30.AAAA") == 0 ? "token algorithm not allowed"
                                                                 : "malformed token";
        expect_refused(&cfg, cases[i], want);
    }
    expect_refused(&cfg, NULL, "malformed token");
    sl_free(not_object);
    sl_free(payload_array);
    sl_free(payload_junk);
    sl_free(dup_alg);
    sl_free(dup_sub);
    sl_free(no_sig);
    sl_free(bad_sig);
    sl_free(good);
}

static void test_jwt_token_over_8k_is_refused(void **state)
{
    sl_jwt_cfg_t cfg = cfg_for("HS256", SECRET);
    char filler[8192];
    char *fits = NULL;
    /* The largest genuine token of at most 8 KiB still passes; grow the filler until one more
     * byte would cross the limit. */
    for (size_t n = 5900; n < 6200 && !fits; n++) {
        memset(filler, 'x', n);
        filler[n] = '\0';
        char *tok = make(JWT_ALG_HS256, SECRET, "{\"sub\":\"a\",\"exp\":%lld,\"f\":\"%s\"}",
                         NOW + 600, filler);
        char *next = make(JWT_ALG_HS256, SECRET, "{\"sub\":\"a\",\"exp\":%lld,\"f\":\"%sx\"}",
                          NOW + 600, filler);
        if (strlen(tok) <= 8192 && strlen(next) > 8192)
            fits = tok;
        else
            sl_free(tok);
        if (fits)
            expect_refused(&cfg, next, "token too large");
        sl_free(next);
    }
    assert_non_null(fits);
    expect_user(&cfg, fits, "a");
    sl_free(fits);
    char *huge = sl_malloc(1 << 20);
    memset(huge, 'A', (1 << 20) - 1);
    huge[(1 << 20) - 1] = '\0';
    expect_refused(&cfg, huge, "token too large");
    sl_free(huge);
}

static void test_jwt_misconfiguration_refuses_everything(void **state)
{
    char *tok = make(JWT_ALG_HS256, SECRET, "{\"sub\":\"a\"}");
    /* An empty key would make libjwt skip the signature check entirely. */
    sl_jwt_cfg_t empty = cfg_for("HS256", "");
    sl_jwt_cfg_t hs384 = cfg_for("HS384", SECRET);
    sl_jwt_cfg_t unset = cfg_for("HS256", SECRET);
    unset.alg = NULL;
    sl_jwt_cfg_t nokey = cfg_for("HS256", SECRET);
    nokey.key = NULL;
    const sl_jwt_cfg_t *cfgs[] = {&empty, &hs384, &unset, &nokey};
    for (size_t i = 0; i < 4; i++)
        expect_refused(cfgs[i], tok, "JWT verification is not configured correctly");
    sl_free(tok);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_jwt_hs256_token_yields_sub),
        cmocka_unit_test(test_jwt_rs256_token_yields_sub),
        cmocka_unit_test(test_jwt_es256_token_yields_sub),
        cmocka_unit_test(test_jwt_wrong_secret_is_bad_signature),
        cmocka_unit_test(test_jwt_es256_signed_by_other_key_is_bad_signature),
        cmocka_unit_test(test_jwt_expired_beyond_leeway_is_refused),
        cmocka_unit_test(test_jwt_expired_within_leeway_is_accepted),
        cmocka_unit_test(test_jwt_without_exp_is_refused),
        cmocka_unit_test(test_jwt_without_exp_is_accepted_when_not_required),
        cmocka_unit_test(test_jwt_nbf_in_future_is_refused),
        cmocka_unit_test(test_jwt_non_numeric_times_are_refused),
        cmocka_unit_test(test_jwt_missing_user_claim_is_refused),
        cmocka_unit_test(test_jwt_integer_sub_becomes_decimal),
        cmocka_unit_test(test_jwt_configured_user_claim_is_used),
        cmocka_unit_test(test_jwt_issuer_must_match_when_configured),
        cmocka_unit_test(test_jwt_audience_string_or_array_must_contain_ours),
        cmocka_unit_test(test_jwt_alg_none_is_refused),
        cmocka_unit_test(test_jwt_alg_confusion_hs256_keyed_with_public_pem_is_refused),
        cmocka_unit_test(test_jwt_header_alg_swapped_is_refused),
        cmocka_unit_test(test_jwt_header_changed_keeping_alg_is_bad_signature),
        cmocka_unit_test(test_jwt_tampered_payload_is_bad_signature),
        cmocka_unit_test(test_jwt_other_type_or_crit_header_is_refused),
        cmocka_unit_test(test_jwt_malformed_inputs_are_refused),
        cmocka_unit_test(test_jwt_token_over_8k_is_refused),
        cmocka_unit_test(test_jwt_misconfiguration_refuses_everything),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
