// Two tandem instances sharing one database and one Redis: documents edited on both converge,
// and `sessions` is cluster-wide (issue: document engine, weakness 13).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { freshEnv, startServer, mint, connect, eventually, sleep, next, http, BACKEND } from './lib/harness.mjs';
import { NoteClient, stateText } from './lib/note-client.mjs';

const servers = [];
const sockets = [];
after(async () => {
  for (const s of sockets) s.disconnect();
  for (const s of servers) await s.stop();
}, { timeout: 60000 });

async function open(env, srv, user, doc) {
  const socket = await connect(srv, mint(env, user, user));
  sockets.push(socket);
  const c = new NoteClient(socket, doc, { userId: user });
  await c.join();
  return c;
}

test(`[${BACKEND}/redis] editors on two instances converge, and sessions spans the cluster`, { timeout: 60000 }, async () => {
  const env = freshEnv(BACKEND, 'redis');
  const a = await startServer(env);
  const b = await startServer(env);
  servers.push(a, b);
  const doc = 'note:cluster';
  const alice = await open(env, a, 'alice', doc);
  const bob = await open(env, b, 'bob', doc);
  assert.deepEqual([...bob.sessions].sort(), [alice.socket.id, bob.socket.id].sort(), 'sessions lists both instances');
  const carol = await open(env, b, 'carol', doc);
  for (let i = 0; i < 20; i++) {
    alice.paragraph(`a${i}`);
    bob.paragraph(`b${i}`);
    if (i % 5 === 0) await sleep(10);
  }
  carol.type('!');
  await eventually(() => alice.text() === bob.text() && bob.text() === carol.text() && alice.fragment.length === 40, {
    message: 'cross-instance convergence',
    timeout: 10000,
  });
  // Each instance's live copy has everything: a late joiner on either sees the same state.
  const late1 = await open(env, a, 'dave', doc);
  const late2 = await open(env, b, 'erin', doc);
  assert.equal(late1.text(), alice.text());
  assert.equal(late2.text(), alice.text());
  // The sender's own instance never echoes; the other instance delivers with the sender's id.
  const fromAlice = bob.received.filter((u) => u.socket_id === alice.socket.id);
  assert.ok(fromAlice.length > 0);
  assert.ok(fromAlice.every((u) => u.user_id === 'alice'));
  assert.equal(alice.received.filter((u) => u.socket_id === alice.socket.id).length, 0);
});

test(`[${BACKEND}/redis] a crashed instance's sessions leave the document's sessions once its heartbeat expires`, { timeout: 60000 }, async () => {
  const env = { ...freshEnv(BACKEND, 'redis'), TANDEM_INSTANCE_TTL_SECS: '3' };
  const a = await startServer(env);
  const b = await startServer(env);
  servers.push(a);
  const doc = 'note:zombie';
  const alice = await open(env, a, 'alice', doc);
  const bob = await open(env, b, 'bob', doc);
  await b.kill();
  await eventually(async () => {
    const probe = await open(env, a, `probe${Date.now()}`, doc);
    probe.socket.disconnect();
    return !probe.sessions.includes(bob.socket.id) && probe.sessions.includes(alice.socket.id);
  }, { timeout: 10000, interval: 500, message: 'zombie session cleanup' });
});

test(`[${BACKEND}/redis] chat events, calls, channel typing and usage work across instances`, { timeout: 60000 }, async () => {
  const env = { ...freshEnv(BACKEND, 'redis'), TANDEM_SERVICE_KEY: 'svc' };
  const a = await startServer(env);
  const b = await startServer(env);
  servers.push(a, b);
  const token = mint(env, 'alice', 'Alice');
  const onB = await connect(b, token);
  sockets.push(onB);
  await onB.timeout(5000).emitWithAck('user-join', { auth: { token } });
  onB.on('events', (payload, callback) => callback?.({ answered: payload.data.type }));
  const got = next(onB, 'events');
  // Emitted on A, delivered to the tab on B.
  const emit = await http(a, 'POST', '/api/v1/events/emit', {
    token: 'svc',
    body: { user_id: 'alice', chat_id: 'c', message_id: 'm', data: { type: 'status', data: { description: 'x' } } },
  });
  assert.equal(emit.status, 200);
  assert.equal((await got).data.type, 'status');
  // A call made on A reaches the session on B and returns its ack.
  const call = await http(a, 'POST', '/api/v1/events/call', {
    token: 'svc',
    body: { session_id: onB.id, user_id: 'alice', chat_id: 'c', message_id: 'm', data: { type: 'confirmation', data: {} } },
  });
  assert.equal(call.status, 200, JSON.stringify(call.body));
  assert.deepEqual(call.body.result, { answered: 'confirmation' });
  // Channel typing from A reaches a member on B.
  const channel = (await http(a, 'POST', '/api/v1/channels', { token: 'svc', body: { name: 'x', member_ids: ['alice', 'bob'] } })).body.id;
  const bobToken = mint(env, 'bob', 'Bob');
  const bobOnA = await connect(a, bobToken);
  sockets.push(bobOnA);
  await bobOnA.timeout(5000).emitWithAck('user-join', { auth: { token: bobToken } });
  const typing = next(onB, 'events:channel');
  bobOnA.emit('events:channel', { channel_id: channel, message_id: null, data: { type: 'typing', data: { typing: true } } });
  assert.equal((await typing).user.id, 'bob');
  // Usage reported on B is visible on A, and swept by whichever instance leads.
  onB.emit('usage', { model: 'llama' });
  await eventually(async () => (await http(a, 'GET', '/api/v1/usage', { token: 'svc' })).body.models.includes('llama'));
  await eventually(async () => (await http(a, 'GET', '/api/v1/usage', { token: 'svc' })).body.models.length === 0, { timeout: 10000 });
  const presence = await http(a, 'GET', '/api/v1/presence', { token: 'svc' });
  assert.deepEqual(presence.body.users.map((u) => u.id).sort(), ['alice', 'bob']);
});
