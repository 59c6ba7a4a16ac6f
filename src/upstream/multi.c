/* curl multi ↔ libuv glue: one uv_poll per curl socket, one uv_timer for curl's timeout. */
#include "upstream/multi.h"

#include "core/alloc.h"
#include "core/closer.h"
#include "core/log.h"

typedef struct xfer xfer_t;

#define POOL_MAX 256 /* idle easy handles kept per worker */

struct sl_multi {
    CURLM *curlm;
    xfer_t *xfers;        /* transfers in progress, so close can end the ones still running */
    CURL *pool[POOL_MAX]; /* owned: reset handles ready for reuse */
    size_t npool;
    uv_loop_t *loop; /* borrowed: the worker's */
    uv_timer_t timer;
    sl_closer_t closer; /* frees m once the timer has closed */
    int closing;
};

typedef struct sock_ctx {
    uv_poll_t poll;
    sl_closer_t closer; /* frees s once the poll has closed */
    curl_socket_t fd;
    sl_multi_t *m;
} sock_ctx_t;

struct xfer {
    sl_multi_done_cb done;
    void *ud;
    CURL *easy;
    xfer_t *prev, *next;
};

static void check_done(sl_multi_t *m)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(m->curlm, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        CURL *easy = msg->easy_handle;
        CURLcode res = msg->data.result;
        xfer_t *x = NULL;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&x);
        if (x) {
            /* The owner removes the handle (sl_multi_remove), which frees x. */
            x->done(x->ud, res);
        }
    }
}

static void on_poll(uv_poll_t *p, int status, int events)
{
    sock_ctx_t *s = p->data;
    int flags = 0;
    if (status < 0)
        flags = CURL_CSELECT_ERR;
    if (events & UV_READABLE)
        flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
        flags |= CURL_CSELECT_OUT;
    int running;
    curl_multi_socket_action(s->m->curlm, s->fd, flags, &running);
    check_done(s->m);
}

static void on_timeout(uv_timer_t *t)
{
    sl_multi_t *m = t->data;
    int running;
    curl_multi_socket_action(m->curlm, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(m);
}

static int timer_cb(CURLM *cm, long ms, void *ud)
{
    sl_multi_t *m = ud;
    if (ms < 0) {
        uv_timer_stop(&m->timer);
        return 0;
    }
    /* 0 means "now": run it on the next loop turn rather than recursing into curl. */
    uv_timer_start(&m->timer, on_timeout, (uint64_t)ms, 0);
    return 0;
}

static int socket_cb(CURL *easy, curl_socket_t fd, int what, void *ud, void *sockp)
{
    sl_multi_t *m = ud;
    sock_ctx_t *s = sockp;
    if (what == CURL_POLL_REMOVE) {
        if (s) {
            uv_poll_stop(&s->poll);
            sl_closer_init(&s->closer, sl_free, s);
            sl_closer_close(&s->closer, (uv_handle_t *)&s->poll);
            sl_closer_finish(&s->closer);
            curl_multi_assign(m->curlm, fd, NULL);
        }
        return 0;
    }
    if (!s) {
        s = sl_calloc(1, sizeof *s);
        s->fd = fd;
        s->m = m;
        if (uv_poll_init_socket(m->loop, &s->poll, fd) != 0) {
            sl_free(s);
            return -1;
        }
        s->poll.data = s;
        curl_multi_assign(m->curlm, fd, s);
    }
    int events = 0;
    if (what & CURL_POLL_IN)
        events |= UV_READABLE;
    if (what & CURL_POLL_OUT)
        events |= UV_WRITABLE;
    uv_poll_start(&s->poll, events, on_poll);
    return 0;
}

sl_multi_t *sl_multi_new(uv_loop_t *loop)
{
    sl_multi_t *m = sl_calloc(1, sizeof *m);
    m->loop = loop;
    m->curlm = curl_multi_init();
    uv_timer_init(loop, &m->timer);
    m->timer.data = m;
    curl_multi_setopt(m->curlm, CURLMOPT_SOCKETFUNCTION, socket_cb);
    curl_multi_setopt(m->curlm, CURLMOPT_SOCKETDATA, m);
    curl_multi_setopt(m->curlm, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(m->curlm, CURLMOPT_TIMERDATA, m);
    /* Keep enough idle upstream connections for the concurrency we serve (DESIGN §8). */
    curl_multi_setopt(m->curlm, CURLMOPT_MAXCONNECTS, 1024L);
    return m;
}

void sl_multi_close(sl_multi_t *m)
{
    if (!m)
        return;
    /* A transfer can outlive its exchange (reading the last bytes after [DONE]): its owner
     * hears CURLE_ABORTED_BY_CALLBACK and removes it, as it would on any other end. */
    while (m->xfers) {
        xfer_t *x = m->xfers;
        x->done(x->ud, CURLE_ABORTED_BY_CALLBACK);
        SL_ASSERT(m->xfers != x); /* the owner must have called sl_multi_remove */
    }
    while (m->npool)
        curl_easy_cleanup(m->pool[--m->npool]);
    /* Cleanup closes pooled connections; socket_cb(REMOVE) closes their polls. */
    curl_multi_cleanup(m->curlm);
    m->curlm = NULL;
    sl_closer_init(&m->closer, sl_free, m);
    sl_closer_close(&m->closer, (uv_handle_t *)&m->timer);
    sl_closer_finish(&m->closer);
}

static void unlink_xfer(sl_multi_t *m, xfer_t *x)
{
    if (x->prev)
        x->prev->next = x->next;
    else
        m->xfers = x->next;
    if (x->next)
        x->next->prev = x->prev;
}

int sl_multi_add(sl_multi_t *m, CURL *easy, sl_multi_done_cb done, void *ud)
{
    xfer_t *x = sl_malloc(sizeof *x);
    x->done = done;
    x->ud = ud;
    x->easy = easy;
    x->prev = NULL;
    x->next = m->xfers;
    if (m->xfers)
        m->xfers->prev = x;
    m->xfers = x;
    curl_easy_setopt(easy, CURLOPT_PRIVATE, x);
    CURLMcode rc = curl_multi_add_handle(m->curlm, easy);
    if (rc != CURLM_OK) {
        sl_log(SL_LOG_ERROR, "curl_multi_add_handle: %s", curl_multi_strerror(rc));
        curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
        unlink_xfer(m, x);
        sl_free(x);
        return SL_EINTERNAL;
    }
    return 0;
}

void sl_multi_remove(sl_multi_t *m, CURL *easy)
{
    xfer_t *x = NULL;
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&x);
    curl_multi_remove_handle(m->curlm, easy);
    curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
    if (x)
        unlink_xfer(m, x);
    sl_free(x);
}

CURL *sl_multi_easy(sl_multi_t *m)
{
    return m->npool ? m->pool[--m->npool] : curl_easy_init();
}

void sl_multi_easy_done(sl_multi_t *m, CURL *easy)
{
    if (m->npool == POOL_MAX || !m->curlm) {
        curl_easy_cleanup(easy);
        return;
    }
    curl_easy_reset(easy); /* forgets every option; keeps its buffers for the next transfer */
    m->pool[m->npool++] = easy;
}
