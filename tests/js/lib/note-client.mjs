// A client that behaves like Open WebUI's notes editor (Collaboration.ts): one Y.XmlFragment
// named `prosemirror`, updates sent as number arrays with `data.content`, remote updates applied
// with origin 'server', awareness as UTF-8 JSON bytes.

import * as Y from 'yjs';
import { next } from './harness.mjs';

export class NoteClient {
  constructor(socket, documentId, { userId = 'someone', userName = 'Someone', color = '#4ECDC4', binary = false } = {}) {
    this.socket = socket;
    this.documentId = documentId;
    this.userId = userId;
    this.userName = userName;
    this.color = color;
    this.binary = binary;
    this.doc = new Y.Doc();
    this.fragment = this.doc.getXmlFragment('prosemirror');
    this.received = []; // every ydoc:document:update payload received
    this.errors = [];
    this.awareness = [];
    this.joined = [];
    this.left = [];
    this.sent = 0;
    this.sessions = [];

    this.doc.on('update', (update, origin) => {
      if (origin === 'server' || !this.socket.connected) return;
      this.sent += 1;
      this.socket.emit('ydoc:document:update', {
        document_id: this.documentId,
        user_id: this.userId,
        socket_id: this.socket.id,
        update: this.binary ? update : Array.from(update),
        data: { content: { md: this.text(), html: `<p>${this.text()}</p>`, json: null } },
      });
    });
    socket.on('ydoc:document:update', (data) => {
      if (data.document_id !== this.documentId) return;
      this.received.push(data);
      if (data.socket_id === this.socket.id) return;
      Y.applyUpdate(this.doc, new Uint8Array(data.update), 'server');
    });
    socket.on('ydoc:awareness:update', (data) => {
      if (data.document_id === this.documentId) this.awareness.push(data);
    });
    socket.on('ydoc:user:joined', (data) => data.document_id === this.documentId && this.joined.push(data));
    socket.on('ydoc:user:left', (data) => data.document_id === this.documentId && this.left.push(data));
    socket.on('error', (e) => this.errors.push(e));
  }

  /// Joins and applies the state the server sends back; resolves to that payload.
  async join() {
    const state = next(this.socket, 'ydoc:document:state', (d) => d.document_id === this.documentId);
    this.socket.emit('ydoc:document:join', {
      document_id: this.documentId,
      user_id: this.userId,
      user_name: this.userName,
      user_color: this.color,
    });
    const payload = await state;
    this.sessions = payload.sessions;
    Y.applyUpdate(this.doc, new Uint8Array(payload.state), 'server');
    return payload;
  }

  leave() {
    this.socket.emit('ydoc:document:leave', { document_id: this.documentId, user_id: this.userId });
  }

  /// Appends a paragraph holding `text` (what typing a line in ProseMirror produces).
  paragraph(text) {
    const p = new Y.XmlElement('paragraph');
    p.insert(0, [new Y.XmlText(text)]);
    this.fragment.insert(this.fragment.length, [p]);
  }

  /// Types `text` at the end of the last paragraph, one character per update.
  type(text) {
    for (const ch of text) {
      let last = this.fragment.get(this.fragment.length - 1);
      if (!last) {
        this.paragraph('');
        last = this.fragment.get(0);
      }
      const t = last.get(0);
      t.insert(t.length, ch);
    }
  }

  /// The document as plain text, one line per paragraph.
  text() {
    return fragmentText(this.fragment);
  }

  sendAwareness(state) {
    const bytes = new TextEncoder().encode(JSON.stringify({ [this.doc.clientID]: state }));
    this.socket.emit('ydoc:awareness:update', {
      document_id: this.documentId,
      user_id: this.socket.id,
      update: this.binary ? bytes : Array.from(bytes),
    });
  }
}

/// A `prosemirror` fragment as plain text, one line per paragraph.
export function fragmentText(fragment) {
  return fragment
    .toArray()
    .map((p) => (p instanceof Y.XmlElement ? p.toArray().map((t) => t.toString()).join('') : p.toString()))
    .join('\n');
}

/// The text of a full-state update, as a fresh Yjs document sees it.
export function stateText(stateBytes) {
  const doc = new Y.Doc();
  Y.applyUpdate(doc, new Uint8Array(stateBytes));
  return fragmentText(doc.getXmlFragment('prosemirror'));
}
