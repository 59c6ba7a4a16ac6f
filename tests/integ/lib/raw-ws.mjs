// A WebSocket client over a raw TCP socket (RawClient), for what the `ws` package does for you
// and a test must not have done: answering pings (or not), reading (or not), writing frames in
// bulk. Frames are built and parsed here; the handshake is checked (101 + Sec-WebSocket-Accept).
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { RawClient, formatRequest } from './raw-http.mjs';

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
export const OP = { text: 0x1, close: 0x8, ping: 0x9, pong: 0xa };

/* One client frame (FIN set, masked as RFC 6455 requires of a client). */
export function clientFrame(opcode, payload = Buffer.alloc(0), key = randomBytes(4)) {
  const p = Buffer.from(payload);
  const head = p.length < 126 ? Buffer.from([0x80 | opcode, 0x80 | p.length])
    : Buffer.from([0x80 | opcode, 0x80 | 126, p.length >> 8, p.length & 0xff]);
  assert.ok(p.length < 65536, 'clientFrame: 16-bit lengths only');
  const masked = Buffer.alloc(p.length);
  for (let i = 0; i < p.length; i++) masked[i] = p[i] ^ key[i % 4];
  return Buffer.concat([head, key, masked]);
}

/*
 * Parses server frames off buf from offset off: calls onFrame(opcode, payload) for each whole
 * one and returns the offset of the first byte not yet parsed. Server frames are unmasked.
 */
export function parseFrames(buf, off, onFrame) {
  for (;;) {
    if (buf.length - off < 2) return off;
    const b0 = buf[off];
    const b1 = buf[off + 1];
    assert.equal(b1 & 0x80, 0, 'a server frame must not be masked');
    let len = b1 & 0x7f;
    let hl = 2;
    if (len === 126) {
      if (buf.length - off < 4) return off;
      len = buf.readUInt16BE(off + 2);
      hl = 4;
    } else if (len === 127) {
      if (buf.length - off < 10) return off;
      len = Number(buf.readBigUInt64BE(off + 2));
      hl = 10;
    }
    if (buf.length - off < hl + len) return off;
    onFrame(b0 & 0x0f, buf.subarray(off + hl, off + hl + len));
    off += hl + len;
  }
}

/*
 * Connects to port, upgrades on path and returns the RawClient with `frames()`: the server
 * frames received since the last call ({op, payload}), bytes after the handshake included.
 * Answers nothing by itself (no pongs, no close reply).
 */
export async function openRawWS(port, path) {
  const rc = await RawClient.connect(port);
  const key = randomBytes(16).toString('base64');
  await rc.write(formatRequest({
    path,
    headers: { upgrade: 'websocket', connection: 'Upgrade', 'sec-websocket-key': key, 'sec-websocket-version': '13' },
  }));
  const headEnd = await rc.until(() => { const i = rc.buf.indexOf('\r\n\r\n'); return i >= 0 ? i : undefined; }, 3000, 'the 101 head');
  const head = rc.buf.subarray(0, headEnd).toString('latin1');
  assert.match(head, /^HTTP\/1\.1 101 /, `no upgrade: ${head}`);
  const accept = createHash('sha1').update(key + GUID).digest('base64');
  assert.match(head, new RegExp(`\\r\\nsec-websocket-accept: ${accept.replace(/[+/=]/g, '\\$&')}`, 'i'));
  rc.buf = rc.buf.subarray(headEnd + 4);
  rc.frames = () => {
    const out = [];
    const used = parseFrames(rc.buf, 0, (op, payload) => out.push({ op, payload: Buffer.from(payload) }));
    rc.buf = rc.buf.subarray(used);
    return out;
  };
  return rc;
}
