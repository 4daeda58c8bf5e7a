// The Socket.IO connection: handshake with the token, `user-join` on every (re)connect, and a
// status the header shows. Every module emits through `emitNow`, which never lets socket.io
// buffer a packet while disconnected: what was missed is re-synchronised after reconnecting.

import { io } from 'socket.io-client';

export class Connection {
  constructor(token, { onStatus = () => {}, onError = () => {} } = {}) {
    this.token = token;
    this.onStatus = onStatus;
    this.onError = onError;
    this.user = null; // {id, name} from the user-join ack
    this.connectedOnce = false;
    this.readyHandlers = [];
    this.socket = io(location.origin, {
      path: '/ws/socket.io',
      transports: ['websocket'],
      auth: { token },
      reconnection: true,
      reconnectionDelay: 500,
      reconnectionDelayMax: 3000,
      randomizationFactor: 0.3,
    });
    const socket = this.socket;
    onStatus('connecting', 'Connecting…');
    socket.on('connect', () => this.handleConnect());
    socket.on('disconnect', (reason) => {
      onStatus('offline', `Offline (${reason}) — your edits are kept and sent when the server is back`);
      // A server that shuts down closes its sockets itself ("io server disconnect"), which
      // socket.io does not retry on its own: retry anyway, it is most likely a restart.
      if (reason === 'io server disconnect') this.retry();
    });
    socket.on('connect_error', (e) => onStatus('offline', `Cannot reach the server: ${e.message}. Retrying…`));
    socket.io.on('reconnect_attempt', (n) => onStatus('connecting', `Reconnecting (attempt ${n})…`));
    socket.on('error', (e) => onError(e));
  }

  retry() {
    clearTimeout(this.retryTimer);
    this.retries = (this.retries ?? 0) + 1;
    const delay = Math.min(500 * 2 ** (this.retries - 1), 5000);
    this.retryTimer = setTimeout(() => {
      if (!this.socket.connected && !this.socket.active) this.socket.connect();
    }, delay);
  }

  handleConnect() {
    this.retries = 0;
    this.connectedOnce = true;
    this.onStatus('online', 'Connected');
    // The server handles one socket's events in order, so everything emitted by the ready
    // handlers below is handled after this user-join.
    this.socket.timeout(10000).emit('user-join', { auth: { token: this.token } }, (err, ack) => {
      if (err) return;
      if (ack && ack.id) {
        this.user = { id: ack.id, name: ack.name };
        this.userError = null;
      } else {
        const message = ack?.error?.message ?? ack?.error ?? ack?.message ?? 'the token was not accepted';
        this.userError = String(message);
        this.onError({ message: `user-join refused: ${message}`, event: 'user-join' });
      }
    });
    for (const fn of this.readyHandlers) fn();
  }

  /// Runs `fn` after every (re)connect, once `user-join` is on its way.
  onReady(fn) {
    this.readyHandlers.push(fn);
    if (this.socket.connected) fn();
  }

  get connected() {
    return this.socket.connected;
  }

  /// Emits only while connected; returns whether it did.
  emitNow(event, payload) {
    if (!this.socket.connected) return false;
    this.socket.emit(event, payload);
    return true;
  }

  on(event, fn) {
    this.socket.on(event, fn);
  }
}
