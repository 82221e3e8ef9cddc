// Downloads and uploads with live progress, speed and ETA, active ones first; filters;
// pause, resume, cancel and reorder downloads; clear finished ones off the list. Cards are
// created once per transfer and updated in place, so buttons stay tappable while progress
// events stream in.
import { api } from './api.js';
import { h, icon, fmtBytes, fmtRate, fmtEta, basename, encodePath, toast } from './ui.js';

const UP = 'M12 19V5M5 12l7-7 7 7';
const DOWN = 'M12 5v14M5 12l7 7 7-7';

const STATE_LABEL = {
  queued: 'Queued', active: 'Downloading', paused: 'Paused', disk_full: 'Disk full',
  done: 'Done', failed: 'Failed', waiting: 'Waiting', peer_unknown: 'Peer unknown',
};

// Which filter a transfer falls under. An upload `waiting` has ended (the peer may ask for
// more), so it counts as done.
function group(t) {
  if (t.state === 'active') return 'active';
  if (t.state === 'done' || (t.direction === 'upload' && t.state === 'waiting')) return 'done';
  if (t.state === 'failed') return 'failed';
  return 'queued';
}
const RANK = { active: 0, queued: 1, failed: 2, done: 3 };
const FILTERS = [['all', 'All'], ['active', 'Active'], ['queued', 'Queued'], ['done', 'Done'], ['failed', 'Failed']];

// What a transfer is waiting for, or why it ended, in words.
function why(v) {
  if (v.state === 'waiting' && v.waiting_for) return `waiting for ${v.waiting_for} (offline)`;
  if (v.state === 'peer_unknown') return `${v.peer} is not a known peer any more: connect to it again to continue`;
  if (v.state === 'failed' && !v.resumable && v.direction === 'download') return `failed for good: ${v.error || v.failures.map((f) => f.reason)[0] || 'refused'}`;
  return v.error;
}

export function transfersScreen(main, ctx) {
  const summary = h('p', { class: 'status', role: 'status' });
  let filter = 'all';
  const chips = h('div', { class: 'chips', role: 'group', 'aria-label': 'Show' });
  for (const [key, label] of FILTERS) {
    const b = h('button', { type: 'button', 'data-filter': key, 'aria-pressed': String(key === filter) }, label);
    b.addEventListener('click', () => {
      filter = key;
      for (const c of chips.children) c.setAttribute('aria-pressed', String(c.dataset.filter === key));
      renderAll();
    });
    chips.append(b);
  }
  const clear = h('button', { type: 'button', class: 'secondary', id: 'clear-finished' }, 'Clear finished');
  clear.addEventListener('click', () => clearFinished());
  const clearHint = h('p', { class: 'hint' }, 'Clear finished takes done transfers off this list; downloaded files are kept. Cancel deletes unfinished parts.');
  const downList = h('div', { class: 'cards', id: 'downloads' });
  const upList = h('div', { class: 'cards', id: 'uploads' });
  const downEmpty = h('p', { class: 'empty' }, 'No downloads yet. Pick files under Browse.');
  const upEmpty = h('p', { class: 'empty' }, 'Nothing uploaded to peers recently.');
  main.append(h('section', { class: 'screen transfers' },
    h('h1', {}, 'Transfers'), summary, chips, h('div', { class: 'buttons' }, clear), clearHint,
    h('h2', {}, 'Downloads'), downEmpty, downList,
    h('h2', {}, 'Uploads'), upEmpty, upList));

  const cards = new Map();
  const fileKind = new Map(); // download key -> 'file' | 'dir' once known

  // Downloads in queue order: the order of /api/transfers, new downloads at the end.
  const queue = () => [...ctx.transfers.values()].filter((t) => t.direction === 'download');

  // The queue position that swaps `t` with the nearest unfinished download above (by -1)
  // or below (by +1); finished downloads keep their places but are skipped over.
  function target(t, by) {
    const all = queue();
    const at = all.findIndex((d) => d.id === t.id);
    for (let i = at + by; i >= 0 && i < all.length; i += by) {
      if (all[i].state !== 'done') return i;
    }
    return -1;
  }

  async function move(t, by, button) {
    const position = target(t, by);
    if (position < 0) return;
    button.disabled = true;
    try {
      await api(`/api/transfers/${t.id}/move`, { method: 'POST', body: { position } });
      await ctx.refreshTransfers();
      toast(`${basename(t.path)} moved ${by < 0 ? 'up' : 'down'}`, 'ok');
    } catch (e) {
      toast(e.message, 'error');
    } finally {
      button.disabled = false;
      // Reordering moves the card; keep the focus on the button that was used.
      if (button.isConnected && !button.disabled) button.focus();
    }
  }

  async function act(t, action, button) {
    button.disabled = true;
    try {
      if (action === 'cancel') {
        const ask = t.state === 'done'
          ? `Remove ${basename(t.path)} from the list? The downloaded files are kept.`
          : `Cancel ${basename(t.path)}? Unfinished parts are deleted; finished files stay.`;
        if (!window.confirm(ask)) return;
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

  async function clearFinished() {
    clear.disabled = true;
    try {
      const r = await api('/api/transfers/clear-finished', { method: 'POST', body: {} });
      await ctx.refreshTransfers();
      const n = r.cleared_downloads + r.cleared_uploads;
      toast(n ? `Cleared ${n} finished transfer${n === 1 ? '' : 's'}; files kept` : 'Nothing finished to clear', 'ok');
    } catch (e) {
      toast(e.message, 'error');
    } finally {
      clear.disabled = false;
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
        c.state = v.state;
        el.hidden = filter !== 'all' && group(v) !== filter;
        const pct = v.size > 0 ? Math.min(100, Math.floor((v.received / v.size) * 100)) : (v.state === 'done' ? 100 : 0);
        title.textContent = basename(v.path);
        title.title = `${v.peer}/${v.path}`;
        sub.textContent = `${v.direction === 'download' ? 'from' : 'to'} ${v.peer}${v.files_total > 1 ? ` · ${v.files_done} of ${v.files_total} files` : ''}`;
        const upload = { active: 'Uploading', waiting: 'Sent part' };
        badge.textContent = (v.direction === 'upload' && upload[v.state]) || STATE_LABEL[v.state] || v.state;
        badge.dataset.state = v.state;
        el.dataset.state = v.state;
        fill.style.width = `${pct}%`;
        bar.setAttribute('aria-valuenow', String(pct));
        bar.setAttribute('aria-label', `${basename(v.path)}: ${pct}%`);
        const parts = [`${pct}%`, `${fmtBytes(v.received)} of ${fmtBytes(v.size)}`];
        if (v.state === 'active' && v.rate > 0) parts.push(fmtRate(v.rate), fmtEta(v.eta_seconds));
        stats.textContent = parts.filter(Boolean).join(' · ');
        const problems = [why(v), ...v.failures.slice(0, 3).map((f) => `${basename(f.path)}: ${f.reason}`)].filter(Boolean);
        err.textContent = problems.join('; ');
        err.hidden = problems.length === 0;
        if (v.direction !== 'download') return;
        const can = [];
        if (v.state !== 'done') {
          if (target(v, -1) >= 0) can.push('up');
          if (target(v, 1) >= 0) can.push('down');
        }
        if (['queued', 'active', 'disk_full'].includes(v.state)) can.push('pause');
        // A failure that cannot heal (not found) gets no Resume.
        if (['paused', 'failed'].includes(v.state) && v.resumable) can.push('resume');
        can.push(v.state === 'done' ? 'remove' : 'cancel');
        if (v.state === 'done') can.push('open');
        const sig = can.join();
        if (sig === shownButtons) return;
        shownButtons = sig;
        const label = { pause: 'Pause', resume: 'Resume', cancel: 'Cancel', remove: 'Remove' };
        buttons.replaceChildren(...can.map((a) => {
          if (a === 'up' || a === 'down') {
            const name = `Move ${basename(v.path)} ${a} in the queue`;
            const b = h('button', { type: 'button', class: 'secondary icon-only', 'aria-label': name, title: name }, icon(a === 'up' ? UP : DOWN));
            b.addEventListener('click', () => move(v, a === 'up' ? -1 : 1, b));
            return b;
          }
          if (a === 'open') {
            const slot = h('span', { class: 'slot' });
            openLink(v, slot);
            return slot;
          }
          const aria = a === 'remove' ? `Remove ${basename(v.path)} from the list (files kept)` : `${label[a]} ${basename(v.path)}`;
          const b = h('button', { type: 'button', class: a === 'cancel' || a === 'remove' ? 'danger' : 'secondary', 'aria-label': aria }, label[a]);
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
    const shown = (list) => list.some((t) => filter === 'all' || group(t) === filter);
    downEmpty.hidden = shown(downs);
    upEmpty.hidden = shown(ups);
    clear.disabled = !all.some((t) => group(t) === 'done');
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
      // Downloads in queue order (new ones join at the end), uploads newest first.
      if (t.direction === 'download') downList.append(c.el);
      else upList.prepend(c.el);
    }
    c.update(t);
  }

  // Active first, then waiting, failed and done; downloads in queue order within each,
  // uploads newest first.
  const byRank = (a, b) => RANK[group(a)] - RANK[group(b)];
  function place(list, items) {
    items.forEach((t, i) => {
      const el = cards.get(`${t.direction}:${t.id}`).el;
      if (list.children[i] !== el) list.insertBefore(el, list.children[i] || null);
    });
  }

  function renderAll() {
    const seen = new Set();
    const ups = [...ctx.transfers.values()].filter((t) => t.direction === 'upload').sort((a, b) => b.id - a.id).sort(byRank);
    const downs = queue().sort(byRank);
    for (const t of [...downs, ...ups]) { seen.add(`${t.direction}:${t.id}`); upsert(t); }
    for (const key of [...cards.keys()]) if (!seen.has(key)) drop(key);
    place(downList, downs);
    place(upList, ups);
    counts();
  }

  renderAll();
  ctx.refreshTransfers().catch((e) => toast(e.message, 'error'));
  let pending = 0;
  const offs = [
    ctx.on('transfers', renderAll),
    // Whether a download waits for its peer changes with the peer, not with an event of it.
    ctx.on('peer_connected', () => ctx.refreshTransfers().catch(() => {})),
    ctx.on('peer_disconnected', () => ctx.refreshTransfers().catch(() => {})),
    ctx.on('transfer', (t) => {
      // A new or newly finished download changes which cards can move: refresh them all.
      const known = cards.get(`${t.direction}:${t.id}`);
      if (!known || known.state !== t.state) renderAll();
      else upsert(t);
      if (!pending) pending = setTimeout(() => { pending = 0; counts(); }, 300);
    }),
  ];
  return () => { offs.forEach((off) => off()); clearTimeout(pending); };
}
