// Bounded polling, for state that can only be observed by asking (what the store thread has
// written, a counter on /metrics, the DOM of a page, a socket's state): the one loop every test
// uses instead of its own `for (;;) { ...; await sleep() }`. Where an event says when to look
// (sluice's stderr, a stream's bytes, the fake upstream's log), wait on that event instead
// (waitUntil / waitFor), not on a poll.
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';

const show = (v) => {
  let s;
  try { s = JSON.stringify(v) ?? String(v); } catch { s = String(v); }
  return s.length > 300 ? `${s.slice(0, 300)}…` : s;
};

/*
 * Calls fn() (sync or async) until until(value) holds, then resolves with that value. fn is
 * called at once, then every intervalMs, and a last time once timeoutMs has passed, so a
 * condition that turns true within the window is always seen. If it never holds: rejects with
 * "timed out after N ms waiting for <what>" and the last value, or, with returnLast, resolves
 * with the last value for the caller to assert on (its message then says what went wrong). An
 * exception thrown by fn ends the poll at once (an assertion inside fn is a hard failure).
 */
export async function pollUntil(fn, opts = {}) {
  if (typeof opts !== 'object' || opts === null) {
    throw new TypeError('pollUntil(fn, { until, timeoutMs, intervalMs, what, returnLast }): the predicate goes in the options, as until');
  }
  const { timeoutMs = 3000, intervalMs = 50, what = 'a condition', until = Boolean, returnLast = false } = opts;
  assert.ok(timeoutMs >= 0 && intervalMs > 0, `pollUntil(${what}): timeoutMs ${timeoutMs}, intervalMs ${intervalMs}`);
  const t0 = performance.now();
  const deadline = t0 + timeoutMs;
  let tries = 0;
  for (;;) {
    const v = await fn();
    tries++;
    if (until(v)) return v;
    const left = deadline - performance.now();
    if (left <= 0) {
      if (returnLast) return v;
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (${tries} tries, the last gave ${show(v)})`);
    }
    await sleep(Math.min(intervalMs, left));
  }
}

/*
 * The negative twin: fn() must NOT satisfy until() at any of its checks during windowMs
 * (checked at once, every intervalMs, and once more at the end). Fails as soon as it does,
 * naming what appeared and when. An absence can only be claimed for a stated window: the
 * window is part of the assertion, and the caller should show (a positive control) that
 * the thing, were it coming, would have come within it. Resolves with the last value.
 */
export async function assertNever(fn, { windowMs, intervalMs = 25, what, until = Boolean } = {}) {
  assert.ok(windowMs > 0, 'assertNever needs a windowMs');
  assert.ok(what, 'assertNever needs a `what` (the thing that must not happen)');
  const t0 = performance.now();
  const v = await pollUntil(fn, { timeoutMs: windowMs, intervalMs, until, returnLast: true, what });
  if (until(v)) {
    throw new assert.AssertionError({
      message: `${what} happened ${(performance.now() - t0).toFixed(0)} ms into a ${windowMs} ms window where it must not: ${show(v)}`,
    });
  }
  return v;
}

/*
 * Resolves with fn()'s value once it has stayed the same (===) for quietMs, checked every
 * intervalMs; after timeoutMs, with the last value (a still-changing value is the caller's to
 * judge). For "sluice has done all it will do" (its RSS, its CPU ticks).
 */
export async function pollUntilSteady(fn, { quietMs, timeoutMs, intervalMs = 50, what = 'a steady value' } = {}) {
  let last;
  let since = null;
  return pollUntil(fn, {
    timeoutMs, intervalMs, what, returnLast: true,
    until: (v) => {
      const now = performance.now();
      if (since === null || v !== last) { last = v; since = now; return false; }
      return now - since >= quietMs;
    },
  });
}
