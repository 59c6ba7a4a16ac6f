/* OpenAI JSON → canonical events: the passthrough fast path, usage, errors, tool calls. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "upstream/openai_decode.h"

#define S(lit) lit, sizeof(lit) - 1

static void test_plain_chunk_is_forwarded_raw_without_parsing(void **st)
{
    const char d[] = "{\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"},"
                     "\"finish_reason\":null}]}";
    sl_oai_chunk_t c;
    sl_oai_decode_chunk(S(d), true, true, &c);
    assert_int_equal(c.nevents, 1);
    assert_int_equal(c.events[0].type, SL_EV_DELTA);
    assert_ptr_equal(c.events[0].raw, d);
    assert_int_equal(c.events[0].raw_len, sizeof d - 1);
    assert_null(c.root); /* nothing parsed */
    assert_false(c.finish);
    sl_oai_chunk_dispose(&c);
}

static void test_finish_reason_detected_without_parsing(void **st)
{
    const char d[] = "{\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\" : \"stop\"}]}";
    sl_oai_chunk_t c;
    sl_oai_decode_chunk(S(d), true, false, &c);
    assert_true(c.finish);
    assert_null(c.root);
    sl_oai_chunk_dispose(&c);
}

static void test_usage_only_chunk_becomes_usage_event_with_raw(void **st)
{
    const char d[] = "{\"id\":\"c1\",\"choices\":[],\"usage\":{\"prompt_tokens\":7,"
                     "\"completion_tokens\":11,\"total_tokens\":18,\"prompt_tokens_details\":"
                     "{\"cached_tokens\":3}}}";
    sl_oai_chunk_t c;
    sl_oai_decode_chunk(S(d), true, false, &c);
    assert_int_equal(c.nevents, 1);
    assert_int_equal(c.events[0].type, SL_EV_USAGE);
    assert_int_equal(c.events[0].usage.prompt, 7);
    assert_int_equal(c.events[0].usage.completion, 11);
    assert_int_equal(c.events[0].usage.cached, 3);
    assert_ptr_equal(c.events[0].raw, d);
    sl_oai_chunk_dispose(&c);
}

static void test_usage_inside_content_chunk_is_flagged(void **st)
{
    const char d[] = "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"}}],"
                     "\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2}}";
    sl_oai_chunk_t c;
    sl_oai_decode_chunk(S(d), true, false, &c);
    assert_int_equal(c.nevents, 2);
    assert_int_equal(c.events[0].type, SL_EV_DELTA);
    assert_true(c.events[0].raw_has_usage);
    assert_int_equal(c.events[1].type, SL_EV_USAGE);
    assert_null(c.events[1].raw);
    assert_int_equal(c.events[1].usage.completion, 2);
    sl_oai_chunk_dispose(&c);
}

static void test_null_usage_is_not_usage(void **st)
{
    const char d[] = "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"}}],\"usage\":null}";
    sl_oai_chunk_t c;
    sl_oai_decode_chunk(S(d), true, false, &c);
    assert_int_equal(c.nevents, 1);
    assert_null(c.root);
    sl_oai_chunk_dispose(&c);
}

static void test_empty_choices_without_usage_is_dropped(void **st)
{
    const char d[] = "{\"choices\": [ ],\"created\":0,\"id\":\"\",\"prompt_filter_results\":"
                     "[{\"prompt_index\":0}]}";
    sl_oai_chunk_t c;
    sl_oai_decode_chunk(S(d), true, true, &c);
    assert_int_equal(c.nevents, 0);
    sl_oai_chunk_dispose(&c);
    sl_oai_decode_chunk(S(d), false, true, &c);
    assert_int_equal(c.nevents, 0);
    sl_oai_chunk_dispose(&c);
}

static void test_error_chunk_becomes_error_event(void **st)
{
    const char d[] = "{\"error\":{\"message\":\"overloaded\",\"type\":\"server_error\","
                     "\"code\":\"x1\"}}";
    sl_oai_chunk_t c;
    sl_oai_decode_chunk(S(d), true, false, &c);
    assert_true(c.error);
    assert_int_equal(c.nevents, 1);
    assert_int_equal(c.events[0].type, SL_EV_ERROR);
    assert_string_equal(c.events[0].error.message, "overloaded");
    assert_string_equal(c.events[0].error.code, "x1");
    sl_oai_chunk_dispose(&c);
}

static void test_word_error_inside_content_is_not_an_error(void **st)
{
    const char d[] = "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"an \\\"error\\\": "
                     "x\"}}]}";
    sl_oai_chunk_t c;
    sl_oai_decode_chunk(S(d), true, false, &c);
    assert_false(c.error);
    assert_int_equal(c.events[0].type, SL_EV_DELTA);
    sl_oai_chunk_dispose(&c);
}

static void test_parsed_mode_decodes_role_content_and_tool_calls(void **st)
{
    const char d[] = "{\"id\":\"c9\",\"model\":\"m\",\"created\":5,\"choices\":[{\"index\":0,"
                     "\"delta\":{\"role\":\"assistant\",\"tool_calls\":[{\"index\":1,\"id\":"
                     "\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"f\","
                     "\"arguments\":\"{\\\"a\\\"\"}}]},\"finish_reason\":\"tool_calls\"}]}";
    sl_oai_chunk_t c;
    sl_oai_decode_chunk(S(d), false, true, &c);
    assert_int_equal(c.nevents, 4); /* START, DELTA(role), DELTA(tool), FINISH */
    assert_int_equal(c.events[0].type, SL_EV_START);
    assert_string_equal(c.events[0].id, "c9");
    assert_int_equal(c.events[0].created, 5);
    assert_string_equal(c.events[1].role, "assistant");
    assert_true(c.events[2].tool.present);
    assert_int_equal(c.events[2].tool.index, 1);
    assert_string_equal(c.events[2].tool.id, "call_1");
    assert_string_equal(c.events[2].tool.name, "f");
    assert_memory_equal(c.events[2].tool.args, "{\"a\"", 4);
    assert_int_equal(c.events[3].type, SL_EV_FINISH);
    assert_string_equal(c.events[3].finish_reason, "tool_calls");
    sl_oai_chunk_dispose(&c);
}

/* Text quoted inside a value is never a key: content quoting "usage" or "finish_reason"
 * (escaped quotes; an escaped backslash before a real closing quote) stays on the fast path. */
static void test_keys_inside_string_values_are_not_keys(void **st)
{
    const char d[] = "{\"id\":\"c\\\\\",\"choices\":[{\"index\":0,\"delta\":{\"content\":"
                     "\"say \\\"usage\\\": {1} and \\\"finish_reason\\\": \\\"stop\"},"
                     "\"finish_reason\":null}]}";
    sl_oai_chunk_t c;
    sl_oai_decode_chunk(S(d), true, false, &c);
    assert_int_equal(c.nevents, 1);
    assert_int_equal(c.events[0].type, SL_EV_DELTA);
    assert_ptr_equal(c.events[0].raw, d);
    assert_false(c.events[0].raw_has_usage);
    assert_null(c.root); /* nothing parsed */
    assert_false(c.finish);
    sl_oai_chunk_dispose(&c);
}

/* Every quote is looked at, whatever the pairing: a broken chunk naming usage goes to the
 * parser and fails as an error, not forwarded as if fine. */
static void test_broken_chunk_naming_usage_is_an_error(void **st)
{
    sl_oai_chunk_t c;
    sl_oai_decode_chunk(S("{\"id\":\"c1, \"usage\":{\"prompt_tokens\":1}}"), true, false, &c);
    assert_true(c.error);
    assert_int_equal(c.events[0].type, SL_EV_ERROR);
    sl_oai_chunk_dispose(&c);
}

static void test_garbage_chunk_is_an_error(void **st)
{
    sl_oai_chunk_t c;
    sl_oai_decode_chunk(S("{\"usage\":{not json"), true, false, &c);
    assert_true(c.error);
    assert_int_equal(c.events[0].type, SL_EV_ERROR);
    assert_int_equal(c.events[0].error.status, 502);
    sl_oai_chunk_dispose(&c);
}

static void test_completion_gives_usage_and_raw_end(void **st)
{
    const char d[] = "{\"id\":\"x\",\"object\":\"chat.completion\",\"choices\":[{\"index\":0,"
                     "\"message\":{\"role\":\"assistant\",\"content\":\"hello\"},"
                     "\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":3,"
                     "\"completion_tokens\":1}}";
    sl_oai_chunk_t c;
    sl_oai_decode_completion(S(d), true, &c); /* passthrough: only usage is read */
    assert_int_equal(c.nevents, 2);
    assert_int_equal(c.events[0].type, SL_EV_USAGE);
    assert_int_equal(c.events[0].usage.completion, 1);
    assert_ptr_equal(c.events[1].raw, d);
    sl_oai_chunk_dispose(&c);
    sl_oai_decode_completion(S(d), false, &c);
    /* START, DELTA(content), FINISH, USAGE, END */
    assert_int_equal(c.nevents, 5);
    assert_memory_equal(c.events[1].content, "hello", 5);
    assert_int_equal(c.events[3].type, SL_EV_USAGE);
    assert_int_equal(c.events[3].usage.prompt, 3);
    assert_int_equal(c.events[4].type, SL_EV_END);
    assert_ptr_equal(c.events[4].raw, d);
    sl_oai_chunk_dispose(&c);
}

/* The passthrough reads usage with the scanner: the top-level member only (not a "usage" key
 * inside a tool's arguments), cached tokens when given, and the tree parser for broken JSON. */
static void test_passthrough_usage_is_the_top_level_one(void **st)
{
    const char d[] = "{\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
                     "\"tool_calls\":[{\"function\":{\"arguments\":{\"usage\":{\"prompt_tokens\":"
                     "99}}}}]}}],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":5,"
                     "\"prompt_tokens_details\":{\"cached_tokens\":4}}}";
    sl_oai_chunk_t c;
    sl_oai_decode_completion(S(d), true, &c);
    assert_int_equal(c.nevents, 2);
    assert_int_equal(c.events[0].type, SL_EV_USAGE);
    assert_int_equal(c.events[0].usage.prompt, 7);
    assert_int_equal(c.events[0].usage.completion, 5);
    assert_int_equal(c.events[0].usage.cached, 4);
    sl_oai_chunk_dispose(&c);
    const char nocache[] = "{\"usage\":{\"prompt_tokens\":2.5,\"completion_tokens\":1}}";
    sl_oai_decode_completion(S(nocache), true, &c);
    assert_int_equal(c.events[0].usage.prompt, 0); /* not an integer, as jansson types it */
    assert_int_equal(c.events[0].usage.cached, -1);
    sl_oai_chunk_dispose(&c);
    const char broken[] = "{\"x\":[1,2}, \"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2}}";
    sl_oai_decode_completion(S(broken), true, &c);
    assert_int_equal(c.nevents, 2);
    assert_int_equal(c.events[0].usage.prompt, 3);
    sl_oai_chunk_dispose(&c);
}

static void test_upstream_error_body_keeps_message_and_retry_after(void **st)
{
    const char d[] = "{\"error\":{\"message\":\"Rate limit reached\",\"type\":\"requests\","
                     "\"param\":null,\"code\":\"rate_limit_exceeded\"}}";
    sl_oai_chunk_t c;
    sl_oai_decode_error(S(d), 429, 7, &c);
    assert_int_equal(c.events[0].error.status, 429);
    assert_int_equal(c.events[0].error.retry_after, 7);
    assert_string_equal(c.events[0].error.message, "Rate limit reached");
    assert_string_equal(c.events[0].error.type, "requests");
    assert_string_equal(c.events[0].error.code, "rate_limit_exceeded");
    sl_oai_chunk_dispose(&c);
}

static void test_non_json_error_body_gets_a_typed_default(void **st)
{
    sl_oai_chunk_t c;
    sl_oai_decode_error(S("<html>502 Bad Gateway</html>"), 503, -1, &c);
    assert_int_equal(c.events[0].error.status, 503);
    assert_string_equal(c.events[0].error.type, "server_error");
    assert_non_null(c.events[0].error.message);
    sl_oai_chunk_dispose(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_chunk_is_forwarded_raw_without_parsing),
        cmocka_unit_test(test_finish_reason_detected_without_parsing),
        cmocka_unit_test(test_usage_only_chunk_becomes_usage_event_with_raw),
        cmocka_unit_test(test_usage_inside_content_chunk_is_flagged),
        cmocka_unit_test(test_null_usage_is_not_usage),
        cmocka_unit_test(test_empty_choices_without_usage_is_dropped),
        cmocka_unit_test(test_error_chunk_becomes_error_event),
        cmocka_unit_test(test_word_error_inside_content_is_not_an_error),
        cmocka_unit_test(test_parsed_mode_decodes_role_content_and_tool_calls),
        cmocka_unit_test(test_garbage_chunk_is_an_error),
        cmocka_unit_test(test_keys_inside_string_values_are_not_keys),
        cmocka_unit_test(test_broken_chunk_naming_usage_is_an_error),
        cmocka_unit_test(test_completion_gives_usage_and_raw_end),
        cmocka_unit_test(test_passthrough_usage_is_the_top_level_one),
        cmocka_unit_test(test_upstream_error_body_keeps_message_and_retry_after),
        cmocka_unit_test(test_non_json_error_body_gets_a_typed_default),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
