// Small DOM helpers, formatting, toasts and a virtualised list.

// h('button', {class: 'x', onclick: fn, 'aria-label': 'y'}, 'text', child)
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = v;
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

// An outline icon from one SVG path (24×24 box).
export function icon(d) {
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('aria-hidden', 'true');
  const path = document.createElementNS(ns, 'path');
  path.setAttribute('d', d);
  svg.append(path);
  return svg;
}

const UNITS = ['B', 'KB', 'MB', 'GB', 'TB'];
export function fmtBytes(n) {
  let v = Number(n) || 0;
  let u = 0;
  while (v >= 1000 && u < UNITS.length - 1) { v /= 1000; u += 1; }
  return u === 0 ? `${v} B` : `${v.toFixed(v < 10 ? 1 : 0)} ${UNITS[u]}`;
}
export const fmtRate = (n) => `${fmtBytes(n)}/s`;
export function fmtEta(s) {
  if (s === null || s === undefined) return '';
  if (s < 60) return `${s} s left`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s left`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min left`;
}
export const basename = (p) => p.split('/').filter(Boolean).pop() || p;
export const encodePath = (p) => p.split('/').map(encodeURIComponent).join('/');

// The screen a toast belongs to: the route part of the address.
const screenOf = () => location.hash.replace(/^#\/?/, '').split('?')[0] || 'browse';

// Toasts sit in their own row of the page grid, above the screen, so they push content
// down instead of covering buttons; each has a close button, and leaving the screen it was
// raised on removes it (`clearToasts`).
export function toast(message, kind = 'info') {
  const box = document.getElementById('toasts');
  const close = h('button', { type: 'button', class: 'toast-close', 'aria-label': 'Dismiss' }, '×');
  const t = h('div', { class: `toast ${kind}`, role: kind === 'error' ? 'alert' : null, 'data-screen': screenOf() },
    h('span', {}, message), close);
  close.addEventListener('click', () => t.remove());
  while (box.children.length >= 2) box.firstElementChild.remove();
  box.append(t);
  setTimeout(() => t.remove(), kind === 'error' ? 7000 : 3500);
}

// Removes the toasts raised on other screens than the one shown now.
export function clearToasts() {
  const here = screenOf();
  for (const t of [...document.getElementById('toasts').children]) {
    if (t.dataset.screen !== here) t.remove();
  }
}

// A line under a form for the API's refusal, which stays until the next try (a toast
// would vanish before a long message is read).
export function errorLine() {
  return h('p', { class: 'form-error', role: 'alert' });
}

// Runs an async action from a button: disables it meanwhile and reports errors, in
// `errorEl` (an errorLine) when given, else in a toast.
export async function busy(button, label, fn, errorEl) {
  const old = button.textContent;
  button.disabled = true;
  if (label) button.textContent = label;
  if (errorEl) errorEl.textContent = '';
  try {
    return await fn();
  } catch (e) {
    if (e.name === 'AbortError') return undefined;
    if (errorEl) errorEl.textContent = e.message;
    else toast(e.message, 'error');
    return undefined;
  } finally {
    button.disabled = false;
    button.textContent = old;
  }
}

// Copies text; works on plain http too (no Clipboard API outside secure contexts).
export async function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    try { await navigator.clipboard.writeText(text); return true; } catch { /* fall back */ }
  }
  const area = h('textarea', { readonly: true, class: 'offscreen', 'aria-hidden': 'true' });
  area.value = text;
  document.body.append(area);
  area.select();
  let ok = false;
  try { ok = document.execCommand('copy'); } catch { ok = false; }
  area.remove();
  return ok;
}

// Renders only the rows in view (plus a margin) of a fixed-row-height list, so tens of
// thousands of entries scroll smoothly. `scroller` is the scrolling ancestor.
export class VirtualList {
  constructor(scroller, rowHeight, renderRow, label) {
    this.scroller = scroller;
    this.rowHeight = rowHeight;
    this.renderRow = renderRow;
    this.items = [];
    this.range = null;
    this.el = h('div', { class: 'vlist', role: 'list', 'aria-label': label });
    this.frame = 0;
    this.onScroll = () => {
      if (!this.frame) this.frame = requestAnimationFrame(() => { this.frame = 0; this.render(); });
    };
    scroller.addEventListener('scroll', this.onScroll, { passive: true });
    window.addEventListener('resize', this.onScroll);
  }

  setItems(items) {
    this.items = items;
    this.range = null;
    this.el.style.height = `${items.length * this.rowHeight}px`;
    this.render();
  }

  render() {
    if (!this.el.isConnected) return;
    const top = this.el.getBoundingClientRect().top - this.scroller.getBoundingClientRect().top;
    const height = this.scroller.clientHeight || window.innerHeight;
    const first = Math.max(0, Math.floor(-top / this.rowHeight) - 8);
    const last = Math.min(this.items.length, Math.ceil((height - top) / this.rowHeight) + 8);
    if (this.range && this.range[0] === first && this.range[1] === last) return;
    this.range = [first, last];
    const rows = [];
    for (let i = first; i < last; i += 1) {
      const row = this.renderRow(this.items[i], i);
      row.classList.add('vrow');
      row.setAttribute('role', 'listitem');
      row.setAttribute('aria-setsize', String(this.items.length));
      row.setAttribute('aria-posinset', String(i + 1));
      row.style.transform = `translateY(${i * this.rowHeight}px)`;
      rows.push(row);
    }
    this.el.replaceChildren(...rows);
  }

  destroy() {
    this.scroller.removeEventListener('scroll', this.onScroll);
    window.removeEventListener('resize', this.onScroll);
    if (this.frame) cancelAnimationFrame(this.frame);
  }
}

// A modal sheet titled `title`, with a Close button after `children`; gone once closed
// (so a playing preview stops).
export function sheet(title, ...children) {
  const close = h('button', { type: 'button', class: 'secondary' }, 'Close');
  const dialog = h('dialog', { class: 'sheet', 'aria-label': title }, h('h2', {}, title), ...children, close);
  close.addEventListener('click', () => dialog.close());
  dialog.addEventListener('close', () => dialog.remove());
  document.body.append(dialog);
  dialog.showModal();
  return dialog;
}

export function field(label, input, hint) {
  const id = input.id || `f${Math.random().toString(36).slice(2, 9)}`;
  input.id = id;
  const hintEl = hint ? h('p', { class: 'hint', id: `${id}-hint` }, hint) : null;
  if (hintEl) input.setAttribute('aria-describedby', hintEl.id);
  return h('div', { class: 'field' }, h('label', { for: id }, label), input, hintEl);
}
