/* codec/json_scan against jansson itself: the scanner must accept exactly what json_loadb
 * accepts (a table of edge cases, then thousands of mutations of real request bodies), and
 * read the same values (last duplicate wins, decoded string lengths, integers). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "codec/json_scan.h"
#include "core/alloc.h"

static bool jansson_accepts(const char *p, size_t n)
{
    json_t *j = json_loadb(p, n, 0, NULL);
    json_decref(j);
    return j != NULL;
}

static void check_same_verdict(const char *p, size_t n)
{
    bool want = jansson_accepts(p, n), got = sl_json_valid(p, n);
    if (want != got) {
        char shown[200];
        size_t k = n < sizeof shown - 1 ? n : sizeof shown - 1;
        for (size_t i = 0; i < k; i++)
            shown[i] = p[i] >= 0x20 && p[i] < 0x7f ? p[i] : '?';
        shown[k] = '\0';
        fail_msg("jansson %s, scanner %s: [%s] (%zu bytes)", want ? "accepts" : "refuses",
                 got ? "accepts" : "refuses", shown, n);
    }
}

static void test_edge_cases_get_jansson_s_verdict(void **state)
{
    (void)state;
    static const char *const cases[] = {
        "{}",
        "[]",
        " \t\r\n{ } \n",
        "{",
        "}",
        "",
        "   ",
        "1",
        "\"s\"",
        "true",
        "null",
        "{\"a\":1,}",
        "[1,]",
        "[,1]",
        "{\"a\" 1}",
        "{a:1}",
        "{'a':1}",
        "{\"a\":01}",
        "{\"a\":-}",
        "{\"a\":-0}",
        "{\"a\":1.}",
        "{\"a\":.5}",
        "{\"a\":1e}",
        "{\"a\":1e+}",
        "{\"a\":1E-7}",
        "{\"a\":-0.0e0}",
        "{\"a\":9223372036854775807}",
        "{\"a\":9223372036854775808}",
        "{\"a\":-9223372036854775808}",
        "{\"a\":-9223372036854775809}",
        "{\"a\":1e308}",
        "{\"a\":1e309}",
        "{\"a\":-1e400}",
        "{\"a\":1e-400}",
        "{\"a\":tru}",
        "{\"a\":truee}",
        "{\"a\":nul}",
        "{\"a\":NaN}",
        "{\"a\":Infinity}",
        "{\"a\":\"\\u0000\"}",
        "{\"a\":\"\\u0001\"}",
        "{\"a\":\"\\uD800\"}",
        "{\"a\":\"\\uDC00\"}",
        "{\"a\":\"\\uD83D\\uDE00\"}",
        "{\"a\":\"\\uD83D\\u0041\"}",
        "{\"a\":\"\\uD83Dx\"}",
        "{\"a\":\"\\u12\"}",
        "{\"a\":\"\\u12G4\"}",
        "{\"a\":\"\\x\"}",
        "{\"a\":\"\\/\\b\\f\\n\\r\\t\\\"\\\\\"}",
        "{\"a\":\"tab\there\"}",
        "{\"a\":\"nl\nx\"}",
        "{\"a\":\"\x7f\"}",
        "{\"a\":\"\xc3\xa9\"}",
        "{\"a\":\"\xc3\"}",
        "{\"a\":\"\xc0\xaf\"}",
        "{\"a\":\"\xe0\x80\xaf\"}",
        "{\"a\":\"\xed\xa0\x80\"}",
        "{\"a\":\"\xf4\x90\x80\x80\"}",
        "{\"a\":\"\xf0\x9f\x8c\x8a\"}",
        "{\"a\":\"\xff\"}",
        "{\"a\":\"\x80\"}",
        "{\"a\":1}x",
        "{\"a\":1}{}",
        "[1 2]",
        "{\"a\":[1,[2,{\"b\":null}]],\"c\":true}",
        "{\"\":\"\"}",
        "{\"a\":1,\"a\":2}",
        "\xef\xbb\xbf{}",
        "{\"a\":\"unterminated}",
        "[\"\\\"]",
        "{\"a\":[}",
        "[{]}",
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_same_verdict(cases[i], strlen(cases[i]));
    check_same_verdict("{\"a\":\"x\0y\"}", 11); /* a NUL byte inside a string */
    check_same_verdict("{}\0", 3);
}

static void test_nesting_limit_matches(void **state)
{
    (void)state;
    for (int depth = 2046; depth <= 2050; depth++) {
        char *p = sl_malloc((size_t)depth * 2 + 1);
        for (int i = 0; i < depth; i++) {
            p[i] = '[';
            p[depth * 2 - 1 - i] = ']';
        }
        check_same_verdict(p, (size_t)depth * 2);
        sl_free(p);
    }
}

static const char *const docs[] = {
    "{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"system\",\"content\":\"You are "
    "helpful.\"},{\"role\":\"user\",\"content\":\"Caf\\u00e9 \\ud83c\\udf0a \xe4\xb8\x96\"}],"
    "\"max_tokens\":64,\"stream\":true,\"stream_options\":{\"include_usage\":true},"
    "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"parameters\":{}}}],"
    "\"temperature\":0.7,\"user\":\"u-1\"}",
    "[1,-2.5e3,\"x\",null,true,false,{\"k\":[[],{}]}]",
};

static void test_mutations_get_jansson_s_verdict(void **state)
{
    (void)state;
    static const char alphabet[] = "{}[]\":,\\-+.eE0123456789tfnulsrau \t\n\x80\xc3\xa9\xff";
    srand(12345);
    for (size_t d = 0; d < sizeof docs / sizeof docs[0]; d++) {
        size_t n = strlen(docs[d]);
        char *buf = sl_malloc(n + 8);
        for (int round = 0; round < 40000; round++) {
            memcpy(buf, docs[d], n);
            size_t len = n;
            for (int k = 1 + rand() % 3; k > 0; k--) {
                size_t at = (size_t)rand() % len;
                switch (rand() % 3) {
                case 0: /* replace */
                    buf[at] = alphabet[rand() % (int)(sizeof alphabet - 1)];
                    break;
                case 1: /* delete */
                    memmove(buf + at, buf + at + 1, len - at - 1);
                    len--;
                    break;
                default: /* insert */
                    if (len < n + 7) {
                        memmove(buf + at + 1, buf + at, len - at);
                        buf[at] = alphabet[rand() % (int)(sizeof alphabet - 1)];
                        len++;
                    }
                }
            }
            check_same_verdict(buf, len);
        }
        sl_free(buf);
    }
}

static void test_fields_read_as_jansson_reads_them(void **state)
{
    (void)state;
    const char *doc = docs[0];
    size_t n = strlen(doc);
    assert_true(sl_json_valid(doc, n));
    json_t *j = json_loadb(doc, n, 0, NULL);
    sl_jval_t root = sl_json_root(doc, n), v, msgs, m, c;
    assert_int_equal(root.type, '{');
    assert_true(sl_json_get(&root, "model", &v));
    assert_true(sl_json_str_eq(&v, "gpt-4o-mini"));
    char *model = sl_json_str_dup(&v);
    assert_string_equal(model, json_string_value(json_object_get(j, "model")));
    sl_free(model);
    assert_true(sl_json_get(&root, "messages", &msgs));
    assert_int_equal(msgs.type, '[');
    size_t at = 0, i = 0;
    while (sl_json_next(&msgs, &at, NULL, &m)) {
        assert_true(sl_json_get(&m, "content", &c));
        json_t *jc = json_object_get(json_array_get(json_object_get(j, "messages"), i), "content");
        assert_int_equal(sl_json_str_len(&c), json_string_length(jc));
        char *s = sl_json_str_dup(&c);
        assert_memory_equal(s, json_string_value(jc), json_string_length(jc) + 1);
        sl_free(s);
        i++;
    }
    assert_int_equal(i, 2);
    int64_t mt = 0;
    assert_true(sl_json_get(&root, "max_tokens", &v) && sl_json_int(&v, &mt));
    assert_int_equal(mt, 64);
    assert_true(sl_json_get(&root, "temperature", &v));
    assert_false(sl_json_int(&v, &mt)); /* a real is not an integer, as jansson types it */
    assert_true(sl_json_get(&root, "stream_options", &v) && v.type == '{');
    sl_jval_t iu;
    assert_true(sl_json_get(&v, "include_usage", &iu) && iu.type == 't');
    assert_false(sl_json_get(&root, "missing", &v));
    json_decref(j);

    /* Duplicates: the last one counts; an escaped key is the same key. */
    const char *dup = "{\"model\":\"a\",\"mo\\u0064el\":\"b\",\"n\":{\"x\":1}}";
    root = sl_json_root(dup, strlen(dup));
    assert_true(sl_json_get(&root, "model", &v));
    assert_true(sl_json_str_eq(&v, "b"));
    assert_false(sl_json_str_eq(&v, "a"));
    assert_false(sl_json_str_eq(&v, "bb"));
    assert_false(sl_json_str_eq(&v, ""));
    j = json_loads(dup, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(j, "model")), "b");
    json_decref(j);
}

/* The one-pass form notes root members only, the last duplicate (escaped names too), and
 * nothing at all from text that is not valid. */
static void test_valid_get_notes_root_members_in_the_same_pass(void **state)
{
    (void)state;
    static const char *const keys[] = {"model", "stream", "n", "missing"};
    sl_jval_t f[4];
    const char *doc = " {\"x\":{\"model\":\"inner\"},\"model\":\"a\",\"stream\":true,"
                      "\"mo\\u0064el\":\"b\",\"n\":-12.5e3 } ";
    assert_true(sl_json_valid_get(doc, strlen(doc), keys, f, 4));
    assert_int_equal(f[0].type, '"');
    assert_true(sl_json_str_eq(&f[0], "b")); /* the escaped duplicate came last */
    assert_int_equal(f[1].type, 't');
    assert_int_equal(f[2].type, '0');
    assert_int_equal(f[2].n, strlen("-12.5e3"));
    assert_int_equal(f[3].type, 0);
    sl_jval_t want[4];
    sl_jval_t root = sl_json_root(doc, strlen(doc));
    sl_json_get_all(&root, keys, want, 4);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(f[i].type, want[i].type);
        assert_ptr_equal(f[i].p, want[i].p);
        assert_int_equal(f[i].n, want[i].n);
    }
    const char *arr = "[{\"model\":\"a\"}]"; /* an array root has no members */
    assert_true(sl_json_valid_get(arr, strlen(arr), keys, f, 4));
    assert_int_equal(f[0].type, 0);
    const char *bad = "{\"model\":\"a\",\"stream\":tru}"; /* noted, then found invalid */
    assert_false(sl_json_valid_get(bad, strlen(bad), keys, f, 4));
    for (int i = 0; i < 4; i++)
        assert_int_equal(f[i].type, 0);
}

int main(void)
{
    json_set_alloc_funcs(sl_malloc_fn, sl_free);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_edge_cases_get_jansson_s_verdict),
        cmocka_unit_test(test_nesting_limit_matches),
        cmocka_unit_test(test_mutations_get_jansson_s_verdict),
        cmocka_unit_test(test_fields_read_as_jansson_reads_them),
        cmocka_unit_test(test_valid_get_notes_root_members_in_the_same_pass),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
