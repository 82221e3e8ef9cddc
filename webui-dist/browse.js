// Browse & search every connected peer's files. Directory listings and search results
// can hold tens of thousands of entries: they go into a virtualised list.
import { api, listing } from './api.js';
import { h, icon, fmtBytes, basename, encodePath, toast, VirtualList, sheet } from './ui.js';
import { preview, previewKind } from './library.js';

const ROW = 64;

function link(path, q) {
  const p = new URLSearchParams();
  if (path) p.set('path', path);
  if (q) p.set('q', q);
  const s = p.toString();
  return `#/browse${s ? `?${s}` : ''}`;
}

// Whether a finished download covers `path` (peer/…), so the file is on the NAS.
function downloaded(ctx, path) {
  for (const t of ctx.transfers.values()) {
    if (t.direction !== 'download' || t.state !== 'done') continue;
    const root = `${t.peer}/${t.path}`;
    if ((path === root || path.startsWith(`${root}/`)) && !t.failures.some((f) => `${t.peer}/${f.path}` === path)) return true;
  }
  return false;
}

export function browseScreen(main, ctx, params) {
  const path = (params.get('path') || '').replace(/^\/+|\/+$/g, '');
  const q = params.get('q') || '';
  const abort = new AbortController();

  const crumbs = h('nav', { class: 'crumbs', 'aria-label': 'Location' });
  const parts = path ? path.split('/') : [];
  crumbs.append(h('a', { href: link('', '') }, 'All peers'));
  parts.forEach((part, i) => {
    const to = parts.slice(0, i + 1).join('/');
    crumbs.append(h('span', { 'aria-hidden': 'true' }, '›'));
    crumbs.append(i === parts.length - 1 && !q ? h('span', { 'aria-current': 'location' }, part) : h('a', { href: link(to, '') }, part));
  });

  const input = h('input', { type: 'search', name: 'q', value: q, placeholder: path ? `Search in ${basename(path)}` : 'Search all peers', enterkeyhint: 'search', 'aria-label': 'Search files' });
  const form = h('form', { class: 'search', role: 'search' }, input, h('button', { class: 'primary', type: 'submit' }, 'Search'));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    location.hash = link(path, input.value.trim());
  });

  const status = h('p', { class: 'status', role: 'status' }, 'Loading…');
  const heading = h('h1', {}, q ? `Results for “${q}”` : (path ? basename(path) : 'Browse'));
  const list = new VirtualList(main, ROW, (entry) => row(entry), q ? 'Search results' : 'Files');

  // Where downloads go: the download folder, or a share's folder (a media server's).
  const dest = h('select', { name: 'to', 'aria-label': 'Save downloads to' }, h('option', { value: '' }, 'Download folder'));
  const destRow = h('label', { class: 'dest', hidden: true }, 'Save to ', dest);
  api('/api/shares', { signal: abort.signal }).then((shares) => {
    dest.append(...shares.map((s) => h('option', { value: s.dir }, s.name)));
    destRow.hidden = shares.length === 0;
  }, () => {});

  async function queue(entry, button) {
    button.disabled = true;
    try {
      await api('/api/downloads', { method: 'POST', body: { path: entry.path, to: dest.value || undefined } });
      toast(`Downloading ${basename(entry.path)}`, 'ok');
    } catch (e) {
      toast(e.message, 'error');
    } finally {
      button.disabled = false;
    }
  }

  // A search result's folder (inside the friend's share) and the friend: the second line.
  const where = (entry) => {
    const [peer, ...rest] = entry.path.split('/');
    rest.pop();
    return [rest.join('/'), peer];
  };

  function fileActions(entry, name) {
    const actions = [];
    if (!entry.is_dir && downloaded(ctx, entry.path)) {
      actions.push(h('a', { class: 'button small', href: `/downloads/${encodePath(entry.path)}`, target: '_blank', rel: 'noopener', 'aria-label': `Open ${name}` }, 'Open'));
    }
    if (!entry.is_dir && previewKind(entry.path)) {
      actions.push(h('button', { class: 'icon-button', type: 'button', 'aria-label': `Preview ${name}`, title: 'Preview',
        onclick: () => preview(name, `/api/read?path=${encodeURIComponent(entry.path)}`) }, icon('M7 4l13 8-13 8z')));
    }
    const b = h('button', { class: 'icon-button', type: 'button', 'aria-label': `Download ${name}`, title: 'Download' },
      icon('M12 3v12M6 10l6 6 6-6M4 20h16'));
    b.addEventListener('click', () => queue(entry, b));
    actions.push(b);
    return actions;
  }

  // A file's sheet: the whole name, where it is, and the same actions as its row.
  function details(entry) {
    const name = basename(entry.path);
    const [folder, peer] = where(entry);
    const facts = [['Folder', folder || '(top of the share)'], ['Friend', peer], ['Size', fmtBytes(entry.size)],
      ['Modified', new Date(entry.mtime * 1000).toLocaleString()]];
    sheet(name, h('dl', { class: 'facts' }, ...facts.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)])),
      h('div', { class: 'actions' }, ...fileActions(entry, name)));
  }

  function row(entry) {
    const name = basename(entry.path);
    const glyph = h('span', { class: `icon ${entry.peer ? 'peer' : entry.is_dir ? 'dir' : 'file'}`, 'aria-hidden': 'true' });
    let meta = h('span', { class: 'meta' }, entry.peer ? (entry.connected ? 'online' : 'offline') : fmtBytes(entry.size));
    // In results the size keeps its place however long the folder and friend are.
    if (q && !entry.peer) {
      meta = h('span', { class: 'meta split' }, h('span', {}, where(entry).filter(Boolean).join(' · ')),
        h('span', {}, ` · ${fmtBytes(entry.size)}`));
    }
    const label = h('span', { class: 'label' }, h('span', { class: 'name' }, name), meta);
    const target = entry.is_dir || entry.peer
      ? h('a', { class: 'rowlink', href: link(entry.path, '') }, glyph, label)
      : h('button', { class: 'rowlink', type: 'button', 'aria-haspopup': 'dialog', onclick: () => details(entry) }, glyph, label);
    const actions = h('span', { class: 'actions' });
    if (!entry.peer) actions.append(...fileActions(entry, name));
    return h('div', { class: 'row' }, target, actions);
  }

  main.append(h('section', { class: 'screen browse' }, heading, crumbs, form, destRow, status, list.el));

  async function load() {
    try {
      let items;
      let error = null;
      if (!path && !q) {
        const peers = await api('/api/peers', { signal: abort.signal });
        items = peers.filter((p) => p.connected).map((p) => ({ path: p.name, peer: true, connected: p.connected, is_dir: true }));
        status.textContent = items.length ? `${items.length} peer${items.length === 1 ? '' : 's'} online` : 'No peer is online. Connect to a friend under Peers.';
      } else {
        const r = await listing('/api/ls', q ? { path, searchterm: q, recursive: 'true' } : { path, recursive: 'false' }, abort.signal);
        items = r.entries;
        error = r.error;
        if (!q) items.sort((a, b) => (b.is_dir - a.is_dir) || a.path.localeCompare(b.path));
        const n = items.length;
        status.textContent = `${n.toLocaleString()} ${q ? 'match' : 'item'}${n === 1 ? '' : (q ? 'es' : 's')}${error ? ` (incomplete: ${error})` : ''}`;
      }
      list.setItems(items);
    } catch (e) {
      if (e.name === 'AbortError') return;
      status.textContent = e.message;
      list.setItems([]);
    }
  }
  load();
  const offs = [
    ctx.on('peer_connected', () => { if (!path && !q) load(); }),
    ctx.on('peer_disconnected', () => { if (!path && !q) load(); }),
    ctx.on('transfer', (t) => { if (t.state === 'done') { list.range = null; list.render(); } }),
  ];
  return () => { abort.abort(); list.destroy(); offs.forEach((off) => off()); };
}
