/* The WebSocket half of a connection: the upgrade, frames in through codec/ws with input flow
 * control, the ping/idle tick, the close wait, and the sl_conn_ws_* calls. conn.c reaches it
 * only through the entry points in ws_ops (conn_int.h). */
#include "net/conn.h"

#include "core/ctx.h"
#include "net/conn_int.h"

#include <string.h>
#include <strings.h>

#include "codec/ws.h"
#include "config/config.h"
#include "core/log.h"

/* Client bytes go to the codec in pieces this large, so the replies one read provokes overshoot
 * the high-water mark by at most a piece's worth of frames (ws_input). */
#define WS_FEED_PIECE 1024
/* How long our close frame (or our reply to the client's) waits for the handshake to complete
 * before the socket is closed anyway: a peer that went silent will not answer it. */
#define WS_CLOSE_WAIT_MS 2000

static void ws_on_close_wait(uv_timer_t *t)
{
    sl_conn_close(t->data);
}

/* A close was sent or received: the socket closes once the handshake is done and flushed
 * (conn.c after_output), or when the wait is over, whichever is first. Replaces the tick. */
static void ws_close_wait(sl_conn_t *c)
{
    if (c->ws_closing)
        return;
    c->ws_closing = true;
    conn_arm_timer(c, WS_CLOSE_WAIT_MS, ws_on_close_wait);
}

static uint64_t ws_ping_due(const sl_conn_t *c, uint64_t every)
{
    return (c->ws_rx_at > c->ws_ping_at ? c->ws_rx_at : c->ws_ping_at) + every;
}

static void ws_on_tick(uv_timer_t *t);

/* One timer serves both deadlines: it fires at the next ping or at the idle deadline, whichever
 * comes first, and the tick works out which. Frames only move ws_rx_at, so a busy socket costs
 * no timer updates. */
static void ws_arm(sl_conn_t *c)
{
    const sl_config_t *cfg = c->x->cfg;
    uint64_t now = uv_now(&c->x->loop), due = UINT64_MAX;
    if (c->ws_closing)
        return;
    if (cfg->ws_idle_ms)
        due = c->ws_rx_at + cfg->ws_idle_ms;
    if (cfg->ws_ping_ms && ws_ping_due(c, cfg->ws_ping_ms) < due)
        due = ws_ping_due(c, cfg->ws_ping_ms);
    if (due == UINT64_MAX)
        uv_timer_stop(&c->timer); /* both off: long-lived with no deadline */
    else
        conn_arm_timer(c, due > now ? due - now : 1, ws_on_tick);
}

/* A client silent (no whole frame, pongs included) for ws_idle is told 1001 and closed; one
 * silent for ws_ping is pinged, which a live client (every browser) answers by itself. */
static void ws_on_tick(uv_timer_t *t)
{
    sl_conn_t *c = t->data;
    const sl_config_t *cfg = c->x->cfg;
    uint64_t now = uv_now(&c->x->loop);
    if (c->ws_busy)
        c->ws_rx_at = now; /* an answer going out is not idleness; its end restarts the count */
    if (cfg->ws_idle_ms && now - c->ws_rx_at >= cfg->ws_idle_ms) {
        sl_conn_ws_close(c, 1001, "idle timeout"); /* "going away" */
        return;
    }
    if (cfg->ws_ping_ms && now >= ws_ping_due(c, cfg->ws_ping_ms)) {
        sl_ws_ping(c->ws);
        c->ws_ping_at = now;
        conn_schedule(c);
    }
    ws_arm(c);
}

/* Feeds client bytes to the codec a piece at a time and stops, keeping the rest in c->in and
 * reading nothing more, once the replies they caused pass the high-water mark: one 64 KiB read
 * can hold thousands of tiny frames that each get an answer, so checking between reads would
 * not bound the output. ws_output_drained resumes. */
static void ws_input(sl_conn_t *c, const char *p, size_t n)
{
    size_t off = 0;
    while (off < n && c->state == SL_CONN_WS && sl_ws_reading(c->ws)) {
        if (c->ws_paused || sl_conn_queued(c) >= c->high_water) {
            sl_buf_append(&c->in, p + off, n - off);
            c->ws_paused = true;
            break;
        }
        size_t k = n - off < WS_FEED_PIECE ? n - off : WS_FEED_PIECE;
        if (sl_ws_feed(c->ws, p + off, k) != 0)
            break; /* a protocol violation: the codec queued its close and reads no more */
        off += k;
    }
    if (c->state != SL_CONN_WS)
        return; /* a handler closed the connection */
    if (!sl_ws_reading(c->ws)) {
        conn_set_reading(c, false); /* the close frames go out, then the socket closes */
        ws_close_wait(c);
    } else {
        conn_set_reading(c, !c->ws_paused);
    }
    conn_schedule(c);
}

/* Runs whenever output went out (conn.c after_output): once the queued replies fall below the
 * low-water mark, the input ws_input held back is fed and reading resumes. */
static void ws_output_drained(sl_conn_t *c)
{
    if (!c->ws_paused || c->state != SL_CONN_WS || sl_conn_queued(c) >= c->low_water)
        return;
    c->ws_paused = false;
    sl_buf_t held = c->in;
    sl_buf_init(&c->in);
    ws_input(c, held.data, held.len);
    sl_buf_dispose(&held);
}

static void ws_on_frame(void *ud)
{
    sl_conn_t *c = ud;
    c->ws_rx_at = uv_now(&c->x->loop);
}

static void ws_on_text(void *ud, const char *msg, size_t len)
{
    sl_conn_t *c = ud;
    if (c->ws_hooks && c->ws_hooks->message && c->state == SL_CONN_WS)
        c->ws_hooks->message(c, c->ws_ud, msg, len);
}

static void ws_on_close(void *ud, uint16_t code)
{
    sl_conn_t *c = ud;
    if (c->ws_busy && c->hooks && c->hooks->gone) {
        /* The client closed mid-answer: cancel like a disconnect (§3.4). */
        const sl_conn_hooks_t *h = c->hooks;
        c->ws_busy = false;
        c->status = 499;
        h->gone(c->hooks_ud);
        conn_finish_request(c);
    }
    conn_set_reading(c, false);
    conn_schedule(c);
}

static const sl_ws_callbacks_t ws_callbacks = {
    .on_text = ws_on_text, .on_close = ws_on_close, .on_frame = ws_on_frame};

/* sl_conn_end on a WebSocket connection: the exchange answering a message is over (one
 * access-log line), and close=true closes the socket with 1011. */
static void ws_end(sl_conn_t *c, bool close)
{
    if (c->ws_busy) {
        c->ws_busy = false;
        c->ws_rx_at = uv_now(&c->x->loop); /* WebSocket idle time counts from here */
        if (!c->status)
            c->status = 200;
        conn_finish_request(c);
    }
    if (close)
        sl_conn_ws_close(c, 1011, "internal error");
    conn_schedule(c);
}

static const sl_conn_ws_ops_t ws_ops = {
    .input = ws_input, .output_drained = ws_output_drained, .end = ws_end};

static bool header_has_token(const char *v, const char *token)
{
    size_t n = strlen(token);
    for (const char *p = v; p && *p;) {
        while (*p == ' ' || *p == ',')
            p++;
        if (strncasecmp(p, token, n) == 0 && (p[n] == '\0' || p[n] == ',' || p[n] == ' '))
            return true;
        p = strchr(p, ',');
    }
    return false;
}

bool sl_conn_ws_upgrade(sl_conn_t *c, const sl_ws_hooks_t *hooks, void *ud)
{
    const sl_http_req_t *r = &c->req;
    const char *upgrade = sl_http_req_header(r, "upgrade");
    const char *connection = sl_http_req_header(r, "connection");
    const char *version = sl_http_req_header(r, "sec-websocket-version");
    const char *key = sl_http_req_header(r, "sec-websocket-key");
    char accept[29];
    if (!upgrade || !header_has_token(upgrade, "websocket") || !connection ||
        !header_has_token(connection, "upgrade") || !key || sl_ws_accept_key(key, accept) != 0) {
        sl_conn_respond_error(c, 400, "invalid_request_error", "websocket_required", NULL,
                              "this endpoint speaks WebSocket: send a valid Upgrade request", NULL);
        return false;
    }
    if (!version || strcmp(version, "13") != 0) {
        sl_conn_respond_error(c, 426, "invalid_request_error", "websocket_version", NULL,
                              "WebSocket version 13 is required", "Sec-WebSocket-Version: 13\r\n");
        return false;
    }
    sl_buf_printf(&c->out,
                  "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                  "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n"
                  "X-Request-Id: %s\r\n\r\n",
                  accept, c->rid);
    c->status = 101;
    conn_finish_request(c); /* the upgrade itself is one access-log line */
    conn_set_state(c, SL_CONN_WS, "upgraded");
    c->ws = sl_ws_new(SL_WS_MAX_MESSAGE, &ws_callbacks, c, &c->out);
    c->ws_ops = &ws_ops;
    c->ws_hooks = hooks;
    c->ws_ud = ud;
    /* Long-lived by design, but a silent client is pinged, and closed after ws_idle. */
    c->ws_rx_at = c->ws_ping_at = uv_now(&c->x->loop);
    ws_arm(c);
    conn_schedule(c);
    return true; /* frames right behind the handshake are fed by conn.c through ws_ops */
}

void sl_conn_ws_begin(sl_conn_t *c)
{
    c->ws_busy = true;
    c->x->active++;
    c->t_start = sl_now_ms();
    c->status = 0;
    c->bytes_out = 0;
    conn_new_request_id(c);
}

void sl_conn_ws_send(sl_conn_t *c, const char *msg, size_t len)
{
    if (!c->ws || c->state == SL_CONN_CLOSING)
        return;
    sl_ws_send_text(c->ws, msg, len);
    conn_schedule(c);
}

void sl_conn_ws_close(sl_conn_t *c, uint16_t code, const char *reason)
{
    if (!c->ws || c->state == SL_CONN_CLOSING)
        return;
    sl_ws_close(c->ws, code, reason);
    ws_close_wait(c);
    conn_schedule(c);
}
