/* Unit tests for upstream/anthropic_codec: OpenAI requests → Messages requests (table), and
 * Messages answers → canonical events: a recorded stream fed whole and split at every offset,
 * errors inside a stream, whole messages, error bodies. */
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "codec/sse.h"
#include "core/alloc.h"
#include "upstream/anthropic_codec.h"

/* ---- helpers ---- */

/* Test JSON is written with ' for ", so it reads like the wire (no test text has an
 * apostrophe). Returns a converted copy. */
static char *quoted(const char *text)
{
    char *s = sl_strdup(text);
    for (char *p = s; *p; p++)
        if (*p == '\'')
            *p = '"';
    return s;
}

static json_t *J(const char *text)
{
    char *s = quoted(text);
    json_error_t err;
    json_t *j = json_loads(s, 0, &err);
    if (!j)
        fail_msg("bad test JSON at column %d: %s\n%s", err.column, err.text, s);
    sl_free(s);
    return j;
}

static void assert_json_equal(json_t *got, json_t *want, const char *name)
{
    if (json_equal(got, want))
        return;
    char *g = json_dumps(got, JSON_COMPACT | JSON_SORT_KEYS);
    char *w = json_dumps(want, JSON_COMPACT | JSON_SORT_KEYS);
    print_error("%s\n got: %s\nwant: %s\n", name, g, w);
    sl_free(g);
    sl_free(w);
    fail();
}

/* Records each event as one line, so a whole answer compares as one string. */
static void record(void *ud, const sl_event_t *ev)
{
    sl_buf_t *b = ud;
    switch (ev->type) {
    case SL_EV_START:
        sl_buf_printf(b, "START %s %s %" PRId64 "\n", ev->id ? ev->id : "-",
                      ev->model ? ev->model : "-", ev->created);
        return;
    case SL_EV_DELTA:
        sl_buf_puts(b, "DELTA");
        if (ev->role)
            sl_buf_printf(b, " role=%s", ev->role);
        if (ev->content)
            sl_buf_printf(b, " content='%.*s'", (int)ev->content_len, ev->content);
        if (ev->tool.present) {
            assert_non_null(ev->tool.args); /* the OpenAI encoder always writes arguments */
            sl_buf_printf(b, " tool=%d id=%s name=%s args='%.*s'", ev->tool.index,
                          ev->tool.id ? ev->tool.id : "-", ev->tool.name ? ev->tool.name : "-",
                          (int)ev->tool.args_len, ev->tool.args);
        }
        if (ev->finish_reason)
            sl_buf_printf(b, " finish=%s", ev->finish_reason);
        sl_buf_putc(b, '\n');
        return;
    case SL_EV_FINISH: sl_buf_printf(b, "FINISH %s\n", ev->finish_reason); return;
    case SL_EV_USAGE:
        sl_buf_printf(b, "USAGE %" PRId64 " %" PRId64 " %" PRId64 "\n", ev->usage.prompt,
                      ev->usage.completion, ev->usage.cached);
        return;
    case SL_EV_ERROR:
        sl_buf_printf(b, "ERROR %d %s %s '%s' %d\n", ev->error.status, ev->error.type,
                      ev->error.code ? ev->error.code : "-", ev->error.message,
                      ev->error.retry_after);
        return;
    case SL_EV_END: sl_buf_puts(b, "END\n"); return;
    }
}

typedef struct feed {
    sl_anth_dec_t dec;
    sl_buf_t log;
    sl_anth_status_t last;
} feed_t;

static int on_sse(void *ud, const sl_sse_event_t *ev)
{
    feed_t *f = ud;
    f->last = sl_anth_decode_event(&f->dec, ev->event, ev->data, ev->data_len, record, &f->log);
    return f->last == SL_ANTH_MORE ? 0 : 1;
}

/* Runs stream bytes through the SSE parser and the decoder, cut once at offset cut. */
static sl_anth_status_t run_stream(const char *s, size_t cut, sl_buf_t *log)
{
    feed_t f;
    sl_anth_dec_init(&f.dec, 42);
    sl_buf_init(&f.log);
    sl_buf_puts(&f.log, "");
    f.last = SL_ANTH_MORE;
    char *bytes = quoted(s);
    sl_sse_parser_t p;
    sl_sse_parser_init(&p, 1 << 20);
    size_t n = strlen(bytes);
    int rc = sl_sse_parser_feed(&p, bytes, cut, on_sse, &f);
    if (rc == 0)
        rc = sl_sse_parser_feed(&p, bytes + cut, n - cut, on_sse, &f);
    assert_true(rc == 0 || rc == 1);
    sl_sse_parser_dispose(&p);
    sl_free(bytes);
    *log = f.log;
    return f.last;
}

static void request_case(const char *name, const char *in, const char *want)
{
    json_t *oai = J(in);
    json_t *got = sl_anth_request(oai, "claude-x", false, 1024);
    json_t *exp = J(want);
    assert_json_equal(got, exp, name);
    json_decref(oai);
    json_decref(got);
    json_decref(exp);
}

/* ---- requests ---- */

static void test_request_translation_table(void **st)
{
    static const struct {
        const char *name, *in, *want;
    } cases[] = {
        {"system and developer messages join into system",
         "{'model':'gpt','messages':[{'role':'system','content':'Be brief.'},"
         "{'role':'developer','content':[{'type':'text','text':'Use French.'}]},"
         "{'role':'user','content':'hi'}]}",
         "{'model':'claude-x','system':'Be brief.\\n\\nUse French.','messages':"
         "[{'role':'user','content':'hi'}],'max_tokens':1024,'stream':false}"},
        {"consecutive same-role messages merge into blocks",
         "{'messages':[{'role':'user','content':'a'},{'role':'user',"
         "'content':[{'type':'text','text':'b'}]},{'role':'assistant','content':''},"
         "{'role':'assistant','content':'c'}]}",
         "{'model':'claude-x','messages':[{'role':'user','content':[{'type':'text','text':'a'},"
         "{'type':'text','text':'b'}]},{'role':'assistant','content':'c'}],"
         "'max_tokens':1024,'stream':false}"},
        {"max_tokens wins, then max_completion_tokens, else the provider default",
         "{'messages':[{'role':'user','content':'x'}],'max_completion_tokens':77}",
         "{'model':'claude-x','messages':[{'role':'user','content':'x'}],'max_tokens':77,"
         "'stream':false}"},
        {"max_tokens from the request",
         "{'messages':[{'role':'user','content':'x'}],'max_tokens':5,"
         "'max_completion_tokens':77}",
         "{'model':'claude-x','messages':[{'role':'user','content':'x'}],'max_tokens':5,"
         "'stream':false}"},
        {"stop string becomes one stop sequence; temperature and top_p pass",
         "{'messages':[{'role':'user','content':'x'}],'stop':'END','temperature':0.5,"
         "'top_p':0.9}",
         "{'model':'claude-x','messages':[{'role':'user','content':'x'}],'max_tokens':1024,"
         "'stop_sequences':['END'],'temperature':0.5,'top_p':0.9,'stream':false}"},
        {"stop array keeps its non-empty strings; temperature above 1 is clamped",
         "{'messages':[{'role':'user','content':'x'}],'stop':['a','',7,'b'],'temperature':1.5}",
         "{'model':'claude-x','messages':[{'role':'user','content':'x'}],'max_tokens':1024,"
         "'stop_sequences':['a','b'],'temperature':1.0,'stream':false}"},
        {"unknown OpenAI fields are dropped; user becomes metadata.user_id",
         "{'model':'gpt','messages':[{'role':'user','content':'x'}],'n':1,'seed':3,"
         "'frequency_penalty':0.1,'presence_penalty':0.2,'logprobs':true,'logit_bias':{},"
         "'response_format':{'type':'text'},'stream_options':{'include_usage':true},"
         "'stream':true,'service_tier':'auto','store':false,'user':'u-7'}",
         "{'model':'claude-x','messages':[{'role':'user','content':'x'}],'max_tokens':1024,"
         "'metadata':{'user_id':'u-7'},'stream':false}"},
        {"images: data URL → base64 block, other URL → url block",
         "{'messages':[{'role':'user','content':[{'type':'text','text':'what?'},"
         "{'type':'image_url','image_url':{'url':'data:image/png;base64,iVBORw0K'}},"
         "{'type':'image_url','image_url':{'url':'https://e.x/cat.jpg','detail':'low'}},"
         "{'type':'input_audio','input_audio':{'data':'AA','format':'wav'}}]}]}",
         "{'model':'claude-x','messages':[{'role':'user','content':[{'type':'text',"
         "'text':'what?'},{'type':'image','source':{'type':'base64','media_type':'image/png',"
         "'data':'iVBORw0K'}},{'type':'image','source':{'type':'url',"
         "'url':'https://e.x/cat.jpg'}}]}],'max_tokens':1024,'stream':false}"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        request_case(cases[i].name, cases[i].in, cases[i].want);
}

static void test_request_tools_and_tool_choice(void **st)
{
    static const char *const tools =
        "'tools':[{'type':'function','function':{'name':'get_weather','description':'Weather',"
        "'parameters':{'type':'object','properties':{'city':{'type':'string'}}}}},"
        "{'type':'function','function':{'name':'now'}}]";
    static const char *const want_tools =
        "'tools':[{'name':'get_weather','description':'Weather','input_schema':{'type':"
        "'object','properties':{'city':{'type':'string'}}}},{'name':'now','input_schema':"
        "{'type':'object'}}]";
    static const struct {
        const char *choice, *want; /* want "" = no tool_choice sent */
    } cases[] = {
        {"", ""},
        {",'tool_choice':'auto'", ",'tool_choice':{'type':'auto'}"},
        {",'tool_choice':'required'", ",'tool_choice':{'type':'any'}"},
        {",'tool_choice':'none'", ",'tool_choice':{'type':'none'}"},
        {",'tool_choice':{'type':'function','function':{'name':'now'}}",
         ",'tool_choice':{'type':'tool','name':'now'}"},
        {",'parallel_tool_calls':false",
         ",'tool_choice':{'type':'auto','disable_parallel_tool_use':true}"},
        {",'tool_choice':'required','parallel_tool_calls':false",
         ",'tool_choice':{'type':'any','disable_parallel_tool_use':true}"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char in[1024], want[1024];
        snprintf(in, sizeof in, "{'messages':[{'role':'user','content':'x'}],%s%s}", tools,
                 cases[i].choice);
        snprintf(want, sizeof want,
                 "{'model':'claude-x','messages':[{'role':'user','content':'x'}],"
                 "'max_tokens':1024,'stream':false,%s%s}",
                 want_tools, cases[i].want);
        request_case(cases[i].choice, in, want);
    }
}

static void test_request_tool_choice_without_tools_is_dropped(void **st)
{
    request_case("tool_choice alone",
                 "{'messages':[{'role':'user','content':'x'}],'tool_choice':'required'}",
                 "{'model':'claude-x','messages':[{'role':'user','content':'x'}],"
                 "'max_tokens':1024,'stream':false}");
}

/* An agent loop's second request: the assistant's tool calls and the tool results go back. */
static void test_request_tool_calls_and_results_round_trip(void **st)
{
    request_case(
        "tool round trip",
        "{'messages':[{'role':'user','content':'Weather in Paris and Rome?'},"
        "{'role':'assistant','content':null,'tool_calls':["
        "{'id':'toolu_1','type':'function','function':{'name':'get_weather',"
        "'arguments':'{\\'city\\':\\'Paris\\'}'}},"
        "{'id':'toolu_2','type':'function','function':{'name':'get_weather',"
        "'arguments':'not json'}}]},"
        "{'role':'tool','tool_call_id':'toolu_1','content':'18C'},"
        "{'role':'tool','tool_call_id':'toolu_2','content':[{'type':'text','text':'21C'}]},"
        "{'role':'user','content':'Thanks'}]}",
        "{'model':'claude-x','max_tokens':1024,'stream':false,'messages':["
        "{'role':'user','content':'Weather in Paris and Rome?'},"
        "{'role':'assistant','content':["
        "{'type':'tool_use','id':'toolu_1','name':'get_weather','input':{'city':'Paris'}},"
        "{'type':'tool_use','id':'toolu_2','name':'get_weather','input':{}}]},"
        "{'role':'user','content':["
        "{'type':'tool_result','tool_use_id':'toolu_1','content':'18C'},"
        "{'type':'tool_result','tool_use_id':'toolu_2','content':[{'type':'text',"
        "'text':'21C'}]},"
        "{'type':'text','text':'Thanks'}]}]}");
}

static void test_request_assistant_text_comes_before_its_tool_use(void **st)
{
    request_case("assistant text + tool call",
                 "{'messages':[{'role':'user','content':'x'},{'role':'assistant','content':"
                 "'Let me look.','tool_calls':[{'id':'t1','type':'function','function':{"
                 "'name':'f','arguments':'{}'}}]}]}",
                 "{'model':'claude-x','max_tokens':1024,'stream':false,'messages':["
                 "{'role':'user','content':'x'},{'role':'assistant','content':["
                 "{'type':'text','text':'Let me look.'},"
                 "{'type':'tool_use','id':'t1','name':'f','input':{}}]}]}");
}

static void test_request_stream_flag_and_model_come_from_the_call(void **st)
{
    json_t *oai = J("{'model':'gpt-4o','stream':false,'messages':[{'role':'user','content':'x'}]}");
    json_t *got = sl_anth_request(oai, "claude-upstream", true, 300);
    assert_string_equal(json_string_value(json_object_get(got, "model")), "claude-upstream");
    assert_true(json_is_true(json_object_get(got, "stream")));
    assert_int_equal(json_integer_value(json_object_get(got, "max_tokens")), 300);
    json_decref(oai);
    json_decref(got);
}

/* ---- streams ---- */

/* Anthropic's stream as recorded (text, a ping, two tool_use blocks, the usage), written with
 * ' for " like the request tables. */
static const char recorded[] =
    "event: message_start\n"
    "data: {'type':'message_start','message':{'id':'msg_01','type':'message',"
    "'role':'assistant','model':'claude-sonnet-4-5','content':[],'stop_reason':null,"
    "'stop_sequence':null,'usage':{'input_tokens':472,'cache_creation_input_tokens':0,"
    "'cache_read_input_tokens':0,'output_tokens':2}}}\n\n"
    "event: content_block_start\n"
    "data: {'type':'content_block_start','index':0,'content_block':{'type':'text','text':''}}\n"
    "\n"
    "event: ping\n"
    "data: {'type': 'ping'}\n\n"
    "event: content_block_delta\n"
    "data: {'type':'content_block_delta','index':0,'delta':{'type':'text_delta',"
    "'text':'Checking the \\u00e9t\\u00e9 weather.'}}\n\n"
    "event: content_block_delta\n"
    "data: {'type':'content_block_delta','index':0,'delta':{'type':'text_delta',"
    "'text':'\\nOne moment.'}}\n\n"
    "event: content_block_stop\n"
    "data: {'type':'content_block_stop','index':0}\n\n"
    "event: content_block_start\n"
    "data: {'type':'content_block_start','index':1,'content_block':{'type':'tool_use',"
    "'id':'toolu_01','name':'get_weather','input':{}}}\n\n"
    "event: content_block_delta\n"
    "data: {'type':'content_block_delta','index':1,'delta':{'type':'input_json_delta',"
    "'partial_json':''}}\n\n"
    "event: content_block_delta\n"
    "data: {'type':'content_block_delta','index':1,'delta':{'type':'input_json_delta',"
    "'partial_json':'{\\'city\\':'}}\n\n"
    "event: ping\n"
    "data: {'type': 'ping'}\n\n"
    "event: content_block_delta\n"
    "data: {'type':'content_block_delta','index':1,'delta':{'type':'input_json_delta',"
    "'partial_json':' \\'Paris\\'}'}}\n\n"
    "event: content_block_stop\n"
    "data: {'type':'content_block_stop','index':1}\n\n"
    "event: content_block_start\n"
    "data: {'type':'content_block_start','index':2,'content_block':{'type':'tool_use',"
    "'id':'toolu_02','name':'now','input':{}}}\n\n"
    "event: content_block_delta\n"
    "data: {'type':'content_block_delta','index':2,'delta':{'type':'input_json_delta',"
    "'partial_json':'{}'}}\n\n"
    "event: content_block_stop\n"
    "data: {'type':'content_block_stop','index':2}\n\n"
    "event: message_delta\n"
    "data: {'type':'message_delta','delta':{'stop_reason':'tool_use','stop_sequence':null},"
    "'usage':{'output_tokens':89}}\n\n"
    "event: message_stop\n"
    "data: {'type':'message_stop'}\n\n";

static const char recorded_events[] = "START msg_01 claude-sonnet-4-5 42\n"
                                      "DELTA role=assistant content=''\n"
                                      "DELTA content='Checking the \xc3\xa9t\xc3\xa9 weather.'\n"
                                      "DELTA content='\nOne moment.'\n"
                                      "DELTA tool=0 id=toolu_01 name=get_weather args=''\n"
                                      "DELTA tool=0 id=- name=- args='{\"city\":'\n"
                                      "DELTA tool=0 id=- name=- args=' \"Paris\"}'\n"
                                      "DELTA tool=1 id=toolu_02 name=now args=''\n"
                                      "DELTA tool=1 id=- name=- args='{}'\n"
                                      "FINISH tool_calls\n"
                                      "USAGE 472 89 0\n"
                                      "END\n";

static void test_stream_text_and_tool_use_give_exact_events(void **st)
{
    sl_buf_t log;
    assert_int_equal(run_stream(recorded, 0, &log), SL_ANTH_DONE);
    assert_string_equal(log.data, recorded_events);
    sl_buf_dispose(&log);
}

static void test_stream_split_at_every_offset_gives_the_same_events(void **st)
{
    size_t n = strlen(recorded);
    for (size_t cut = 1; cut < n; cut++) {
        sl_buf_t log;
        assert_int_equal(run_stream(recorded, cut, &log), SL_ANTH_DONE);
        if (strcmp(log.data, recorded_events) != 0)
            fail_msg("cut at %zu:\n%s", cut, log.data);
        sl_buf_dispose(&log);
    }
}

static void test_stream_overloaded_error_event_is_503_overloaded(void **st)
{
    sl_buf_t log;
    const char s[] = "event: message_start\n"
                     "data: {'type':'message_start','message':{'id':'m','model':'c',"
                     "'usage':{'input_tokens':3,'output_tokens':1}}}\n\n"
                     "event: content_block_delta\n"
                     "data: {'type':'content_block_delta','index':0,'delta':{'type':"
                     "'text_delta','text':'Hi'}}\n\n"
                     "event: error\n"
                     "data: {'type':'error','error':{'type':'overloaded_error',"
                     "'message':'Overloaded'}}\n\n"
                     "event: message_stop\n"
                     "data: {'type':'message_stop'}\n\n";
    assert_int_equal(run_stream(s, 0, &log), SL_ANTH_FAILED);
    assert_string_equal(log.data, "START m c 42\n"
                                  "DELTA role=assistant content=''\n"
                                  "DELTA content='Hi'\n"
                                  "ERROR 503 server_error overloaded 'Overloaded' -1\n");
    sl_buf_dispose(&log);
}

static void test_stream_other_error_event_is_502_with_upstream_message(void **st)
{
    sl_buf_t log;
    const char s[] = "event: error\n"
                     "data: {'type':'error','error':{'type':'api_error',"
                     "'message':'Internal server error'}}\n\n";
    assert_int_equal(run_stream(s, 0, &log), SL_ANTH_FAILED);
    assert_string_equal(log.data, "ERROR 502 server_error api_error 'Internal server error' -1\n");
    sl_buf_dispose(&log);
}

static void test_stream_event_that_is_not_json_is_an_error(void **st)
{
    sl_buf_t log;
    const char s[] = "event: content_block_delta\ndata: {'type':\n\n";
    assert_int_equal(run_stream(s, 0, &log), SL_ANTH_FAILED);
    assert_string_equal(log.data, "ERROR 502 server_error upstream_bad_chunk 'the upstream sent a "
                                  "stream event that is not JSON' -1\n");
    sl_buf_dispose(&log);
}

static void test_stream_without_message_stop_is_not_done(void **st)
{
    sl_buf_t log;
    const char s[] = "event: message_start\n"
                     "data: {'type':'message_start','message':{'id':'m'}}\n\n"
                     "event: message_delta\n"
                     "data: {'type':'message_delta','delta':{'stop_reason':'end_turn'},"
                     "'usage':{'output_tokens':4}}\n\n";
    assert_int_equal(run_stream(s, 0, &log), SL_ANTH_MORE); /* the transfer reports the cut */
    assert_string_equal(log.data, "START m - 42\nDELTA role=assistant content=''\n");
    sl_buf_dispose(&log);
}

/* The type comes from the payload; the SSE event name is only a fallback. */
static void test_stream_event_name_alone_is_enough(void **st)
{
    sl_buf_t log;
    const char s[] = "event: message_start\n"
                     "data: {'message':{'id':'m','model':'c'}}\n\n"
                     "data: {'type':'content_block_delta','index':0,'delta':{'type':"
                     "'text_delta','text':'x'}}\n\n";
    assert_int_equal(run_stream(s, 0, &log), SL_ANTH_MORE);
    assert_string_equal(log.data, "START m c 42\nDELTA role=assistant content=''\n"
                                  "DELTA content='x'\n");
    sl_buf_dispose(&log);
}

static void test_stream_stop_reasons_map_to_finish_reasons(void **st)
{
    static const char *const map[][2] = {
        {"end_turn", "stop"},       {"stop_sequence", "stop"},     {"max_tokens", "length"},
        {"tool_use", "tool_calls"}, {"refusal", "content_filter"}, {"pause_turn", "stop"},
        {"something_new", "stop"},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
        sl_anth_dec_t d;
        sl_anth_dec_init(&d, 1);
        char delta[256];
        snprintf(delta, sizeof delta,
                 "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"%s\"},"
                 "\"usage\":{\"output_tokens\":1}}",
                 map[i][0]);
        sl_buf_t log;
        sl_buf_init(&log);
        assert_int_equal(
            sl_anth_decode_event(&d, "message_delta", delta, strlen(delta), record, &log),
            SL_ANTH_MORE);
        const char stop[] = "{\"type\":\"message_stop\"}";
        assert_int_equal(sl_anth_decode_event(&d, "", stop, strlen(stop), record, &log),
                         SL_ANTH_DONE);
        char want[128];
        snprintf(want, sizeof want, "FINISH %s\nUSAGE 0 1 -1\nEND\n", map[i][1]);
        assert_string_equal(log.data, want);
        sl_buf_dispose(&log);
    }
}

/* OpenAI's prompt_tokens includes cached tokens; Anthropic's input_tokens does not. */
static void test_stream_cache_tokens_count_into_prompt(void **st)
{
    sl_buf_t log;
    const char s[] = "event: message_start\n"
                     "data: {'type':'message_start','message':{'id':'m','model':'c','usage':{"
                     "'input_tokens':10,'cache_creation_input_tokens':20,"
                     "'cache_read_input_tokens':30,'output_tokens':1}}}\n\n"
                     "event: message_delta\n"
                     "data: {'type':'message_delta','delta':{'stop_reason':'max_tokens'},"
                     "'usage':{'output_tokens':16}}\n\n"
                     "event: message_stop\n"
                     "data: {'type':'message_stop'}\n\n";
    assert_int_equal(run_stream(s, 0, &log), SL_ANTH_DONE);
    assert_string_equal(log.data, "START m c 42\nDELTA role=assistant content=''\n"
                                  "FINISH length\nUSAGE 60 16 30\nEND\n");
    sl_buf_dispose(&log);
}

/* Counts are the upstream's numbers: a prompt total past int64 is pinned, not overflowed (UB,
 * found by tests/fuzz/fuzz_anthropic). */
static void test_stream_huge_token_counts_are_pinned(void **st)
{
    sl_buf_t log;
    const char s[] = "event: message_start\n"
                     "data: {'type':'message_start','message':{'id':'m','model':'c','usage':{"
                     "'input_tokens':9223372036854775807,'cache_creation_input_tokens':1,"
                     "'cache_read_input_tokens':5,'output_tokens':1}}}\n\n"
                     "event: message_stop\n"
                     "data: {'type':'message_stop'}\n\n";
    assert_int_equal(run_stream(s, 0, &log), SL_ANTH_DONE);
    assert_string_equal(log.data, "START m c 42\nDELTA role=assistant content=''\n"
                                  "FINISH stop\nUSAGE 9223372036854775807 1 5\nEND\n");
    sl_buf_dispose(&log);
    const char neg[] = "event: message_start\n"
                       "data: {'type':'message_start','message':{'id':'m','model':'c','usage':{"
                       "'input_tokens':-9223372036854775808,'cache_creation_input_tokens':-1,"
                       "'output_tokens':1}}}\n\n"
                       "event: message_stop\n"
                       "data: {'type':'message_stop'}\n\n";
    assert_int_equal(run_stream(neg, 0, &log), SL_ANTH_DONE);
    assert_string_equal(log.data, "START m c 42\nDELTA role=assistant content=''\n"
                                  "FINISH stop\nUSAGE -9223372036854775808 1 -1\nEND\n");
    sl_buf_dispose(&log);
}

/* ---- whole messages and error bodies ---- */

static void test_whole_message_with_text_and_tool_use(void **st)
{
    const char body[] =
        "{\"id\":\"msg_9\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-x\","
        "\"content\":[{\"type\":\"text\",\"text\":\"Let me \"},{\"type\":\"text\",\"text\":"
        "\"check.\"},{\"type\":\"tool_use\",\"id\":\"toolu_7\",\"name\":\"get_weather\","
        "\"input\":{\"city\":\"Oslo\",\"days\":2}}],\"stop_reason\":\"tool_use\","
        "\"stop_sequence\":null,\"usage\":{\"input_tokens\":12,\"output_tokens\":34}}";
    sl_buf_t log;
    sl_buf_init(&log);
    assert_int_equal(sl_anth_decode_message(7, body, strlen(body), record, &log), SL_ANTH_DONE);
    assert_string_equal(
        log.data, "START msg_9 claude-x 7\n"
                  "DELTA role=assistant content='Let me check.'\n"
                  "DELTA tool=0 id=toolu_7 name=get_weather args='{\"city\":\"Oslo\",\"days\":2}'\n"
                  "FINISH tool_calls\n"
                  "USAGE 12 34 -1\n"
                  "END\n");
    sl_buf_dispose(&log);
}

static void test_whole_body_that_is_not_a_message_is_an_error(void **st)
{
    sl_buf_t log;
    sl_buf_init(&log);
    assert_int_equal(sl_anth_decode_message(7, "[1]", 3, record, &log), SL_ANTH_FAILED);
    assert_string_equal(log.data, "ERROR 502 server_error upstream_bad_response 'the upstream "
                                  "answer is not an Anthropic message' -1\n");
    sl_buf_dispose(&log);
}

static void test_error_bodies_keep_status_type_and_message(void **st)
{
    static const struct {
        int status, retry_after;
        const char *body, *want;
    } cases[] = {
        {529, 12,
         "{\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":"
         "\"Overloaded\"}}",
         "ERROR 503 server_error overloaded 'Overloaded' 12\n"},
        {429, 30,
         "{\"type\":\"error\",\"error\":{\"type\":\"rate_limit_error\",\"message\":"
         "\"Number of request tokens has exceeded your per-minute rate limit\"}}",
         "ERROR 429 rate_limit_error rate_limit_error 'Number of request tokens has exceeded "
         "your per-minute rate limit' 30\n"},
        {401, -1,
         "{\"type\":\"error\",\"error\":{\"type\":\"authentication_error\","
         "\"message\":\"invalid x-api-key\"}}",
         "ERROR 401 authentication_error authentication_error 'invalid x-api-key' -1\n"},
        {403, -1,
         "{\"type\":\"error\",\"error\":{\"type\":\"permission_error\",\"message\":"
         "\"no\"}}",
         "ERROR 403 permission_error permission_error 'no' -1\n"},
        {400, -1,
         "{\"type\":\"error\",\"error\":{\"type\":\"invalid_request_error\","
         "\"message\":\"max_tokens: Field required\"}}",
         "ERROR 400 invalid_request_error invalid_request_error 'max_tokens: Field required' "
         "-1\n"},
        {500, -1,
         "{\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":"
         "\"Internal server error\"}}",
         "ERROR 500 server_error api_error 'Internal server error' -1\n"},
        {502, -1, "<html>Bad Gateway</html>",
         "ERROR 502 server_error - 'the upstream provider returned an error' -1\n"},
        {529, -1, "",
         "ERROR 503 server_error overloaded 'the upstream provider is overloaded' "
         "-1\n"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sl_buf_t log;
        sl_buf_init(&log);
        sl_anth_decode_error(cases[i].status, cases[i].body, strlen(cases[i].body),
                             cases[i].retry_after, record, &log);
        assert_string_equal(log.data, cases[i].want);
        sl_buf_dispose(&log);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_translation_table),
        cmocka_unit_test(test_request_tools_and_tool_choice),
        cmocka_unit_test(test_request_tool_choice_without_tools_is_dropped),
        cmocka_unit_test(test_request_tool_calls_and_results_round_trip),
        cmocka_unit_test(test_request_assistant_text_comes_before_its_tool_use),
        cmocka_unit_test(test_request_stream_flag_and_model_come_from_the_call),
        cmocka_unit_test(test_stream_text_and_tool_use_give_exact_events),
        cmocka_unit_test(test_stream_split_at_every_offset_gives_the_same_events),
        cmocka_unit_test(test_stream_overloaded_error_event_is_503_overloaded),
        cmocka_unit_test(test_stream_other_error_event_is_502_with_upstream_message),
        cmocka_unit_test(test_stream_event_that_is_not_json_is_an_error),
        cmocka_unit_test(test_stream_without_message_stop_is_not_done),
        cmocka_unit_test(test_stream_event_name_alone_is_enough),
        cmocka_unit_test(test_stream_stop_reasons_map_to_finish_reasons),
        cmocka_unit_test(test_stream_cache_tokens_count_into_prompt),
        cmocka_unit_test(test_stream_huge_token_counts_are_pinned),
        cmocka_unit_test(test_whole_message_with_text_and_tool_use),
        cmocka_unit_test(test_whole_body_that_is_not_a_message_is_an_error),
        cmocka_unit_test(test_error_bodies_keep_status_type_and_message),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
