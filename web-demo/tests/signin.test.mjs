// Signing in: the form at / (demo sign-in), and pasting a token when demo sign-in is off.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { freshEnv, startServer, launchBrowser, waitSynced, typeAtEnd, waitForText, BIN } from './lib/harness.mjs';

const servers = [];
let browser;
after(async () => {
  await browser?.close();
  for (const s of servers) await s.stop();
});

test('the sign-in form at / opens the chosen document as the chosen user', async () => {
  const server = await startServer(freshEnv());
  servers.push(server);
  browser ??= await launchBrowser();
  const page = await (await browser.newContext()).newPage();
  await page.goto(`${server.url}/`);
  await page.getByLabel('Your name').fill('Erin');
  const doc = page.getByLabel('Document');
  assert.equal(await doc.inputValue(), 'welcome', 'the document defaults to "welcome"');
  await doc.fill('notes from the form');
  await page.getByRole('button', { name: 'Open document' }).click();
  await page.waitForURL(/\?doc=notes\+from\+the\+form&name=Erin/);
  await waitSynced(page);
  assert.match(await page.getByTestId('presence-list').innerText(), /Erin/);
  await typeAtEnd(page, 'typed after signing in');
  await waitForText([page], 'typed after signing in');
  await page.context().close();
});

test('with demo sign-in off, the page asks for a token and works with a pasted one', async () => {
  const env = { ...freshEnv(), WEBUI_SECRET_KEY: `web-demo-test-${randomUUID()}`, TANDEM_DEMO_SIGNIN: 'false' };
  const server = await startServer(env);
  servers.push(server);
  browser ??= await launchBrowser();
  const res = await fetch(`${server.url}/api/v1/demo/signin`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'Zed' }),
  });
  assert.equal(res.status, 404, 'demo sign-in is off');

  const token = execFileSync(BIN, ['token', '--user-id', 'zed', '--name', 'Zed'], { env: { ...process.env, ...env }, encoding: 'utf8' }).trim();
  const page = await (await browser.newContext()).newPage();
  await page.goto(`${server.url}/?doc=pasted&name=Zed`);
  await page.getByLabel('Token').fill('not-a-token');
  await page.getByRole('button', { name: 'Open document' }).click();
  await page.getByText('The token was refused').waitFor();
  await page.getByLabel('Token').fill(token);
  await page.getByRole('button', { name: 'Open document' }).click();
  await waitSynced(page);
  assert.match(await page.getByTestId('presence-list').innerText(), /Zed/);
  await typeAtEnd(page, 'with a pasted token');
  // Another window of the same user, signed in the same way, sees the text.
  const other = await page.context().newPage();
  await other.goto(`${server.url}/?doc=pasted`);
  await waitSynced(other);
  await waitForText([page, other], 'with a pasted token');
  await page.context().close();
});
