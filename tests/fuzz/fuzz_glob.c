/* core/glob (model-name globs) and store/keys (a key's comma-separated allowed globs),
 * differentially against a plain backtracking matcher: '*' matches any run of characters, '?'
 * one UTF-8 character, anything else itself, byte for byte. sl_glob_match must agree with it on
 * every valid UTF-8 pattern and name (what YAML and JSON let through), and sl_key_models_allow
 * must be "any of the trimmed, non-empty globs shorter than 256 bytes matches" ("" allows all).
 *
 * Input: "pattern\0name" (both cut to 128 bytes); the pattern is also read as a glob list. */
#include "fuzz.h"

#include "config/config.h"
#include "core/glob.h"
#include "store/keys.h"
#include "stub_db.h"

#define GLOB_MAX 128

/* One UTF-8 character on, as the matcher counts them: a byte, then any continuation bytes. */
static size_t next_char(const char *s, size_t i, size_t n)
{
    i++;
    while (i < n && ((unsigned char)s[i] & 0xC0) == 0x80)
        i++;
    return i;
}

typedef struct ref {
    const char *p, *s;
    size_t pn, sn;
    signed char memo[GLOB_MAX + 1][GLOB_MAX + 1]; /* -1 unknown, else the answer */
} ref_t;

static bool ref_match(ref_t *r, size_t pi, size_t si)
{
    if (r->memo[pi][si] >= 0)
        return r->memo[pi][si];
    bool m;
    if (pi == r->pn) {
        m = si == r->sn;
    } else if (r->p[pi] == '*') {
        m = false;
        for (size_t k = si;; k = next_char(r->s, k, r->sn)) {
            if (ref_match(r, pi + 1, k)) {
                m = true;
                break;
            }
            if (k >= r->sn)
                break;
        }
    } else if (si == r->sn) {
        m = false;
    } else if (r->p[pi] == '?') {
        m = ref_match(r, pi + 1, next_char(r->s, si, r->sn));
    } else {
        m = r->p[pi] == r->s[si] && ref_match(r, pi + 1, si + 1);
    }
    r->memo[pi][si] = m;
    return m;
}

static bool reference(const char *p, const char *s)
{
    static ref_t r;
    r.p = p;
    r.s = s;
    r.pn = strlen(p);
    r.sn = strlen(s);
    memset(r.memo, -1, sizeof r.memo);
    return ref_match(&r, 0, 0);
}

/* Well-formed UTF-8 (shortest forms, no surrogates, at most U+10FFFF). */
static bool utf8_ok(const char *str)
{
    const unsigned char *s = (const unsigned char *)str;
    while (*s) {
        unsigned c = *s, k = c < 0x80 ? 0 : (c & 0xe0) == 0xc0 ? 1 : (c & 0xf0) == 0xe0 ? 2 : 3;
        if (c >= 0x80 && (c < 0xc2 || c > 0xf4))
            return false;
        uint32_t cp = k == 0 ? c : k == 1 ? c & 0x1f : k == 2 ? c & 0x0f : c & 0x07;
        for (unsigned j = 1; j <= k; j++) {
            if ((s[j] & 0xc0) != 0x80)
                return false;
            cp = cp << 6 | (s[j] & 0x3f);
        }
        if ((k == 2 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
            (k == 3 && (cp < 0x10000 || cp > 0x10ffff)))
            return false;
        s += k + 1;
    }
    return true;
}

/* sl_key_models_allow as documented: "" allows all, else any listed glob matches. */
static bool reference_list(const char *globs, const char *model)
{
    if (!globs[0])
        return true;
    const char *p = globs;
    for (;;) {
        size_t len = strcspn(p, ",");
        size_t a = 0, b = len;
        while (a < b && p[a] == ' ')
            a++;
        while (b > a && p[b - 1] == ' ')
            b--;
        if (b > a && b - a < 256) {
            char pat[256];
            memcpy(pat, p + a, b - a);
            pat[b - a] = '\0';
            if (reference(pat, model))
                return true;
        }
        if (!p[len])
            return false;
        p += len + 1;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char pat[GLOB_MAX + 1], name[GLOB_MAX + 1];
    const char *in = (const char *)data;
    const char *nul = memchr(in, '\0', size);
    size_t pn = nul ? (size_t)(nul - in) : size;
    size_t rest = nul ? size - pn - 1 : 0;
    pn = pn > GLOB_MAX ? GLOB_MAX : pn;
    memcpy(pat, in, pn);
    pat[pn] = '\0';
    size_t nn = rest > GLOB_MAX ? GLOB_MAX : rest;
    if (nul)
        memcpy(name, nul + 1, nn);
    name[nn] = '\0';

    bool got = sl_glob_match(pat, name), want = reference(pat, name);
    /* Patterns (YAML) and model names (JSON) reach the matcher as valid UTF-8; on other bytes
     * "one character" has no meaning and the single-backtrack matcher may differ from the
     * reference, so only its memory safety is checked there. */
    if (got != want && utf8_ok(pat) && utf8_ok(name)) {
        fprintf(stderr, "glob '%s' name '%s': sl_glob_match %d, reference %d\n", pat, name, got,
                want);
        FUZZ_CHECK(!"sl_glob_match agrees with the reference matcher");
    }
    FUZZ_CHECK(sl_glob_match("*", name));
    if (utf8_ok(pat) && utf8_ok(name))
        FUZZ_CHECK(sl_key_models_allow(pat, name) == reference_list(pat, name));
    else
        (void)sl_key_models_allow(pat, name);
    return 0;
}
