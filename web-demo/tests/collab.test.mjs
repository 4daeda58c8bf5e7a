// Two users editing one document in two browser windows: text, remote cursors, presence.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  freshEnv, startServer, launchBrowser, openEditor, editorText, typeAtEnd, eventually, waitForText, screenshotSideBySide,
} from './lib/harness.mjs';

let server, browser;
before(async () => {
  server = await startServer(freshEnv());
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
  await server?.stop();
});

test('the server serves the page at /', async () => {
  const res = await fetch(`${server.url}/`);
  assert.equal(res.status, 200, 'GET / serves web-demo/dist/index.html');
  const html = await res.text();
  assert.match(html, /app\.js/);
  for (const asset of ['app.js', 'app.css']) {
    const r = await fetch(`${server.url}/${asset}`);
    assert.equal(r.status, 200, `GET /${asset}`);
  }
});

test('two users type into one document and see the same text, each other\'s cursor and presence', async () => {
  const doc = 'welcome';
  const alice = await openEditor(browser, server, doc, 'Alice');
  const bob = await openEditor(browser, server, doc, 'Bob');

  await typeAtEnd(alice, 'Hello from Alice.');
  await waitForText([alice, bob], 'Hello from Alice.', { message: 'Bob sees Alice\'s text' });
  await typeAtEnd(bob, '');
  await bob.keyboard.press('Enter');
  await bob.keyboard.type('And hello from Bob!', { delay: 15 });
  await waitForText([alice, bob], 'Hello from Alice.\nAnd hello from Bob!', { message: 'both windows converge' });

  // Bob's cursor, labelled with his name, in Alice's window (and the other way round).
  await alice.locator('.ProseMirror').click();
  await alice.keyboard.press('Control+End');
  await eventually(async () => (await alice.locator('.ProseMirror-yjs-cursor', { hasText: 'Bob' }).count()) === 1, {
    message: 'Bob\'s cursor in Alice\'s window',
  });
  await eventually(async () => (await bob.locator('.ProseMirror-yjs-cursor', { hasText: 'Alice' }).count()) === 1, {
    message: 'Alice\'s cursor in Bob\'s window',
  });
  assert.equal(await alice.locator('.ProseMirror-yjs-cursor', { hasText: 'Alice' }).count(), 0, 'no cursor for oneself');

  // Presence lists both, with names.
  for (const page of [alice, bob]) {
    await eventually(async () => {
      const text = await page.getByTestId('presence-list').innerText();
      return text.includes('Alice') && text.includes('Bob');
    }, { message: 'presence list shows both users' });
  }

  await screenshotSideBySide(browser, [alice, bob], 'two-users');

  // Bob leaves: his cursor and his presence disappear from Alice's window.
  await bob.context().close();
  await eventually(async () => !(await alice.getByTestId('presence-list').innerText()).includes('Bob'), {
    message: 'Bob gone from presence',
  });
  assert.equal(await alice.locator('.ProseMirror-yjs-cursor', { hasText: 'Bob' }).count(), 0);
  assert.deepEqual(alice.problems, []);
  await alice.context().close();
});

test('a document is opened or created by name from the picker', async () => {
  const page = await openEditor(browser, server, 'welcome', 'Carol');
  const input = page.getByTestId('doc-input');
  await input.fill('Project plan / Q3');
  await input.press('Enter');
  await page.waitForURL(/doc=Project\+plan/);
  await page.waitForSelector('body[data-sync="synced"]');
  assert.equal(await editorText(page), '');
  await typeAtEnd(page, 'Milestones');
  const other = await openEditor(browser, server, 'Project plan / Q3', 'Dave');
  await waitForText([page, other], 'Milestones', { message: 'the named document is shared' });
  await page.context().close();
  await other.context().close();
});
