// Browser test harness: starts the real tandem binary (like tests/js/lib/harness.mjs) and
// drives Debian's chromium through playwright-core.
//
// Environment:
//   TANDEM_BIN        path of the tandem binary (default: ../target/debug/tandem)
//   CHROMIUM_PATH     the browser (default: /usr/bin/chromium; install with `apt-get install -y chromium`)

import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
export const WEB_DEMO = join(here, '../..');
export const ARTIFACTS = join(WEB_DEMO, 'tests/artifacts');
export const BIN = process.env.TANDEM_BIN || join(WEB_DEMO, '../target/debug/tandem');
export const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';

const cleanups = [];
process.on('exit', () => {
  for (const f of cleanups.reverse()) {
    try { f(); } catch { /* best effort */ }
  }
});

/// A fresh data directory and SQLite database. No WEBUI_SECRET_KEY: the server generates one
/// in DATA_DIR (so restarts with the same env accept the same tokens) and demo sign-in is on.
export function freshEnv() {
  const dataDir = mkdtempSync(join(tmpdir(), 'tandem-web-demo-'));
  cleanups.push(() => rmSync(dataDir, { recursive: true, force: true }));
  return { DATA_DIR: dataDir, DATABASE_URL: `sqlite://${join(dataDir, 'tandem.db')}`, TANDEM_DEMO_SIGNIN: 'true' };
}

/// A TCP port that was free a moment ago (for restarting a server on the same port).
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/// Starts `tandem serve --port <port>`; resolves once it listens.
export async function startServer(env, { port = 0, extraEnv = {} } = {}) {
  if (!existsSync(BIN)) throw new Error(`tandem binary not found at ${BIN}: run \`cargo build\` or set TANDEM_BIN`);
  const baseEnv = { ...process.env };
  delete baseEnv.WEBUI_SECRET_KEY;
  delete baseEnv.WEBUI_JWT_SECRET_KEY;
  const proc = spawn(BIN, ['serve', '--port', String(port)], {
    env: { ...baseEnv, RUST_LOG: 'info,tandem=debug', ...env, ...extraEnv },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  // 'close', not 'exit': it fires once stderr is drained, so the log is complete when a stop resolves.
  const exited = new Promise((resolve) => proc.on('close', (code, signal) => resolve({ code, signal })));
  proc.stdout.on('data', (c) => (log += c.toString()));
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start:\n${log}`)), 20000);
    proc.stderr.on('data', (chunk) => {
      log += chunk.toString();
      const m = log.match(/listening on (http:\/\/[0-9.:]+) /);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    exited.then(({ code }) => {
      clearTimeout(timer);
      reject(new Error(`server exited with ${code} before listening:\n${log}`));
    });
  });
  cleanups.push(() => proc.kill('SIGKILL'));
  return {
    url,
    proc,
    env,
    get log() {
      return log;
    },
    async stop() {
      if (proc.exitCode !== null || proc.signalCode !== null) return proc.exitCode;
      proc.kill('SIGTERM');
      return (await exited).code;
    },
    async kill() {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill('SIGKILL');
      await exited;
    },
  };
}

/// Launches headless chromium (never downloads one).
export async function launchBrowser() {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} is missing: the browser tests need Debian's chromium — run \`apt-get install -y chromium\``);
  }
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage',
      // Pages fulfilled by the development fallback do not count as loopback pages.
      ...(process.env.WEB_DEMO_DEV_FALLBACK ? ['--disable-features=LocalNetworkAccessChecks,BlockInsecurePrivateNetworkRequests'] : [])],
  });
}

/// Opens `/?doc=DOC&name=NAME` in a new browser context (a separate user) and waits until the
/// document is synced. Page errors and console errors are collected in `page.problems`.
export async function openEditor(browser, server, doc, name, { viewport = { width: 1180, height: 760 } } = {}) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  page.problems = [];
  page.on('pageerror', (e) => page.problems.push(`pageerror: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') page.problems.push(`console: ${m.text()}`);
  });
  // The last Socket.IO frames, for failure messages.
  page.frames_ = [];
  page.on('websocket', (ws) => {
    const keep = (dir) => (f) => {
      page.frames_.push(`${dir} ${String(f.payload).slice(0, 200)}`);
      if (page.frames_.length > 40) page.frames_.shift();
    };
    ws.on('framesent', keep('>'));
    ws.on('framereceived', keep('<'));
    ws.on('close', () => page.frames_.push('(websocket closed)'));
  });
  if (process.env.WEB_DEMO_DEV_FALLBACK) await devFallback(context, server);
  const params = new URLSearchParams({ doc, name });
  await page.goto(`${server.url}/?${params}`);
  try {
    await waitSynced(page);
  } catch (e) {
    const status = await page.locator('[data-testid="status"]').innerText().catch(() => '(no status area)');
    throw new Error(`${name}'s page did not sync: ${e.message}\nstatus: ${status}\nproblems: ${page.problems.join('\n')}\nframes:\n${page.frames_.join('\n')}`);
  }
  return page;
}

/// Development aid only (WEB_DEMO_DEV_FALLBACK=1), for a server binary that predates the page
/// route and demo sign-in: serves dist/ at / and answers demo sign-in with `tandem token`.
async function devFallback(context, server) {
  const { readFileSync } = await import('node:fs');
  const { execFileSync } = await import('node:child_process');
  const types = { 'index.html': 'text/html', 'app.js': 'text/javascript', 'app.css': 'text/css' };
  await context.route((url) => url.origin === server.url && ['/', '/app.js', '/app.css'].includes(url.pathname), (route) => {
    const path = new URL(route.request().url()).pathname;
    const file = path === '/' ? 'index.html' : path.slice(1);
    route.fulfill({ status: 200, contentType: types[file], body: readFileSync(join(WEB_DEMO, 'dist', file)) });
  });
  await context.route(`${server.url}/api/v1/demo/signin`, (route) => {
    const { name } = JSON.parse(route.request().postData());
    const id = name.toLowerCase().replace(/[^a-z0-9]+/g, '-');
    const token = execFileSync(BIN, ['token', '--user-id', id, '--name', name], { env: { ...process.env, ...server.env }, encoding: 'utf8' }).trim();
    route.fulfill({ status: 200, contentType: 'application/json', body: JSON.stringify({ token, user: { id, name, role: 'user' }, channel_id: null }) });
  });
}

export async function waitSynced(page, timeout = 15000) {
  await page.waitForSelector('body[data-sync="synced"]', { timeout, state: 'attached' });
}

/// The editor's text, one line per block, without the remote cursors' name labels.
export function editorText(page) {
  return page.evaluate(() => {
    const pm = document.querySelector('.ProseMirror').cloneNode(true);
    for (const cursor of pm.querySelectorAll('.ProseMirror-yjs-cursor')) cursor.remove();
    return [...pm.children].map((el) => el.textContent).join('\n');
  });
}

/// Clicks at the end of the document and types.
export async function typeAtEnd(page, text, { delay = 15 } = {}) {
  const editor = page.locator('.ProseMirror');
  await editor.click();
  await page.keyboard.press('Control+End');
  // ProseMirror learns of a caret moved by the browser from a later selectionchange event: wait
  // for it, or the next key lands at the old position.
  await page.waitForFunction(() => {
    const { selection, doc } = window.tandemDemo.editor.view.state;
    return selection.empty && selection.head === doc.content.size - selection.$head.depth;
  }, null, { timeout: 5000 });
  await page.keyboard.type(text, { delay });
}

/// Waits until every page shows `expected` (a string, or a predicate on the texts).
export async function waitForText(pages, expected, { timeout = 10000, message = 'the same text in every window' } = {}) {
  const ok = typeof expected === 'function' ? expected : (texts) => texts.every((t) => t === expected);
  await eventually(async () => {
    const texts = await Promise.all(pages.map(editorText));
    if (!ok(texts)) throw new Error(`texts: ${JSON.stringify(texts)}`);
    return true;
  }, { timeout, message });
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/// Polls `fn` until it returns a truthy value.
export async function eventually(fn, { timeout = 10000, interval = 50, message = 'condition' } = {}) {
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

/// Saves one screenshot per page plus both side by side, into tests/artifacts/.
export async function screenshotSideBySide(browser, pages, name) {
  mkdirSync(ARTIFACTS, { recursive: true });
  const shots = [];
  for (const [i, page] of pages.entries()) {
    const png = await page.screenshot();
    writeFileSync(join(ARTIFACTS, `${name}-${i + 1}.png`), png);
    shots.push(png.toString('base64'));
  }
  const { width, height } = pages[0].viewportSize();
  const context = await browser.newContext({ viewport: { width: width * pages.length + 12 * (pages.length + 1), height: height + 24 } });
  const page = await context.newPage();
  await page.setContent(`<body style="margin:0;background:#2b303b;display:flex;gap:12px;padding:12px">${
    shots.map((s) => `<img style="width:${width}px;height:${height}px;border-radius:6px" src="data:image/png;base64,${s}">`).join('')
  }</body>`);
  const file = join(ARTIFACTS, `${name}.png`);
  await page.screenshot({ path: file });
  await context.close();
  return file;
}
