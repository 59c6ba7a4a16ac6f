/* http/router: exact paths, one {param} segment, 404 vs 405 with the Allow line, and which
 * mount's error shape answers a path nothing routes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/err.h"
#include "http/router.h"

/* Handlers and error shapes are only compared by address: the router never calls them. */
static void h_chat(sl_conn_t *c, const sl_http_req_t *r, const sl_route_match_t *m)
{
}
static void h_models(sl_conn_t *c, const sl_http_req_t *r, const sl_route_match_t *m)
{
}
static void h_agent(sl_conn_t *c, const sl_http_req_t *r, const sl_route_match_t *m)
{
}
static void h_health(sl_conn_t *c, const sl_http_req_t *r, const sl_route_match_t *m)
{
}
static void shape_seed(sl_conn_t *c, int err, const char *allow)
{
}
static void shape_nested(sl_conn_t *c, int err, const char *allow)
{
}

static const sl_route_t openai[] = {
    {"POST", "/chat/completions", h_chat},
    {"GET", "/models", h_models},
};
static const sl_route_t seed[] = {
    {"POST", "/agents/{name}/chat", h_agent},
    {"GET", "/agents/{name}/chat", h_agent},
};
static const sl_route_t root[] = {{"GET", "/healthz", h_health}};

static sl_router_t *make(void)
{
    sl_router_t *r = sl_router_new();
    sl_router_add(r, "/v1", openai, 2, NULL);
    sl_router_add(r, "/api", seed, 2, shape_seed);
    sl_router_add(r, "/api/v2", root, 1, shape_nested);
    sl_router_add(r, "", root, 1, NULL);
    return r;
}

static int look(const sl_router_t *r, const char *method, const char *path, sl_route_found_t *f)
{
    return sl_router_lookup(r, method, path, strlen(path), f);
}

static void test_exact_path_finds_its_handler(void **state)
{
    sl_router_t *r = make();
    sl_route_found_t f;
    assert_int_equal(look(r, "POST", "/v1/chat/completions", &f), 0);
    assert_ptr_equal(f.route->fn, h_chat);
    assert_null(f.match.param);
    assert_int_equal(f.allow.len, 0);
    sl_buf_dispose(&f.allow);
    assert_int_equal(look(r, "GET", "/healthz", &f), 0);
    assert_ptr_equal(f.route->fn, h_health);
    sl_buf_dispose(&f.allow);
    sl_router_unref(r);
}

static void test_trailing_slash_and_prefix_are_not_the_path(void **state)
{
    sl_router_t *r = make();
    sl_route_found_t f;
    assert_int_equal(look(r, "POST", "/v1/chat/completions/", &f), SL_ENOTFOUND);
    sl_buf_dispose(&f.allow);
    assert_int_equal(look(r, "POST", "/v1/chat/completion", &f), SL_ENOTFOUND);
    sl_buf_dispose(&f.allow);
    assert_int_equal(look(r, "POST", "/chat/completions", &f), SL_ENOTFOUND);
    assert_null(f.on_error); /* under no mount: the OpenAI shape */
    sl_buf_dispose(&f.allow);
    sl_router_unref(r);
}

static void test_param_is_one_nonempty_segment(void **state)
{
    sl_router_t *r = make();
    sl_route_found_t f;
    assert_int_equal(look(r, "POST", "/api/agents/helper/chat", &f), 0);
    assert_ptr_equal(f.route->fn, h_agent);
    assert_int_equal(f.match.param_len, 6);
    assert_memory_equal(f.match.param, "helper", 6);
    sl_buf_dispose(&f.allow);
    assert_int_equal(look(r, "POST", "/api/agents//chat", &f), SL_ENOTFOUND);
    sl_buf_dispose(&f.allow);
    assert_int_equal(look(r, "POST", "/api/agents/a/b/chat", &f), SL_ENOTFOUND);
    sl_buf_dispose(&f.allow);
    sl_router_unref(r);
}

static void test_other_method_is_405_with_every_allowed_one(void **state)
{
    sl_router_t *r = make();
    sl_route_found_t f;
    assert_int_equal(look(r, "GET", "/v1/chat/completions", &f), SL_EMETHOD);
    assert_string_equal(f.allow.data, "Allow: POST\r\n");
    assert_null(f.on_error);
    sl_buf_dispose(&f.allow);
    assert_int_equal(look(r, "DELETE", "/api/agents/x/chat", &f), SL_EMETHOD);
    assert_string_equal(f.allow.data, "Allow: POST, GET\r\n");
    assert_ptr_equal(f.on_error, shape_seed);
    sl_buf_dispose(&f.allow);
    sl_router_unref(r);
}

static void test_unrouted_path_takes_the_longest_mount_it_falls_under(void **state)
{
    sl_router_t *r = make();
    sl_route_found_t f;
    assert_int_equal(look(r, "GET", "/api/nothing", &f), SL_ENOTFOUND);
    assert_ptr_equal(f.on_error, shape_seed);
    sl_buf_dispose(&f.allow);
    assert_int_equal(look(r, "GET", "/api/v2/nothing", &f), SL_ENOTFOUND);
    assert_ptr_equal(f.on_error, shape_nested);
    sl_buf_dispose(&f.allow);
    assert_int_equal(look(r, "GET", "/api", &f), SL_ENOTFOUND); /* the mount itself */
    assert_ptr_equal(f.on_error, shape_seed);
    sl_buf_dispose(&f.allow);
    /* "/apix" is not under "/api": a prefix counts only at a segment boundary. */
    assert_int_equal(look(r, "GET", "/apix/agents/a/chat", &f), SL_ENOTFOUND);
    assert_null(f.on_error);
    sl_buf_dispose(&f.allow);
    sl_router_unref(r);
}

static void test_refs_keep_the_router_alive(void **state)
{
    sl_router_t *r = make();
    sl_router_t *held = sl_router_ref(r);
    sl_router_unref(r);
    sl_route_found_t f;
    assert_int_equal(look(held, "GET", "/v1/models", &f), 0);
    assert_ptr_equal(f.route->fn, h_models);
    sl_buf_dispose(&f.allow);
    sl_router_unref(held);
    sl_router_unref(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exact_path_finds_its_handler),
        cmocka_unit_test(test_trailing_slash_and_prefix_are_not_the_path),
        cmocka_unit_test(test_param_is_one_nonempty_segment),
        cmocka_unit_test(test_other_method_is_405_with_every_allowed_one),
        cmocka_unit_test(test_unrouted_path_takes_the_longest_mount_it_falls_under),
        cmocka_unit_test(test_refs_keep_the_router_alive),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
