/* core/closer and core/fsm: the one deferred-free idiom and the one transition function. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <uv.h>

#include "core/closer.h"
#include "core/fsm.h"

typedef struct owner {
    uv_timer_t a, b;
    sl_closer_t closer;
    int done; /* times done ran */
} owner_t;

static void on_done(void *p)
{
    ((owner_t *)p)->done++;
}

static void start(uv_loop_t *loop, owner_t *o)
{
    *o = (owner_t){0};
    assert_int_equal(uv_timer_init(loop, &o->a), 0);
    assert_int_equal(uv_timer_init(loop, &o->b), 0);
    sl_closer_init(&o->closer, on_done, o);
}

/* done waits for both close callbacks, which only the loop runs, and runs exactly once. */
static void test_closer_frees_after_the_last_handle(void **state)
{
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    owner_t o;
    start(&loop, &o);
    sl_closer_close(&o.closer, (uv_handle_t *)&o.a);
    sl_closer_close(&o.closer, (uv_handle_t *)&o.b);
    sl_closer_close(&o.closer, (uv_handle_t *)&o.a); /* already closing: ignored */
    sl_closer_finish(&o.closer);
    assert_int_equal(o.done, 0); /* the handles are still closing */
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(o.done, 1);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* A hold (a child still ending) keeps the owner past its handles; finish twice is one finish. */
static void test_closer_waits_for_holds_and_finish(void **state)
{
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    owner_t o;
    start(&loop, &o);
    sl_closer_hold(&o.closer);
    sl_closer_close(&o.closer, (uv_handle_t *)&o.a);
    sl_closer_close(&o.closer, (uv_handle_t *)&o.b);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(o.done, 0); /* not finished, and held */
    sl_closer_finish(&o.closer);
    sl_closer_finish(&o.closer);
    assert_int_equal(o.done, 0); /* still held */
    sl_closer_release(&o.closer);
    assert_int_equal(o.done, 1);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* Nothing held: finish frees at once. */
static void test_closer_finish_with_nothing_held(void **state)
{
    owner_t o = {0};
    sl_closer_init(&o.closer, on_done, &o);
    sl_closer_finish(&o.closer);
    assert_int_equal(o.done, 1);
}

enum { S_A, S_B, S_C, NS };
static const char *const names[NS] = {"A", "B", "C"};
static const uint32_t edges[NS] = {[S_A] = SL_FSM_TO(S_B), [S_B] = SL_FSM_TO(S_A) | SL_FSM_TO(S_C)};
static const sl_fsm_t fsm = {"test", names, edges, NS};

static void test_fsm_edges(void **state)
{
    assert_true(sl_fsm_legal(&fsm, S_A, S_B));
    assert_false(sl_fsm_legal(&fsm, S_A, S_C));
    assert_false(sl_fsm_legal(&fsm, S_C, S_A)); /* terminal */
    assert_false(sl_fsm_legal(&fsm, S_A, NS));  /* out of range */
    assert_int_equal(sl_fsm_step(&fsm, S_A, S_B, "1", "go"), S_B);
    assert_int_equal(sl_fsm_step(&fsm, S_B, S_C, "1", "end"), S_C);
    assert_true(sl_fsm_speaks(&fsm, S_C, S_A)); /* illegal: it will print, so build an id */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_closer_frees_after_the_last_handle),
        cmocka_unit_test(test_closer_waits_for_holds_and_finish),
        cmocka_unit_test(test_closer_finish_with_nothing_held),
        cmocka_unit_test(test_fsm_edges),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
