// Invites (PROTOCOL.md §8.10): a code a friend joins with, shown as text to copy, through
// the system share sheet where the browser has one, and as a QR code for a phone camera;
// and the live invites, each revocable.
import { api } from './api.js';
import { h, field, busy, copyText, errorLine, toast } from './ui.js';

const LIFETIMES = [['1 hour', 3600], ['1 day', 86400], ['1 week', 7 * 86400], ['30 days', 30 * 86400]];
const DEFAULT_LIFETIME = 86400;
const MAX_USES = 100;

function until(expiresAt) {
  const left = expiresAt - Date.now() / 1000;
  if (left <= 0) return 'expired';
  if (left < 3600) return `expires in ${Math.max(1, Math.round(left / 60))} min`;
  if (left < 2 * 86400) return `expires in ${Math.round(left / 3600)} h`;
  return `expires in ${Math.round(left / 86400)} days`;
}

function describe(invite) {
  const uses = `${invite.uses_left} use${invite.uses_left === 1 ? '' : 's'} left`;
  const shares = invite.shares && invite.shares.length ? `only ${invite.shares.join(', ')}` : 'all shares';
  return `${until(invite.expires_at)} · ${uses} · ${shares}`;
}

// The form's share choice: none ticked means a friend who sees what every friend sees.
function shareChoice(shares) {
  const boxes = shares.map((s) => h('input', { type: 'checkbox', name: 'share', value: s.name }));
  const fieldset = h('fieldset', { class: 'choices' },
    h('legend', {}, 'Shares it opens'),
    h('p', { class: 'hint' }, 'None ticked: all shares, like any friend. Ticked: only those (a guest).'),
    ...shares.map((s, i) => h('label', { class: 'choice' }, boxes[i], s.name)));
  return { fieldset, chosen: () => boxes.filter((b) => b.checked).map((b) => b.value) };
}

function madeInvite(invite) {
  const copy = h('button', { type: 'button', class: 'primary', id: 'copy-invite' }, 'Copy code');
  copy.addEventListener('click', async () => {
    toast(await copyText(invite.code) ? 'Invite code copied' : 'Copy failed: select the text instead', 'ok');
  });
  const buttons = h('div', { class: 'buttons' }, copy);
  // The Web Share API exists only in secure contexts on some browsers: offer it when there.
  if (typeof navigator.share === 'function') {
    const share = h('button', { type: 'button', class: 'secondary', id: 'share-invite' }, 'Share…');
    share.addEventListener('click', () => navigator.share({ title: 'harddrive-party invite', text: invite.code })
      .catch((e) => { if (e.name !== 'AbortError') toast(e.message, 'error'); }));
    buttons.append(share);
  }
  return h('div', { class: 'made-invite', id: 'made-invite', 'data-invite': invite.id },
    h('h3', { tabindex: '-1' }, 'Invite code'),
    h('p', { class: 'hint' }, `Send it to your friend, or let them photograph the QR code. It ${describe(invite)}.`),
    h('p', { class: 'address mono', id: 'invite-code' }, invite.code),
    buttons,
    h('img', { class: 'qr', id: 'invite-qr', width: '220', height: '220', alt: 'QR code of the invite code', src: `data:image/svg+xml;charset=utf-8,${encodeURIComponent(invite.qr_svg)}` }));
}

function inviteForm(onMade) {
  const lifetime = h('select', { name: 'expires' },
    ...LIFETIMES.map(([label, secs]) => h('option', { value: String(secs), selected: secs === DEFAULT_LIFETIME }, label)));
  const uses = h('input', { type: 'number', name: 'uses', min: '1', max: String(MAX_USES), value: '1', inputmode: 'numeric', required: true });
  const sharesSlot = h('div');
  let chosenShares = () => [];
  const err = errorLine();
  const submit = h('button', { class: 'primary', type: 'submit' }, 'Make invite');
  const form = h('form', { class: 'stack', id: 'invite-form', hidden: true },
    field('Valid for', lifetime), field('How many people may use it', uses, `1 to ${MAX_USES}.`), sharesSlot, err, submit);
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const shares = chosenShares();
    busy(submit, 'Making…', async () => {
      const body = { expires_secs: Number(lifetime.value), uses: Number(uses.value), shares: shares.length ? shares : null };
      onMade(await api('/api/invites', { method: 'POST', body }));
    }, err);
  });
  async function loadShares() {
    try {
      const choice = shareChoice(await api('/api/shares'));
      chosenShares = choice.chosen;
      sharesSlot.replaceChildren(choice.fieldset);
    } catch (e) {
      err.textContent = e.message;
    }
  }
  return { form, loadShares };
}

function liveInvites(onRevoked) {
  const list = h('ul', { class: 'plain invites', id: 'invite-list', 'aria-label': 'Live invites' });
  const empty = h('p', { class: 'meta' });
  async function load() {
    try {
      const invites = await api('/api/invites');
      empty.textContent = invites.length ? '' : 'No live invites.';
      list.replaceChildren(...invites.map((inv) => {
        const revoke = h('button', { type: 'button', class: 'danger', 'aria-label': `Revoke invite ${inv.id}` }, 'Revoke');
        revoke.addEventListener('click', () => busy(revoke, 'Revoking…', async () => {
          await api(`/api/invites/${encodeURIComponent(inv.id)}`, { method: 'DELETE' });
          toast('Invite revoked: its code no longer works', 'ok');
          onRevoked(inv.id);
          await load();
        }));
        return h('li', { class: 'invite', 'data-invite': inv.id }, h('p', { class: 'meta' }, describe(inv)), revoke);
      }));
    } catch (e) {
      empty.textContent = e.message;
    }
  }
  return { element: h('div', { class: 'live-invites' }, h('h3', {}, 'Live invites'), empty, list), load };
}

// The Invite card of the Peers screen, and a function that stops its event listening.
export function invitesCard(ctx) {
  const result = h('div', { 'aria-live': 'polite' });
  const live = liveInvites((id) => {
    if (result.firstChild && result.firstChild.dataset.invite === id) result.replaceChildren();
  });
  const open = h('button', { type: 'button', class: 'primary', id: 'invite-button', 'aria-expanded': 'false', 'aria-controls': 'invite-form' }, 'Invite');
  const showForm = (shown) => {
    form.hidden = !shown;
    open.setAttribute('aria-expanded', String(shown));
  };
  // Once made, the code takes the form's place, right under the Invite button.
  const { form, loadShares } = inviteForm((invite) => {
    showForm(false);
    result.replaceChildren(madeInvite(invite));
    result.querySelector('h3').focus();
    live.load();
  });
  open.addEventListener('click', () => {
    showForm(form.hidden);
    if (!form.hidden) loadShares();
  });
  live.load();
  const card = h('section', { class: 'card', 'aria-labelledby': 'invite-h' },
    h('h2', { id: 'invite-h' }, 'Invite a friend'),
    h('p', { class: 'hint' }, 'A code that lets one friend (or a few) join without swapping addresses. It expires, and you can revoke it.'),
    open, form, result, live.element);
  // A friend joining uses the invite up: its uses left change.
  return { card, stop: ctx.on('peer_connected', live.load) };
}
