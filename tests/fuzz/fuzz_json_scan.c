/* codec/json_scan, differentially against jansson: sl_json_valid accepts exactly what
 * json_loadb(p, n, 0) accepts, and on accepted text every walk agrees with jansson's tree: the
 * types, each object's members by sl_json_get (last duplicate wins) and by sl_json_get_all,
 * the number of distinct members, array elements in order, decoded strings (length, bytes,
 * equality), integers and their values. sl_json_valid_get gives sl_json_valid's verdict and,
 * on one pass, what sl_json_get_all finds in the root object (every root key jansson kept,
 * asked for with some that are absent).
 *
 * Input: the JSON text as it is. */
#include "fuzz.h"

#include "codec/json_scan.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fuzz_init_json();
    return 0;
}

static void same(const sl_jval_t *v, json_t *j, int depth);

static void same_object(const sl_jval_t *v, json_t *j, int depth)
{
    FUZZ_CHECK(v->type == '{' && json_is_object(j));
    /* Every member jansson kept is found, with its (last) value. */
    const char *key;
    json_t *jv;
    json_object_foreach (j, key, jv) {
        sl_jval_t got;
        FUZZ_CHECK(sl_json_get(v, key, &got));
        same(&got, jv, depth + 1);
        const char *keys[2] = {"\x01never", key};
        sl_jval_t all[2];
        sl_json_get_all(v, keys, all, 2);
        FUZZ_CHECK(all[0].type == 0);
        FUZZ_CHECK(all[1].type == got.type && all[1].p == got.p && all[1].n == got.n);
    }
    /* Walking the members sees only keys jansson has, and at least each of them once. */
    size_t at = 0, members = 0;
    sl_jval_t k, val;
    while (sl_json_next(v, &at, &k, &val)) {
        FUZZ_CHECK(k.type == '"');
        char *name = sl_json_str_dup(&k);
        FUZZ_CHECK(json_object_get(j, name) != NULL);
        FUZZ_CHECK(sl_json_str_eq(&k, name));
        sl_free(name);
        members++;
    }
    FUZZ_CHECK(members >= json_object_size(j));
}

static void same_array(const sl_jval_t *v, json_t *j, int depth)
{
    FUZZ_CHECK(v->type == '[' && json_is_array(j));
    size_t at = 0, i = 0;
    sl_jval_t k, val;
    while (sl_json_next(v, &at, &k, &val)) {
        FUZZ_CHECK(i < json_array_size(j));
        same(&val, json_array_get(j, i), depth + 1);
        i++;
    }
    FUZZ_CHECK(i == json_array_size(j));
}

static void same(const sl_jval_t *v, json_t *j, int depth)
{
    FUZZ_CHECK(j != NULL);
    if (depth > 64)
        return; /* deep enough: the shape checks above cover the rest */
    int64_t iv;
    switch (v->type) {
    case '{': same_object(v, j, depth); break;
    case '[': same_array(v, j, depth); break;
    case '"': {
        FUZZ_CHECK(json_is_string(j));
        size_t n = sl_json_str_len(v);
        FUZZ_CHECK(n == json_string_length(j));
        char *s = sl_json_str_dup(v);
        FUZZ_CHECK(memcmp(s, json_string_value(j), n) == 0 && s[n] == '\0');
        sl_free(s);
        FUZZ_CHECK(sl_json_str_eq(v, json_string_value(j)));
        FUZZ_CHECK(!sl_json_int(v, &iv));
        break;
    }
    case '0':
        FUZZ_CHECK(json_is_number(j));
        FUZZ_CHECK(sl_json_int(v, &iv) == json_is_integer(j));
        if (json_is_integer(j))
            FUZZ_CHECK(iv == json_integer_value(j));
        break;
    case 't': FUZZ_CHECK(json_is_true(j)); break;
    case 'f': FUZZ_CHECK(json_is_false(j)); break;
    case 'n': FUZZ_CHECK(json_is_null(j)); break;
    default: FUZZ_CHECK(!"a value of a known type");
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* A copy of exactly the input, so reading past it is caught. */
    char *in = sl_malloc(size ? size : 1);
    memcpy(in, data, size);
    json_error_t err;
    json_t *j = json_loadb(in, size, 0, &err);
    bool valid = sl_json_valid(in, size);
    /* jansson's quirk: a NUL byte right after a number or a literal is dropped ("[1\0]" loads
     * as [1]). The scanner refuses such text, as the grammar says; only the other way round
     * (scanned as valid, refused by jansson) would break the lazy tree. */
    bool quirk = !valid && j && memchr(in, '\0', size);
    if (valid != (j != NULL) && !quirk) {
        fprintf(stderr, "sl_json_valid %d, jansson %s (%s)\n", valid, j ? "accepts" : "refuses",
                j ? "" : err.text);
        FUZZ_CHECK(!"sl_json_valid agrees with json_loadb");
    }
    if (valid) {
        sl_jval_t root = sl_json_root(in, size);
        same(&root, j, 0);
    }
    /* The one-pass form: the root's members jansson kept (up to 6), and two never present. */
    const char *keys[8] = {"\x01never", "\x01nor"};
    size_t nk = 2;
    const char *key;
    json_t *jv;
    if (valid && json_is_object(j))
        json_object_foreach (j, key, jv)
            if (nk < 8)
                keys[nk++] = key;
    sl_jval_t one[8], two[8];
    FUZZ_CHECK(sl_json_valid_get(in, size, keys, one, nk) == valid);
    sl_jval_t root = valid ? sl_json_root(in, size) : (sl_jval_t){0};
    if (valid && root.type == '{') {
        sl_json_get_all(&root, keys, two, nk);
    } else {
        for (size_t i = 0; i < nk; i++)
            two[i] = (sl_jval_t){0};
    }
    for (size_t i = 0; i < nk; i++)
        FUZZ_CHECK(one[i].type == two[i].type && one[i].p == two[i].p && one[i].n == two[i].n);
    json_decref(j);
    sl_free(in);
    return 0;
}
