/* A JSON scanner that never allocates: validation with jansson's rules, then read-only walks
 * over the validated text. It serves the hot path, where a chat request is read for a handful
 * of fields (model, stream, messages...) and forwarded as it came: jansson's tree for a
 * 200-byte body costs more than the rest of the request. Anything needing a tree still gets
 * one from jansson, parsed from the same text on first use. */
#ifndef SL_CODEC_JSON_SCAN_H
#define SL_CODEC_JSON_SCAN_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A value inside validated text. type: '{' object, '[' array, '"' string (p..p+n includes the
 * quotes), '0' number, 't' true, 'f' false, 'n' null; 0 when absent. */
typedef struct sl_jval {
    char type;
    const char *p;
    size_t n;
} sl_jval_t;

/* True when p[0..n) is one JSON object or array with only whitespace around it, accepted by
 * jansson's json_loadb(p, n, 0) too: strict grammar, valid UTF-8, no \u0000, paired
 * surrogates, integers that fit int64, finite reals, nesting up to 2048. */
bool sl_json_valid(const char *p, size_t n);
/* sl_json_valid, noting on the same pass what sl_json_get_all would find in the root object:
 * vals[i] is the last root member named keys[i] (type 0 if absent, or the root is an array);
 * all type 0 when the text is not valid. One pass over the text instead of two. */
bool sl_json_valid_get(const char *p, size_t n, const char *const *keys, sl_jval_t *vals,
                       size_t nkeys);

/* The root value of text sl_json_valid accepted. */
sl_jval_t sl_json_root(const char *p, size_t n);
/* Walks an object's members (or an array's elements: key is then untouched) in order;
 * *at starts at 0. False at the end. */
bool sl_json_next(const sl_jval_t *container, size_t *at, sl_jval_t *key, sl_jval_t *val);
/* The object's member named key; on duplicates the last, as jansson keeps. False if absent. */
bool sl_json_get(const sl_jval_t *obj, const char *key, sl_jval_t *val);

/* Several members in one walk: vals[i] is the last member named keys[i], type 0 if absent. */
void sl_json_get_all(const sl_jval_t *obj, const char *const *keys, sl_jval_t *vals, size_t n);

/* A string value, decoded: its length in bytes of UTF-8, whether it equals lit, a copy
 * (sl_malloc'd, NUL-terminated). */
size_t sl_json_str_len(const sl_jval_t *s);
bool sl_json_str_eq(const sl_jval_t *s, const char *lit);
char *sl_json_str_dup(const sl_jval_t *s);
/* An integer (a number without fraction or exponent, as jansson types it); false otherwise. */
bool sl_json_int(const sl_jval_t *v, int64_t *out);

#endif
