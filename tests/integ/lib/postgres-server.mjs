// A real PostgreSQL 15 for the store tests (Debian package). The tests run as root and
// PostgreSQL refuses root, so the cluster belongs to the `postgres` system user: a temp dir
// chowned to it, initdb --auth=trust -U sluice, then `postgres -D dir -p P -k dir` on a free
// loopback port as a child process (through runuser), ready once pg_isready says so; a
// database `sluice` owned by the superuser `sluice`. stop() runs `pg_ctl -D dir stop -m fast`
// (by data dir), then waits for the child, SIGKILLing it by PID only past a bound.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { freePort } from './redis-server.mjs';
import { pollUntil } from './poll.mjs';

export const PG_BIN = process.env.PG_BIN ?? '/usr/lib/postgresql/15/bin';
export const PG_USER = 'sluice';

const live = new Set();
process.on('exit', () => {
  for (const { proc, data } of live) {
    const pm = postmasterPid(data);
    for (const pid of [pm, proc.pid]) { try { if (pid) process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }
  }
});

/* The postmaster's PID from DATA/postmaster.pid (runuser's child), or null. */
function postmasterPid(data) {
  try {
    const n = Number(fs.readFileSync(path.join(data, 'postmaster.pid'), 'utf8').split('\n')[0]);
    return n > 0 ? n : null;
  } catch { return null; }
}

function run(cmd, args, { timeoutMs = 10000, cwd } = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: timeoutMs, cwd });
  if (r.error) throw new Error(`${cmd} ${args.join(' ')}: ${r.error.message}`);
  return r;
}

function asPostgres(cmd, args, opts) {
  return process.getuid() === 0 ? run('runuser', ['-u', 'postgres', '--', cmd, ...args], opts) : run(cmd, args, opts);
}

function systemUser(name) {
  const r = run('id', ['-u', name]);
  const g = run('id', ['-g', name]);
  assert.equal(r.status, 0, `no system user ${name}: ${r.stderr}`);
  return { uid: Number(r.stdout.trim()), gid: Number(g.stdout.trim()) };
}

/*
 * Starts a cluster; resolves once pg_isready accepts connections and the database exists.
 * Returns {port, url, dir, pid, query(sql) → rows (arrays of strings), scalar(sql), psql(args),
 * stop()}.
 */
export async function startPostgres({ readyMs = 10000 } = {}) {
  const t0 = performance.now();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-pg-'));
  const data = path.join(dir, 'data');
  if (process.getuid() === 0) {
    const { uid, gid } = systemUser('postgres');
    fs.chownSync(dir, uid, gid);
  }
  const init = asPostgres(path.join(PG_BIN, 'initdb'), ['-D', data, '--auth=trust', '-U', PG_USER,
    '-E', 'UTF8', '--locale=C', '--no-sync'], { cwd: dir, timeoutMs: readyMs });
  assert.equal(init.status, 0, `initdb failed (${init.status}):\n${init.stdout}\n${init.stderr}`);

  const port = await freePort();
  const pgArgs = ['-D', data, '-p', String(port), '-k', dir, '-c', 'listen_addresses=127.0.0.1',
    '-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off',
    '-c', 'max_connections=100'];
  const cmd = process.getuid() === 0 ? 'runuser' : path.join(PG_BIN, 'postgres');
  const args = process.getuid() === 0 ? ['-u', 'postgres', '--', path.join(PG_BIN, 'postgres'), ...pgArgs] : pgArgs;
  const proc = spawn(cmd, args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  const entry = { proc, data };
  live.add(entry);
  const output = [];
  for (const s of [proc.stdout, proc.stderr]) { s.setEncoding('utf8'); s.on('data', (d) => output.push(d)); }
  let exit = null;
  const exited = new Promise((resolve) => proc.on('exit', (code, signal) => {
    exit = { code, signal };
    live.delete(entry);
    resolve(exit);
  }));
  proc.on('error', (e) => { exit ??= { error: e }; });

  const pg = {
    port, dir, data, pid: proc.pid, proc, exited,
    url: `postgresql://${PG_USER}@127.0.0.1:${port}/sluice`,
    log: () => output.join(''),
  };

  /* psql -Atc: rows of |-separated fields (bounded). */
  pg.psql = (sql, db = 'sluice') => {
    const r = run('psql', ['-h', '127.0.0.1', '-p', String(port), '-U', PG_USER, '-d', db,
      '-v', 'ON_ERROR_STOP=1', '-Atc', sql], { timeoutMs: 5000 });
    return { code: r.status, stdout: r.stdout, stderr: r.stderr };
  };
  pg.query = (sql) => {
    const r = pg.psql(sql);
    assert.equal(r.code, 0, `psql ${JSON.stringify(sql)} failed: ${r.stderr}`);
    return r.stdout.split('\n').filter((l) => l.length).map((l) => l.split('|'));
  };
  pg.scalar = (sql) => pg.query(sql)[0]?.[0];

  pg.stop = async ({ timeoutMs = 5000 } = {}) => {
    if (exit) return exit;
    asPostgres(path.join(PG_BIN, 'pg_ctl'), ['-D', data, 'stop', '-m', 'fast', '-w', '-t', String(Math.ceil(timeoutMs / 1000))],
      { cwd: dir, timeoutMs: timeoutMs + 1000 });
    let timer;
    const late = await Promise.race([exited.then(() => false), new Promise((r) => { timer = setTimeout(() => r(true), timeoutMs); })]);
    clearTimeout(timer);
    if (late) { /* by PID: the postmaster of this data dir, and runuser */
      const pm = postmasterPid(data);
      try { if (pm) process.kill(pm, 'SIGKILL'); } catch { /* gone */ }
      proc.kill('SIGKILL');
      await exited;
    }
    return exit;
  };
  pg.cleanup = async () => {
    await pg.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  };

  const ready = await pollUntil(() => {
    if (exit) throw new Error(`postgres exited before it was ready (${JSON.stringify(exit)}):\n${pg.log().slice(-2000)}`);
    return run('pg_isready', ['-h', '127.0.0.1', '-p', String(port), '-t', '1'], { timeoutMs: 2000 }).status === 0;
  }, { timeoutMs: Math.max(0, t0 + readyMs - performance.now()), intervalMs: 50, what: 'pg_isready', returnLast: true });
  if (!ready) {
    await pg.stop();
    throw new Error(`postgres not ready within ${readyMs} ms:\n${pg.log().slice(-2000)}`);
  }
  const created = pg.psql('CREATE DATABASE sluice', 'postgres');
  assert.equal(created.code, 0, `CREATE DATABASE sluice: ${created.stderr}`);
  return pg;
}
