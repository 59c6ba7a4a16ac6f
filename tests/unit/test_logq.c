/* obs/logq: the access-log writer thread. Lines pushed from several threads all arrive, whole
 * and in each pusher's order; when the writer is stuck (a pipe nobody reads) the bounded
 * buffer drops whole batches and counts every line; stop writes out what is queued. */
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cmocka.h>
#include <uv.h>

#include "obs/logq.h"

#define PER_THREAD 5000

typedef struct pusher {
    sl_logq_t *q;
    int id;
} pusher_t;

static void push_lines(void *arg)
{
    pusher_t *p = arg;
    char line[64];
    for (int i = 0; i < PER_THREAD; i++) {
        int n = snprintf(line, sizeof line, "{\"t\":%d,\"i\":%d}\n", p->id, i);
        sl_logq_push(p->q, line, (size_t)n);
    }
}

static char *slurp(FILE *f, size_t *len)
{
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    char *s = malloc((size_t)n + 1);
    assert_int_equal(fread(s, 1, (size_t)n, f), (size_t)n);
    s[n] = 0;
    *len = (size_t)n;
    return s;
}

static void test_lines_from_threads_arrive_whole_and_in_order(void **state)
{
    FILE *f = tmpfile();
    assert_non_null(f);
    sl_logq_t *q = sl_logq_start(fileno(f), SL_LOGQ_CAP);
    assert_non_null(q);
    pusher_t p[3];
    uv_thread_t t[3];
    for (int k = 0; k < 3; k++) {
        p[k] = (pusher_t){q, k};
        assert_int_equal(uv_thread_create(&t[k], push_lines, &p[k]), 0);
    }
    for (int k = 0; k < 3; k++)
        uv_thread_join(&t[k]);
    assert_int_equal(sl_logq_dropped(q), 0);
    sl_logq_stop(q);
    size_t len;
    char *s = slurp(f, &len);
    int next[3] = {0, 0, 0}, lines = 0;
    for (char *l = strtok(s, "\n"); l; l = strtok(NULL, "\n")) {
        int tid, i;
        assert_int_equal(sscanf(l, "{\"t\":%d,\"i\":%d}", &tid, &i), 2);
        assert_true(tid >= 0 && tid < 3);
        assert_int_equal(i, next[tid]); /* each thread's lines in its order, none torn */
        next[tid]++;
        lines++;
    }
    assert_int_equal(lines, 3 * PER_THREAD);
    free(s);
    fclose(f);
}

typedef struct drain {
    int fd;
    size_t got;
} drain_t;

static void drain(void *arg)
{
    drain_t *d = arg;
    char buf[65536];
    ssize_t n;
    while ((n = read(d->fd, buf, sizeof buf)) > 0)
        d->got += (size_t)n;
}

/* A writer blocked on a full pipe: pushes beyond the bound are dropped and counted by line;
 * once the reader drains the pipe, stop writes the kept lines and nothing else. */
static void test_full_buffer_drops_and_counts(void **state)
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    int pipe_size = fcntl(fds[1], F_GETPIPE_SZ);
    assert_true(pipe_size > 0);
    sl_logq_t *q = sl_logq_start(fds[1], 4096);
    assert_non_null(q);
    /* Fill the pipe through the writer, then hand it one more line: it takes that batch and
     * blocks in write(), leaving its buffer empty. */
    char block[1024];
    memset(block, 'x', sizeof block - 1);
    block[sizeof block - 1] = '\n';
    size_t pushed = 0;
    int inpipe = 0;
    for (int spins = 0; inpipe < pipe_size - (int)sizeof block && spins < 5000; spins++) {
        sl_logq_push(q, block, sizeof block);
        pushed += sizeof block;
        usleep(1000);
        assert_int_equal(ioctl(fds[0], FIONREAD, &inpipe), 0);
    }
    assert_true(inpipe >= pipe_size - (int)sizeof block);
    sl_logq_push(q, block, sizeof block);
    pushed += sizeof block;
    usleep(50 * 1000);
    /* Now only the 4096-byte buffer is left: of ten 1 KiB lines four fit, six are dropped. */
    uint64_t before = sl_logq_dropped(q);
    for (int i = 0; i < 10; i++)
        sl_logq_push(q, block, sizeof block);
    assert_int_equal(sl_logq_dropped(q), before + 6);
    /* A batch of several lines dropped counts each of them. */
    char three[6] = "a\nb\nc\n";
    char big[5000];
    memset(big, 'y', sizeof big);
    memcpy(big + sizeof big - sizeof three, three, sizeof three);
    uint64_t d0 = sl_logq_dropped(q);
    sl_logq_push(q, big, sizeof big); /* larger than the whole bound: never fits */
    assert_int_equal(sl_logq_dropped(q), d0 + 3);
    /* Drain the pipe on another thread while stop writes out the kept lines. */
    uint64_t final_dropped = sl_logq_dropped(q);
    drain_t d = {fds[0], 0};
    uv_thread_t reader;
    assert_int_equal(uv_thread_create(&reader, drain, &d), 0);
    sl_logq_stop(q);
    close(fds[1]); /* the reader sees end of file */
    uv_thread_join(&reader);
    size_t got = d.got;
    /* Every pushed 1 KiB line was either written or counted as dropped. */
    size_t total_lines = pushed / sizeof block + 10;
    assert_int_equal(got % sizeof block, 0);
    assert_int_equal(got / sizeof block + (final_dropped - 3), total_lines);
    close(fds[0]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lines_from_threads_arrive_whole_and_in_order),
        cmocka_unit_test(test_full_buffer_drops_and_counts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
