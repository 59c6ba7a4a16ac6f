/* Strict typed reads from libyaml's document tree: scalars, ${ENV}, durations, sizes, marks. */
#include "config/ytree.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"

/* Timeouts end up in uv timers and curl options; keeping them under 2^31 ms (about 24 days)
 * means no consumer has to think about overflow. */
#define MAX_DURATION_MS 2147483647ull

static void put_mark(sl_ytree_t *t, yaml_mark_t m)
{
    sl_buf_printf(t->err, "%s:%zu:%zu: ", t->name ? t->name : "<config>", m.line + 1, m.column + 1);
}

int sl_ytree_error(sl_ytree_t *t, const yaml_node_t *n, const char *fmt, ...)
{
    if (!t->err)
        return SL_ECONFIG;
    put_mark(t, n->start_mark);
    /* Measured first, then printed in place: a message quoting a long value is kept whole. */
    va_list ap, again;
    va_start(ap, fmt);
    va_copy(again, ap);
    /* Suppressed: clang-tidy 14 loses track of va_start in every file after the first of
     * one run and then calls ap uninitialised. */
    int len = vsnprintf(NULL, 0, fmt, ap); // NOLINT(clang-analyzer-valist.Uninitialized)
    if (len > 0) {
        vsnprintf(sl_buf_reserve(t->err, (size_t)len), (size_t)len + 1, fmt, again);
        sl_buf_commit(t->err, (size_t)len);
    }
    va_end(again);
    va_end(ap);
    return SL_ECONFIG;
}

static int parser_error(sl_ytree_t *t, const yaml_parser_t *p)
{
    if (!t->err)
        return SL_ECONFIG;
    put_mark(t, p->problem_mark);
    sl_buf_puts(t->err, p->problem ? p->problem : "cannot parse the YAML");
    if (p->context)
        sl_buf_printf(t->err, " (%s that started at %zu:%zu)", p->context, p->context_mark.line + 1,
                      p->context_mark.column + 1);
    return SL_ECONFIG;
}

/* A second document after the first would be silently ignored by a one-document reader, so
 * it is an error: the operator probably concatenated two files. */
static int expect_stream_end(sl_ytree_t *t, yaml_parser_t *p)
{
    yaml_document_t extra;
    if (!yaml_parser_load(p, &extra))
        return parser_error(t, p);
    yaml_node_t *root = yaml_document_get_root_node(&extra);
    int rc = 0;
    if (root)
        rc = sl_ytree_error(t, root, "only one YAML document is allowed");
    yaml_document_delete(&extra);
    return rc;
}

int sl_ytree_load(sl_ytree_t *t, const char *text, size_t len, const char *name, sl_buf_t *err)
{
    t->name = name;
    t->err = err;
    yaml_parser_t p;
    if (!yaml_parser_initialize(&p)) {
        if (err)
            sl_buf_printf(err, "%s: cannot start the YAML parser", name ? name : "<config>");
        return SL_ECONFIG;
    }
    yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
    int rc = 0;
    if (!yaml_parser_load(&p, &t->doc)) {
        rc = parser_error(t, &p); /* libyaml has freed the partial document */
        goto out;
    }
    rc = expect_stream_end(t, &p);
    if (rc != 0)
        yaml_document_delete(&t->doc);
out:
    yaml_parser_delete(&p);
    return rc;
}

void sl_ytree_dispose(sl_ytree_t *t)
{
    yaml_document_delete(&t->doc);
}

yaml_node_t *sl_ytree_root(sl_ytree_t *t)
{
    return yaml_document_get_root_node(&t->doc);
}

yaml_node_t *sl_ytree_node(sl_ytree_t *t, int id)
{
    return yaml_document_get_node(&t->doc, id);
}

const char *sl_ytree_text(const yaml_node_t *n)
{
    return (const char *)n->data.scalar.value;
}

bool sl_ytree_is_null(const yaml_node_t *n)
{
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    const char *s = sl_ytree_text(n);
    return !*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL");
}

static bool in_list(const char *const *list, const char *s)
{
    for (; list && *list; list++)
        if (strcmp(*list, s) == 0)
            return true;
    return false;
}

static int unknown_key(sl_ytree_t *t, const yaml_node_t *k, const char *what,
                       const char *const *allowed)
{
    sl_buf_t list;
    sl_buf_init(&list);
    for (const char *const *a = allowed; *a; a++) {
        if (a != allowed)
            sl_buf_puts(&list, ", ");
        sl_buf_puts(&list, *a);
    }
    int rc = sl_ytree_error(t, k, "unknown key '%s'%s%s (allowed: %s)", sl_ytree_text(k),
                            what ? " in " : "", what ? what : "", list.data);
    sl_buf_dispose(&list);
    return rc;
}

int sl_ytree_check_map(sl_ytree_t *t, const yaml_node_t *n, const char *what,
                       const char *const *allowed, const char *const *later)
{
    if (n->type != YAML_MAPPING_NODE) {
        if (!what)
            return sl_ytree_error(t, n, "the top level must be a mapping of key: value lines");
        return sl_ytree_error(t, n, "%s: expected a mapping of key: value", what);
    }
    const yaml_node_pair_t *first = n->data.mapping.pairs.start;
    for (const yaml_node_pair_t *pr = first; pr < n->data.mapping.pairs.top; pr++) {
        yaml_node_t *k = sl_ytree_node(t, pr->key);
        if (k->type != YAML_SCALAR_NODE)
            return sl_ytree_error(t, k, "expected a key name, not a list or mapping");
        const char *key = sl_ytree_text(k);
        for (const yaml_node_pair_t *q = first; q < pr; q++)
            if (strcmp(sl_ytree_text(sl_ytree_node(t, q->key)), key) == 0)
                return sl_ytree_error(t, k, "duplicate key '%s'", key);
        if (!allowed || in_list(allowed, key))
            continue;
        if (in_list(later, key))
            return sl_ytree_error(t, k, "'%s' is not supported by this version of sluice yet", key);
        return unknown_key(t, k, what, allowed);
    }
    return 0;
}

yaml_node_t *sl_ytree_get(sl_ytree_t *t, const yaml_node_t *n, const char *key)
{
    for (yaml_node_pair_t *pr = n->data.mapping.pairs.start; pr < n->data.mapping.pairs.top; pr++)
        if (strcmp(sl_ytree_text(sl_ytree_node(t, pr->key)), key) == 0)
            return sl_ytree_node(t, pr->value);
    return NULL;
}

int sl_ytree_check_seq(sl_ytree_t *t, const yaml_node_t *n, const char *what)
{
    if (n->type != YAML_SEQUENCE_NODE)
        return sl_ytree_error(t, n, "%s: expected a list", what);
    return 0;
}

static bool is_name_start(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
}

static bool is_name_char(char c)
{
    return is_name_start(c) || (c >= '0' && c <= '9');
}

/* One ${NAME} at s (which starts with "${"); appends its value and returns its length in
 * the scalar, or a negative code after reporting. */
static long expand_one(sl_ytree_t *t, const yaml_node_t *n, const char *s, size_t len,
                       sl_buf_t *out)
{
    size_t i = 2;
    while (i < len && is_name_char(s[i]))
        i++;
    if (i == 2 || !is_name_start(s[2]) || i == len || s[i] != '}')
        return sl_ytree_error(t, n, "expected ${NAME} with NAME of letters, digits and _");
    char *name = sl_strndup(s + 2, i - 2);
    const char *v = getenv(name);
    int rc = v ? 0 : sl_ytree_error(t, n, "environment variable '%s' is not set", name);
    sl_free(name);
    if (rc != 0)
        return rc;
    sl_buf_puts(out, v);
    return (long)(i + 1);
}

/* The scalar's text with every ${NAME} replaced. YAML allows NUL through escapes; no value
 * of ours can hold one, and C strings would cut it short, so it is refused. */
static int expand(sl_ytree_t *t, const yaml_node_t *n, const char *what, sl_buf_t *out)
{
    const char *s = sl_ytree_text(n);
    size_t len = n->data.scalar.length;
    if (memchr(s, '\0', len))
        return sl_ytree_error(t, n, "%s: must not contain a NUL character", what);
    size_t start = 0, i = 0;
    sl_buf_append(out, "", 0);
    while (i + 1 < len) {
        if (s[i] != '$' || s[i + 1] != '{') {
            i++;
            continue;
        }
        sl_buf_append(out, s + start, i - start);
        long used = expand_one(t, n, s + i, len - i, out);
        if (used < 0)
            return (int)used;
        i += (size_t)used;
        start = i;
    }
    sl_buf_append(out, s + start, len - start);
    return 0;
}

/* The expanded text of a non-null scalar; anything else is "what: expected expect". */
static int scalar(sl_ytree_t *t, const yaml_node_t *n, const char *what, const char *expect,
                  sl_buf_t *out)
{
    if (n->type != YAML_SCALAR_NODE || sl_ytree_is_null(n))
        return sl_ytree_error(t, n, "%s: expected %s", what, expect);
    return expand(t, n, what, out);
}

int sl_ytree_str(sl_ytree_t *t, const yaml_node_t *n, const char *what, char **out)
{
    sl_buf_t b;
    sl_buf_init(&b);
    int rc = scalar(t, n, what, "a string", &b);
    if (rc == 0)
        *out = sl_strndup(b.data, b.len);
    sl_buf_dispose(&b);
    return rc;
}

int sl_ytree_set_str(sl_ytree_t *t, const yaml_node_t *n, const char *what, char **dst)
{
    char *s = NULL;
    int rc = sl_ytree_str(t, n, what, &s);
    if (rc != 0)
        return rc;
    sl_free(*dst);
    *dst = s;
    return 0;
}

/* Leading decimal digits of s into *v; returns how many there were, 0 on overflow. */
static size_t digits(const char *s, uint64_t *v)
{
    size_t i = 0;
    *v = 0;
    for (; s[i] >= '0' && s[i] <= '9'; i++) {
        unsigned d = (unsigned)(s[i] - '0');
        if (*v > (UINT64_MAX - d) / 10)
            return 0;
        *v = *v * 10 + d;
    }
    return i;
}

bool sl_ytree_parse_uint(const char *s, uint64_t *out)
{
    size_t n = digits(s, out);
    return n > 0 && s[n] == '\0';
}

int sl_ytree_uint(sl_ytree_t *t, const yaml_node_t *n, const char *what, uint64_t min, uint64_t max,
                  uint64_t *out)
{
    sl_buf_t b;
    sl_buf_init(&b);
    int rc = scalar(t, n, what, "a whole number", &b);
    if (rc == 0 && (!sl_ytree_parse_uint(b.data, out) || *out < min || *out > max))
        rc = sl_ytree_error(t, n, "%s: expected a whole number from %llu to %llu", what,
                            (unsigned long long)min, (unsigned long long)max);
    sl_buf_dispose(&b);
    return rc;
}

int sl_ytree_positive(sl_ytree_t *t, const yaml_node_t *n, const char *what, double *out)
{
    static const char expect[] = "a number greater than 0, like 40 or 2.5";
    sl_buf_t b;
    sl_buf_init(&b);
    int rc = scalar(t, n, what, expect, &b);
    if (rc == 0) {
        /* strtod alone would also take " 1", "0x10", "inf" and "nan". */
        char *end = NULL;
        bool plain = b.len > 0 && strspn(b.data, "0123456789.eE+-") == b.len &&
                     ((b.data[0] >= '0' && b.data[0] <= '9') || b.data[0] == '.');
        *out = plain ? strtod(b.data, &end) : 0;
        if (!plain || *end || !isfinite(*out) || *out <= 0)
            rc = sl_ytree_error(t, n, "%s: expected %s", what, expect);
    }
    sl_buf_dispose(&b);
    return rc;
}

/* "0", "off", or digits followed by ms, s, m or h: 1 when fine, 0 when malformed, -1 when
 * over MAX_DURATION_MS. */
static int parse_duration(const char *s, uint64_t *ms)
{
    static const struct {
        const char *unit;
        uint64_t ms;
    } units[] = {{"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}};
    if (strcmp(s, "0") == 0 || strcmp(s, "off") == 0) {
        *ms = 0;
        return 1;
    }
    uint64_t v;
    size_t n = digits(s, &v);
    if (n == 0)
        return s[0] >= '0' && s[0] <= '9' ? -1 : 0;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (strcmp(s + n, units[i].unit) != 0)
            continue;
        if (v > MAX_DURATION_MS / units[i].ms)
            return -1;
        *ms = v * units[i].ms;
        return 1;
    }
    return 0;
}

int sl_ytree_duration(sl_ytree_t *t, const yaml_node_t *n, const char *what, uint64_t *ms)
{
    static const char expect[] = "a duration like 30s or 500ms";
    sl_buf_t b;
    sl_buf_init(&b);
    int rc = scalar(t, n, what, expect, &b);
    int ok = rc == 0 ? parse_duration(b.data, ms) : 1;
    if (ok == 0)
        rc = sl_ytree_error(t, n, "%s: expected %s", what, expect);
    else if (ok < 0)
        rc = sl_ytree_error(t, n, "%s: too long (the most is 596h)", what);
    sl_buf_dispose(&b);
    return rc;
}

/* Digits with an optional unit; 0 on a bad unit, 1 when fine, -1 on overflow. */
static int parse_size(const char *s, uint64_t *out)
{
    static const struct {
        const char *unit;
        uint64_t mult;
    } units[] = {
        {"", 1},
        {"B", 1},
        {"KiB", 1ull << 10},
        {"MiB", 1ull << 20},
        {"GiB", 1ull << 30},
        {"KB", 1000},
        {"MB", 1000000},
        {"GB", 1000000000},
    };
    uint64_t v;
    size_t n = digits(s, &v);
    if (n == 0)
        return s[0] >= '0' && s[0] <= '9' ? -1 : 0;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (strcmp(s + n, units[i].unit) != 0)
            continue;
        if (v > SIZE_MAX / units[i].mult)
            return -1;
        *out = v * units[i].mult;
        return 1;
    }
    return 0;
}

int sl_ytree_size(sl_ytree_t *t, const yaml_node_t *n, const char *what, size_t *out)
{
    static const char expect[] = "a size like 4MiB, 512KiB or 1024 (bytes)";
    sl_buf_t b;
    sl_buf_init(&b);
    uint64_t v = 0;
    int rc = scalar(t, n, what, expect, &b);
    int ok = rc == 0 ? parse_size(b.data, &v) : 1;
    if (ok == 0)
        rc = sl_ytree_error(t, n, "%s: expected %s", what, expect);
    else if (ok < 0)
        rc = sl_ytree_error(t, n, "%s: too large", what);
    else if (rc == 0 && v == 0)
        rc = sl_ytree_error(t, n, "%s: must be more than 0 bytes", what);
    if (rc == 0)
        *out = (size_t)v;
    sl_buf_dispose(&b);
    return rc;
}

/* ---- counts and value shapes the schema shares ---- */

size_t sl_ytree_map_len(const yaml_node_t *n)
{
    return (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
}

size_t sl_ytree_seq_len(const yaml_node_t *n)
{
    return (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
}

static bool is_host_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '.' || ch == '-' || ch == '_';
}

int sl_ytree_host_port(sl_ytree_t *t, const yaml_node_t *v, const char *what, char **host,
                       int *port)
{
    char *s = NULL;
    int rc = sl_ytree_str(t, v, what, &s);
    if (rc != 0)
        return rc;
    char *colon = strrchr(s, ':');
    size_t hlen = colon ? (size_t)(colon - s) : 0;
    uint64_t n = 0;
    bool host_ok = hlen > 0;
    for (size_t i = 0; i < hlen; i++)
        host_ok = host_ok && is_host_char(s[i]);
    if (!host_ok || !sl_ytree_parse_uint(colon + 1, &n)) {
        rc = sl_ytree_error(t, v, "%s: expected host:port, like 127.0.0.1:8080", what);
    } else if (n > 65535) {
        rc = sl_ytree_error(t, v, "%s: the port must be from 0 to 65535", what);
    } else {
        sl_free(*host);
        *host = sl_strndup(s, hlen);
        *port = (int)n;
    }
    sl_free(s);
    return rc;
}

/* Names show up in logs and metrics labels, so they stay plain. */
bool sl_ytree_is_plain_name(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (!is_host_char(*s))
            return false;
    return true;
}

/* A value that must be there: an empty one (often an empty ${VAR}) would match nothing or
 * worse, so it is refused. */
int sl_ytree_nonempty(sl_ytree_t *t, const yaml_node_t *v, const char *what, char **out)
{
    int rc = sl_ytree_str(t, v, what, out);
    if (rc == 0 && !**out)
        rc = sl_ytree_error(t, v, "%s: must not be empty", what);
    return rc;
}

static bool is_space(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r';
}

/* A key is compared byte for byte and clients' tokens arrive trimmed, so whitespace at either
 * end (a secret file's final newline, say) would make it silently unusable. */
int sl_ytree_secret(sl_ytree_t *t, const yaml_node_t *v, const char *what, char **out)
{
    int rc = sl_ytree_nonempty(t, v, what, out);
    if (rc == 0 && (is_space((*out)[0]) || is_space((*out)[strlen(*out) - 1])))
        rc = sl_ytree_error(t, v, "%s: starts or ends with a space or line break", what);
    return rc;
}
