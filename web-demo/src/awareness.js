// Awareness bridge: a y-protocols Awareness locally (what yCursorPlugin reads and writes), and
// Open WebUI's wire format on the socket: `ydoc:awareness:update {document_id, update}` where
// `update` is the UTF-8 bytes of JSON `{[clientID]: state}` (only our own clientID).

import { Awareness, removeAwarenessStates } from 'y-protocols/awareness';
import { toBytes } from './util.js';

const SEND_INTERVAL_MS = 100;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

export class AwarenessBridge {
  constructor(conn, sync, user) {
    this.conn = conn;
    this.sync = sync;
    this.documentId = sync.documentId;
    this.awareness = new Awareness(sync.doc);
    this.clientID = sync.doc.clientID;
    this.owners = new Map(); // remote clientID → {userId, socketId} (from the relay's verified ids)
    this.lastSent = 0;
    this.timer = null;
    this.awareness.setLocalState({ user: { id: user.id, name: user.name, color: user.color } });

    // Local changes (cursor moves, the 15 s renewal) go out, coalesced.
    this.awareness.on('update', (_changes, origin) => {
      if (origin === 'local') this.schedule();
    });
    const socket = conn.socket;
    socket.on('ydoc:awareness:update', (data) => {
      if (data?.document_id === this.documentId) this.receive(data);
    });
    socket.on('ydoc:user:left', (data) => {
      if (data?.document_id === this.documentId) this.removeOwner(data.user_id, data.socket_id);
    });
    // A newcomer has not seen us yet: tell it where we are.
    socket.on('ydoc:user:joined', (data) => {
      if (data?.document_id === this.documentId) this.schedule();
    });
    // Offline, the others' cursors are stale; they are re-sent after we are back.
    socket.on('disconnect', () => this.removeRemote([...this.awareness.getStates().keys()]));
    sync.subscribe((status) => {
      if (status === 'synced') this.schedule();
    });
    window.addEventListener('pagehide', () => {
      this.awareness.setLocalStateField('cursor', null);
      this.send();
    });
  }

  /// At most one send per 100 ms: now if the last one is old enough, else at the end of the window.
  schedule() {
    if (this.timer) return;
    const wait = Math.max(0, this.lastSent + SEND_INTERVAL_MS - Date.now());
    this.timer = setTimeout(() => {
      this.timer = null;
      this.send();
    }, wait);
  }

  send() {
    // The server relays awareness only for members of the document's room.
    if (!this.sync.synced) return;
    const state = this.awareness.getLocalState();
    const bytes = encoder.encode(JSON.stringify({ [this.clientID]: state }));
    if (this.conn.emitNow('ydoc:awareness:update', { document_id: this.documentId, update: Array.from(bytes) })) {
      this.lastSent = Date.now();
    }
  }

  receive(data) {
    let states;
    try {
      states = JSON.parse(decoder.decode(toBytes(data.update)));
    } catch (e) {
      console.warn('ignoring an awareness update that is not UTF-8 JSON', e);
      return;
    }
    if (!states || typeof states !== 'object') return;
    const added = [];
    const updated = [];
    const removed = [];
    const now = Date.now();
    for (const [key, state] of Object.entries(states)) {
      const clientID = Number(key);
      if (!Number.isInteger(clientID) || clientID === this.clientID) continue;
      if (data.user_id != null) this.owners.set(clientID, { userId: data.user_id, socketId: data.socket_id });
      const aw = this.awareness;
      const meta = aw.meta.get(clientID);
      const clock = (meta?.clock ?? 0) + 1;
      if (state === null || state === undefined) {
        if (aw.states.has(clientID)) {
          aw.states.delete(clientID);
          removed.push(clientID);
        }
        aw.meta.set(clientID, { clock, lastUpdated: now });
        continue;
      }
      (aw.states.has(clientID) ? updated : added).push(clientID);
      aw.states.set(clientID, state);
      aw.meta.set(clientID, { clock, lastUpdated: now });
    }
    if (added.length || updated.length || removed.length) {
      const changes = { added, updated, removed };
      this.awareness.emit('change', [changes, 'remote']);
      this.awareness.emit('update', [changes, 'remote']);
    }
  }

  /// Drops the states that came from the tab that left (`socketId`), or, from a server that
  /// does not say which tab, from every tab of `userId`.
  removeOwner(userId, socketId) {
    const ids = [];
    for (const [clientID, owner] of this.owners) {
      const match = socketId != null && owner.socketId != null ? owner.socketId === socketId : owner.userId === userId;
      if (match && clientID !== this.clientID) ids.push(clientID);
    }
    this.removeRemote(ids);
  }

  removeRemote(ids) {
    const remote = ids.filter((id) => id !== this.clientID && this.awareness.states.has(id));
    for (const id of ids) if (id !== this.clientID) this.owners.delete(id);
    if (remote.length) removeAwarenessStates(this.awareness, remote, 'remote');
  }

  /// The remote users' states, as [{clientID, userId, user}].
  remoteUsers() {
    const out = [];
    for (const [clientID, state] of this.awareness.getStates()) {
      if (clientID === this.clientID || !state?.user) continue;
      out.push({ clientID, userId: this.owners.get(clientID)?.userId ?? state.user.id, user: state.user });
    }
    return out;
  }
}
