// The folders this NAS shares: add (by path on the NAS), remove, rescan, and choose who
// sees each.
import { api } from './api.js';
import { h, field, busy, fmtBytes, toast } from './ui.js';
import { accessEditor, visibleToText } from './share-access.js';

export function sharesScreen(main, ctx) {
  const dir = h('input', { name: 'dir', autocomplete: 'off', autocapitalize: 'off', spellcheck: 'false', required: true, placeholder: '/srv/media/Music' });
  const add = h('button', { class: 'primary', type: 'submit' }, 'Share folder');
  const form = h('form', { class: 'stack', id: 'share-form' }, field('Folder on the NAS', dir, 'Its full path. Large folders take a while to index.'), add);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    await busy(add, 'Indexing…', async () => {
      const r = await api('/api/shares', { method: 'POST', body: { dir: dir.value.trim() } });
      dir.value = '';
      toast(`Sharing ${r.name}: ${r.files.toLocaleString()} file${r.files === 1 ? '' : 's'}`, 'ok');
      load();
    });
  });
  const rescan = h('button', { class: 'secondary', type: 'button' }, 'Rescan all');
  rescan.addEventListener('click', () => busy(rescan, 'Rescanning…', async () => {
    const r = await api('/api/rescan', { method: 'POST', body: {} });
    toast(`${r.files.toLocaleString()} files, ${r.written} changed, ${r.removed} removed`, 'ok');
  }));

  const status = h('p', { class: 'status', role: 'status' }, 'Loading…');
  const list = h('ul', { class: 'cards plain', id: 'share-list' });
  main.append(h('section', { class: 'screen shares' },
    h('h1', {}, 'Shares'),
    h('section', { class: 'card', 'aria-labelledby': 'add-h' }, h('h2', { id: 'add-h' }, 'Share a folder'), form),
    h('div', { class: 'head' }, h('h2', {}, 'Shared folders'), rescan),
    status, list));

  function item(s, peers) {
    const remove = h('button', { type: 'button', class: 'danger', 'aria-label': `Remove ${s.name}` }, 'Remove');
    remove.addEventListener('click', () => {
      if (!window.confirm(`Stop sharing ${s.name}? The files stay on the disk.`)) return;
      busy(remove, 'Removing…', async () => {
        await api(`/api/shares/${encodeURIComponent(s.name)}`, { method: 'DELETE' });
        load();
      });
    });
    const seenBy = h('p', { class: 'meta visible-to' }, `Visible to: ${visibleToText(s.visible_to, peers)}`);
    const access = accessEditor(s, peers, (visibleTo) => {
      seenBy.textContent = `Visible to: ${visibleToText(visibleTo, peers)}`;
    });
    return h('li', { class: 'card share', 'data-share': s.name },
      h('div', { class: 'head' }, h('h3', { class: 'name' }, s.name), h('span', { class: 'meta' }, fmtBytes(s.size))),
      h('p', { class: 'meta mono' }, s.dir),
      s.available === false && h('p', { class: 'missing', role: 'status' }, 'Folder not found (an unplugged disk?): hidden from friends until it is back.'),
      seenBy,
      h('div', { class: 'buttons' }, access.toggle, remove),
      access.form);
  }

  async function load() {
    try {
      const [shares, peers] = await Promise.all([api('/api/shares'), ctx.refreshPeers()]);
      status.textContent = shares.length ? `${shares.length} shared folder${shares.length === 1 ? '' : 's'}` : 'Nothing is shared yet.';
      list.replaceChildren(...shares.map((s) => item(s, peers)));
    } catch (e) {
      status.textContent = e.message;
    }
  }
  load();
  // An index pass must not close an access form the user is filling in.
  const offs = [ctx.on('shares_changed', () => { if (!list.querySelector('.access-form:not([hidden])')) load(); })];
  return () => offs.forEach((off) => off());
}
