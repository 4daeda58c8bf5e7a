// Sessions and rooms with the official socket.io-client (issue: foundation).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, existsSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freshEnv, startServer, mint, connect, next, ack, http, sleep, tandem, BACKEND } from './lib/harness.mjs';

let env, server;

before(async () => {
  env = freshEnv();
  server = await startServer(env);
});

after(async () => {
  await server?.stop();
}, { timeout: 60000 });

test(`[${BACKEND}] health and readiness`, { timeout: 60000 }, async () => {
  assert.equal((await http(server, 'GET', '/healthz')).status, 200);
  const ready = await http(server, 'GET', '/readyz');
  assert.equal(ready.status, 200);
  assert.equal(ready.body.store.status, 'ok');
  assert.equal(ready.body.store.backend, BACKEND);
});

test('user-join acks {id, name} for a minted token', { timeout: 60000 }, async () => {
  const token = mint(env, 'alice', 'Alice');
  const socket = await connect(server, token);
  try {
    assert.deepEqual(await ack(socket, 'user-join', { auth: { token } }), { id: 'alice', name: 'Alice' });
  } finally {
    socket.disconnect();
  }
});

test('a forged, expired or missing token connects but stays anonymous', { timeout: 60000 }, async () => {
  const good = mint(env, 'bob', 'Bob');
  const forged = good.slice(0, -4) + (good.endsWith('AAAA') ? 'BBBB' : 'AAAA');
  const expired = mint(env, 'bob', 'Bob', 'user', '1s');
  await sleep(2100);
  const otherSecret = mint({ ...env, WEBUI_SECRET_KEY: 'another-secret' }, 'bob', 'Bob');
  const none = 'eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJpZCI6ImJvYiJ9.';
  for (const token of [forged, expired, otherSecret, none, undefined, '']) {
    const socket = await connect(server, token);
    try {
      // Handshake accepted (Open WebUI clients expect that), but nothing that needs identity works.
      const err = next(socket, 'error');
      socket.emit('ydoc:document:join', { document_id: 'note:anon' });
      const payload = await err;
      assert.equal(payload.code, 'unauthorized');
      assert.equal(payload.event, 'ydoc:document:join');
      const reply = await ack(socket, 'user-join', { auth: { token } });
      assert.equal(reply.error.code, 'unauthorized', `token ${String(token).slice(0, 12)}…`);
    } finally {
      socket.disconnect();
    }
  }
  // Nothing was created by the refused join.
  const admin = mint(env, 'root', 'Root', 'admin');
  assert.equal((await http(server, 'GET', '/api/v1/documents/note:anon', { token: admin })).status, 404);
});

test('a token of an unknown user yields no identity', { timeout: 60000 }, async () => {
  // Same secret, but the user was never created in the directory.
  const { default: crypto } = await import('node:crypto');
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const body = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64({ id: 'ghost' })}`;
  const sig = crypto.createHmac('sha256', env.WEBUI_SECRET_KEY).update(body).digest('base64url');
  const token = `${body}.${sig}`;
  const socket = await connect(server, token);
  try {
    const reply = await ack(socket, 'user-join', { auth: { token } });
    assert.equal(reply.error.code, 'unauthorized');
    assert.match(reply.error.message, /unknown user/);
  } finally {
    socket.disconnect();
  }
});

test('user-join with a bad token changes nothing; a good one re-authenticates', { timeout: 60000 }, async () => {
  const token = mint(env, 'carol', 'Carol');
  const socket = await connect(server, undefined);
  try {
    const bad = await ack(socket, 'user-join', { auth: { token: 'nope' } });
    assert.equal(bad.error.code, 'unauthorized');
    const err = next(socket, 'error');
    socket.emit('heartbeat', {});
    assert.equal((await err).code, 'unauthorized');
    assert.deepEqual(await ack(socket, 'user-join', { auth: { token } }), { id: 'carol', name: 'Carol' });
    // Now a session: heartbeat is accepted silently (no error within a short wait).
    let errored = false;
    socket.once('error', () => (errored = true));
    socket.emit('heartbeat', {});
    await sleep(200);
    assert.equal(errored, false);
  } finally {
    socket.disconnect();
  }
});

test('garbage payloads on every event get errors and leave the server running and unchanged', { timeout: 60000 }, async () => {
  const token = mint(env, 'dave', 'Dave');
  const socket = await connect(server, token);
  const errors = [];
  socket.on('error', (e) => errors.push(e));
  const events = [
    'user-join',
    'join-channels',
    'heartbeat',
    'ydoc:document:join',
    'ydoc:document:state',
    'ydoc:document:update',
    'ydoc:document:leave',
    'ydoc:awareness:update',
  ];
  const garbage = [
    'not json at all',
    42,
    null,
    [1, 2, 3],
    { document_id: 12 },
    { document_id: ['x'] },
    { document_id: 'note:g', update: 'abc' },
    { document_id: 'note:g', update: [300, -1] },
    { document_id: 'x'.repeat(100000) },
    { auth: 'token' },
    { auth: { token: 7 } },
  ];
  try {
    for (const event of events) {
      for (const payload of garbage) {
        socket.emit(event, payload);
        // Also with an ack: the error comes back as the ack.
        const reply = await ack(socket, event, payload);
        assert.ok(reply.error || reply.ok, `${event} ${JSON.stringify(payload).slice(0, 40)} → ${JSON.stringify(reply)}`);
      }
    }
    await sleep(300);
    assert.ok(errors.length > 0, 'error events were sent');
    for (const e of errors) {
      assert.equal(typeof e.message, 'string');
      assert.equal(typeof e.code, 'string');
      assert.ok(events.includes(e.event), `error names its event: ${JSON.stringify(e)}`);
    }
    assert.ok(socket.connected, 'the garbage-sending socket is still connected');
    // The session still works and nothing was stored.
    assert.deepEqual(await ack(socket, 'user-join', { auth: { token } }), { id: 'dave', name: 'Dave' });
    assert.equal((await http(server, 'GET', '/healthz')).status, 200);
    // Only well-formed joins (the `{document_id: 'note:g', …}` payloads carry a valid id)
    // created a record; no document holds any content.
    const docs = tandem(env, ['docs', '--json']);
    assert.equal(docs.status, 0, docs.stderr);
    for (const doc of JSON.parse(docs.stdout)) {
      assert.equal(doc.document_id, 'note:g');
      assert.equal(doc.updates, 0);
      assert.equal(doc.bytes, 0);
    }
  } finally {
    socket.disconnect();
  }
});

test('ENABLE_WEBSOCKET_SUPPORT=false serves long-polling', { timeout: 60000 }, async () => {
  const pollEnv = freshEnv();
  const polling = await startServer(pollEnv, { ENABLE_WEBSOCKET_SUPPORT: 'false' });
  try {
    const token = mint(pollEnv, 'erin', 'Erin');
    const socket = await connect(polling, token, { transports: ['polling'] });
    try {
      assert.equal(socket.io.engine.transport.name, 'polling');
      assert.deepEqual(await ack(socket, 'user-join', { auth: { token } }), { id: 'erin', name: 'Erin' });
    } finally {
      socket.disconnect();
    }
    // WebSocket is refused in this mode.
    await assert.rejects(connect(polling, token, { transports: ['websocket'] }));
  } finally {
    assert.equal(await polling.stop(), 0);
  }
});

test('SIGTERM shuts down gracefully with exit code 0', { timeout: 60000 }, async () => {
  const own = await startServer(freshEnv());
  const token = mint(own === server ? env : env, 'frank', 'Frank');
  assert.equal(await own.stop(), 0);
  assert.match(own.log, /stopped/);
  void token;
});

test('with nothing set: SQLite under ./data, a generated secret, and a startup log that says what to do', { timeout: 60000 }, async () => {
  const cwd = mkdtempSync(join(tmpdir(), 'tandem-default-'));
  const own = await startServer({}, {}, [], { cwd, clean: true });
  try {
    assert.match(own.log, /listening on http:\/\/127\.0\.0\.1:\d+/);
    assert.match(own.log, /data goes to sqlite:\/\/\.\/data\/tandem\.db/);
    assert.match(own.log, /tandem token --user-id/);
    assert.match(own.log, /WEBUI_SECRET_KEY is not set/);
    assert.match(own.log, /bus="local"/);
    assert.ok(existsSync(join(cwd, 'data', 'tandem.db')));
    const secret = readFileSync(join(cwd, 'data', '.webui_secret_key'), 'utf8');
    assert.equal(secret.length, 64);
    // `tandem token` in the same directory shares the secret; stdout is only the token.
    const minted = tandem({}, ['--data-dir', join(cwd, 'data'), 'token', '--user-id', 'zoe', '--name', 'Zoe']);
    assert.equal(minted.status, 0, minted.stderr);
    assert.match(minted.stdout, /^[\w-]+\.[\w-]+\.[\w-]+\n$/);
    const socket = await connect(own, minted.stdout.trim());
    try {
      assert.deepEqual(await ack(socket, 'user-join', { auth: { token: minted.stdout.trim() } }), { id: 'zoe', name: 'Zoe' });
    } finally {
      socket.disconnect();
    }
  } finally {
    assert.equal(await own.stop(), 0);
  }
});
