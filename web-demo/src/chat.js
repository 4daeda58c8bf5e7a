// The channel chat: messages posted over HTTP, delivered to everyone in the channel as
// `events:channel` (type `message`), with typing indicators (type `typing`) and the
// `last_read_at` mark when the channel is opened.

import { h, formatTime, colorFor } from './util.js';

const TYPING_SEND_INTERVAL_MS = 1000;
const TYPING_SHOW_MS = 3000;

export class ChatPane {
  constructor(conn, api, channelId, me, { onError = () => {} } = {}) {
    this.conn = conn;
    this.api = api;
    this.channelId = channelId;
    this.me = me;
    this.onError = onError;
    this.seen = new Set();
    this.typing = new Map(); // user id → {name, timer}
    this.lastTypingSent = 0;

    this.list = h('ol.messages', { testid: 'chat-messages', 'aria-live': 'polite' });
    this.indicator = h('div.typing', { testid: 'typing-indicator', 'aria-live': 'polite' });
    this.input = h('input.chat-input', {
      testid: 'chat-input',
      type: 'text',
      placeholder: channelId ? 'Message the channel…' : 'No channel for this sign-in',
      disabled: !channelId,
      autocomplete: 'off',
      on: { input: () => this.sendTyping() },
    });
    const form = h(
      'form.composer',
      { on: { submit: (e) => { e.preventDefault(); this.post(); } } },
      this.input,
      h('button.primary', { type: 'submit', disabled: !channelId }, 'Send'),
    );
    this.el = h(
      'section.pane.chat',
      this.list,
      channelId ? null : h('p.empty', 'Demo sign-in gives every user the shared demo channel; a pasted token has none.'),
      this.indicator,
      form,
    );
    if (!channelId) return;

    conn.on('events:channel', (event) => this.receive(event));
    // Mark the channel read whenever we are (re)connected and it is open.
    conn.onReady(() => this.markRead());
  }

  markRead() {
    this.conn.emitNow('events:channel', { channel_id: this.channelId, message_id: null, data: { type: 'last_read_at' } });
  }

  sendTyping() {
    const now = Date.now();
    if (now - this.lastTypingSent < TYPING_SEND_INTERVAL_MS) return;
    if (this.conn.emitNow('events:channel', { channel_id: this.channelId, message_id: null, data: { type: 'typing', data: { typing: true } } })) {
      this.lastTypingSent = now;
    }
  }

  async post() {
    const content = this.input.value.trim();
    if (!content) return;
    this.input.value = '';
    try {
      const res = await this.api.postMessage(this.channelId, content);
      // The event normally arrives first; the answer is a fallback (deduplicated by id).
      const message = res?.id ? res : res?.message;
      if (message?.id) this.addMessage({ ...message, content: message.content ?? content }, message.user ?? this.me);
    } catch (e) {
      this.input.value = content;
      this.onError({ message: e.message, event: 'chat' });
    }
  }

  receive(event) {
    if (!event || event.channel_id !== this.channelId) return;
    const type = event.data?.type;
    if (type === 'message') {
      const user = event.user ?? {};
      this.addMessage(event.data.data ?? {}, user);
      this.clearTyping(user.id ?? event.data.data?.user_id);
    } else if (type === 'typing') {
      const user = event.user ?? {};
      if (!user.id || user.id === this.me.id) return;
      if (event.data.data?.typing === false) this.clearTyping(user.id);
      else this.showTyping(user);
    }
  }

  addMessage(message, user) {
    const id = message.id ?? `${message.created_at}-${message.content}`;
    if (this.seen.has(id)) return;
    this.seen.add(id);
    const userId = user.id ?? message.user_id;
    const name = user.name ?? userId ?? 'someone';
    const mine = userId === this.me.id;
    const item = h(
      `li.message${mine ? '.mine' : ''}`,
      { 'data-message-id': id, style: { '--user-color': colorFor(userId ?? name) } },
      h('div.meta', h('span.author', name), h('time', formatTime(message.created_at ?? Date.now()))),
      h('div.body', message.content ?? ''),
    );
    const atBottom = this.list.scrollHeight - this.list.scrollTop - this.list.clientHeight < 40;
    this.list.append(item);
    if (atBottom || mine) this.list.scrollTop = this.list.scrollHeight;
  }

  showTyping(user) {
    const prev = this.typing.get(user.id);
    if (prev) clearTimeout(prev.timer);
    const timer = setTimeout(() => this.clearTyping(user.id), TYPING_SHOW_MS);
    this.typing.set(user.id, { name: user.name ?? user.id, timer });
    this.renderTyping();
  }

  clearTyping(userId) {
    const prev = this.typing.get(userId);
    if (!prev) return;
    clearTimeout(prev.timer);
    this.typing.delete(userId);
    this.renderTyping();
  }

  renderTyping() {
    const names = [...this.typing.values()].map((t) => t.name);
    let text = '';
    if (names.length === 1) text = `${names[0]} is typing…`;
    else if (names.length === 2) text = `${names[0]} and ${names[1]} are typing…`;
    else if (names.length > 2) text = `${names.length} people are typing…`;
    this.indicator.textContent = text;
  }
}
