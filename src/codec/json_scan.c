/* The allocation-free JSON scanner (json_scan.h). Validation follows jansson 2.14's lexer and
 * parser rule by rule, so text accepted here is text json_loadb accepts: the lazy tree built
 * later from the same bytes never fails where the scan succeeded. */
#include "codec/json_scan.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"

#define MAX_DEPTH 2048 /* jansson's JSON_PARSER_MAX_DEPTH */

typedef struct {
    const char *p, *end;
    /* sl_json_valid_get: the root object's members to note on the way (NULL: none) */
    const char *const *keys;
    sl_jval_t *vals;
    size_t nkeys;
} cur_t;

static void note_member(cur_t *c, const char *key, size_t klen, const char *v, const char *vend);

/* Byte classes, so the loops over long runs test one table entry per byte. PLAIN: a string
 * byte needing no attention (printable ASCII but " and \). STOP: what a skip over validated
 * text must look at (a quote, a bracket). */
enum { PLAIN = 1, STOP = 2 };
#define CLS(b)                                                                                     \
    (unsigned char)(((b) >= 0x20 && (b) < 0x80 && (b) != '"' && (b) != '\\' ? PLAIN : 0) |         \
                    ((b) == '"' || (b) == '[' || (b) == ']' || (b) == '{' || (b) == '}' ? STOP     \
                                                                                        : 0))
#define C4(b)  CLS(b), CLS((b) + 1), CLS((b) + 2), CLS((b) + 3)
#define C16(b) C4(b), C4((b) + 4), C4((b) + 8), C4((b) + 12)
#define C64(b) C16(b), C16((b) + 16), C16((b) + 32), C16((b) + 48)
static const unsigned char cls[256] = {C64(0), C64(64), C64(128), C64(192)};
#undef C64
#undef C16
#undef C4
#undef CLS

static bool is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static void skip_ws(cur_t *c)
{
    while (c->p < c->end && is_ws(*c->p))
        c->p++;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Four hex digits at p (p + 4 <= end checked by the caller); -1 if not. */
static int32_t hex4(const char *p)
{
    int32_t v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(p[i]);
        if (h < 0)
            return -1;
        v = v * 16 + h;
    }
    return v;
}

/* One UTF-8 sequence of 2 to 4 bytes at c->p (first byte >= 0x80): jansson's utf8_check. */
static bool utf8_seq(cur_t *c)
{
    const unsigned char *u = (const unsigned char *)c->p;
    size_t left = (size_t)(c->end - c->p);
    int n;
    uint32_t v;
    if (u[0] >= 0xC2 && u[0] <= 0xDF)
        n = 2, v = u[0] & 0x1F;
    else if (u[0] >= 0xE0 && u[0] <= 0xEF)
        n = 3, v = u[0] & 0x0F;
    else if (u[0] >= 0xF0 && u[0] <= 0xF4)
        n = 4, v = u[0] & 0x07;
    else
        return false;
    if (left < (size_t)n)
        return false;
    for (int i = 1; i < n; i++) {
        if ((u[i] & 0xC0) != 0x80)
            return false;
        v = (v << 6) | (u[i] & 0x3F);
    }
    if ((n == 3 && v < 0x800) || (n == 4 && v < 0x10000) || v > 0x10FFFF ||
        (v >= 0xD800 && v <= 0xDFFF))
        return false;
    c->p += n;
    return true;
}

static bool scan_string(cur_t *c)
{
    c->p++; /* the opening quote */
    while (c->p < c->end) {
        /* The common run of plain ASCII first, in a tight loop. */
        while (c->p < c->end && (cls[(unsigned char)*c->p] & PLAIN))
            c->p++;
        if (c->p >= c->end)
            return false;
        unsigned char ch = (unsigned char)*c->p;
        if (ch == '"') {
            c->p++;
            return true;
        }
        if (ch < 0x20)
            return false;
        if (ch >= 0x80) {
            if (!utf8_seq(c))
                return false;
            continue;
        }
        if (ch != '\\') {
            c->p++;
            continue;
        }
        if (c->end - c->p < 2)
            return false;
        char e = c->p[1];
        if (e == 'u') {
            if (c->end - c->p < 6)
                return false;
            int32_t v = hex4(c->p + 2);
            if (v <= 0) /* not hex, or \u0000 (refused without JSON_ALLOW_NUL) */
                return false;
            c->p += 6;
            if (v >= 0xDC00 && v <= 0xDFFF)
                return false; /* a low surrogate alone */
            if (v >= 0xD800 && v <= 0xDBFF) {
                if (c->end - c->p < 6 || c->p[0] != '\\' || c->p[1] != 'u')
                    return false;
                int32_t lo = hex4(c->p + 2);
                if (lo < 0xDC00 || lo > 0xDFFF)
                    return false;
                c->p += 6;
            }
            continue;
        }
        if (!strchr("\"\\/bfnrt", e) || e == '\0')
            return false;
        c->p += 2;
    }
    return false;
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool scan_number(cur_t *c)
{
    const char *start = c->p;
    if (c->p < c->end && *c->p == '-')
        c->p++;
    if (c->p >= c->end || !is_digit(*c->p))
        return false;
    if (*c->p == '0')
        c->p++;
    else
        while (c->p < c->end && is_digit(*c->p))
            c->p++;
    bool real = false;
    if (c->p < c->end && *c->p == '.') {
        real = true;
        c->p++;
        if (c->p >= c->end || !is_digit(*c->p))
            return false;
        while (c->p < c->end && is_digit(*c->p))
            c->p++;
    }
    if (c->p < c->end && (*c->p == 'e' || *c->p == 'E')) {
        real = true;
        c->p++;
        if (c->p < c->end && (*c->p == '+' || *c->p == '-'))
            c->p++;
        if (c->p >= c->end || !is_digit(*c->p))
            return false;
        while (c->p < c->end && is_digit(*c->p))
            c->p++;
    }
    /* What jansson refuses after lexing: an integer beyond long long, a real beyond double.
     * Most numbers cannot be either, and skip the libc conversion: an integer of at most 18
     * digits, a real without exponent whose integer part has at most 300 digits. */
    size_t len = (size_t)(c->p - start);
    size_t digits = len - (*start == '-');
    if (!real && digits <= 18)
        return true;
    if (real && len < 300 && !memchr(start, 'e', len) && !memchr(start, 'E', len))
        return true;
    char tmp[512];
    if (len >= sizeof tmp) {
        /* A long integer cannot fit; a long real is checked by its magnitude alone. */
        if (!real)
            return false;
        char *copy = sl_malloc(len + 1);
        memcpy(copy, start, len);
        copy[len] = '\0';
        errno = 0;
        double d = strtod(copy, NULL);
        bool ok = !(errno == ERANGE && isinf(d));
        sl_free(copy);
        return ok;
    }
    memcpy(tmp, start, len);
    tmp[len] = '\0';
    errno = 0;
    if (real) {
        double d = strtod(tmp, NULL);
        return !(errno == ERANGE && isinf(d));
    }
    (void)strtoll(tmp, NULL, 10);
    return errno != ERANGE;
}

static bool scan_literal(cur_t *c, const char *lit, size_t n)
{
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, lit, n) != 0)
        return false;
    c->p += n;
    return true;
}

static bool scan_value(cur_t *c, int depth);

static bool scan_container(cur_t *c, int depth, char close)
{
    if (depth > MAX_DEPTH)
        return false;
    c->p++; /* [ or { */
    skip_ws(c);
    if (c->p < c->end && *c->p == close) {
        c->p++;
        return true;
    }
    for (;;) {
        const char *key = NULL, *key_end = NULL, *val = c->p;
        if (close == '}') {
            key = c->p;
            if (c->p >= c->end || *c->p != '"' || !scan_string(c))
                return false;
            key_end = c->p;
            skip_ws(c);
            if (c->p >= c->end || *c->p != ':')
                return false;
            c->p++;
            skip_ws(c);
            val = c->p;
        }
        if (!scan_value(c, depth))
            return false;
        if (key && depth == 1 && c->keys)
            note_member(c, key, (size_t)(key_end - key), val, c->p);
        skip_ws(c);
        if (c->p >= c->end)
            return false;
        if (*c->p == close) {
            c->p++;
            return true;
        }
        if (*c->p != ',')
            return false;
        c->p++;
        skip_ws(c);
    }
}

static bool scan_value(cur_t *c, int depth)
{
    if (c->p >= c->end)
        return false;
    switch (*c->p) {
    case '{': return scan_container(c, depth + 1, '}');
    case '[': return scan_container(c, depth + 1, ']');
    case '"': return scan_string(c);
    case 't': return scan_literal(c, "true", 4);
    case 'f': return scan_literal(c, "false", 5);
    case 'n': return scan_literal(c, "null", 4);
    default: return scan_number(c);
    }
}

static bool valid(cur_t *cur)
{
    cur_t c = *cur;
    skip_ws(&c);
    if (c.p >= c.end || (*c.p != '{' && *c.p != '['))
        return false; /* jansson wants an object or array without JSON_DECODE_ANY */
    if (!scan_value(&c, 0))
        return false;
    skip_ws(&c);
    return c.p == c.end;
}

bool sl_json_valid(const char *p, size_t n)
{
    cur_t c = {p, p + n, NULL, NULL, 0};
    return valid(&c);
}

bool sl_json_valid_get(const char *p, size_t n, const char *const *keys, sl_jval_t *vals,
                       size_t nkeys)
{
    for (size_t i = 0; i < nkeys; i++)
        vals[i] = (sl_jval_t){0};
    cur_t c = {p, p + n, keys, vals, nkeys};
    if (valid(&c))
        return true;
    for (size_t i = 0; i < nkeys; i++) /* nothing from text that is not JSON */
        vals[i] = (sl_jval_t){0};
    return false;
}

/* ---- walking validated text: no checks left to make ---- */

static const char *skip_string(const char *p)
{
    for (p++;; p++) {
        while (cls[(unsigned char)*p] & PLAIN)
            p++;
        if (*p == '\\')
            p++;
        else if (*p == '"')
            return p + 1;
    }
}

/* The end of the value at p (validated text: it is complete). */
static const char *skip_value(const char *p)
{
    if (*p == '"')
        return skip_string(p);
    if (*p != '{' && *p != '[') {
        while (*p != ',' && *p != '}' && *p != ']' && !is_ws(*p))
            p++; /* ends before a delimiter; the root is never a scalar */
        return p;
    }
    int depth = 0;
    for (;; p++) {
        while (!(cls[(unsigned char)*p] & STOP))
            p++;
        if (*p == '"')
            p = skip_string(p) - 1;
        else if (*p == '{' || *p == '[')
            depth++;
        else if ((*p == '}' || *p == ']') && --depth == 0)
            return p + 1;
    }
}

static sl_jval_t value_at(const char *p)
{
    char t = *p;
    if (t == '-' || is_digit(t))
        t = '0';
    const char *e = skip_value(p);
    return (sl_jval_t){t, p, (size_t)(e - p)};
}

sl_jval_t sl_json_root(const char *p, size_t n)
{
    while (n && is_ws(*p))
        p++, n--;
    return n ? value_at(p) : (sl_jval_t){0};
}

bool sl_json_next(const sl_jval_t *container, size_t *at, sl_jval_t *key, sl_jval_t *val)
{
    if (container->type != '{' && container->type != '[')
        return false;
    const char *p = container->p + (*at ? *at : 1);
    const char *end = container->p + container->n;
    while (p < end && (is_ws(*p) || *p == ','))
        p++;
    if (p >= end - 1) /* at the closing bracket */
        return false;
    if (container->type == '{') {
        const char *k = p;
        p = skip_string(p);
        if (key)
            *key = (sl_jval_t){'"', k, (size_t)(p - k)};
        while (is_ws(*p) || *p == ':')
            p++;
    }
    *val = value_at(p);
    *at = (size_t)(val->p + val->n - container->p);
    return true;
}

bool sl_json_get(const sl_jval_t *obj, const char *key, sl_jval_t *val)
{
    bool found = false;
    size_t at = 0;
    sl_jval_t k, v;
    if (obj->type != '{')
        return false;
    while (sl_json_next(obj, &at, &k, &v)) {
        if (sl_json_str_eq(&k, key)) {
            *val = v;
            found = true; /* keep looking: the last duplicate wins */
        }
    }
    return found;
}

/* A member of the root object just scanned (key with its quotes, value [v, vend)): kept if
 * its name is one asked for, the last duplicate winning, as in sl_json_get_all. */
static void note_member(cur_t *c, const char *key, size_t klen, const char *v, const char *vend)
{
    sl_jval_t k = {'"', key, klen};
    bool plain = !memchr(key + 1, '\\', klen - 2); /* most keys: compare the bytes */
    for (size_t i = 0; i < c->nkeys; i++) {
        size_t ln = strlen(c->keys[i]);
        if (plain ? ln == klen - 2 && memcmp(key + 1, c->keys[i], ln) == 0
                  : sl_json_str_eq(&k, c->keys[i])) {
            char t = *v;
            if (t == '-' || is_digit(t))
                t = '0';
            c->vals[i] = (sl_jval_t){t, v, (size_t)(vend - v)};
            return;
        }
    }
}

void sl_json_get_all(const sl_jval_t *obj, const char *const *keys, sl_jval_t *vals, size_t n)
{
    for (size_t i = 0; i < n; i++)
        vals[i] = (sl_jval_t){0};
    size_t at = 0;
    sl_jval_t k, v;
    if (obj->type != '{')
        return;
    while (sl_json_next(obj, &at, &k, &v))
        for (size_t i = 0; i < n; i++)
            if (sl_json_str_eq(&k, keys[i])) {
                vals[i] = v; /* later duplicates overwrite: the last wins */
                break;
            }
}

/* Decodes the string's next character into out (up to 4 bytes); returns its length. */
static size_t decode_char(const char **pp, char out[4])
{
    const char *p = *pp;
    if (*p != '\\') {
        out[0] = *p;
        *pp = p + 1;
        return 1;
    }
    char e = p[1];
    if (e != 'u') {
        static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
        out[0] = to[strchr(from, e) - from];
        *pp = p + 2;
        return 1;
    }
    uint32_t v = (uint32_t)hex4(p + 2);
    p += 6;
    if (v >= 0xD800 && v <= 0xDBFF) {
        v = 0x10000 + ((v - 0xD800) << 10) + ((uint32_t)hex4(p + 2) - 0xDC00);
        p += 6;
    }
    *pp = p;
    if (v < 0x80) {
        out[0] = (char)v;
        return 1;
    }
    if (v < 0x800) {
        out[0] = (char)(0xC0 | v >> 6);
        out[1] = (char)(0x80 | (v & 0x3F));
        return 2;
    }
    if (v < 0x10000) {
        out[0] = (char)(0xE0 | v >> 12);
        out[1] = (char)(0x80 | (v >> 6 & 0x3F));
        out[2] = (char)(0x80 | (v & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | v >> 18);
    out[1] = (char)(0x80 | (v >> 12 & 0x3F));
    out[2] = (char)(0x80 | (v >> 6 & 0x3F));
    out[3] = (char)(0x80 | (v & 0x3F));
    return 4;
}

size_t sl_json_str_len(const sl_jval_t *s)
{
    if (s->type != '"')
        return 0;
    size_t n = 0;
    char tmp[4];
    for (const char *p = s->p + 1, *end = s->p + s->n - 1; p < end;)
        n += decode_char(&p, tmp);
    return n;
}

bool sl_json_str_eq(const sl_jval_t *s, const char *lit)
{
    if (s->type != '"')
        return false;
    size_t want = strlen(lit);
    /* Unescaped, the common case: one memcmp. */
    if (s->n == want + 2 && !memchr(s->p + 1, '\\', want))
        return memcmp(s->p + 1, lit, want) == 0;
    char tmp[4];
    const char *p = s->p + 1, *end = s->p + s->n - 1;
    while (p < end) {
        size_t k = decode_char(&p, tmp);
        if (k > want || memcmp(tmp, lit, k) != 0)
            return false;
        lit += k;
        want -= k;
    }
    return want == 0;
}

char *sl_json_str_dup(const sl_jval_t *s)
{
    size_t n = sl_json_str_len(s);
    char *out = sl_malloc(n + 1), *o = out;
    if (s->type == '"')
        for (const char *p = s->p + 1, *end = s->p + s->n - 1; p < end;)
            o += decode_char(&p, o);
    *o = '\0';
    return out;
}

bool sl_json_int(const sl_jval_t *v, int64_t *out)
{
    if (v->type != '0' || memchr(v->p, '.', v->n) || memchr(v->p, 'e', v->n) ||
        memchr(v->p, 'E', v->n))
        return false;
    char tmp[24];
    if (v->n >= sizeof tmp)
        return false; /* cannot happen: validated integers fit int64 */
    memcpy(tmp, v->p, v->n);
    tmp[v->n] = '\0';
    *out = strtoll(tmp, NULL, 10);
    return true;
}
