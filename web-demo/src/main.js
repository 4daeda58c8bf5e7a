// Entry point: sign in (demo sign-in or a pasted token), then wire the editor, sync,
// awareness, presence and the side panes together.

import { demoSignin, Api } from './api.js';
import { Connection } from './connection.js';
import { DocSync } from './sync.js';
import { AwarenessBridge } from './awareness.js';
import { Presence } from './presence.js';
import { createEditor } from './editor.js';
import { ChatPane } from './chat.js';
import { AssistantPane } from './assistant.js';
import { HistoryPane } from './history.js';
import { signinScreen, tokenScreen, header, tabs, rememberDoc } from './ui.js';
import { h, colorFor } from './util.js';

const root = document.getElementById('app');

async function boot() {
  const params = new URLSearchParams(location.search);
  const doc = params.get('doc')?.trim();
  const name = params.get('name')?.trim();

  if (doc && name) {
    let session;
    try {
      session = await demoSignin(name);
    } catch (e) {
      root.replaceChildren(signinScreen({ name, doc, error: `Sign-in failed: ${e.message}` }));
      return;
    }
    if (!session) {
      root.replaceChildren(tokenScreen({ doc }));
      return;
    }
    localStorage.removeItem('tandem-token');
    return start(doc, session);
  }
  const token = localStorage.getItem('tandem-token');
  if (doc && token) return start(doc, { token, user: null, channel_id: null });
  root.replaceChildren(signinScreen({ name: name ?? '', doc: doc || 'welcome' }));
}

/// Resolves to `{id, name}` once the first `user-join` is answered (pasted tokens); rejects
/// when the server refuses the token.
function whenUser(conn) {
  return new Promise((resolve, reject) => {
    const check = () => {
      if (conn.user) resolve(conn.user);
      else if (conn.userError) reject(new Error(conn.userError));
      else setTimeout(check, 50);
    };
    check();
  });
}

async function start(documentId, session) {
  rememberDoc(documentId);
  document.title = `${documentId} · tandem`;
  const errors = [];
  let status = null;
  const onError = (e) => (status ? status.error(e) : errors.push(e));
  let connection = ['connecting', 'Connecting…'];
  const conn = new Connection(session.token, {
    onStatus: (state, text) => {
      connection = [state, text];
      status?.setConnection(state, text);
    },
    onError,
  });
  const api = new Api(session.token);
  if (!session.user) root.replaceChildren(h('p.boot', 'Signing in…'));
  let user = session.user;
  if (!user) {
    try {
      user = await whenUser(conn);
    } catch (e) {
      conn.socket.disconnect();
      localStorage.removeItem('tandem-token');
      root.replaceChildren(tokenScreen({ doc: documentId, error: `The token was refused: ${e.message}` }));
      return;
    }
  }
  const me = { id: user.id, name: user.name || user.id, role: user.role, color: colorFor(user.id) };

  let editor = null;
  const sync = new DocSync(conn, documentId, me, {
    getContent: () => editor?.content(),
    onChange: (s) => (document.body.dataset.sync = s),
  });
  const bridge = new AwarenessBridge(conn, sync, me);
  const presence = new Presence(conn, bridge, me);

  const top = header({
    documentId,
    me,
    presence,
    onSignOut: () => {
      localStorage.removeItem('tandem-token');
      location.assign(location.pathname);
    },
  });
  status = top.status;
  status.setConnection(...connection);
  for (const e of errors) status.error(e);

  const mount = h('div.editor', { testid: 'editor' });
  const chat = new ChatPane(conn, api, session.channel_id, me, { onError });
  const assistant = new AssistantPane(conn, api, { onError });
  const history = new HistoryPane(api, documentId, me, { onError, onNotice: (m) => status.show(m, 'notice') });
  const side = tabs(
    {
      chat: { title: 'Chat', el: chat.el },
      assistant: { title: 'Assistant', el: assistant.el },
      history: { title: 'History', el: history.el },
    },
    {
      onShow: (name) => name === 'history' && history.show(),
      onHide: (name) => name === 'history' && history.hide(),
    },
  );

  const docTitle = h('div.doc-title', h('span.doc-name', documentId), h('span.sync-state', { testid: 'sync-state' }));
  const editorColumn = h('section.editor-col', docTitle, h('div.editor-scroll', mount));
  root.replaceChildren(top.el, h('div.layout', editorColumn, side.el));

  editor = createEditor(mount, sync, bridge.awareness);
  docTitle.after(editor.toolbar);
  const syncLabel = { joining: 'Syncing…', synced: 'Saved', offline: 'Offline — edits kept locally' };
  const showSync = (s) => {
    document.body.dataset.sync = s;
    docTitle.querySelector('.sync-state').textContent = syncLabel[s] ?? s;
  };
  showSync(sync.status ?? 'joining');
  sync.subscribe(showSync);
  editor.view.focus();

  // For scripts and debugging in the console.
  window.tandemDemo = { conn, sync, bridge, editor, me, documentId };
}

boot().catch((e) => {
  console.error(e);
  root.replaceChildren(h('p.error', `Something went wrong: ${e.message}`));
});
