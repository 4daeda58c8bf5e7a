// The side panel: channel chat with typing indicators, the assistant, and version history.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  freshEnv, startServer, launchBrowser, openEditor, typeAtEnd, eventually, waitForText, screenshotSideBySide, WEB_DEMO,
} from './lib/harness.mjs';

let server, browser, alice, bob;
before(async () => {
  server = await startServer(freshEnv());
  browser = await launchBrowser();
  alice = await openEditor(browser, server, 'panes', 'Alice');
  bob = await openEditor(browser, server, 'panes', 'Bob');
});
after(async () => {
  await browser?.close();
  await server?.stop();
});

test('typing in the chat shows "Bob is typing…" in the other window, and messages reach everyone', async () => {
  const input = bob.getByTestId('chat-input');
  await input.click();
  await input.pressSequentially('Hi Alice', { delay: 30 });
  await eventually(async () => (await alice.getByTestId('typing-indicator').innerText()).includes('Bob is typing'), {
    message: 'typing indicator in Alice\'s window',
  });
  assert.equal(await bob.getByTestId('typing-indicator').innerText(), '', 'no indicator for one\'s own typing');
  await input.press('Enter');
  for (const page of [alice, bob]) {
    await eventually(async () => (await page.getByTestId('chat-messages').innerText()).includes('Hi Alice'), {
      message: 'the message in both windows',
    });
  }
  // The indicator goes away (on the message, or ~3 s after the last typing event).
  await eventually(async () => (await alice.getByTestId('typing-indicator').innerText()) === '', {
    timeout: 6000, message: 'typing indicator cleared',
  });
});

test('the assistant streams an answer into the assistant pane', async () => {
  await alice.getByTestId('tab-assistant').click();
  await alice.getByTestId('assistant-input').fill('Write one sentence about collaborative editing.');
  await alice.getByTestId('assistant-send').click();
  const output = alice.getByTestId('assistant-output');
  await eventually(async () => (await output.getAttribute('data-state')) === 'done', {
    timeout: 30000, message: 'the answer ends',
  });
  const answer = (await output.innerText()).trim();
  assert.ok(answer.length > 0, 'a non-empty answer');
});

test('restoring a saved version in one window updates the other', async () => {
  await typeAtEnd(alice, 'Version one.');
  await waitForText([alice, bob], 'Version one.');

  await alice.getByTestId('tab-history').click();
  await alice.getByTestId('version-label').fill('checkpoint');
  await alice.getByTestId('save-version').click();
  const saved = alice.getByTestId('history-list').locator('li', { hasText: 'checkpoint' });
  await saved.waitFor({ timeout: 10000 });

  await typeAtEnd(alice, ' Then more text.');
  await waitForText([alice, bob], 'Version one. Then more text.');
  await typeAtEnd(bob, '');
  await bob.keyboard.press('Enter');
  await bob.keyboard.type('And a line from Bob.', { delay: 15 });
  await waitForText([alice, bob], 'Version one. Then more text.\nAnd a line from Bob.');

  await bob.getByTestId('tab-history').click();
  const restore = bob.getByTestId('history-list').locator('li', { hasText: 'checkpoint' }).getByTestId('restore-button');
  await restore.click();
  await waitForText([alice, bob], 'Version one.', { message: 'the saved text back in both windows' });
  // The restore is itself a new version; the list shows it after a refresh.
  await eventually(async () => (await bob.getByTestId('restore-button').count()) >= 2, { message: 'history lists the restore' });

  // Editing goes on normally after the restore.
  await typeAtEnd(bob, ' Edited after restore.');
  await waitForText([alice, bob], 'Version one. Edited after restore.', { message: 'edits after the restore' });
  await screenshotSideBySide(browser, [alice, bob], 'history-restore');
  assert.deepEqual([...alice.problems, ...bob.problems], []);
});

test('screenshot: editor, cursors, presence, chat and assistant side by side', async () => {
  await bob.getByTestId('tab-chat').click();
  await alice.getByTestId('tab-assistant').click();
  await alice.locator('.ProseMirror').click();
  await alice.keyboard.press('Control+End');
  await bob.locator('.ProseMirror').click();
  await bob.keyboard.press('Control+Home');
  await eventually(async () => (await alice.locator('.ProseMirror-yjs-cursor', { hasText: 'Bob' }).count()) === 1
    && (await bob.locator('.ProseMirror-yjs-cursor', { hasText: 'Alice' }).count()) === 1, { message: 'both cursors' });
  const file = await screenshotSideBySide(browser, [alice, bob], 'side-panel');
  // The README's picture; refreshed on request only, so test runs leave the tree clean.
  if (process.env.WEB_DEMO_UPDATE_SCREENSHOT) copyFileSync(file, join(WEB_DEMO, 'screenshot.png'));
});
