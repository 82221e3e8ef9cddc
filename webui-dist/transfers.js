// Downloads and uploads with progress, speed and ETA; pause, resume and cancel downloads.
// Cards are created once per transfer and updated in place, so buttons stay tappable
// while progress events stream in. (Reordering the queue is not supported by the API.)
import { api } from './api.js';
import { h, fmtBytes, fmtRate, fmtEta, basename, encodePath, toast } from './ui.js';

const STATE_LABEL = {
  queued: 'Queued', active: 'Downloading', paused: 'Paused', disk_full: 'Disk full',
  done: 'Done', failed: 'Failed',
};

export function transfersScreen(main, ctx) {
  const summary = h('p', { class: 'status', role: 'status' });
  const downList = h('div', { class: 'cards', id: 'downloads' });
  const upList = h('div', { class: 'cards', id: 'uploads' });
  const downEmpty = h('p', { class: 'empty' }, 'No downloads yet. Pick files under Browse.');
  const upEmpty = h('p', { class: 'empty' }, 'Nothing uploaded to peers recently.');
  main.append(h('section', { class: 'screen transfers' },
    h('h1', {}, 'Transfers'), summary,
    h('h2', {}, 'Downloads'), downEmpty, downList,
    h('h2', {}, 'Uploads'), upEmpty, upList));

  const cards = new Map();
  const fileKind = new Map(); // download key -> 'file' | 'dir' once known

  async function act(t, action, button) {
    button.disabled = true;
    try {
      if (action === 'cancel') {
        if (!window.confirm(`Cancel ${basename(t.path)}? Unfinished parts are deleted; finished files stay.`)) return;
        await api(`/api/transfers/${t.id}`, { method: 'DELETE' });
        ctx.transfers.delete(`download:${t.id}`);
        drop(`download:${t.id}`);
      } else {
        await api(`/api/transfers/${t.id}/${action}`, { method: 'POST', body: {} });
      }
    } catch (e) {
      toast(e.message, 'error');
    } finally {
      button.disabled = false;
    }
  }

  function drop(key) {
    const c = cards.get(key);
    if (c) { c.el.remove(); cards.delete(key); }
    counts();
  }

  // A finished download opens directly if it is one file, else it is browsed.
  async function openLink(t, slot) {
    const key = `download:${t.id}`;
    const href = `/downloads/${encodePath(`${t.peer}/${t.path}`)}`;
    if (!fileKind.has(key)) {
      fileKind.set(key, 'pending');
      try {
        const r = await fetch(href, { method: 'HEAD', credentials: 'same-origin', redirect: 'manual' });
        fileKind.set(key, r.ok ? 'file' : 'dir');
      } catch { fileKind.set(key, 'dir'); }
    }
    const kind = fileKind.get(key);
    if (kind === 'pending') return;
    const a = kind === 'file'
      ? h('a', { class: 'button', href, target: '_blank', rel: 'noopener' }, 'Open')
      : h('a', { class: 'button', href: `#/browse?path=${encodeURIComponent(`${t.peer}/${t.path}`)}` }, 'Show files');
    slot.replaceChildren(a);
  }

  function card(t) {
    const key = `${t.direction}:${t.id}`;
    const title = h('h3', { class: 'name' });
    const sub = h('p', { class: 'meta' });
    const badge = h('span', { class: 'badge' });
    const fill = h('div', { class: 'fill' });
    const bar = h('div', { class: 'bar', role: 'progressbar', 'aria-valuemin': '0', 'aria-valuemax': '100' }, fill);
    const stats = h('p', { class: 'stats' });
    const err = h('p', { class: 'error-text' });
    const buttons = h('div', { class: 'buttons' });
    const el = h('article', { class: 'card transfer', 'data-key': key }, h('div', { class: 'head' }, title, badge), sub, bar, stats, err, buttons);
    let shownButtons = '';
    const c = {
      el,
      update(v) {
        const pct = v.size > 0 ? Math.min(100, Math.floor((v.received / v.size) * 100)) : (v.state === 'done' ? 100 : 0);
        title.textContent = basename(v.path);
        title.title = `${v.peer}/${v.path}`;
        sub.textContent = `${v.direction === 'download' ? 'from' : 'to'} ${v.peer}${v.files_total > 1 ? ` · ${v.files_done} of ${v.files_total} files` : ''}`;
        badge.textContent = v.direction === 'upload' && v.state === 'active' ? 'Uploading' : (STATE_LABEL[v.state] || v.state);
        badge.dataset.state = v.state;
        el.dataset.state = v.state;
        fill.style.width = `${pct}%`;
        bar.setAttribute('aria-valuenow', String(pct));
        bar.setAttribute('aria-label', `${basename(v.path)}: ${pct}%`);
        const parts = [`${pct}%`, `${fmtBytes(v.received)} of ${fmtBytes(v.size)}`];
        if (v.state === 'active' && v.rate > 0) parts.push(fmtRate(v.rate), fmtEta(v.eta_seconds));
        stats.textContent = parts.filter(Boolean).join(' · ');
        const problems = [v.error, ...v.failures.slice(0, 3).map((f) => `${basename(f.path)}: ${f.reason}`)].filter(Boolean);
        err.textContent = problems.join('; ');
        err.hidden = problems.length === 0;
        if (v.direction !== 'download') return;
        const can = [];
        if (['queued', 'active', 'disk_full'].includes(v.state)) can.push('pause');
        if (['paused', 'failed'].includes(v.state)) can.push('resume');
        can.push(v.state === 'done' ? 'remove' : 'cancel');
        if (v.state === 'done') can.push('open');
        const sig = can.join();
        if (sig === shownButtons) return;
        shownButtons = sig;
        const label = { pause: 'Pause', resume: 'Resume', cancel: 'Cancel', remove: 'Remove' };
        buttons.replaceChildren(...can.map((a) => {
          if (a === 'open') {
            const slot = h('span', { class: 'slot' });
            openLink(v, slot);
            return slot;
          }
          const b = h('button', { type: 'button', class: a === 'cancel' || a === 'remove' ? 'danger' : 'secondary', 'aria-label': `${label[a]} ${basename(v.path)}` }, label[a]);
          b.addEventListener('click', () => act(v, a === 'remove' ? 'cancel' : a, b));
          return b;
        }));
      },
    };
    cards.set(key, c);
    return c;
  }

  function counts() {
    const all = [...ctx.transfers.values()];
    const downs = all.filter((t) => t.direction === 'download');
    const ups = all.filter((t) => t.direction === 'upload');
    downEmpty.hidden = downs.length > 0;
    upEmpty.hidden = ups.length > 0;
    const active = all.filter((t) => t.state === 'active');
    const rate = (dir) => active.filter((t) => t.direction === dir).reduce((s, t) => s + t.rate, 0);
    summary.textContent = active.length
      ? `${active.length} active · ${fmtRate(rate('download'))} down · ${fmtRate(rate('upload'))} up`
      : 'Nothing is moving right now.';
  }

  function upsert(t) {
    const key = `${t.direction}:${t.id}`;
    let c = cards.get(key);
    if (!c) {
      c = card(t);
      const list = t.direction === 'download' ? downList : upList;
      // Newest first.
      list.prepend(c.el);
    }
    c.update(t);
  }

  function renderAll() {
    const seen = new Set();
    const sorted = [...ctx.transfers.values()].sort((a, b) => a.id - b.id);
    for (const t of sorted) { seen.add(`${t.direction}:${t.id}`); upsert(t); }
    for (const key of [...cards.keys()]) if (!seen.has(key)) drop(key);
    counts();
  }

  renderAll();
  ctx.refreshTransfers().catch((e) => toast(e.message, 'error'));
  let pending = 0;
  const offs = [
    ctx.on('transfers', renderAll),
    ctx.on('transfer', (t) => {
      upsert(t);
      if (!pending) pending = setTimeout(() => { pending = 0; counts(); }, 300);
    }),
  ];
  return () => { offs.forEach((off) => off()); clearTimeout(pending); };
}
