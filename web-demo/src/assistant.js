// The assistant: `POST /api/v1/chat/completions` answers `{status: true, task_id}` at once; the
// answer streams over the socket as `events {chat_id, message_id, data: {type, data}}` with the
// accumulated text in `chat:completion` and `done: true` at the end.

import { h, uuid } from './util.js';

export class AssistantPane {
  constructor(conn, api, { onError = () => {} } = {}) {
    this.conn = conn;
    this.api = api;
    this.onError = onError;
    this.chatId = uuid(); // one chat per page
    this.messageId = null; // the answer being streamed

    this.question = h('div.question');
    this.output = h('div.answer', { testid: 'assistant-output', 'data-state': 'idle', 'aria-live': 'polite' });
    this.input = h('textarea.assistant-input', {
      testid: 'assistant-input',
      rows: 3,
      placeholder: 'Ask the assistant (model: tandem-demo)…',
      on: {
        keydown: (e) => {
          if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) {
            e.preventDefault();
            this.send();
          }
        },
      },
    });
    this.button = h('button.primary', { type: 'submit', testid: 'assistant-send' }, 'Ask');
    this.el = h(
      'section.pane.assistant',
      h('div.transcript', this.question, this.output),
      h('form.composer.column', { on: { submit: (e) => { e.preventDefault(); this.send(); } } }, this.input, this.button),
    );
    conn.on('events', (event) => this.receive(event));
  }

  async send() {
    const content = this.input.value.trim();
    if (!content) return;
    if (!this.conn.connected) {
      this.onError({ message: 'The assistant streams over the socket: wait until the connection is back.', event: 'assistant' });
      return;
    }
    const id = uuid();
    this.messageId = id;
    this.question.textContent = content;
    this.setOutput('', 'waiting');
    this.button.disabled = true;
    try {
      await this.api.chatCompletion({
        model: 'tandem-demo',
        messages: [{ role: 'user', content }],
        chat_id: this.chatId,
        id,
        session_id: this.conn.socket.id,
        stream: true,
      });
      this.input.value = '';
    } catch (e) {
      if (this.messageId === id) this.finish(e.message, 'error');
    }
  }

  receive(event) {
    if (!event || event.chat_id !== this.chatId || event.message_id !== this.messageId) return;
    const type = event.data?.type;
    const data = event.data?.data ?? {};
    if (type === 'chat:completion') {
      if (data.error) {
        this.finish(data.error.content ?? data.error.message ?? String(data.error), 'error');
        return;
      }
      if (typeof data.content === 'string') this.setOutput(data.content, 'streaming');
      if (data.done) this.finish(this.output.textContent, 'done');
    } else if (type === 'chat:message:error') {
      this.finish(data.error?.content ?? 'The assistant failed.', 'error');
    }
  }

  setOutput(text, state) {
    this.output.textContent = text;
    this.output.dataset.state = state;
  }

  finish(text, state) {
    this.setOutput(text, state);
    this.button.disabled = false;
  }
}
