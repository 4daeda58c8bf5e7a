// Who is in the document: ourselves, everyone whose awareness state we hold, and everyone
// announced by `ydoc:user:joined` until their `ydoc:user:left`.

import { h, colorFor } from './util.js';

export class Presence {
  constructor(conn, bridge, me) {
    this.bridge = bridge;
    this.me = me;
    this.documentId = bridge.documentId;
    this.joined = new Map(); // socket_id (or user_id) → {userId, name, color}: one entry per tab
    this.el = h('ul.presence', { testid: 'presence-list', 'aria-label': 'People in this document' });
    const socket = conn.socket;
    socket.on('ydoc:user:joined', (d) => {
      if (d?.document_id !== this.documentId || !d.user_id) return;
      this.joined.set(d.socket_id ?? d.user_id, { userId: d.user_id, name: d.user_name || d.user_id, color: d.user_color });
      this.render();
    });
    socket.on('ydoc:user:left', (d) => {
      if (d?.document_id !== this.documentId) return;
      this.joined.delete(d.socket_id ?? d.user_id);
      this.render();
    });
    socket.on('disconnect', () => {
      this.joined.clear();
      this.render();
    });
    bridge.awareness.on('change', () => this.render());
    this.render();
  }

  users() {
    const users = new Map();
    users.set(this.me.id, { id: this.me.id, name: this.me.name, color: this.me.color, self: true });
    for (const { userId, user } of this.bridge.remoteUsers()) {
      const id = userId ?? user.id ?? user.name;
      if (!users.has(id)) users.set(id, { id, name: user.name ?? id, color: user.color });
    }
    for (const u of this.joined.values()) {
      if (!users.has(u.userId)) users.set(u.userId, { id: u.userId, name: u.name, color: u.color });
    }
    return [...users.values()];
  }

  render() {
    const items = this.users().map((u) => {
      const color = /^#[0-9a-f]{6}$/i.test(u.color ?? '') ? u.color : colorFor(u.id);
      return h(
        'li.person',
        { title: u.self ? `${u.name} (you)` : u.name, 'data-user-id': u.id, style: { '--user-color': color } },
        h('span.avatar', u.name.slice(0, 1).toUpperCase()),
        h('span.name', u.name, u.self ? h('span.you', ' (you)') : null),
      );
    });
    this.el.replaceChildren(...items);
  }
}
