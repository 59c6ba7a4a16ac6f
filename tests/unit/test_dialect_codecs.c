/* Dialect encode/decode pieces that are pure: OpenAI chunks sluice synthesises (what the SDKs
 * validate), the seed dialects' canonical request building and history checks, query
 * parameters (aichat's EventSource endpoint). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "codec/openai_chunk.h"
#include "dialect/seed.h"
#include "http/request.h"

static const sl_oai_meta_t meta = {"chatcmpl-1", 1700000000, "m\"1"};

/* The JSON after "data: ", parsed. */
static json_t *data_json(const sl_buf_t *b)
{
    assert_true(b->len > 8);
    assert_memory_equal(b->data, "data: ", 6);
    assert_memory_equal(b->data + b->len - 2, "\n\n", 2);
    json_error_t e;
    json_t *j = json_loadb(b->data + 6, b->len - 8, 0, &e);
    if (!j)
        fail_msg("bad JSON: %s in %s", e.text, b->data);
    return j;
}

static void test_first_delta_carries_role_index_and_null_finish(void **st)
{
    sl_buf_t b;
    sl_buf_init(&b);
    sl_event_t ev = {
        .type = SL_EV_DELTA, .role = "assistant", .content = "h\xc3\xa9\"", .content_len = 4};
    sl_oai_encode_delta(&b, &meta, &ev);
    json_t *j = data_json(&b);
    assert_string_equal(json_string_value(json_object_get(j, "object")), "chat.completion.chunk");
    assert_string_equal(json_string_value(json_object_get(j, "model")), "m\"1");
    json_t *c0 = json_array_get(json_object_get(j, "choices"), 0);
    assert_int_equal(json_integer_value(json_object_get(c0, "index")), 0);
    json_t *d = json_object_get(c0, "delta");
    assert_string_equal(json_string_value(json_object_get(d, "role")), "assistant");
    assert_string_equal(json_string_value(json_object_get(d, "content")), "h\xc3\xa9\"");
    assert_true(json_is_null(json_object_get(c0, "finish_reason")));
    json_decref(j);
    sl_buf_dispose(&b);
}

static void test_tool_call_delta_has_index_id_type_name_and_arguments(void **st)
{
    sl_buf_t b;
    sl_buf_init(&b);
    sl_event_t first = {
        .type = SL_EV_DELTA,
        .tool = {
            .present = true, .index = 2, .id = "call_9", .name = "get", .args = "", .args_len = 0}};
    sl_oai_encode_delta(&b, &meta, &first);
    json_t *j = data_json(&b);
    json_t *tc = json_array_get(
        json_object_get(json_object_get(json_array_get(json_object_get(j, "choices"), 0), "delta"),
                        "tool_calls"),
        0);
    assert_int_equal(json_integer_value(json_object_get(tc, "index")), 2);
    assert_string_equal(json_string_value(json_object_get(tc, "id")), "call_9");
    assert_string_equal(json_string_value(json_object_get(tc, "type")), "function");
    json_t *fn = json_object_get(tc, "function");
    assert_string_equal(json_string_value(json_object_get(fn, "name")), "get");
    assert_string_equal(json_string_value(json_object_get(fn, "arguments")), "");
    json_decref(j);
    sl_buf_reset(&b);
    /* A later fragment: index and arguments only, no id/name/type. */
    sl_event_t frag = {.type = SL_EV_DELTA,
                       .tool = {.present = true, .index = 2, .args = "{\"a\":", .args_len = 5}};
    sl_oai_encode_delta(&b, &meta, &frag);
    j = data_json(&b);
    tc = json_array_get(
        json_object_get(json_object_get(json_array_get(json_object_get(j, "choices"), 0), "delta"),
                        "tool_calls"),
        0);
    assert_null(json_object_get(tc, "id"));
    assert_null(json_object_get(tc, "type"));
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(tc, "function"), "arguments")),
        "{\"a\":");
    json_decref(j);
    sl_buf_dispose(&b);
}

static void test_finish_chunk_has_empty_delta_and_reason(void **st)
{
    sl_buf_t b;
    sl_buf_init(&b);
    sl_event_t ev = {.type = SL_EV_DELTA, .choice = 1, .finish_reason = "tool_calls"};
    sl_oai_encode_delta(&b, &meta, &ev);
    json_t *j = data_json(&b);
    json_t *c0 = json_array_get(json_object_get(j, "choices"), 0);
    assert_int_equal(json_integer_value(json_object_get(c0, "index")), 1);
    assert_int_equal(json_object_size(json_object_get(c0, "delta")), 0);
    assert_string_equal(json_string_value(json_object_get(c0, "finish_reason")), "tool_calls");
    json_decref(j);
    sl_buf_dispose(&b);
}

/* A forced non-stream answer's finish_reason is the upstream's text: it must stay a JSON string
 * whatever it holds (found by tests/fuzz/fuzz_openai_decode). */
static void test_finish_reason_from_upstream_is_json_escaped(void **st)
{
    sl_buf_t b;
    sl_buf_init(&b);
    sl_event_t ev = {.type = SL_EV_DELTA, .finish_reason = "st\\op\"\n"};
    sl_oai_encode_delta(&b, &meta, &ev);
    json_t *j = data_json(&b);
    json_t *c0 = json_array_get(json_object_get(j, "choices"), 0);
    assert_string_equal(json_string_value(json_object_get(c0, "finish_reason")), "st\\op\"\n");
    json_decref(j);
    sl_buf_dispose(&b);
}

static void test_usage_chunk_has_empty_choices_array(void **st)
{
    sl_buf_t b;
    sl_buf_init(&b);
    sl_usage_t u = {.prompt = 7, .completion = 5, .cached = 3};
    sl_oai_encode_usage_chunk(&b, &meta, &u);
    json_t *j = data_json(&b);
    json_t *ch = json_object_get(j, "choices");
    assert_true(json_is_array(ch));
    assert_int_equal(json_array_size(ch), 0);
    json_t *us = json_object_get(j, "usage");
    assert_int_equal(json_integer_value(json_object_get(us, "total_tokens")), 12);
    assert_int_equal(json_integer_value(json_object_get(
                         json_object_get(us, "prompt_tokens_details"), "cached_tokens")),
                     3);
    json_decref(j);
    sl_buf_dispose(&b);
}

/* Token counts are the upstream's numbers: a total past int64 is pinned, not overflowed (UB,
 * found by tests/fuzz/fuzz_openai_decode). */
static void test_usage_total_past_int64_is_pinned(void **st)
{
    sl_buf_t b;
    sl_buf_init(&b);
    sl_usage_t u = {.prompt = INT64_MAX, .completion = 1, .cached = -1};
    sl_oai_encode_usage_chunk(&b, &meta, &u);
    json_t *j = data_json(&b);
    json_t *us = json_object_get(j, "usage");
    assert_int_equal(json_integer_value(json_object_get(us, "total_tokens")), INT64_MAX);
    json_decref(j);
    sl_buf_reset(&b);
    u = (sl_usage_t){.prompt = INT64_MIN, .completion = -1, .cached = -1};
    sl_oai_encode_usage_chunk(&b, &meta, &u);
    j = data_json(&b);
    us = json_object_get(j, "usage");
    assert_int_equal(json_integer_value(json_object_get(us, "total_tokens")), INT64_MIN);
    json_decref(j);
    sl_buf_dispose(&b);
}

static void test_error_event_is_openai_shaped(void **st)
{
    sl_buf_t b;
    sl_buf_init(&b);
    sl_error_info_t e = {.status = 502, .message = "upstream \"dropped\"", .code = "x"};
    sl_oai_encode_error_event(&b, &e);
    json_t *j = data_json(&b);
    json_t *err = json_object_get(j, "error");
    assert_string_equal(json_string_value(json_object_get(err, "message")), "upstream \"dropped\"");
    assert_string_equal(json_string_value(json_object_get(err, "type")), "server_error");
    assert_string_equal(json_string_value(json_object_get(err, "code")), "x");
    assert_true(json_is_null(json_object_get(err, "param")));
    json_decref(j);
    sl_buf_dispose(&b);
}

static void test_seed_request_orders_system_history_user(void **st)
{
    json_t *history = json_pack("[{s:s,s:s},{s:s,s:s}]", "role", "user", "content", "q1", "role",
                                "assistant", "content", "a1");
    json_t *params = json_pack("{s:f, s:i}", "temperature", 0.2, "max_tokens", 50);
    sl_chat_req_t req = {0};
    sl_seed_request(&req, "gpt-x", "be brief", history, "q2", 1000, params, true);
    json_t *msgs = json_object_get(req.body, "messages");
    assert_int_equal(json_array_size(msgs), 4);
    assert_string_equal(json_string_value(json_object_get(json_array_get(msgs, 0), "role")),
                        "system");
    assert_string_equal(json_string_value(json_object_get(json_array_get(msgs, 2), "content")),
                        "a1");
    assert_string_equal(json_string_value(json_object_get(json_array_get(msgs, 3), "content")),
                        "q2");
    /* an agent's own max_tokens wins over the dialect's */
    assert_int_equal(json_integer_value(json_object_get(req.body, "max_tokens")), 50);
    assert_true(json_is_true(json_object_get(req.body, "stream")));
    assert_string_equal(req.model, "gpt-x");
    assert_string_equal(req.meta.user_message, "q2");
    assert_int_equal(req.prompt_bytes, strlen("be brief") + 2 + 2 + 2);
    sl_chat_req_dispose(&req);
    json_decref(history);
    json_decref(params);
}

static void test_seed_history_must_be_role_content_pairs(void **st)
{
    json_t *ok = json_pack("[{s:s,s:s}]", "role", "assistant", "content", "x");
    json_t *bad_role = json_pack("[{s:s,s:s}]", "role", "tool", "content", "x");
    json_t *bad_content = json_pack("[{s:s,s:i}]", "role", "user", "content", 1);
    json_t *not_array = json_object();
    assert_true(sl_seed_history_ok(ok));
    assert_false(sl_seed_history_ok(bad_role));
    assert_false(sl_seed_history_ok(bad_content));
    assert_false(sl_seed_history_ok(not_array));
    json_decref(ok), json_decref(bad_role), json_decref(bad_content), json_decref(not_array);
}

static void test_query_parameters_are_percent_decoded(void **st)
{
    sl_http_req_t r;
    sl_http_req_init(&r, 16384, 1024);
    const char *in = "GET /api/ai-chat/stream-sse?message=hello%20w%C3%A9+x&history=%5B%5D&"
                     "access_token=a.b.c&empty=&bad=%zz HTTP/1.1\r\nHost: a\r\n\r\n";
    (void)sl_http_req_feed(&r, in, strlen(in));
    assert_true(r.complete);
    sl_buf_t v;
    sl_buf_init(&v);
    assert_true(sl_http_req_query(&r, "message", &v));
    assert_string_equal(v.data, "hello w\xc3\xa9 x");
    assert_true(sl_http_req_query(&r, "history", &v));
    assert_string_equal(v.data, "[]");
    assert_true(sl_http_req_query(&r, "empty", &v));
    assert_int_equal(v.len, 0);
    assert_false(sl_http_req_query(&r, "bad", &v));
    assert_false(sl_http_req_query(&r, "missing", &v));
    assert_false(sl_http_req_query(&r, "access", &v)); /* whole names only */
    sl_buf_dispose(&v);
    sl_http_req_dispose(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_first_delta_carries_role_index_and_null_finish),
        cmocka_unit_test(test_tool_call_delta_has_index_id_type_name_and_arguments),
        cmocka_unit_test(test_finish_chunk_has_empty_delta_and_reason),
        cmocka_unit_test(test_finish_reason_from_upstream_is_json_escaped),
        cmocka_unit_test(test_usage_chunk_has_empty_choices_array),
        cmocka_unit_test(test_usage_total_past_int64_is_pinned),
        cmocka_unit_test(test_error_event_is_openai_shaped),
        cmocka_unit_test(test_seed_request_orders_system_history_user),
        cmocka_unit_test(test_seed_history_must_be_role_content_pairs),
        cmocka_unit_test(test_query_parameters_are_percent_decoded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
