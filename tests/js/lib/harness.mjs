// Test harness: starts the real tandem binary, mints real tokens with `tandem token`, and
// connects the official socket.io-client to it.
//
// Environment:
//   TANDEM_BIN            path of the tandem binary (default: target/debug/tandem)
//   TANDEM_TEST_BACKEND   sqlite (default) | postgres
//   TANDEM_TEST_PG_URL    admin URL of the test Postgres (default postgres://postgres@127.0.0.1:5432/test)
//   TANDEM_TEST_REDIS_URL Redis for multi-instance tests (default redis://127.0.0.1:6379/0)

import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { io } from 'socket.io-client';

export const BIN = process.env.TANDEM_BIN || new URL('../../../target/debug/tandem', import.meta.url).pathname;
export const BACKEND = process.env.TANDEM_TEST_BACKEND || 'sqlite';
export const PG_URL = process.env.TANDEM_TEST_PG_URL || 'postgres://postgres@127.0.0.1:5432/test';
export const REDIS_URL = process.env.TANDEM_TEST_REDIS_URL || 'redis://127.0.0.1:6379/0';
export const BUS = process.env.TANDEM_TEST_BUS || 'local';

const cleanups = [];
process.on('exit', () => {
  for (const f of cleanups.reverse()) {
    try { f(); } catch { /* best effort */ }
  }
});

/// A fresh, empty database for one test (a SQLite file, or a new Postgres database), plus its
/// data directory, secret and bus settings. Servers started with the same env share all of
/// them (a cluster). `backend` and `bus` override TANDEM_TEST_BACKEND and TANDEM_TEST_BUS.
export function freshEnv(backend = BACKEND, bus = BUS) {
  const dataDir = mkdtempSync(join(tmpdir(), 'tandem-test-'));
  cleanups.push(() => rmSync(dataDir, { recursive: true, force: true }));
  let databaseUrl;
  if (backend === 'postgres') {
    const name = `tandem_test_${randomUUID().replaceAll('-', '')}`;
    execFileSync('psql', [PG_URL, '-q', '-c', `CREATE DATABASE ${name}`], { stdio: 'pipe' });
    cleanups.push(() =>
      execFileSync('psql', [PG_URL, '-q', '-c', `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`], { stdio: 'pipe' }),
    );
    const url = new URL(PG_URL);
    url.pathname = `/${name}`;
    databaseUrl = url.toString();
  } else {
    databaseUrl = `sqlite://${join(dataDir, 'tandem.db')}`;
  }
  const env = {
    DATA_DIR: dataDir,
    DATABASE_URL: databaseUrl,
    WEBUI_SECRET_KEY: `test-secret-${randomUUID()}`,
  };
  if (bus === 'redis') {
    // A prefix of its own keeps this test's keys apart from every other test's.
    Object.assign(env, { WEBSOCKET_MANAGER: 'redis', WEBSOCKET_REDIS_URL: REDIS_URL, REDIS_KEY_PREFIX: `tandem-test-${randomUUID()}` });
  }
  return env;
}

/// Runs `tandem token` and returns the token.
export function mint(env, userId, name = userId, role = 'user', ttl = '1h') {
  return execFileSync(BIN, ['token', '--user-id', userId, '--name', name, '--role', role, '--ttl', ttl], {
    env: { ...process.env, ...env },
    encoding: 'utf8',
  }).trim();
}

/// Runs a tandem subcommand; returns {status, stdout, stderr}.
export function tandem(env, args) {
  try {
    const stdout = execFileSync(BIN, args, { env: { ...process.env, ...env }, encoding: 'utf8', stdio: 'pipe' });
    return { status: 0, stdout, stderr: '' };
  } catch (e) {
    return { status: e.status, stdout: e.stdout?.toString() ?? '', stderr: e.stderr?.toString() ?? '' };
  }
}

/// Starts `tandem serve` on a free port. Resolves once it listens. `opts.cwd` runs it in
/// another directory; `opts.clean` drops tandem's variables from the inherited environment.
export async function startServer(env, extraEnv = {}, args = [], opts = {}) {
  const inherited = { ...process.env };
  if (opts.clean) {
    for (const k of ['DATA_DIR', 'DATABASE_URL', 'WEBUI_SECRET_KEY', 'WEBUI_JWT_SECRET_KEY', 'WEBSOCKET_MANAGER']) delete inherited[k];
  }
  const proc = spawn(BIN, ['serve', '--port', '0', ...args], {
    env: { ...inherited, RUST_LOG: 'info,tandem=debug', ...env, ...extraEnv },
    stdio: ['ignore', 'pipe', 'pipe'],
    cwd: opts.cwd,
  });
  let log = '';
  if (process.env.TANDEM_TEST_LOG_DIR) {
    const { createWriteStream } = await import('node:fs');
    const file = createWriteStream(join(process.env.TANDEM_TEST_LOG_DIR, `server-${Date.now()}-${proc.pid}.log`));
    proc.stderr.pipe(file);
  }
  // 'close', not 'exit': it fires once stderr is drained, so the log is complete when a stop resolves.
  const exited = new Promise((resolve) => proc.on('close', (code, signal) => resolve({ code, signal })));
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start:\n${log}`)), 20000);
    const onData = (chunk) => {
      log += chunk.toString();
      const m = log.match(/listening on (http:\/\/[0-9.:]+) /);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    };
    proc.stderr.on('data', onData);
    proc.stdout.on('data', (c) => (log += c.toString()));
    exited.then(({ code }) => {
      clearTimeout(timer);
      reject(new Error(`server exited with ${code} before listening:\n${log}`));
    });
  });
  const server = {
    url,
    proc,
    get log() {
      return log;
    },
    exited,
    /// Graceful stop (SIGTERM); resolves to the exit code. A server that has not exited
    /// 20 s later is killed and the stop reports 'hung' instead of an exit code.
    async stop() {
      if (proc.exitCode !== null || proc.signalCode !== null) return proc.exitCode;
      proc.kill('SIGTERM');
      let timer;
      const hung = new Promise((resolve) => (timer = setTimeout(() => resolve('hung'), 20000)));
      const result = await Promise.race([exited.then(({ code }) => code), hung]);
      clearTimeout(timer);
      if (result === 'hung') {
        proc.kill('SIGKILL');
        await exited;
      }
      return result;
    },
    /// Crash stop.
    async kill() {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill('SIGKILL');
      await exited;
    },
  };
  cleanups.push(() => proc.kill('SIGKILL'));
  return server;
}

/// Connects the official client; resolves once connected. Listeners in `on` are attached
/// before connecting so nothing emitted on connect is missed.
export function connect(server, token, opts = {}) {
  const { on = {}, ...rest } = opts;
  const socket = io(server.url, {
    path: '/ws/socket.io',
    transports: ['websocket'],
    reconnection: false,
    auth: token === undefined ? undefined : { token },
    forceNew: true,
    ...rest,
  });
  for (const [event, fn] of Object.entries(on)) socket.on(event, fn);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('connect timeout')), 10000);
    socket.once('connect', () => {
      clearTimeout(timer);
      resolve(socket);
    });
    socket.once('connect_error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

/// Waits for the next `event` on `socket` that satisfies `pred`.
export function next(socket, event, pred = () => true, timeout = 10000) {
  // What else arrived meanwhile, to tell a slow server from a wrong answer when it fails.
  const seen = [];
  const any = (name, ...args) => seen.push(`${name} ${JSON.stringify(args).slice(0, 120)}`);
  socket.onAny(any);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.off(event, handler);
      socket.offAny(any);
      const state = socket.connected ? 'connected' : 'disconnected';
      reject(new Error(`timed out waiting for ${event} (socket ${state}; received: ${seen.join(' | ') || 'nothing'})`));
    }, timeout);
    const handler = (...args) => {
      if (!pred(...args)) return;
      clearTimeout(timer);
      socket.off(event, handler);
      socket.offAny(any);
      resolve(args.length > 1 ? args : args[0]);
    };
    socket.on(event, handler);
  });
}

/// Collects every `event` on `socket` into an array.
export function collect(socket, event) {
  const seen = [];
  socket.on(event, (payload) => seen.push(payload));
  return seen;
}

/// Emits with an ack and resolves to the ack payload.
export function ack(socket, event, payload, timeout = 10000) {
  return socket.timeout(timeout).emitWithAck(event, payload);
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/// Polls `fn` until it returns a truthy value.
export async function eventually(fn, { timeout = 10000, interval = 25, message = 'condition' } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  while (Date.now() < deadline) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    await sleep(interval);
  }
  throw new Error(`timed out waiting for ${message}; last: ${last instanceof Error ? last.message : JSON.stringify(last)}`);
}

/// An HTTP request to the server; resolves to {status, body}.
export async function http(server, method, path, { token, body, raw } = {}) {
  const headers = {};
  if (token) headers.authorization = `Bearer ${token}`;
  let payload;
  if (raw !== undefined) {
    payload = raw;
    headers['content-type'] = 'application/json';
  } else if (body !== undefined) {
    payload = JSON.stringify(body);
    headers['content-type'] = 'application/json';
  }
  const res = await fetch(server.url + path, { method, headers, body: payload, signal: AbortSignal.timeout(15000) });
  const text = await res.text();
  let json;
  try { json = JSON.parse(text); } catch { json = text; }
  return { status: res.status, body: json };
}
