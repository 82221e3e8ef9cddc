// The local library (Downloads): what this NAS finished downloading, wherever it was saved
// (/api/library), with play, save and delete; and the preview sheet, which plays a
// friend's file over /api/read or a downloaded one over /library, both with Range.
import { api } from './api.js';
import { h, fmtBytes, basename, toast, busy, sheet } from './ui.js';

const KINDS = [
  ['audio', /\.(mp3|wav|flac|ogg|oga|opus|m4a|aac)$/i],
  ['video', /\.(mp4|m4v|webm|mkv|mov|ogv)$/i],
  ['img', /\.(jpe?g|png|gif|webp|avif|bmp|svg)$/i],
  ['text', /\.(txt|md|nfo|log|srt|vtt|csv|json|xml|ini|conf|toml|ya?ml|sh|py|rs|js|css|html?)$/i],
];
// What a preview shows of a file: audio, video, img, text or nothing.
export const previewKind = (name) => (KINDS.find(([, re]) => re.test(name)) || [])[0];

// A text preview reads this much at most.
const TEXT_BYTES = 65536;

export function preview(name, url) {
  const kind = previewKind(name);
  let body;
  if (kind === 'text') {
    body = h('pre', { class: 'preview-text' }, 'Loading…');
    fetch(url, { headers: { Range: `bytes=0-${TEXT_BYTES - 1}` }, credentials: 'same-origin' })
      .then((r) => (r.ok ? r.text() : Promise.reject(new Error(`HTTP ${r.status}`))))
      .then((t) => { body.textContent = t; }, (e) => { body.textContent = e.message; });
  } else {
    body = h(kind, { src: url, controls: kind !== 'img', preload: 'metadata', alt: name });
  }
  const shown = sheet(name, body);
  shown.setAttribute('aria-label', `Preview of ${name}`);
  return shown;
}

const fileUrl = (path) => `/library?path=${encodeURIComponent(path)}`;

export function libraryScreen(main) {
  const status = h('p', { class: 'status', role: 'status' }, 'Loading…');
  const list = h('div', { class: 'library', id: 'library' });
  const more = h('button', { type: 'button', class: 'secondary', hidden: true }, 'More');
  let offset = 0;

  function row(item) {
    const name = basename(item.path);
    const folder = item.path.slice(0, item.path.length - name.length - 1);
    const label = h('span', { class: 'label' }, h('span', { class: 'name' }, name),
      h('span', { class: 'meta' }, `${fmtBytes(item.size)} · ${folder} · from ${item.from.split('/')[0]}`));
    const kind = previewKind(name);
    const open = kind
      ? h('button', { type: 'button', class: 'small', onclick: () => preview(name, fileUrl(item.path)) }, /audio|video/.test(kind) ? 'Play' : 'View')
      : h('a', { class: 'button small', href: fileUrl(item.path), target: '_blank', rel: 'noopener' }, 'Open');
    const save = h('a', { class: 'button small', href: `${fileUrl(item.path)}&save=1`, download: name }, 'Save');
    const del = h('button', { type: 'button', class: 'small danger' }, 'Delete');
    const el = h('div', { class: 'row', 'data-path': item.path }, h('div', { class: 'rowlink' }, label),
      h('span', { class: 'actions' }, open, save, del));
    del.addEventListener('click', () => {
      if (!window.confirm(`Delete ${name} from the disk? This cannot be undone.`)) return;
      busy(del, 'Deleting…', async () => {
        await api('/api/library/delete', { method: 'POST', body: { path: item.path } });
        el.remove();
        toast(`Deleted ${name}`, 'ok');
      });
    });
    return el;
  }

  async function load() {
    try {
      const page = await api(`/api/library?offset=${offset}`);
      list.append(...page.items.map(row));
      offset += page.items.length;
      more.hidden = offset >= page.total;
      const free = page.free === null ? '' : ` · ${fmtBytes(page.free)} free`;
      status.textContent = `${page.total} downloaded file${page.total === 1 ? '' : 's'}${free}`;
    } catch (e) {
      status.textContent = e.message;
    }
  }
  more.addEventListener('click', () => busy(more, 'Loading…', load));
  main.append(h('section', { class: 'screen' }, h('h1', {}, 'Downloads'), status, list, more));
  load();
}
