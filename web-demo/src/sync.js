// Document sync over Open WebUI's `ydoc:*` events.
//
// Invariant: whatever the local Y.Doc has that the server lacks is sent right after the next
// `ydoc:document:state` arrives (the difference against the server's state vector). So local
// edits made while offline, or while (re)joining, are never lost and never sent twice, and
// incremental updates are only sent while joined and connected.

import * as Y from 'yjs';
import { toBytes } from './util.js';

const RESYNC_MIN_INTERVAL_MS = 5000;

export class DocSync {
  /// `getContent()` returns `{md, html, json}` of the editor for `data.content`.
  constructor(conn, documentId, user, { getContent = () => null, onChange = () => {} } = {}) {
    this.conn = conn;
    this.socket = conn.socket;
    this.documentId = documentId;
    this.user = user;
    this.getContent = getContent;
    this.onChange = onChange; // (status) => void: 'joining' | 'synced' | 'offline'
    this.doc = new Y.Doc();
    this.fragment = this.doc.getXmlFragment('prosemirror');
    this.synced = false;
    this.sessions = [];
    this.pending = [];
    this.flushTimer = null;
    this.lastResync = 0;
    this.listeners = new Set();

    this.doc.on('update', (update, origin) => {
      if (origin === 'server') return;
      this.pending.push(update);
      if (!this.flushTimer) this.flushTimer = setTimeout(() => this.flush(), 0);
    });

    const socket = this.socket;
    socket.on('ydoc:document:state', (data) => {
      if (data?.document_id === this.documentId) this.receiveState(data);
    });
    socket.on('ydoc:document:update', (data) => {
      if (data?.document_id !== this.documentId || data.socket_id === socket.id || data.update == null) return;
      try {
        Y.applyUpdate(this.doc, toBytes(data.update), 'server');
      } catch (e) {
        console.warn('could not apply a remote update; asking for the state again', e);
        this.requestState();
      }
    });
    socket.on('error', (e) => {
      // A refused update leaves the server without some of our changes: fetch its state again,
      // which sends the difference.
      if (e?.document_id === this.documentId && e.event === 'ydoc:document:update') this.requestState();
    });
    socket.on('disconnect', () => this.setSynced(false, 'offline'));
    conn.onReady(() => this.join());
    window.addEventListener('pagehide', () => this.leave());
  }

  join() {
    this.setSynced(false, 'joining');
    this.conn.emitNow('ydoc:document:join', {
      document_id: this.documentId,
      user_id: this.user.id,
      user_name: this.user.name,
      user_color: this.user.color,
    });
  }

  leave() {
    this.conn.emitNow('ydoc:document:leave', { document_id: this.documentId, user_id: this.user.id });
  }

  receiveState(data) {
    let state;
    try {
      state = toBytes(data.state);
      Y.applyUpdate(this.doc, state, 'server');
    } catch (e) {
      console.warn('could not apply the document state', e);
      this.requestState();
      return;
    }
    this.sessions = Array.isArray(data.sessions) ? data.sessions : [];
    // Everything local the server lacks, pending edits included.
    const missing = Y.encodeStateAsUpdate(this.doc, Y.encodeStateVectorFromUpdate(state));
    this.pending = [];
    this.setSynced(true, 'synced');
    if (missing.length > 2) this.send(missing);
  }

  /// Asks for the full state again (at most every few seconds).
  requestState() {
    const now = Date.now();
    if (now - this.lastResync < RESYNC_MIN_INTERVAL_MS) return;
    this.lastResync = now;
    this.conn.emitNow('ydoc:document:state', { document_id: this.documentId });
  }

  flush() {
    this.flushTimer = null;
    const updates = this.pending;
    this.pending = [];
    // Not joined or not connected: the next state's difference will carry these.
    if (!this.synced || !this.socket.connected || updates.length === 0) return;
    // One frame per transaction, as Open WebUI's client does (not merged: a merged update may
    // delete, in one range, content the server has and content the same update creates).
    // The editor content rides on the last one.
    updates.forEach((update, i) => this.send(update, i === updates.length - 1));
  }

  send(update, withContent = true) {
    let content = null;
    try {
      if (withContent) content = this.getContent();
    } catch (e) {
      console.warn('could not serialise the editor content', e);
    }
    const payload = {
      document_id: this.documentId,
      user_id: this.user.id,
      socket_id: this.socket.id,
      update: Array.from(update),
    };
    if (content) payload.data = { content };
    this.conn.emitNow('ydoc:document:update', payload);
  }

  setSynced(synced, status) {
    this.synced = synced;
    this.status = status;
    this.onChange(status);
    for (const fn of this.listeners) fn(status);
  }

  /// Calls `fn(status)` on every sync status change.
  subscribe(fn) {
    this.listeners.add(fn);
  }
}
