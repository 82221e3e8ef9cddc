// Who sees a share (PROTOCOL.md §8.11): every friend, or only the friends chosen here.
import { api } from './api.js';
import { h, busy, errorLine, toast } from './ui.js';

const shownName = (peers, name) => {
  const p = peers.find((x) => x.name === name);
  return p && p.nickname ? p.nickname : name;
};

// "All friends", "All friends and guest X", "Alice, Bob" or "Only you".
export function visibleToText(visibleTo, peers) {
  const named = visibleTo.peers.map((n) => shownName(peers, n)).join(', ');
  if (visibleTo.all_friends) return named ? `All friends, and guests ${named}` : 'All friends';
  return named || 'Only you';
}

let editors = 0;

// The "Who can see it" editor of one share; `onSaved` gets the new visible_to.
export function accessEditor(share, peers, onSaved) {
  editors += 1;
  const group = `access-${editors}`;
  const friends = peers.filter((p) => p.trust === 'friend');
  const chosen = new Set(share.visible_to.all_friends ? [] : share.visible_to.peers);
  const everyone = h('input', { type: 'radio', name: group, value: 'all', checked: share.visible_to.all_friends });
  const some = h('input', { type: 'radio', name: group, value: 'some', checked: !share.visible_to.all_friends });
  const boxes = friends.map((p) => h('input', { type: 'checkbox', value: p.name, checked: chosen.has(p.name) }));
  const syncBoxes = () => boxes.forEach((b) => { b.disabled = everyone.checked; });
  everyone.addEventListener('change', syncBoxes);
  some.addEventListener('change', syncBoxes);
  syncBoxes();

  const err = errorLine();
  const save = h('button', { type: 'submit', class: 'primary' }, 'Save access');
  const form = h('form', { class: 'stack access-form', hidden: true, id: `${group}-form`, 'data-share': share.name },
    h('fieldset', { class: 'choices' },
      h('legend', {}, `Who can see ${share.name}`),
      h('label', { class: 'choice' }, everyone, 'All friends'),
      h('label', { class: 'choice' }, some, 'Only these friends:'),
      friends.length
        ? h('div', { class: 'nested' }, ...friends.map((p, i) => h('label', { class: 'choice' }, boxes[i], p.nickname ? `${p.nickname} (${p.name})` : p.name)))
        : h('p', { class: 'hint nested' }, 'No friends yet.')),
    err, save);
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const body = everyone.checked
      ? { all_friends: true }
      : { all_friends: false, peers: boxes.filter((b) => b.checked).map((b) => b.value) };
    busy(save, 'Saving…', async () => {
      const visibleTo = await api(`/api/shares/${encodeURIComponent(share.name)}/access`, { method: 'POST', body });
      toast(`${share.name}: ${visibleToText(visibleTo, peers)}`, 'ok');
      onSaved(visibleTo);
    }, err);
  });
  const toggle = h('button', { type: 'button', class: 'secondary', 'aria-expanded': 'false', 'aria-controls': form.id, 'aria-label': `Access: who can see ${share.name}` }, 'Access');
  toggle.addEventListener('click', () => {
    form.hidden = !form.hidden;
    toggle.setAttribute('aria-expanded', String(!form.hidden));
  });
  return { toggle, form };
}
