// Document history from the CLI and the HTTP API while people edit (issue: history).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { freshEnv, startServer, mint, connect, eventually, sleep, tandem, http, BACKEND, BUS } from './lib/harness.mjs';
import { NoteClient, stateText } from './lib/note-client.mjs';

const tag = `[${BACKEND}/${BUS}]`;
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

function cli(env, args) {
  const r = tandem(env, args);
  return { ...r, json: () => JSON.parse(r.stdout) };
}

test(`${tag} compaction while clients write concurrently loses nothing`, { timeout: 120000 }, async () => {
  const env = freshEnv();
  const srv = await startServer(env, { TANDEM_SNAPSHOT_EVERY_UPDATES: '40' });
  servers.push(srv);
  const doc = 'note:compact';
  const writers = [await open(env, srv, 'alice', doc), await open(env, srv, 'bob', doc), await open(env, srv, 'carol', doc)];
  writers.forEach((w, i) => w.paragraph(`w${i}:`));
  await sleep(200);
  let writing = true;
  const typing = writers.map(async (w, i) => {
    let n = 0;
    while (writing) {
      w.type(String.fromCharCode(97 + ((n + i) % 26)));
      n += 1;
      await sleep(3 + i);
    }
    return n;
  });
  const reports = [];
  for (let round = 0; round < 6; round++) {
    await sleep(150);
    const r = cli(env, round % 2 ? ['compact', '--all', '--keep-versions', '2', '--json'] : ['compact', doc, '--keep-versions', '2', '--json']);
    assert.equal(r.status, 0, r.stderr);
    reports.push(r.json());
  }
  writing = false;
  const typed = await Promise.all(typing);
  assert.ok(typed.every((n) => n > 20), `each writer typed: ${typed}`);
  // The replica: a client that saw every update.
  await eventually(() => writers.every((w) => w.text() === writers[0].text()), { message: 'writers converge' });
  const replica = writers[0].text();
  for (const [i, w] of writers.entries()) assert.ok(w.text().includes(`w${i}:`));
  assert.ok(reports.every((r) => r.rows_after <= r.rows_before), JSON.stringify(reports));
  // The server's state, a fresh join and the database all hold exactly the replica.
  const fresh = await open(env, srv, 'dave', doc);
  assert.equal(fresh.text(), replica);
  await sleep(300);
  const exported = cli(env, ['export', doc, '--format', 'text']);
  assert.equal(exported.status, 0, exported.stderr);
  assert.equal(exported.stdout, `${replica}\n`);
  const history = cli(env, ['history', doc, '--json']).json();
  assert.ok(history.versions.length <= 3, `versions kept: ${history.versions.length}`);
  // And after a restart.
  assert.equal(await srv.stop(), 0);
  const again = await startServer(env);
  servers.push(again);
  assert.equal((await open(env, again, 'erin', doc)).text(), replica);
});

test(`${tag} restore through the server: connected clients converge without duplicates and keep editing`, { timeout: 120000 }, async () => {
  const env = freshEnv();
  const srv = await startServer(env);
  servers.push(srv);
  const admin = mint(env, 'root', 'Root', 'admin');
  const doc = 'note:restore';
  const a = await open(env, srv, 'alice', doc);
  const b = await open(env, srv, 'bob', doc);
  a.paragraph('version one');
  await eventually(() => b.text() === 'version one');
  await sleep(100);
  const v1 = cli(env, ['snapshot', doc, '--label', 'first draft']);
  assert.equal(v1.status, 0, v1.stderr);
  const version = v1.json().version;
  a.paragraph('second line');
  b.paragraph('bob was here');
  b.type(' too');
  await eventually(() => a.fragment.length === 3 && a.text() === b.text());
  await sleep(100);

  const restored = cli(env, ['restore', doc, '--version', String(version), '--json', '--server', srv.url, '--token', admin]);
  assert.equal(restored.status, 0, restored.stderr);
  const result = restored.json();
  assert.equal(result.document_id, doc);
  assert.equal(result.restored_version, version);
  assert.ok(result.new_version > version);
  await eventually(() => a.text() === 'version one' && b.text() === 'version one', { message: 'both converge to the version' });
  assert.equal(a.fragment.length, 1, 'no duplicated content');

  b.paragraph('after restore');
  a.type('!');
  await eventually(() => a.text() === b.text() && a.text().includes('after restore'));
  const expected = a.text();
  assert.equal(expected.split('\n').filter((l) => l.startsWith('version one')).length, 1);

  // The restore is itself a version, so it can be undone by restoring the one before it.
  const history = cli(env, ['history', doc, '--json']).json();
  const restoreVersion = history.versions.find((v) => v.version === result.new_version);
  assert.equal(restoreVersion.kind, 'restore');

  // Restore by time over HTTP as the document's writer (the web demo's history panel does).
  const at = new Date(Date.now() + 1000).toISOString();
  const token = mint(env, 'alice', 'alice');
  const viaHttp = await http(srv, 'POST', `/api/v1/documents/${doc}/restore`, { token, body: { at } });
  assert.equal(viaHttp.status, 200, JSON.stringify(viaHttp.body));
  assert.equal(viaHttp.body.restored_version, result.new_version);
  await eventually(() => a.text() === 'version one' && b.text() === 'version one');

  // Restarting keeps the restored content.
  b.paragraph('final');
  await eventually(() => a.text() === 'version one\nfinal');
  assert.equal(await srv.stop(), 0);
  const again = await startServer(env);
  servers.push(again);
  assert.equal((await open(env, again, 'carol', doc)).text(), 'version one\nfinal');
});

test(`${tag} restore on the database of a stopped server`, { timeout: 60000 }, async () => {
  const env = freshEnv();
  let srv = await startServer(env);
  const doc = 'offline';
  const a = await open(env, srv, 'alice', doc);
  a.paragraph('keep me');
  await sleep(150);
  const v = cli(env, ['snapshot', doc]).json().version;
  a.paragraph('drop me');
  await sleep(150);
  a.socket.disconnect();
  assert.equal(await srv.stop(), 0);
  const dry = cli(env, ['restore', doc, '--version', String(v), '--dry-run', '--json']);
  assert.equal(dry.status, 0, dry.stderr);
  assert.equal(dry.json().new_version, null);
  assert.equal(cli(env, ['export', doc, '--format', 'text']).stdout, 'keep me\ndrop me\n', 'dry run changed nothing');
  const r = cli(env, ['restore', doc, '--version', String(v), '--json']);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(cli(env, ['export', doc, '--format', 'text']).stdout, 'keep me\n');
  srv = await startServer(env);
  servers.push(srv);
  assert.equal((await open(env, srv, 'bob', doc)).text(), 'keep me');
});

test(`${tag} export and import round-trip in every format`, { timeout: 60000 }, async () => {
  const env = freshEnv();
  const srv = await startServer(env);
  servers.push(srv);
  const a = await open(env, srv, 'alice', 'source');
  a.paragraph('Hello');
  a.paragraph('world & <friends>');
  await sleep(200);
  const dir = env.DATA_DIR;
  const admin = mint(env, 'root', 'Root', 'admin');
  for (const format of ['ybin', 'json', 'text', 'html']) {
    const file = join(dir, `export.${format === 'text' ? 'txt' : format}`);
    const out = cli(env, ['export', 'source', '--output', file]);
    assert.equal(out.status, 0, out.stderr);
    // Into a new document, directly on the database.
    const imported = cli(env, ['import', `copy-${format}`, file]);
    assert.equal(imported.status, 0, `${format}: ${imported.stderr}`);
    assert.equal(cli(env, ['export', `copy-${format}`, '--format', 'text']).stdout, 'Hello\nworld & <friends>\n', format);
    // Through the server into a document someone has open: refused without --replace…
    const target = await open(env, srv, 'bob', `live-${format}`);
    target.paragraph('old');
    await sleep(150);
    const refused = cli(env, ['import', `live-${format}`, file, '--server', srv.url, '--token', admin]);
    assert.notEqual(refused.status, 0);
    assert.match(refused.stderr, /not empty/);
    // …and replacing with it, the open client sees the imported content at once.
    const replaced = cli(env, ['import', `live-${format}`, file, '--replace', '--server', srv.url, '--token', admin]);
    assert.equal(replaced.status, 0, replaced.stderr);
    await eventually(() => target.text() === 'Hello\nworld & <friends>', { message: `${format} replace` });
  }
  const html = readFileSync(join(dir, 'export.html'), 'utf8');
  assert.equal(html, '<p>Hello</p><p>world &amp; &lt;friends&gt;</p>');
  const json = JSON.parse(readFileSync(join(dir, 'export.json'), 'utf8'));
  assert.equal(json.prosemirror.type, 'xml_fragment');
  // A version exports too, over HTTP.
  const version = cli(env, ['snapshot', 'source']).json().version;
  const token = mint(env, 'alice', 'alice');
  const res = await http(srv, 'GET', `/api/v1/documents/source/export?format=text&version=${version}`, { token });
  assert.equal(res.status, 200);
  assert.equal(res.body, 'Hello\nworld & <friends>\n');
  const ybin = await fetch(`${srv.url}/api/v1/documents/source/export`, { headers: { authorization: `Bearer ${token}` } });
  assert.equal(stateText(new Uint8Array(await ybin.arrayBuffer())), 'Hello\nworld & <friends>');
});

test(`${tag} bad input to the history commands: clear message, non-zero exit, nothing changed`, { timeout: 60000 }, async () => {
  const env = freshEnv();
  const srv = await startServer(env);
  servers.push(srv);
  const a = await open(env, srv, 'alice', 'doc');
  a.paragraph('content');
  await sleep(200);
  const v = cli(env, ['snapshot', 'doc']).json().version;
  const before = cli(env, ['history', 'doc', '--json']).json();
  const garbage = join(env.DATA_DIR, 'garbage.ybin');
  writeFileSync(garbage, Buffer.from([1, 2, 3, 250, 7]));
  const badJson = join(env.DATA_DIR, 'bad.json');
  writeFileSync(badJson, '{"prosemirror": {"type": "nope"}}');
  const cases = [
    [['history', 'missing'], /document missing not found/],
    [['export', 'missing'], /document missing not found/],
    [['restore', 'missing', '--version', '1'], /not found/],
    [['restore', 'doc', '--version', '999'], /version 999 of document doc not found/],
    [['restore', 'doc', '--at', 'yesterday'], /invalid --at "yesterday"/],
    [['restore', 'doc', '--at', '1999-01-01T00:00:00Z'], /at or before that time not found/],
    [['restore', 'doc'], /--version|--at/],
    [['restore', 'doc', '--version', String(v), '--server', srv.url], /needs --token/],
    [['restore', 'doc', '--version', String(v), '--server', srv.url, '--token', 'forged'], /401|unauthorized/],
    [['export', 'doc', '--version', '42'], /version 42 of document doc not found/],
    [['import', 'doc', garbage], /not a valid Ybin document/],
    [['import', 'doc', badJson], /not a valid Json document/],
    [['import', 'doc', join(env.DATA_DIR, 'nope.json')], /reading/],
    [['import', 'doc', join(env.DATA_DIR, 'file.unknown')], /cannot tell the format/],
    [['import', 'doc', garbage, '--format', 'ybin', '--replace'], /not a valid/],
    [['compact'], /required/],
  ];
  for (const [args, pattern] of cases) {
    const r = cli(env, args);
    assert.notEqual(r.status, 0, `${args.join(' ')} should fail`);
    assert.match(r.stderr, pattern, `${args.join(' ')}: ${r.stderr}`);
  }
  // Importing into a non-empty document without --replace is refused.
  const text = join(env.DATA_DIR, 'x.txt');
  writeFileSync(text, 'x\n');
  const refused = cli(env, ['import', 'doc', text]);
  assert.notEqual(refused.status, 0);
  assert.match(refused.stderr, /not empty/);
  const afterHistory = cli(env, ['history', 'doc', '--json']).json();
  assert.deepEqual(afterHistory, before, 'nothing changed');
  assert.equal(a.text(), 'content');
  // The HTTP API refuses bad input the same way.
  const token = mint(env, 'alice', 'alice');
  const outsider = mint(env, 'zed', 'zed');
  assert.equal((await http(srv, 'POST', '/api/v1/documents/doc/restore', { token, body: { version: 999 } })).status, 404);
  assert.equal((await http(srv, 'POST', '/api/v1/documents/doc/restore', { token, body: { at: 'soon' } })).status, 422);
  assert.equal((await http(srv, 'POST', '/api/v1/documents/doc/restore', { token, raw: '{nope' })).status, 400);
  assert.equal((await http(srv, 'POST', '/api/v1/documents/doc/restore', { token, body: {} })).status, 422);
  assert.equal((await http(srv, 'GET', '/api/v1/documents/missing/history', { token })).status, 404);
  assert.equal((await http(srv, 'POST', '/api/v1/documents/doc/compact', { token, body: {} })).status, 403);
  assert.equal(tandem(env, ['docs', 'access', 'doc', '--private']).status, 0);
  assert.equal((await http(srv, 'GET', '/api/v1/documents/doc/history', { token: outsider })).status, 403);
  assert.equal((await http(srv, 'POST', '/api/v1/documents/doc/snapshot', { token: outsider })).status, 403);
});
