// Version history of the document: list, "Save version" and restore. A restore reaches every
// open editor as ordinary `ydoc:document:update` frames, so nothing else is needed here.

import { h, formatTime, formatBytes } from './util.js';

const REFRESH_MS = 4000;

export class HistoryPane {
  constructor(api, documentId, me, { onError = () => {}, onNotice = () => {} } = {}) {
    this.api = api;
    this.me = me;
    this.documentId = documentId;
    this.onError = onError;
    this.onNotice = onNotice;
    this.timer = null;
    this.busy = false;

    this.label = h('input', { type: 'text', placeholder: 'Label (optional)', testid: 'version-label', maxlength: 200 });
    this.list = h('ol.versions', { testid: 'history-list' });
    this.summary = h('p.summary');
    this.el = h(
      'section.pane.history',
      h('form.composer', { on: { submit: (e) => { e.preventDefault(); this.save(); } } },
        this.label,
        h('button.primary', { type: 'submit', testid: 'save-version' }, 'Save version')),
      this.summary,
      this.list,
    );
  }

  /// Refreshes now and every few seconds while the pane is shown.
  show() {
    this.refresh();
    clearInterval(this.timer);
    this.timer = setInterval(() => this.refresh(), REFRESH_MS);
  }

  hide() {
    clearInterval(this.timer);
    this.timer = null;
  }

  async refresh() {
    try {
      const history = await this.api.history(this.documentId);
      this.render(history);
    } catch (e) {
      // A document nobody has written to yet has no history.
      if (e.status === 404) this.render({ versions: [], pending_updates: 0 });
      else this.onError({ message: e.message, event: 'history' });
    }
  }

  render(history) {
    const versions = [...(history?.versions ?? [])].sort((a, b) => b.version - a.version);
    const pending = history?.pending_updates ?? 0;
    this.summary.textContent = versions.length
      ? `${versions.length} version${versions.length === 1 ? '' : 's'}${pending ? ` · ${pending} update${pending === 1 ? '' : 's'} since the newest` : ''}`
      : 'No saved versions yet.';
    this.list.replaceChildren(...versions.map((v) => h(
      'li.version',
      { 'data-version': v.version },
      h('div.version-main',
        h('span.badge', `v${v.version}`),
        h('span.label', v.label || (v.kind === 'auto' ? 'automatic' : v.kind || 'version')),
        h('span.restore-wrap', h('button.small', {
          type: 'button',
          testid: 'restore-button',
          title: `Restore version ${v.version}`,
          on: { click: () => this.restore(v.version) },
        }, 'Restore'))),
      h('div.version-meta', [formatTime(v.created_at), v.kind, formatBytes(v.bytes)].filter(Boolean).join(' · ')),
    )));
  }

  async save() {
    if (this.busy) return;
    this.busy = true;
    try {
      const label = this.label.value.trim();
      const res = await this.api.snapshot(this.documentId, label || `Saved by ${this.me.name}`);
      this.label.value = '';
      this.onNotice(`Saved version ${res?.version ?? ''}`.trim());
    } catch (e) {
      this.onError({ message: e.message, event: 'snapshot' });
    } finally {
      this.busy = false;
      this.refresh();
    }
  }

  async restore(version) {
    if (this.busy) return;
    this.busy = true;
    try {
      const res = await this.api.restore(this.documentId, version);
      this.onNotice(`Restored version ${res?.restored_version ?? version} as version ${res?.new_version ?? '?'}`);
    } catch (e) {
      this.onError({ message: e.message, event: 'restore' });
    } finally {
      this.busy = false;
      this.refresh();
    }
  }
}
