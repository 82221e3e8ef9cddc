// The rarer actions on a remembered peer, folded behind "More": a nickname, block, and
// forget, which also cancels the downloads from it that are not finished (the daemon does
// that; the user is asked first, since their partial files are deleted).
import { api } from './api.js';
import { h, field, busy, errorLine, toast } from './ui.js';

const UNFINISHED = new Set(['queued', 'active', 'paused', 'disk_full']);

async function forget(name) {
  const transfers = await api('/api/transfers');
  const pending = transfers.filter((t) => t.direction === 'download' && t.peer === name && UNFINISHED.has(t.state));
  const also = pending.length ? ` Its ${pending.length} unfinished download${pending.length === 1 ? ' is' : 's are'} cancelled.` : '';
  if (!window.confirm(`Forget ${name}? Its key and address are removed: to be friends again, one of you connects or invites anew.${also}`)) return false;
  await api('/api/peers/forget', { method: 'POST', body: { peer: name } });
  toast(`Forgot ${name}`, 'ok');
  return true;
}

function renameForm(p, group, refresh) {
  const nickname = h('input', { name: 'nickname', maxlength: '64', autocomplete: 'off', value: p.nickname || '' });
  const err = errorLine();
  const save = h('button', { type: 'submit', class: 'secondary' }, 'Save name');
  const form = h('form', { class: 'stack', id: `${group}-rename` }, field(`Your name for ${p.name}`, nickname, 'Empty: no nickname.'), err, save);
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    busy(save, 'Saving…', async () => {
      await api('/api/peers/rename', { method: 'POST', body: { peer: p.name, nickname: nickname.value } });
      await refresh();
    }, err);
  });
  return form;
}

let menus = 0;

// The "More" button of a peer's card and the panel it opens; `openMenus` holds the names
// whose panel is open, so that a redrawn card keeps it so.
export function peerMenu(p, refresh, openMenus) {
  menus += 1;
  const group = `manage-${menus}`;
  const panel = h('div', { class: 'manage', id: group, hidden: !openMenus.has(p.name) });
  const buttons = h('div', { class: 'buttons' });
  if (p.trust === 'friend') {
    const block = h('button', { type: 'button', class: 'danger', 'aria-label': `Block ${p.name}` }, 'Block');
    block.addEventListener('click', () => busy(block, 'Blocking…', async () => {
      await api('/api/peers/block', { method: 'POST', body: { peer: p.name } });
      await refresh();
    }));
    buttons.append(block);
  }
  const forgetButton = h('button', { type: 'button', class: 'danger', 'aria-label': `Forget ${p.name}` }, 'Forget');
  forgetButton.addEventListener('click', () => busy(forgetButton, 'Forgetting…', async () => {
    if (await forget(p.name)) await refresh();
  }));
  buttons.append(forgetButton);
  panel.append(renameForm(p, group, refresh), buttons);
  const more = h('button', { type: 'button', class: 'secondary', 'aria-expanded': String(!panel.hidden), 'aria-controls': group, 'aria-label': `More for ${p.name}` }, 'More');
  more.addEventListener('click', () => {
    panel.hidden = !panel.hidden;
    more.setAttribute('aria-expanded', String(!panel.hidden));
    if (panel.hidden) openMenus.delete(p.name);
    else openMenus.add(p.name);
  });
  return { more, panel };
}
