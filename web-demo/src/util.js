// Small helpers shared by every pane: a DOM builder, ids, colours, time formatting.

/// h('div.class#id', {attrs, on: {click}}, ...children): builds an element.
export function h(tag, attrs = {}, ...children) {
  if (typeof attrs !== 'object' || attrs === null || attrs instanceof Node || Array.isArray(attrs)) {
    children.unshift(attrs);
    attrs = {};
  }
  const [name, ...classes] = tag.split('.');
  const el = document.createElement(name || 'div');
  if (classes.length) el.className = classes.join(' ');
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'on') {
      for (const [event, fn] of Object.entries(value)) el.addEventListener(event, fn);
    } else if (key === 'style' && typeof value === 'object') {
      for (const [prop, v] of Object.entries(value)) el.style.setProperty(prop, v);
    } else if (key === 'testid') {
      el.dataset.testid = value;
    } else if (key in el && typeof value !== 'string') {
      el[key] = value;
    } else {
      el.setAttribute(key, value === true ? '' : value);
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
}

/// A random RFC 4122 v4 uuid; works outside secure contexts too (plain http on a LAN address).
export function uuid() {
  if (globalThis.crypto?.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const hex = Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

const PALETTE = ['#e03131', '#2f9e44', '#1971c2', '#e8590c', '#9c36b5', '#0c8599', '#d6336c', '#5c940d', '#f08c00', '#3b5bdb'];

/// A stable colour per user (6-digit hex: y-prosemirror appends an alpha to it).
export function colorFor(key) {
  let hash = 0;
  for (const ch of String(key)) hash = (Math.imul(hash, 31) + ch.codePointAt(0)) | 0;
  return PALETTE[Math.abs(hash) % PALETTE.length];
}

/// Socket.IO delivers byte arrays as JSON number arrays or as binary attachments.
export function toBytes(value) {
  if (value instanceof Uint8Array) return value;
  if (value instanceof ArrayBuffer) return new Uint8Array(value);
  if (ArrayBuffer.isView(value)) return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  if (Array.isArray(value)) return Uint8Array.from(value);
  throw new Error('not a byte array');
}

/// Formats a timestamp (seconds, milliseconds or nanoseconds since the epoch, or ISO text).
export function formatTime(value) {
  if (value === undefined || value === null) return '';
  let date;
  if (typeof value === 'number') {
    const ms = value > 1e17 ? value / 1e6 : value > 1e11 ? value : value * 1000;
    date = new Date(ms);
  } else {
    date = new Date(value);
  }
  if (Number.isNaN(date.getTime())) return String(value);
  const sameDay = date.toDateString() === new Date().toDateString();
  return sameDay ? date.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' }) : date.toLocaleString();
}

export function formatBytes(n) {
  if (typeof n !== 'number') return '';
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}
