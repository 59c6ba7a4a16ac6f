/* WebSocket server codec: wslay's event API driven from memory, bytes in through sl_ws_feed and
 * frames out appended to the caller's buffer, plus the RFC 6455 handshake key. No I/O.
 *
 * What wslay checks for us (and answers with a close frame): unmasked client frames, reserved
 * bits and opcodes, continuation without a start, messages over the limit (1009), text and close
 * reasons that are not UTF-8 (1007). What this file adds: binary messages are refused with 1003
 * (the gateway speaks text only), and framing errors wslay closes without a code get 1002. */
#include "codec/ws.h"

#include <string.h>

#include <openssl/evp.h>
#include <wslay/wslay.h>

#include "core/alloc.h"

/* RFC 6455 §1.3: the GUID appended to the client's key before hashing. */
#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
/* A key is base64 of 16 bytes: 22 characters and "==". */
#define KEY_LEN 24
/* A control frame carries at most 125 bytes, 2 of them the close code (RFC 6455 §5.5). */
#define MAX_REASON 123
/* A frame header: 2 bytes, up to 8 of extended length, 4 of mask key. */
#define MAX_HEADER 14

struct sl_ws {
    wslay_event_context_ptr ctx; /* owned */
    sl_ws_callbacks_t cb;
    void *ud;       /* borrowed: the caller's, handed back to the callbacks */
    sl_buf_t *out;  /* borrowed: the caller keeps it alive for the session (sl_ws_new) */
    const char *in; /* borrowed: the bytes of the sl_ws_feed in progress; NULL outside it */
    size_t in_len;
    size_t in_off;
    bool failed;      /* we failed the connection: a close is queued and nothing more is read */
    bool frame_error; /* wslay queued a close without a code for a framing error: make it 1002 */
    /* The client frame being received, followed alongside wslay (see sl_ws_feed). */
    uint8_t hdr[MAX_HEADER]; /* its header bytes so far */
    size_t hdr_len;
    uint64_t left; /* payload bytes still to come, once the header is whole */
    bool ctrl;     /* a control frame: held back until whole */
    sl_buf_t held; /* owned: the start of a control frame whose end has not arrived */
};

/* wslay allocates with plain malloc. Running out there ends the process, as sl_malloc does,
 * so every other wslay result is one the callers below expect. */
static int no_oom(int rc)
{
    SL_ASSERT(rc != WSLAY_ERR_NOMEM);
    return rc;
}

static bool is_b64(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
           c == '/';
}

int sl_ws_accept_key(const char *client_key, char out[29])
{
    unsigned char raw[KEY_LEN / 4 * 3];
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    char joined[KEY_LEN + sizeof WS_GUID - 1];

    /* EVP_DecodeBlock skips blanks and ignores the padding's meaning, so the shape of a 16-byte
     * key is checked here: exactly 22 alphabet characters, then "==". */
    if (!client_key || strnlen(client_key, KEY_LEN + 1) != KEY_LEN)
        return SL_EINVAL;
    for (size_t i = 0; i < KEY_LEN - 2; i++)
        if (!is_b64(client_key[i]))
            return SL_EINVAL;
    if (client_key[KEY_LEN - 2] != '=' || client_key[KEY_LEN - 1] != '=')
        return SL_EINVAL;
    if (EVP_DecodeBlock(raw, (const unsigned char *)client_key, KEY_LEN) != (int)sizeof raw)
        return SL_EINVAL;

    memcpy(joined, client_key, KEY_LEN);
    memcpy(joined + KEY_LEN, WS_GUID, sizeof WS_GUID - 1);
    if (!EVP_Digest(joined, sizeof joined, md, &md_len, EVP_sha1(), NULL) || md_len != 20)
        return SL_EINTERNAL;
    /* 20 bytes encode to 28 characters; EVP_EncodeBlock adds the NUL. */
    EVP_EncodeBlock((unsigned char *)out, md, (int)md_len);
    return 0;
}

/* Serves wslay from the bytes sl_ws_feed was given; WOULDBLOCK once they are used up is what
 * makes wslay_event_recv return instead of waiting for more. */
static ssize_t recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags,
                       void *user_data)
{
    sl_ws_t *ws = user_data;
    size_t n = ws->in_len - ws->in_off;
    if (n == 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    if (n > len)
        n = len;
    memcpy(buf, ws->in + ws->in_off, n);
    ws->in_off += n;
    return (ssize_t)n;
}

/* Takes every byte, so wslay never holds a half-sent frame: after each flush, out ends on a
 * frame boundary. */
static ssize_t send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
                       void *user_data)
{
    static const uint8_t empty_close[2] = {0x88, 0x00};
    /* FIN close, 2-byte payload: 1002 (0x03ea) in network order. */
    static const uint8_t proto_close[4] = {0x88, 0x02, 0x03, 0xea};
    sl_ws_t *ws = user_data;

    /* A framing error (control frame over 125 bytes or fragmented, a length not minimally
     * encoded) makes wslay queue a close without a code. It is the only empty close in that
     * flush, and its header is one send_cb call, so it is swapped here for a 1002. */
    if (ws->frame_error && len == sizeof empty_close && memcmp(data, empty_close, len) == 0) {
        sl_buf_append(ws->out, proto_close, sizeof proto_close);
        ws->frame_error = false;
        return (ssize_t)len;
    }
    sl_buf_append(ws->out, data, len);
    return (ssize_t)len;
}

/* Fails the connection (RFC 6455 §7.1.7): queue a close with code, read nothing more. */
static void fail(sl_ws_t *ws, uint16_t code)
{
    ws->failed = true;
    wslay_event_shutdown_read(ws->ctx);
    int rc = no_oom(wslay_event_queue_close(ws->ctx, code, NULL, 0));
    /* NO_MORE_MSG: a close is already queued or sent, which ends the session just as well. */
    SL_ASSERT(rc == 0 || rc == WSLAY_ERR_NO_MORE_MSG);
}

/* Binary messages are refused at their first frame, so a large one is never buffered. */
static void on_frame_start(wslay_event_context_ptr ctx,
                           const struct wslay_event_on_frame_recv_start_arg *arg, void *user_data)
{
    if (arg->opcode == WSLAY_BINARY_FRAME)
        fail(user_data, WSLAY_CODE_UNSUPPORTED_DATA);
}

/* Every frame wslay accepted whole, control frames included: what tells a live peer. */
static void on_frame_end(wslay_event_context_ptr ctx, void *user_data)
{
    sl_ws_t *ws = user_data;
    if (!ws->failed && ws->cb.on_frame)
        ws->cb.on_frame(ws->ud);
}

static void flush(sl_ws_t *ws);

/* Complete messages only; wslay has already queued the pong for a ping and the reply for a
 * close, and checked text for UTF-8. */
static void on_msg(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg,
                   void *user_data)
{
    sl_ws_t *ws = user_data;
    if (ws->failed)
        return; /* the rest of a refused binary frame */
    if (arg->opcode == WSLAY_TEXT_FRAME && ws->cb.on_text) {
        /* wslay passes NULL for an empty message; callers get a valid pointer. */
        const char *msg = arg->msg ? (const char *)arg->msg : "";
        ws->cb.on_text(ws->ud, msg, arg->msg_length);
    } else if (arg->opcode == WSLAY_CONNECTION_CLOSE && ws->cb.on_close) {
        uint16_t code = arg->status_code ? arg->status_code : WSLAY_CODE_NO_STATUS_RCVD;
        ws->cb.on_close(ws->ud, code);
    }
    /* Out now, in arrival order: wslay drops control frames still queued once a close is, so
     * a pong (or an answer sent from on_text) would otherwise be lost whenever the peer's close
     * came in the same read, and the output would depend on how the input was split. */
    flush(ws);
}

sl_ws_t *sl_ws_new(size_t max_message, const sl_ws_callbacks_t *cb, void *ud, sl_buf_t *out)
{
    static const struct wslay_event_callbacks wcb = {
        .recv_callback = recv_cb,
        .send_callback = send_cb,
        .on_frame_recv_start_callback = on_frame_start,
        .on_frame_recv_end_callback = on_frame_end,
        .on_msg_recv_callback = on_msg,
    };
    sl_ws_t *ws = sl_calloc(1, sizeof *ws);
    ws->cb = *cb;
    ws->ud = ud;
    ws->out = out;
    int rc = no_oom(wslay_event_context_server_init(&ws->ctx, &wcb, ws));
    SL_ASSERT(rc == 0);
    /* 0 keeps wslay's own cap (2^31 - 1). wslay checks each frame's announced length against
     * what is left before buffering it, so a peer cannot make us hold more than this. */
    if (max_message)
        wslay_event_config_set_max_recv_msg_length(ws->ctx, max_message);
    return ws;
}

void sl_ws_free(sl_ws_t *ws)
{
    if (!ws)
        return;
    wslay_event_context_free(ws->ctx);
    sl_buf_dispose(&ws->held);
    sl_free(ws);
}

/* Serializes everything queued into out. Safe from inside wslay_event_recv's callbacks:
 * wslay_event_send touches only the sending half of the context. */
static void flush(sl_ws_t *ws)
{
    /* send_cb never refuses bytes, so the only failure left is wslay running out of memory. */
    int rc = wslay_event_send(ws->ctx);
    SL_ASSERT(rc == 0);
    ws->frame_error = false;
}

/* Hands bytes to wslay; false once it reads no more (failed, or the close was received). */
static bool run(sl_ws_t *ws, const char *p, size_t n)
{
    if (n == 0)
        return true;
    ws->in = p;
    ws->in_len = n;
    ws->in_off = 0;
    /* One call takes every byte: wslay stops only at recv_cb's WOULDBLOCK, or when reading was
     * shut down (close received, or a violation), after which the rest is ignored. */
    int rc = no_oom(wslay_event_recv(ws->ctx));
    ws->in = NULL;

    if (rc == WSLAY_ERR_CALLBACK_FAILURE) {
        /* recv_cb never fails, so wslay's frame parser rejected a header. */
        ws->failed = true;
        ws->frame_error = true;
    } else {
        SL_ASSERT(rc == 0);
        /* wslay stops reading without a close received only when it failed the connection
         * itself (1002, 1007, 1009), having queued the close. */
        if (!wslay_event_get_read_enabled(ws->ctx) && !wslay_event_get_close_received(ws->ctx))
            ws->failed = true;
    }
    return !ws->failed && wslay_event_get_read_enabled(ws->ctx);
}

/* Header bytes of the frame that starts with h[0..n): 0 while fewer than 2 are known. */
static size_t header_len(const uint8_t *h, size_t n)
{
    if (n < 2)
        return 0;
    size_t len7 = h[1] & 0x7f;
    return 2 + (h[1] & 0x80 ? 4 : 0) + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0);
}

static uint64_t payload_len(const uint8_t *h)
{
    uint64_t len = h[1] & 0x7f;
    size_t ext = len == 126 ? 2 : len == 127 ? 8 : 0;
    if (ext)
        len = 0;
    for (size_t i = 0; i < ext; i++)
        len = len << 8 | h[2 + i];
    return len;
}

/* A control frame ends here: wslay gets it whole, on its own. */
static bool run_ctrl(sl_ws_t *ws, const char *p, size_t n)
{
    if (!ws->held.len)
        return run(ws, p, n);
    sl_buf_append(&ws->held, p, n);
    bool more = run(ws, ws->held.data, ws->held.len);
    sl_buf_reset(&ws->held);
    return more;
}

/* wslay checks a close reason for UTF-8 skipping the first two bytes of every piece of the
 * payload it is handed, not only the code, so a close read in two pieces (split between reads,
 * or across wslay's 4 KiB buffer) was refused as 1007 when valid and passed when not. So every
 * control frame (at most 139 bytes) reaches wslay whole and on its own: the bytes before it are
 * run first, its start is held until its end arrives. Data frames pass as they come; only their
 * headers are read here, to know where the next frame starts. */
int sl_ws_feed(sl_ws_t *ws, const char *p, size_t n)
{
    if (ws->failed)
        return SL_EINVAL;
    bool more = true;
    size_t i = 0, start = 0; /* p[start..i) is not yet handed to wslay (nor held) */
    while (more && i < n) {
        size_t hl = header_len(ws->hdr, ws->hdr_len);
        if (!hl || ws->hdr_len < hl) {
            uint8_t b = (uint8_t)p[i++];
            ws->hdr[ws->hdr_len++] = b;
            if (ws->hdr_len == 1 && (b & 0x08)) { /* a control opcode: run what came before */
                more = run(ws, p + start, i - 1 - start);
                start = i - 1;
                ws->ctrl = true;
            }
            /* Fragmented or over 125 bytes: wslay refuses it from its header, as it comes. */
            if (ws->hdr_len == 2 && ws->ctrl && (!(ws->hdr[0] & 0x80) || (b & 0x7f) > 125)) {
                ws->ctrl = false;
                if (ws->held.len) {
                    more = run(ws, ws->held.data, ws->held.len);
                    sl_buf_reset(&ws->held);
                }
            }
            hl = header_len(ws->hdr, ws->hdr_len);
            if (!hl || ws->hdr_len < hl)
                continue;
            ws->left = payload_len(ws->hdr);
        } else {
            size_t take = ws->left < n - i ? (size_t)ws->left : n - i;
            i += take;
            ws->left -= take;
        }
        if (ws->left)
            continue;
        if (ws->ctrl && more) {
            more = run_ctrl(ws, p + start, i - start);
            start = i;
        }
        ws->hdr_len = 0;
        ws->ctrl = false;
    }
    if (more && ws->ctrl)
        sl_buf_append(&ws->held, p + start, n - start);
    else if (more)
        (void)run(ws, p + start, n - start); /* whatever it says, the bytes are all used */
    flush(ws);
    return ws->failed ? SL_EINVAL : 0;
}

void sl_ws_send_text(sl_ws_t *ws, const char *p, size_t n)
{
    struct wslay_event_msg msg = {
        .opcode = WSLAY_TEXT_FRAME,
        .msg = (const uint8_t *)p,
        .msg_length = n,
    };
    int rc = no_oom(wslay_event_queue_msg(ws->ctx, &msg));
    /* NO_MORE_MSG: our close is queued or sent, and nothing may follow it (RFC 6455 §5.5.1),
     * so the message is dropped. */
    SL_ASSERT(rc == 0 || rc == WSLAY_ERR_NO_MORE_MSG);
    flush(ws);
}

void sl_ws_ping(sl_ws_t *ws)
{
    struct wslay_event_msg msg = {.opcode = WSLAY_PING, .msg = NULL, .msg_length = 0};
    int rc = no_oom(wslay_event_queue_msg(ws->ctx, &msg));
    /* NO_MORE_MSG: a close is queued or sent; the session is ending anyway. */
    SL_ASSERT(rc == 0 || rc == WSLAY_ERR_NO_MORE_MSG);
    flush(ws);
}

/* The longest prefix of s[0..n) within max bytes that does not split a UTF-8 sequence: the peer
 * must fail a close whose reason is not UTF-8. */
static size_t utf8_cut(const char *s, size_t n, size_t max)
{
    if (n <= max)
        return n;
    n = max;
    /* s[n] is the first byte left out; while it continues a sequence, that sequence started
     * inside the prefix and is dropped whole. */
    while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
        n--;
    return n;
}

void sl_ws_close(sl_ws_t *ws, uint16_t code, const char *reason)
{
    if (!reason)
        reason = "";
    size_t n = utf8_cut(reason, strlen(reason), MAX_REASON);
    int rc = no_oom(wslay_event_queue_close(ws->ctx, code, (const uint8_t *)reason, n));
    /* NO_MORE_MSG: a close is already queued or sent (ours, a reply, or a failure). */
    SL_ASSERT(rc == 0 || rc == WSLAY_ERR_NO_MORE_MSG);
    flush(ws);
}

bool sl_ws_done(const sl_ws_t *ws)
{
    return ws->failed ||
           (wslay_event_get_close_sent(ws->ctx) && wslay_event_get_close_received(ws->ctx));
}

bool sl_ws_reading(const sl_ws_t *ws)
{
    return !ws->failed && wslay_event_get_read_enabled(ws->ctx);
}
