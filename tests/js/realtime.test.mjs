// The realtime layer: chat events, server-to-client calls, chat streaming, channels and typing,
// join-note, presence and model usage (issue: realtime layer).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { freshEnv, startServer, mint, connect, next, collect, http, sleep, eventually, tandem, BACKEND, BUS } from './lib/harness.mjs';

const tag = `[${BACKEND}/${BUS}]`;
const SERVICE_KEY = 'test-service-key';
let env, server, admin;
const sockets = [];
const servers = [];

before(async () => {
  env = freshEnv();
  server = await startServer(env, { TANDEM_SERVICE_KEY: SERVICE_KEY, WEBSOCKET_EVENT_CALLER_TIMEOUT: '1' });
  admin = mint(env, 'root', 'Root', 'admin');
});

after(async () => {
  for (const s of sockets) s.disconnect();
  for (const s of servers) await s.stop();
  await server?.stop();
}, { timeout: 60000 });

async function tab(srv, userId, opts = {}) {
  const token = mint(env, userId, opts.name ?? userId);
  const socket = await connect(srv, token, opts);
  sockets.push(socket);
  await socket.timeout(10000).emitWithAck('user-join', { auth: { token } });
  return { socket, token };
}

test(`${tag} emitted chat events reach every tab of the user and no one else`, { timeout: 60000 }, async () => {
  const a1 = await tab(server, 'alice');
  const a2 = await tab(server, 'alice');
  const b = await tab(server, 'bob');
  const seen1 = collect(a1.socket, 'events');
  const seen2 = collect(a2.socket, 'events');
  const seenB = collect(b.socket, 'events');
  const body = { user_id: 'alice', chat_id: 'c1', message_id: 'm1', data: { type: 'status', data: { description: 'thinking', done: false } } };
  const r = await http(server, 'POST', '/api/v1/events/emit', { token: SERVICE_KEY, body });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  await eventually(() => seen1.length === 1 && seen2.length === 1);
  await sleep(200);
  assert.equal(seenB.length, 0);
  assert.deepEqual(seen1[0], { chat_id: 'c1', message_id: 'm1', data: body.data });
});

test(`${tag} persisted content follows Open WebUI's rules`, { timeout: 60000 }, async () => {
  const emit = (chat_id, type, data) =>
    http(server, 'POST', '/api/v1/events/emit', { token: admin, body: { user_id: 'alice', chat_id, message_id: 'm', data: { type, data } } });
  for (const [type, data] of [
    ['status', { description: 'searching', done: false }],
    ['message', { content: 'Hel' }],
    ['message', { content: 'lo' }],
    ['status', { description: 'done', done: true }],
    ['embeds', { embeds: ['e1'] }],
    ['embeds', { embeds: ['e2'] }],
    ['files', { files: [{ id: 'f1' }] }],
    ['source', { source: { name: 'doc' }, document: ['x'] }],
    ['chat:completion', { content: 'not persisted by the emitter' }],
  ]) {
    assert.equal((await emit('chat-a', type, data)).status, 200);
  }
  const read = (chat) => http(server, 'GET', `/api/v1/chats/${chat}/messages/m`, { token: admin });
  let m = (await read('chat-a')).body;
  assert.equal(m.content, 'Hello');
  assert.deepEqual(m.status_history.map((s) => s.description), ['searching', 'done']);
  assert.deepEqual(m.embeds, ['e2', 'e1']);
  assert.deepEqual(m.files, [{ id: 'f1' }]);
  assert.equal(m.sources.length, 1);
  assert.equal(await emit('chat-a', 'replace', { content: 'Replaced' }).then((r) => r.status), 200);
  assert.equal(await emit('chat-a', 'embeds', { embeds: ['only'], replace: true }).then((r) => r.status), 200);
  m = (await read('chat-a')).body;
  assert.equal(m.content, 'Replaced');
  assert.deepEqual(m.embeds, ['only']);
  // Unsaved chats are emitted but never persisted.
  for (const chat of ['local:x', 'temporary:y', 'channel:z']) {
    assert.equal((await emit(chat, 'message', { content: 'x' })).status, 200);
    assert.equal((await read(chat)).status, 404);
  }
});

test(`${tag} a call returns the tab's ack, times out cleanly, and refuses foreign or gone sessions`, { timeout: 60000 }, async () => {
  const a = await tab(server, 'alice');
  a.socket.on('events', (payload, callback) => {
    if (payload.data.type === 'confirmation') callback?.({ confirmed: true, echo: payload.data.data.title });
    // 'input' is never answered.
  });
  const call = (body) => http(server, 'POST', '/api/v1/events/call', { token: SERVICE_KEY, body });
  const base = { session_id: a.socket.id, user_id: 'alice', chat_id: 'c', message_id: 'm' };
  const ok = await call({ ...base, data: { type: 'confirmation', data: { title: 'Sure?', message: '?' } } });
  assert.equal(ok.status, 200, JSON.stringify(ok.body));
  assert.deepEqual(ok.body, { result: { confirmed: true, echo: 'Sure?' } });
  const timeout = await call({ ...base, data: { type: 'input', data: { title: 'Name?' } } });
  assert.equal(timeout.status, 504);
  assert.equal(timeout.body.error.code, 'timeout');
  const foreign = await call({ ...base, user_id: 'bob', data: { type: 'confirmation', data: {} } });
  assert.equal(foreign.status, 403);
  const gone = await call({ ...base, session_id: 'AAAAAAAAAAAAAAAA', data: { type: 'confirmation', data: {} } });
  assert.equal(gone.status, 404);
});

test(`${tag} the backend API refuses missing or wrong credentials and bad bodies`, { timeout: 60000 }, async () => {
  const user = mint(env, 'carol', 'Carol');
  const emit = { user_id: 'alice', chat_id: 'c', message_id: 'm', data: { type: 'status', data: {} } };
  assert.equal((await http(server, 'POST', '/api/v1/events/emit', { body: emit })).status, 401);
  assert.equal((await http(server, 'POST', '/api/v1/events/emit', { token: 'wrong', body: emit })).status, 401);
  const forbidden = await http(server, 'POST', '/api/v1/events/emit', { token: user, body: emit });
  assert.equal(forbidden.status, 403);
  assert.equal(forbidden.body.error.code, 'forbidden');
  const notJson = await http(server, 'POST', '/api/v1/events/emit', { token: admin, raw: 'not json' });
  assert.equal(notJson.status, 400);
  assert.equal(typeof notJson.body.error.message, 'string');
  assert.equal((await http(server, 'POST', '/api/v1/events/emit', { token: admin, body: { user_id: 'x' } })).status, 422);
  assert.equal((await http(server, 'POST', '/api/v1/events/call', { token: admin, body: { session_id: 1 } })).status, 422);
  assert.equal((await http(server, 'GET', '/api/v1/presence', { token: user })).status, 403);
  assert.equal((await http(server, 'GET', '/api/v1/usage')).status, 401);
  assert.equal((await http(server, 'POST', '/api/v1/channels', { token: user, body: { name: 'x', member_ids: [] } })).status, 403);
  assert.equal((await http(server, 'POST', '/api/v1/chat/completions', { token: SERVICE_KEY, body: { model: 'tandem-demo', messages: [] } })).status, 403);
});

test(`${tag} chat streaming relays every chunk of an OpenAI-compatible stream in order, then done`, { timeout: 60000 }, async () => {
  const chunks = ['Hel', 'lo', ', ', 'wörld', '!'];
  let requestBody;
  const upstream = createServer((req, res) => {
    let raw = '';
    req.on('data', (c) => (raw += c));
    req.on('end', async () => {
      requestBody = JSON.parse(raw);
      if (requestBody.model === 'broken') {
        res.writeHead(500, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: { message: 'upstream exploded' } }));
        return;
      }
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      for (const c of chunks) {
        // Split a multi-byte character across writes too.
        const line = Buffer.from(`data: ${JSON.stringify({ choices: [{ delta: { content: c } }] })}\n\n`);
        res.write(line.subarray(0, 10));
        await sleep(10);
        res.write(line.subarray(10));
      }
      if (requestBody.model === 'cut') {
        res.destroy();
        return;
      }
      res.end('data: [DONE]\n\n');
    });
  });
  await new Promise((r) => upstream.listen(0, '127.0.0.1', r));
  const base = `http://127.0.0.1:${upstream.address().port}/v1`;
  const ownEnv = freshEnv();
  const srv = await startServer(ownEnv, { OPENAI_API_BASE_URL: base, OPENAI_API_KEY: 'sk-test' });
  servers.push(srv);
  try {
    const token = mint(ownEnv, 'dana', 'Dana');
    const socket = await connect(srv, token);
    sockets.push(socket);
    const events = collect(socket, 'events');
    const res = await http(srv, 'POST', '/api/v1/chat/completions', {
      token,
      body: { model: 'gpt-test', messages: [{ role: 'user', content: 'hi' }], chat_id: 'chat-1', id: 'msg-1', session_id: socket.id },
    });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.equal(res.body.status, true);
    await eventually(() => events.some((e) => e.data.data?.done));
    const contents = events.filter((e) => e.data.type === 'chat:completion').map((e) => e.data.data.content);
    assert.deepEqual(contents, ['Hel', 'Hello', 'Hello, ', 'Hello, wörld', 'Hello, wörld!', 'Hello, wörld!']);
    assert.equal(events.at(-1).data.data.done, true);
    assert.ok(events.every((e) => e.chat_id === 'chat-1' && e.message_id === 'msg-1'));
    assert.equal(requestBody.stream, true);
    const admin2 = mint(ownEnv, 'root', 'Root', 'admin');
    await eventually(async () => (await http(srv, 'GET', '/api/v1/chats/chat-1/messages/msg-1', { token: admin2 })).body.content === 'Hello, wörld!');
    // Upstream errors become chat:message:error, never a hang.
    for (const model of ['broken', 'cut']) {
      const err = next(socket, 'events', (e) => e.data.type === 'chat:message:error' && e.message_id === `msg-${model}`);
      await http(srv, 'POST', '/api/v1/chat/completions', {
        token,
        body: { model, messages: [{ role: 'user', content: 'hi' }], chat_id: 'chat-1', id: `msg-${model}`, session_id: socket.id },
      });
      const e = await err;
      assert.equal(typeof e.data.data.error.content, 'string');
    }
  } finally {
    upstream.close();
  }
});

test(`${tag} without an upstream the demo model streams an answer`, { timeout: 60000 }, async () => {
  const { socket, token } = await tab(server, 'erin');
  const done = next(socket, 'events', (e) => e.data.data?.done, 20000);
  const res = await http(server, 'POST', '/api/v1/chat/completions', {
    token,
    body: { model: 'tandem-demo', messages: [{ role: 'user', content: 'ping' }], chat_id: 'demo-chat', id: 'a1', session_id: socket.id },
  });
  assert.equal(res.status, 200);
  const final = await done;
  assert.match(final.data.data.content, /You asked: "ping"/);
  // Without a tab, the whole answer comes back in the response.
  const direct = await http(server, 'POST', '/api/v1/chat/completions', { token, body: { model: 'tandem-demo', messages: [{ role: 'user', content: 'x' }] } });
  assert.match(direct.body.choices[0].message.content, /demo model/);
  const unknown = await http(server, 'POST', '/api/v1/chat/completions', { token, body: { model: 'gpt-9', messages: [{ role: 'user', content: 'x' }] } });
  assert.equal(unknown.status, 404);
});

test(`${tag} typing reaches the channel's members (sender included) and no one else; messages too`, { timeout: 60000 }, async () => {
  const r = await http(server, 'POST', '/api/v1/channels', { token: admin, body: { name: 'General', member_ids: ['fay', 'gus'] } });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  const channel = r.body.id;
  const fay = await tab(server, 'fay', { name: 'Fay' });
  const gus = await tab(server, 'gus');
  const hal = await tab(server, 'hal');
  const seen = { fay: collect(fay.socket, 'events:channel'), gus: collect(gus.socket, 'events:channel'), hal: collect(hal.socket, 'events:channel') };
  fay.socket.emit('events:channel', { channel_id: channel, message_id: null, data: { type: 'typing', data: { typing: true } } });
  await eventually(() => seen.fay.length === 1 && seen.gus.length === 1);
  assert.deepEqual(seen.gus[0].user, { id: 'fay', name: 'Fay', role: 'user' });
  assert.deepEqual(seen.gus[0].data, { type: 'typing', data: { typing: true } });
  // A non-member can neither send nor receive.
  const err = next(hal.socket, 'error');
  hal.socket.emit('events:channel', { channel_id: channel, message_id: null, data: { type: 'typing', data: { typing: true } } });
  assert.equal((await err).code, 'forbidden');
  // last_read_at is accepted silently; a posted message reaches members.
  assert.deepEqual(await fay.socket.timeout(5000).emitWithAck('events:channel', { channel_id: channel, message_id: null, data: { type: 'last_read_at' } }), { ok: true });
  const posted = await http(server, 'POST', `/api/v1/channels/${channel}/messages`, { token: gus.token, body: { content: 'hello channel' } });
  assert.equal(posted.status, 200, JSON.stringify(posted.body));
  await eventually(() => seen.fay.some((e) => e.data.type === 'message' && e.data.data.content === 'hello channel'));
  assert.equal((await http(server, 'POST', `/api/v1/channels/${channel}/messages`, { token: hal.token, body: { content: 'x' } })).status, 403);
  const history = await http(server, 'GET', `/api/v1/channels/${channel}/messages`, { token: fay.token });
  assert.deepEqual(history.body.map((m) => m.content), ['hello channel']);
  await sleep(200);
  assert.equal(seen.hal.length, 0);
  // A channel created from the CLI joins its members on their next user-join.
  const cli = tandem(env, ['channel', 'create', '--name', 'cli', '--member', 'hal']);
  assert.equal(cli.status, 0, cli.stderr);
  const id = cli.stdout.trim();
  assert.match(id, /^[0-9a-f-]{36}$/);
  await hal.socket.timeout(5000).emitWithAck('user-join', { auth: { token: hal.token } });
  const halSeen = next(hal.socket, 'events:channel');
  hal.socket.emit('events:channel', { channel_id: id, message_id: null, data: { type: 'typing', data: { typing: true } } });
  assert.equal((await halSeen).channel_id, id);
});

test(`${tag} join-note lets readers in and keeps others out`, { timeout: 60000 }, async () => {
  const owner = await tab(server, 'ivy');
  owner.socket.emit('ydoc:document:join', { document_id: 'note:n1' });
  await next(owner.socket, 'ydoc:document:state');
  assert.equal(tandem(env, ['docs', 'access', 'note:n1', '--private']).status, 0);
  assert.deepEqual(await owner.socket.timeout(5000).emitWithAck('join-note', { note_id: 'n1', auth: { token: owner.token } }), { ok: true });
  const outsider = await tab(server, 'jon');
  const denied = await outsider.socket.timeout(5000).emitWithAck('join-note', { note_id: 'n1', auth: { token: outsider.token } });
  assert.equal(denied.error.code, 'forbidden');
});

test(`${tag} presence lists who is online; heartbeat records activity`, { timeout: 60000 }, async () => {
  const k1 = await tab(server, 'kim', { name: 'Kim' });
  await tab(server, 'kim', { name: 'Kim' });
  k1.socket.emit('heartbeat', {});
  await eventually(async () => {
    const p = await http(server, 'GET', '/api/v1/presence', { token: SERVICE_KEY });
    const kim = p.body.users.find((u) => u.id === 'kim');
    return kim && kim.sessions === 2 && kim.last_active_at > 0;
  }, { message: 'presence' });
  k1.socket.disconnect();
  await eventually(async () => (await http(server, 'GET', '/api/v1/presence', { token: SERVICE_KEY })).body.users.find((u) => u.id === 'kim')?.sessions === 1);
});

test(`${tag} model usage expires 3 s after the last usage event and on disconnect`, { timeout: 60000 }, async () => {
  const l = await tab(server, 'leo');
  const m = await tab(server, 'mia');
  const models = async () => (await http(server, 'GET', '/api/v1/usage', { token: admin })).body.models;
  l.socket.emit('usage', { model: 'llama' });
  m.socket.emit('usage', { model: 'mistral' });
  await eventually(async () => JSON.stringify(await models()) === JSON.stringify(['llama', 'mistral']));
  // Keep llama alive; let mistral lapse.
  for (let i = 0; i < 5; i++) {
    await sleep(1000);
    l.socket.emit('usage', { model: 'llama' });
  }
  assert.deepEqual(await models(), ['llama']);
  l.socket.disconnect();
  await eventually(async () => (await models()).length === 0);
  const err = next(m.socket, 'error');
  m.socket.emit('usage', {});
  assert.equal((await err).code, 'invalid_payload');
});
