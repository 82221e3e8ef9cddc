// Your announce address (text, QR code, copy) and the peers: connect by pasting a friend's
// address, see who is online, disconnect or reconnect; approve or block requests and
// suggestions (only friends are served: PROTOCOL.md §8.9).
import { api } from './api.js';
import { h, field, busy, copyText, toast } from './ui.js';

export function peersScreen(main, ctx) {
  const info = ctx.info;
  const address = h('p', { class: 'address mono', id: 'my-address' }, info.announce_address);
  const copy = h('button', { class: 'primary', type: 'button', id: 'copy-address' }, 'Copy address');
  copy.addEventListener('click', async () => {
    toast(await copyText(info.announce_address) ? 'Address copied' : 'Copy failed: select the text instead', 'ok');
  });
  const qr = h('img', { class: 'qr', src: '/api/qr', width: '220', height: '220', alt: `QR code of the address of ${info.name}` });

  const pasted = h('textarea', { name: 'announce_address', rows: '3', autocomplete: 'off', autocapitalize: 'off', spellcheck: 'false', required: true, placeholder: 'Name.CODE…' });
  const connectButton = h('button', { class: 'primary', type: 'submit' }, 'Connect');
  const form = h('form', { class: 'stack', id: 'connect-form' }, field("Friend's address", pasted, 'Paste the address your friend sent you.'), connectButton);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const text = pasted.value.trim();
    if (!text) return;
    await busy(connectButton, 'Connecting… (up to a minute)', async () => {
      const r = await api('/api/connect', { method: 'POST', body: { announce_address: text } });
      pasted.value = '';
      toast(`Connected to ${r.name}`, 'ok');
      load();
    });
  });

  const status = h('p', { class: 'status', role: 'status' }, 'Loading…');
  const list = h('ul', { class: 'cards plain', id: 'peer-list' });

  main.append(h('section', { class: 'screen peers' },
    h('h1', {}, 'Peers'),
    h('section', { class: 'card mine', 'aria-labelledby': 'mine-h' },
      h('h2', { id: 'mine-h' }, `Your address (${info.name})`),
      h('p', { class: 'hint' }, 'Send this to a friend, or let them scan the code.'),
      address, copy, qr),
    h('section', { class: 'card', 'aria-labelledby': 'connect-h' }, h('h2', { id: 'connect-h' }, 'Connect to a friend'), form),
    h('h2', {}, 'Known peers'), status, list));

  function trustAction(p, action, label, cls) {
    const b = h('button', { type: 'button', class: cls, 'aria-label': `${label} ${p.name}` }, label);
    b.addEventListener('click', () => busy(b, `${label}…`, async () => {
      await api(`/api/peers/${action}`, { method: 'POST', body: { peer: p.name } });
      load();
    }));
    return b;
  }

  function stateText(p) {
    if (p.connected) return 'Online';
    if (p.trust === 'pending') return 'Asks to be your friend';
    if (p.trust === 'suggested') return p.lan ? 'Suggested: on your network' : `Suggested by ${p.introduced_by}`;
    if (p.trust === 'blocked') return 'Blocked';
    return p.disconnected_by_user ? 'Disconnected' : 'Offline';
  }

  function peerItem(p) {
    const dot = h('span', { class: `dot ${p.connected ? 'on' : 'off'}`, 'aria-hidden': 'true' });
    const actions = h('div', { class: 'buttons' });
    if (p.trust === 'pending' || p.trust === 'suggested') {
      actions.append(trustAction(p, 'approve', 'Approve', 'primary'), trustAction(p, 'block', 'Block', 'danger'));
    } else if (p.trust === 'blocked') {
      actions.append(trustAction(p, 'unblock', 'Unblock', 'secondary'));
    } else if (p.connected) {
      actions.append(h('a', { class: 'button secondary', href: `#/browse?path=${encodeURIComponent(p.name)}` }, 'Browse'));
      const b = h('button', { type: 'button', class: 'danger', 'aria-label': `Disconnect ${p.name}` }, 'Disconnect');
      b.addEventListener('click', () => busy(b, 'Disconnecting…', async () => {
        await api('/api/disconnect', { method: 'POST', body: { peer: p.name } });
        load();
      }));
      actions.append(b);
    } else if (p.announce_address) {
      const b = h('button', { type: 'button', class: 'secondary', 'aria-label': `Reconnect ${p.name}` }, 'Reconnect');
      b.addEventListener('click', () => busy(b, 'Connecting…', async () => {
        await api('/api/connect', { method: 'POST', body: { announce_address: p.announce_address } });
        load();
      }));
      actions.append(b);
    }
    return h('li', { class: 'card peer', 'data-peer': p.name },
      h('div', { class: 'head' }, h('h3', { class: 'name' }, p.nickname ? `${p.nickname} (${p.name})` : p.name), h('span', { class: 'state' }, dot, stateText(p))),
      p.remote_address ? h('p', { class: 'meta mono' }, p.remote_address) : null,
      actions);
  }

  async function load() {
    try {
      const peers = await api('/api/peers');
      const online = peers.filter((p) => p.connected).length;
      const asking = peers.filter((p) => p.trust === 'pending').length;
      status.textContent = (peers.length ? `${online} of ${peers.length} online` : 'No peers yet: connect to a friend above.')
        + (asking ? `; ${asking} asking to be your friend` : '');
      list.replaceChildren(...peers.map(peerItem));
    } catch (e) {
      status.textContent = e.message;
    }
  }
  load();
  const offs = [ctx.on('peer_connected', load), ctx.on('peer_disconnected', load), ctx.on('resync', load)];
  return () => offs.forEach((off) => off());
}
