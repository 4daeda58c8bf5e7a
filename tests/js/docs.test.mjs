// Open WebUI's `ydoc:*` collaboration through tandem, with the official socket.io-client and
// yjs packages as clients (issue: document engine).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as Y from 'yjs';
import {
  freshEnv, startServer, mint, connect, next, ack, http, sleep, eventually, tandem, BACKEND, BUS,
} from './lib/harness.mjs';
import { NoteClient, stateText } from './lib/note-client.mjs';

const tag = `[${BACKEND}/${BUS}]`;
let env, server;
const sockets = [];

before(async () => {
  env = freshEnv();
  server = await startServer(env, { MAX_UPDATE_BYTES: '20000', MAX_DOCUMENT_BYTES: '200000' });
});

after(async () => {
  for (const s of sockets) s.disconnect();
  await server?.stop();
}, { timeout: 60000 });

async function client(srv, userId, docId, opts = {}) {
  const token = mint(env, userId, opts.name ?? userId[0].toUpperCase() + userId.slice(1), opts.role ?? 'user');
  const socket = await connect(srv, token);
  sockets.push(socket);
  return new NoteClient(socket, docId, { userId, userName: userId, ...opts });
}

test(`${tag} a new document's state is exactly [0,0] and sessions lists the joiner`, { timeout: 60000 }, async () => {
  const a = await client(server, 'alice', 'note:fresh');
  const state = await a.join();
  assert.deepEqual(state.state, [0, 0]);
  assert.ok(Array.isArray(state.state), 'state is a JSON number array');
  assert.deepEqual(state.sessions, [a.socket.id]);
  assert.equal(state.document_id, 'note:fresh');
});

test(`${tag} three clients editing concurrently converge, and a late joiner gets the merged state`, { timeout: 60000 }, async () => {
  const doc = 'note:converge';
  const [a, b, c] = [await client(server, 'alice', doc), await client(server, 'bob', doc), await client(server, 'carol', doc)];
  await a.join();
  await b.join();
  await c.join();
  for (let i = 0; i < 10; i++) {
    a.paragraph(`a${i}`);
    b.paragraph(`b${i}`);
    c.paragraph(`c${i}`);
    if (i % 3 === 0) await sleep(5);
  }
  a.type(' and more from alice');
  await eventually(() => a.text() === b.text() && b.text() === c.text() && a.fragment.length === 30, {
    message: 'convergence',
  });
  const lines = a.text().split('\n');
  for (const p of ['a', 'b', 'c']) for (let i = 0; i < 10; i++) assert.ok(lines.some((l) => l.startsWith(`${p}${i}`)));
  const late = await client(server, 'dave', doc);
  const state = await late.join();
  assert.equal(stateText(state.state), a.text());
  assert.equal(state.sessions.length, 4);
});

test(`${tag} the sender never gets its own update; others get its socket_id and verified user_id`, { timeout: 60000 }, async () => {
  const doc = 'note:echo';
  const a = await client(server, 'alice', doc, { userId: 'mallory-pretends' });
  const b = await client(server, 'bob', doc);
  await a.join();
  const joined = next(a.socket, 'ydoc:user:joined');
  await b.join();
  const j = await joined;
  assert.equal(j.user_id, 'bob');
  assert.equal(j.user_name, 'Bob');
  a.paragraph('hello');
  await eventually(() => b.text() === 'hello');
  await sleep(200);
  assert.equal(a.received.length, 0, 'no echo to the sender');
  assert.equal(b.received.length, 1);
  assert.equal(b.received[0].socket_id, a.socket.id);
  assert.equal(b.received[0].user_id, 'alice', 'the verified id, not the payload one');
  assert.ok(Array.isArray(b.received[0].update), 'a number-array sender is echoed as numbers');
});

test(`${tag} binary attachments are accepted and echoed as binary`, { timeout: 60000 }, async () => {
  const doc = 'note:binary';
  const a = await client(server, 'alice', doc, { binary: true });
  const b = await client(server, 'bob', doc);
  await a.join();
  await b.join();
  a.paragraph('bytes');
  await eventually(() => b.text() === 'bytes');
  assert.ok(!Array.isArray(b.received[0].update), 'binary in, binary out');
});

test(`${tag} an already-known update (a re-sent full state) is neither stored nor broadcast`, { timeout: 60000 }, async () => {
  const doc = 'note:resend';
  const a = await client(server, 'alice', doc);
  const b = await client(server, 'bob', doc);
  await a.join();
  await b.join();
  a.paragraph('once');
  await eventually(() => b.text() === 'once');
  const before = JSON.parse(tandem(env, ['docs', '--json']).stdout).find((d) => d.document_id === doc);
  const reply = await ack(a.socket, 'ydoc:document:update', {
    document_id: doc,
    update: Array.from(Y.encodeStateAsUpdate(a.doc)),
  });
  assert.deepEqual(reply, { ok: true });
  await sleep(200);
  assert.equal(b.received.length, 1);
  const afterDocs = JSON.parse(tandem(env, ['docs', '--json']).stdout).find((d) => d.document_id === doc);
  assert.equal(afterDocs.updates, before.updates);
});

test(`${tag} invalid, oversized and mistyped updates are refused; the document and the others are untouched`, { timeout: 60000 }, async () => {
  const doc = 'note:bad';
  const a = await client(server, 'alice', doc);
  const b = await client(server, 'bob', doc);
  await a.join();
  await b.join();
  a.paragraph('good');
  await eventually(() => b.text() === 'good');
  const garbage = [
    { update: [1, 2, 3], code: 'invalid_update' },
    { update: Array.from({ length: 200 }, (_, i) => i), code: 'invalid_update' }, // decodes, but builds on nothing
    { update: Array.from({ length: 25000 }, () => 7), code: 'too_large' },
    { update: 'not bytes', code: 'invalid_payload' },
    { update: [1, 2, 999], code: 'invalid_payload' },
    { update: { a: 1 }, code: 'invalid_payload' },
  ];
  for (const { update, code } of garbage) {
    const err = next(a.socket, 'error');
    a.socket.emit('ydoc:document:update', { document_id: doc, update });
    const e = await err;
    assert.equal(e.code, code, JSON.stringify(update).slice(0, 30));
    assert.equal(e.event, 'ydoc:document:update');
    if (code !== 'invalid_payload') assert.equal(e.document_id, doc);
  }
  // An update from a foreign document history: valid Yjs, but its deletions refer to content
  // this document never had.
  const other = new Y.Doc();
  other.getXmlFragment('prosemirror').insert(0, [new Y.XmlText('x')]);
  const sv = Y.encodeStateVector(other);
  other.getXmlFragment('prosemirror').delete(0, 1);
  const deletion = Y.encodeStateAsUpdate(other, sv);
  const err = next(a.socket, 'error');
  a.socket.emit('ydoc:document:update', { document_id: doc, update: Array.from(deletion) });
  assert.equal((await err).code, 'invalid_update');

  await sleep(200);
  assert.equal(b.received.length, 1, 'the other client saw only the good update');
  assert.equal(b.text(), 'good');
  assert.ok(a.socket.connected && b.socket.connected);
  // Editing still works for both, and a fresh joiner sees only good content.
  b.paragraph('still fine');
  await eventually(() => a.text() === 'good\nstill fine');
  const fresh = await client(server, 'carol', doc);
  assert.equal(stateText((await fresh.join()).state), 'good\nstill fine');
});

test(`${tag} a resync diff that deletes known content and its own new content in one range is accepted`, { timeout: 60000 }, async () => {
  const doc = 'note:resync';
  const a = await client(server, 'alice', doc);
  const b = await client(server, 'bob', doc);
  await a.join();
  await b.join();
  a.paragraph('Saved.');
  await eventually(() => b.text() === 'Saved.');
  // Offline (nothing sent): type 'x', then delete it and the server-known '.' before it, so
  // the delete set covers consecutive clocks the server has and clocks only this diff has.
  const serverState = Y.encodeStateVector(b.doc);
  a.socket.disconnect();
  const text = a.fragment.get(0).get(0);
  text.insert(text.length, 'x');
  text.delete(text.length - 2, 2);
  text.insert(text.length, '!');
  const diff = Y.encodeStateAsUpdate(a.doc, serverState);
  const token = mint(env, 'alice', 'Alice');
  const again = await connect(server, token);
  sockets.push(again);
  const rejoined = new NoteClient(again, doc, { userId: 'alice' });
  await rejoined.join();
  const reply = await ack(again, 'ydoc:document:update', { document_id: doc, update: Array.from(diff) });
  assert.deepEqual(reply, { ok: true });
  await eventually(() => b.text() === 'Saved!', { message: 'the offline fix reaches the others' });
});

test(`${tag} a document cannot grow past MAX_DOCUMENT_BYTES`, { timeout: 60000 }, async () => {
  const doc = 'note:big';
  const a = await client(server, 'alice', doc);
  await a.join();
  const errors = [];
  a.socket.on('error', (e) => errors.push(e));
  for (let i = 0; i < 20; i++) a.paragraph('x'.repeat(15000));
  await eventually(() => errors.some((e) => e.code === 'too_large'), { message: 'document limit error' });
  const fresh = await client(server, 'bob', doc);
  const state = await fresh.join();
  assert.ok(state.state.length <= 200000, `state ${state.state.length} bytes`);
});

test(`${tag} anonymous, unauthorized, read-only and non-member sockets can neither read nor write`, { timeout: 60000 }, async () => {
  const doc = 'note:private';
  const owner = await client(server, 'olivia', doc);
  await owner.join();
  owner.paragraph('secret');
  await sleep(100);
  assert.equal(tandem(env, ['docs', 'access', doc, '--private', '--read', 'rita']).status, 0);

  // Anonymous.
  const anon = await connect(server, undefined);
  sockets.push(anon);
  const anonClient = new NoteClient(anon, doc);
  let e = next(anon, 'error');
  anon.emit('ydoc:document:join', { document_id: doc });
  assert.equal((await e).code, 'unauthorized');
  e = next(anon, 'error');
  anon.emit('ydoc:document:update', { document_id: doc, update: [0, 0] });
  assert.equal((await e).code, 'unauthorized');
  void anonClient;

  // Signed in, not listed: cannot join, read or write.
  const mallory = await client(server, 'mallory', doc);
  e = next(mallory.socket, 'error');
  mallory.socket.emit('ydoc:document:join', { document_id: doc, user_id: 'olivia' });
  assert.equal((await e).code, 'forbidden');
  e = next(mallory.socket, 'error');
  mallory.socket.emit('ydoc:document:state', { document_id: doc });
  assert.equal((await e).code, 'forbidden');
  const forged = new Y.Doc();
  forged.getXmlFragment('prosemirror').insert(0, [new Y.XmlText('vandalism')]);
  e = next(mallory.socket, 'error');
  mallory.socket.emit('ydoc:document:update', { document_id: doc, update: Array.from(Y.encodeStateAsUpdate(forged)) });
  assert.equal((await e).code, 'forbidden');
  e = next(mallory.socket, 'error');
  mallory.socket.emit('ydoc:awareness:update', { document_id: doc, update: [123, 125] });
  assert.equal((await e).code, 'forbidden');
  // The note_ spelling names the same document and gets the same answer.
  e = next(mallory.socket, 'error');
  mallory.socket.emit('ydoc:document:join', { document_id: 'note_private' });
  assert.equal((await e).code, 'forbidden');

  // Listed as reader: can join and read, cannot write.
  const rita = await client(server, 'rita', doc);
  const state = await rita.join();
  assert.equal(stateText(state.state), 'secret');
  e = next(rita.socket, 'error');
  rita.socket.emit('ydoc:document:update', { document_id: doc, update: Array.from(Y.encodeStateAsUpdate(forged)) });
  assert.equal((await e).code, 'forbidden');

  // A member of another document cannot write here.
  const other = await client(server, 'olivia', 'note:other');
  await other.join();
  e = next(other.socket, 'error');
  other.socket.emit('ydoc:document:update', { document_id: 'note:nonmember', update: [0, 0] });
  assert.equal((await e).code, 'forbidden');

  // Admins may.
  const admin = await client(server, 'root', doc, { role: 'admin' });
  await admin.join();
  admin.paragraph('admin edit');
  await eventually(() => owner.text() === 'secret\nadmin edit');
  await sleep(100);
  assert.equal(owner.text(), 'secret\nadmin edit', 'no forged content reached the owner');
});

test(`${tag} awareness is relayed verbatim with the verified user_id and not echoed`, { timeout: 60000 }, async () => {
  const doc = 'note:aware';
  const a = await client(server, 'alice', doc);
  const b = await client(server, 'bob', doc);
  await a.join();
  await b.join();
  a.sendAwareness({ user: { name: 'Alice', color: '#fff' }, cursor: null });
  await eventually(() => b.awareness.length === 1);
  await sleep(100);
  assert.equal(a.awareness.length, 0);
  assert.equal(b.awareness[0].user_id, 'alice');
  const decoded = JSON.parse(new TextDecoder().decode(new Uint8Array(b.awareness[0].update)));
  assert.deepEqual(Object.values(decoded)[0], { user: { name: 'Alice', color: '#fff' }, cursor: null });
});

test(`${tag} leave and disconnect tell the others with ydoc:user:left`, { timeout: 60000 }, async () => {
  const doc = 'note:leave';
  const a = await client(server, 'alice', doc);
  const b = await client(server, 'bob', doc);
  const c = await client(server, 'carol', doc);
  await a.join();
  await b.join();
  await c.join();
  b.leave();
  await eventually(() => a.left.some((l) => l.user_id === 'bob'));
  // socket_id (beyond Open WebUI's shape) tells apart two tabs of one user.
  assert.equal(a.left.find((l) => l.user_id === 'bob').socket_id, b.socket.id);
  const carolSid = c.socket.id;
  c.socket.disconnect();
  await eventually(() => a.left.some((l) => l.user_id === 'carol'));
  assert.equal(a.left.find((l) => l.user_id === 'carol').socket_id, carolSid);
  // A left socket can no longer write.
  const e = next(b.socket, 'error');
  b.socket.emit('ydoc:document:update', { document_id: doc, update: [0, 0] });
  assert.equal((await e).code, 'forbidden');
});

test(`${tag} ydoc:document:state answers a member again with the current state`, { timeout: 60000 }, async () => {
  const doc = 'note:restate';
  const a = await client(server, 'alice', doc);
  await a.join();
  a.paragraph('one');
  a.paragraph('two');
  await sleep(150);
  const state = next(a.socket, 'ydoc:document:state');
  a.socket.emit('ydoc:document:state', { document_id: doc });
  assert.equal(stateText((await state).state), 'one\ntwo');
});

test(`${tag} content is saved 500 ms after the last update, only for writers; a content refresh saves too`, { timeout: 60000 }, async () => {
  const doc = 'note:content';
  const a = await client(server, 'alice', doc);
  await a.join();
  const token = mint(env, 'alice', 'Alice');
  a.paragraph('first');
  a.paragraph('second');
  const saved = await eventually(async () => {
    const r = await http(server, 'GET', `/api/v1/documents/${doc}`, { token });
    return r.body?.content?.md === 'first\nsecond' && r.body;
  }, { message: 'saved content' });
  assert.equal(saved.owner, 'alice');
  assert.equal(saved.access_control, null);
  // Content refresh: an update frame without `update`.
  a.socket.emit('ydoc:document:update', { document_id: doc, data: { content: { md: 'refreshed', html: '', json: null } } });
  await eventually(async () => (await http(server, 'GET', `/api/v1/documents/${doc}`, { token })).body.content.md === 'refreshed');
  // A read-only member's content is never saved.
  assert.equal(tandem(env, ['docs', 'access', doc, '--read', 'rita']).status, 0);
  const rita = await client(server, 'rita', doc);
  await rita.join();
  const e = next(rita.socket, 'error');
  rita.socket.emit('ydoc:document:update', { document_id: doc, data: { content: { md: 'hijack' } } });
  assert.equal((await e).code, 'forbidden');
  await sleep(700);
  assert.equal((await http(server, 'GET', `/api/v1/documents/${doc}`, { token })).body.content.md, 'refreshed');
  // Readers may read the record; others may not.
  const ritaToken = mint(env, 'rita', 'Rita');
  assert.equal((await http(server, 'GET', `/api/v1/documents/${doc}`, { token: ritaToken })).status, 200);
  const zed = mint(env, 'zed', 'Zed');
  assert.equal((await http(server, 'GET', `/api/v1/documents/${doc}`, { token: zed })).status, 403);
  assert.equal((await http(server, 'GET', `/api/v1/documents/${doc}`)).status, 401);
});

test(`${tag} the CRDT state survives the last editor leaving, a graceful restart and kill -9`, { timeout: 60000 }, async () => {
  const ownEnv = freshEnv();
  const mintOwn = (u) => mint(ownEnv, u, u);
  let srv = await startServer(ownEnv, { TANDEM_SNAPSHOT_EVERY_UPDATES: '7', TANDEM_IDLE_UNLOAD_SECS: '0.2' });
  const doc = 'note:durable';
  const open = async (s, user) => {
    const socket = await connect(s, mintOwn(user));
    sockets.push(socket);
    const c = new NoteClient(socket, doc, { userId: user });
    await c.join();
    return c;
  };
  let a = await open(srv, 'alice');
  let b = await open(srv, 'bob');
  for (let i = 0; i < 10; i++) a.paragraph(`line ${i}`);
  await eventually(() => b.fragment.length === 10);
  const expected = a.text();
  // Everyone leaves; the document is unloaded after the idle time but not cleared.
  a.leave();
  b.leave();
  a.socket.disconnect();
  b.socket.disconnect();
  const admin = mint(ownEnv, 'root', 'Root', 'admin');
  await eventually(async () => (await http(srv, 'GET', '/api/v1/stats', { token: admin })).body.live_documents === 0, {
    message: 'idle unload',
  });
  let c = await open(srv, 'carol');
  assert.equal(c.text(), expected, 'state after the last editor left');
  c.socket.disconnect();

  // Graceful restart.
  assert.equal(await srv.stop(), 0);
  srv = await startServer(ownEnv, { TANDEM_SNAPSHOT_EVERY_UPDATES: '7' });
  c = await open(srv, 'carol');
  assert.equal(c.text(), expected, 'state after a graceful restart');

  // kill -9 right after updates were broadcast.
  const d = await open(srv, 'dave');
  for (let i = 0; i < 5; i++) c.paragraph(`after ${i}`);
  await eventually(() => d.fragment.length === 15);
  const seen = d.text();
  await srv.kill();
  srv = await startServer(ownEnv);
  const e = await open(srv, 'erin');
  assert.equal(e.text(), seen, 'everything a client saw survived kill -9');
  await srv.stop();
});
