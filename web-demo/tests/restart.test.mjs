// The page keeps working across a server restart on the same port: edits made while the
// server is down are sent once it is back, without duplicating anything.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  freshEnv, freePort, startServer, launchBrowser, openEditor, editorText, typeAtEnd, eventually, waitSynced,
} from './lib/harness.mjs';

let server, browser;
before(async () => {
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
  await server?.stop();
});

const count = (text, part) => text.split(part).length - 1;

async function converged(pages, parts) {
  await eventually(async () => {
    const texts = await Promise.all(pages.map(editorText));
    const ok = texts.every((t) => t === texts[0]) && parts.every((p) => count(texts[0], p) === 1);
    if (!ok) throw new Error(JSON.stringify(texts));
    return true;
  }, { timeout: 20000, message: 'both windows converge without duplicates' });
  return editorText(pages[0]);
}

test('edits survive a server restart on the same port and converge without duplicates', async () => {
  const env = freshEnv();
  const port = await freePort();
  server = await startServer(env, { port });
  const doc = 'restart';
  const alice = await openEditor(browser, server, doc, 'Alice');
  const bob = await openEditor(browser, server, doc, 'Bob');

  await typeAtEnd(alice, 'Before the restart.');
  await converged([alice, bob], ['Before the restart.']);

  assert.equal(await server.stop(), 0);
  for (const page of [alice, bob]) await page.waitForSelector('body[data-connection="offline"]', { state: 'attached', timeout: 10000 });

  // Both edit while the server is down.
  await typeAtEnd(alice, ' Alice offline.');
  await typeAtEnd(bob, '');
  await bob.keyboard.press('Enter');
  await bob.keyboard.type('Bob offline.', { delay: 15 });

  server = await startServer(env, { port });
  assert.equal(server.url, `http://127.0.0.1:${port}`);
  for (const page of [alice, bob]) await waitSynced(page, 20000);
  await typeAtEnd(bob, ' Bob after.');
  // Alice appends below Bob's paragraph once she has it.
  await eventually(async () => (await editorText(alice)).includes('Bob after.'), { message: 'Bob\'s edits reach Alice' });
  await typeAtEnd(alice, '');
  await alice.keyboard.press('Enter');
  await alice.keyboard.type('Alice after.', { delay: 15 });

  const parts = ['Before the restart.', 'Alice offline.', 'Bob offline.', 'Bob after.', 'Alice after.'];
  const text = await converged([alice, bob], parts);
  assert.equal(text, 'Before the restart. Alice offline.\nBob offline. Bob after.\nAlice after.');

  // A fresh window gets the same document from the server.
  const carol = await openEditor(browser, server, doc, 'Carol');
  assert.equal(await editorText(carol), text);
  for (const page of [alice, bob, carol]) assert.deepEqual(page.problems.filter((p) => !p.includes('WebSocket')), []);
  for (const page of [alice, bob, carol]) await page.context().close();
});

// The resync difference here deletes, in one range, content the server has and content the
// same update creates: a valid Yjs update the server must accept.
test('an offline typo fix (deleting offline text and the text before it) reaches the server after a restart', async () => {
  await server?.stop();
  const env = freshEnv();
  const port = await freePort();
  server = await startServer(env, { port });
  const doc = 'offline-typo';
  const alice = await openEditor(browser, server, doc, 'Alice');
  const bob = await openEditor(browser, server, doc, 'Bob');
  await typeAtEnd(alice, 'Saved text.');
  await converged([alice, bob], ['Saved text.']);

  assert.equal(await server.stop(), 0);
  await alice.waitForSelector('body[data-connection="offline"]', { state: 'attached', timeout: 10000 });
  // Offline: type a character, then delete it and the server-known '.' before it. The
  // difference sent after reconnecting deletes, in one range, content the server has and
  // content the same update creates: a valid Yjs update.
  await typeAtEnd(alice, 'x');
  await alice.keyboard.press('Backspace');
  await alice.keyboard.press('Backspace');
  await alice.keyboard.type('! Fixed offline.', { delay: 15 });

  server = await startServer(env, { port });
  for (const page of [alice, bob]) await waitSynced(page, 20000);
  const text = await converged([alice, bob], ['Saved text!', 'Fixed offline.']);
  assert.equal(text, 'Saved text! Fixed offline.');
  const carol = await openEditor(browser, server, doc, 'Carol');
  assert.equal(await editorText(carol), text, 'the server has the offline edits');
  assert.deepEqual(alice.problems.filter((p) => !p.includes('WebSocket')), []);
  for (const page of [alice, bob, carol]) await page.context().close();
});
