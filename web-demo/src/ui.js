// The page's frame: sign-in screens, the header (document picker, presence, status) and the
// side panel's tabs.

import { h } from './util.js';

const RECENT_KEY = 'tandem-demo-recent-docs';

export function recentDocs() {
  try {
    return JSON.parse(localStorage.getItem(RECENT_KEY) || '[]').filter((d) => typeof d === 'string');
  } catch {
    return [];
  }
}

export function rememberDoc(id) {
  try {
    const list = [id, ...recentDocs().filter((d) => d !== id)].slice(0, 12);
    localStorage.setItem(RECENT_KEY, JSON.stringify(list));
  } catch {
    /* private mode */
  }
}

/// `/?doc=NAME&name=USER` (or `/?doc=NAME` with a pasted token kept for this tab).
export function pageUrl(doc, name) {
  const params = new URLSearchParams();
  params.set('doc', doc);
  if (name) params.set('name', name);
  return `${location.pathname}?${params}`;
}

function card(...children) {
  return h('main.signin', h('div.card', h('h1.brand', 'tandem', h('span.tag', 'collaborative notes')), ...children));
}

/// Name + document form for demo sign-in.
export function signinScreen({ name = '', doc = 'welcome', error = '' } = {}) {
  const nameInput = h('input', { name: 'name', required: true, value: name, placeholder: 'Your name', autocomplete: 'nickname', maxlength: 64 });
  const docInput = h('input', { name: 'doc', required: true, value: doc, placeholder: 'welcome', list: 'recent-docs', maxlength: 200 });
  return card(
    h('form.stack', {
      on: {
        submit: (e) => {
          e.preventDefault();
          location.assign(pageUrl(docInput.value.trim() || 'welcome', nameInput.value.trim()));
        },
      },
    },
    h('label', 'Your name', nameInput),
    h('label', 'Document', docInput),
    datalist(),
    error ? h('p.error', error) : null,
    h('button.primary', { type: 'submit' }, 'Open document')),
    h('p.hint', 'Open the same document in another window with another name to edit together.'),
  );
}

/// Shown when the server has demo sign-in disabled: paste a token (e.g. from `tandem token`).
export function tokenScreen({ doc = 'welcome', error = '' } = {}) {
  const tokenInput = h('textarea', { name: 'token', required: true, rows: 4, placeholder: 'eyJhbGciOi…', spellcheck: 'false' });
  const docInput = h('input', { name: 'doc', required: true, value: doc, list: 'recent-docs', maxlength: 200 });
  return card(
    h('p', 'Demo sign-in is disabled on this server. Paste a token instead, for example from ',
      h('code', 'tandem token --user-id alice --name Alice'), '. It is kept in this browser until you sign out.'),
    h('form.stack', {
      on: {
        submit: (e) => {
          e.preventDefault();
          localStorage.setItem('tandem-token', tokenInput.value.trim());
          location.assign(pageUrl(docInput.value.trim() || 'welcome'));
        },
      },
    },
    h('label', 'Token', tokenInput),
    h('label', 'Document', docInput),
    datalist(),
    error ? h('p.error', error) : null,
    h('button.primary', { type: 'submit' }, 'Open document')),
  );
}

function datalist() {
  return h('datalist', { id: 'recent-docs' }, recentDocs().map((d) => h('option', { value: d })));
}

/// The header: brand, document picker, presence list, status area.
export function header({ documentId, me, presence, onSignOut }) {
  const docInput = h('input', { value: documentId, list: 'recent-docs', 'aria-label': 'Document name', maxlength: 200, testid: 'doc-input' });
  const status = new StatusArea();
  const el = h(
    'header.topbar',
    h('div.brand', 'tandem'),
    h('form.doc-picker', {
      on: {
        submit: (e) => {
          e.preventDefault();
          const doc = docInput.value.trim();
          if (doc && doc !== documentId) location.assign(pageUrl(doc, new URLSearchParams(location.search).get('name')));
        },
      },
    }, docInput, datalist(), h('button', { type: 'submit', title: 'Open or create this document' }, 'Open')),
    presence.el,
    status.el,
    h('div.me', { style: { '--user-color': me.color } },
      h('span.avatar', me.name.slice(0, 1).toUpperCase()),
      h('span.name', me.name),
      h('button.link', { type: 'button', on: { click: onSignOut } }, 'Sign out')),
  );
  return { el, status };
}

/// Connection state plus the latest error or notice.
export class StatusArea {
  constructor() {
    this.dot = h('span.dot');
    this.text = h('span.state-text');
    this.message = h('span.status-message', { testid: 'status-message', role: 'status' });
    this.el = h('div.status', { testid: 'status' }, this.dot, this.text, this.message);
    this.timer = null;
  }

  setConnection(state, text) {
    this.el.dataset.state = state;
    document.body.dataset.connection = state;
    this.text.textContent = state === 'online' ? 'Online' : state === 'offline' ? 'Offline' : 'Connecting';
    this.el.title = text;
  }

  /// `error` event payloads `{message, code, event, document_id}` or plain notices.
  show(message, kind = 'error') {
    clearTimeout(this.timer);
    this.message.textContent = message;
    this.message.dataset.kind = kind;
    this.timer = setTimeout(() => {
      this.message.textContent = '';
      delete this.message.dataset.kind;
    }, kind === 'error' ? 12000 : 4000);
  }

  error(e) {
    const where = [e?.event, e?.code].filter(Boolean).join(' · ');
    this.show(`${e?.message ?? 'error'}${where ? ` (${where})` : ''}`, 'error');
  }
}

/// Tabs over the side panes; `onShow(name)` / `onHide(name)` let panes start and stop work.
export function tabs(panes, { initial, onShow = () => {}, onHide = () => {} } = {}) {
  const buttons = new Map();
  let current = null;
  const select = (name) => {
    if (name === current) return;
    if (current) {
      buttons.get(current).setAttribute('aria-selected', 'false');
      panes[current].el.hidden = true;
      onHide(current);
    }
    current = name;
    buttons.get(name).setAttribute('aria-selected', 'true');
    panes[name].el.hidden = false;
    onShow(name);
  };
  const nav = h('nav.tabs', { role: 'tablist' }, Object.entries(panes).map(([name, pane]) => {
    const b = h('button.tab', { type: 'button', role: 'tab', 'aria-selected': 'false', testid: `tab-${name}`, on: { click: () => select(name) } }, pane.title);
    buttons.set(name, b);
    pane.el.hidden = true;
    return b;
  }));
  const el = h('aside.side', nav, Object.values(panes).map((p) => p.el));
  select(initial ?? Object.keys(panes)[0]);
  return { el, select };
}
