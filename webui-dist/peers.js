// Your announce address (text, QR code, copy), invites, and the peers: connect with a
// friend's address or invite code (pasted, or read from a photo of its QR code), see who
// is online, disconnect or reconnect; approve or block requests and suggestions (only
// friends are served: PROTOCOL.md §8.9).
import { api } from './api.js';
import { h, field, busy, copyText, errorLine, toast } from './ui.js';
import { invitesCard } from './invites.js';
import { peerMenu } from './peer-manage.js';

export const waitsForApproval = (p) => p.trust === 'pending' || p.trust === 'suggested';

// A messenger may wrap the code in a sentence: take the code out of it.
function connectTarget(text) {
  const invite = text.match(/hdp-invite:[A-Za-z0-9_-]+/);
  return invite ? invite[0] : text.trim();
}

function connectForm(onConnected) {
  const pasted = h('textarea', { name: 'announce_address', rows: '3', autocomplete: 'off', autocapitalize: 'off', spellcheck: 'false', required: true, placeholder: 'Name.CODE… or hdp-invite:…' });
  // Two pickers: on Android `capture` goes straight to the camera, so a QR code saved from
  // a messenger needs one without it.
  const photo = h('input', { type: 'file', accept: 'image/*', capture: 'environment', id: 'qr-photo', hidden: true });
  const picture = h('input', { type: 'file', accept: 'image/*', id: 'qr-picture', hidden: true });
  const scan = h('button', { type: 'button', class: 'secondary', id: 'scan-qr', 'aria-controls': 'qr-photo' }, 'Photo of a QR code');
  const pick = h('button', { type: 'button', class: 'secondary', id: 'pick-qr', 'aria-controls': 'qr-picture' }, 'QR code picture');
  const err = errorLine();
  const connectButton = h('button', { class: 'primary', type: 'submit' }, 'Connect');
  const form = h('form', { class: 'stack', id: 'connect-form' },
    field("Friend's address or invite code", pasted, 'Paste what your friend sent you, or take a photo of the QR code on their screen.'),
    h('div', { class: 'buttons' }, connectButton, scan, pick), photo, picture, err);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const text = connectTarget(pasted.value);
    if (!text) return;
    await busy(connectButton, 'Connecting… (up to a minute)', async () => {
      const r = await api('/api/connect', { method: 'POST', body: { announce_address: text } });
      pasted.value = '';
      if (r.approved === false) toast(`${r.name} has your request: you become friends once its owner approves it (or connects to your address).`, 'info');
      else toast(`Connected to ${r.name}`, 'ok');
      onConnected();
    }, err);
  });
  const readPicked = (input, button) => () => {
    const file = input.files && input.files[0];
    input.value = '';
    if (!file) return;
    busy(button, 'Reading the picture…', async () => {
      // Loaded here so that the decoder costs nothing until a photo is taken.
      const { readQrCode } = await import('./qrscan.js');
      const text = await readQrCode(file);
      if (!text) throw new Error('No QR code found in that photo: try again closer, with the whole code in the picture.');
      pasted.value = text;
      form.requestSubmit();
    }, err);
  };
  scan.addEventListener('click', () => photo.click());
  pick.addEventListener('click', () => picture.click());
  photo.addEventListener('change', readPicked(photo, scan));
  picture.addEventListener('change', readPicked(picture, pick));
  return form;
}

function stateText(p) {
  if (p.connected) return 'Online';
  if (p.trust === 'pending') return 'Asks to be your friend';
  if (p.trust === 'suggested') return p.lan ? 'Suggested: on your LAN' : `Suggested: introduced by ${p.introduced_by}`;
  if (p.trust === 'blocked') return 'Blocked';
  return p.disconnected_by_user ? 'Disconnected' : 'Offline';
}

function peerActions(p, refresh) {
  const action = (label, cls, busyLabel, run) => {
    const b = h('button', { type: 'button', class: cls, 'aria-label': `${label} ${p.name}` }, label);
    b.addEventListener('click', () => busy(b, busyLabel, async () => { await run(); await refresh(); }));
    return b;
  };
  const trust = (path, label, cls) => action(label, cls, `${label}…`, () => api(`/api/peers/${path}`, { method: 'POST', body: { peer: p.name } }));
  if (waitsForApproval(p)) return [trust('approve', 'Approve', 'primary'), trust('block', 'Block', 'danger')];
  if (p.trust === 'blocked') return [trust('unblock', 'Unblock', 'secondary')];
  if (p.connected) {
    return [h('a', { class: 'button secondary', href: `#/browse?path=${encodeURIComponent(p.name)}` }, 'Browse'),
      action('Disconnect', 'danger', 'Disconnecting…', () => api('/api/disconnect', { method: 'POST', body: { peer: p.name } }))];
  }
  if (p.announce_address) {
    return [action('Reconnect', 'secondary', 'Connecting…', () => api('/api/connect', { method: 'POST', body: { announce_address: p.announce_address } }))];
  }
  return [];
}

// Reachability at a glance (issue 13): what STUN and the router said, from /api/info.
const NAT_TEXT = {
  none: 'no NAT (public address)',
  cone: 'cone NAT: friends can reach you directly',
  symmetric: 'symmetric NAT: some friends need a relay',
  unknown: 'unknown (no STUN answer yet)',
};
const MAPPING_NAME = { upnp: 'UPnP', pcp: 'PCP', 'nat-pmp': 'NAT-PMP' };

function reachFacts(info) {
  const m = info.port_mapping;
  const row = (key, label, value) => [h('dt', {}, label), h('dd', { 'data-reach': key }, value)];
  return [
    ...row('online', 'Internet', info.online ? 'Online' : 'Offline: no STUN server answered'),
    ...row('nat', 'NAT type', NAT_TEXT[info.nat_type] || info.nat_type),
    ...row('public', 'Public address', info.public_address || 'not known yet'),
    ...row('mapping', 'Port mapping', m ? `${MAPPING_NAME[m.protocol] || m.protocol}: mapped ${m.external_address}` : 'no port mapping'),
  ];
}

function peerItem(p, refresh, openMenus) {
  const dot = h('span', { class: `dot ${p.connected ? 'on' : 'off'}`, 'aria-hidden': 'true' });
  // A request or suggestion has nothing to rename or forget yet: Approve or Block it.
  const menu = waitsForApproval(p) ? null : peerMenu(p, refresh, openMenus);
  return h('li', { class: 'card peer', 'data-peer': p.name, 'data-trust': p.trust },
    h('div', { class: 'head' }, h('h3', { class: 'name' }, p.nickname ? `${p.nickname} (${p.name})` : p.name), h('span', { class: 'state' }, dot, stateText(p),
      p.connected && p.connection ? h('span', { class: `badge path ${p.connection}`, 'data-connection': p.connection, title: p.connection === 'relayed' ? 'Through a relay server' : 'A direct path' }, p.connection) : null)),
    p.guest ? h('p', { class: 'meta' }, 'Guest: sees only the shares named for it') : null,
    p.remote_address ? h('p', { class: 'meta mono' }, p.remote_address) : null,
    h('div', { class: 'buttons' }, peerActions(p, refresh), menu && menu.more),
    menu && menu.panel);
}

export function peersScreen(main, ctx) {
  const info = ctx.info;
  const address = h('p', { class: 'address mono', id: 'my-address' }, info.announce_address);
  const copy = h('button', { class: 'primary', type: 'button', id: 'copy-address' }, 'Copy address');
  copy.addEventListener('click', async () => {
    toast(await copyText(info.announce_address) ? 'Address copied' : 'Copy failed: select the text instead', 'ok');
  });
  const qr = h('img', { class: 'qr', src: '/api/qr', width: '220', height: '220', alt: `QR code of the address of ${info.name}` });
  const reach = h('dl', { class: 'facts reach', id: 'reach', 'aria-label': 'Reachability' }, ...reachFacts(info));

  const refresh = () => ctx.refreshPeers().catch((e) => { status.textContent = e.message; });
  const status = h('p', { class: 'status', role: 'status' }, 'Loading…');
  const waitingHeading = h('h2', { id: 'waiting-h', hidden: true }, 'Waiting for your approval');
  const waiting = h('ul', { class: 'cards plain', id: 'waiting-list', 'aria-labelledby': 'waiting-h' });
  const list = h('ul', { class: 'cards plain', id: 'peer-list', 'aria-labelledby': 'known-h' });
  const invites = invitesCard(ctx);

  main.append(h('section', { class: 'screen peers' },
    h('h1', {}, 'Peers'),
    waitingHeading, waiting,
    h('section', { class: 'card', 'aria-labelledby': 'connect-h' }, h('h2', { id: 'connect-h' }, 'Connect to a friend'), connectForm(refresh)),
    invites.card,
    h('section', { class: 'card mine', 'aria-labelledby': 'mine-h' },
      h('h2', { id: 'mine-h' }, `Your address (${info.name})`),
      h('p', { class: 'hint' }, 'Friends who have it can connect to you; anyone else has to ask first.'),
      address, copy, qr, reach),
    h('h2', { id: 'known-h' }, 'Known peers'), status, list));

  // Peer events redraw the lists: the More panels the user opened stay open.
  const openMenus = new Set();
  function render(peers) {
    const online = peers.filter((p) => p.connected).length;
    const asking = peers.filter(waitsForApproval);
    status.textContent = (peers.length ? `${online} of ${peers.length} online` : 'No peers yet: connect to a friend or invite one above.')
      + (asking.length ? `; ${asking.length} asking to be your friend` : '');
    waitingHeading.hidden = asking.length === 0;
    waiting.replaceChildren(...asking.map((p) => peerItem(p, refresh, openMenus)));
    list.replaceChildren(...peers.filter((p) => !waitsForApproval(p)).map((p) => peerItem(p, refresh, openMenus)));
  }
  const off = ctx.on('peers', render);
  const offInfo = ctx.on('info', (i) => reach.replaceChildren(...reachFacts(i)));
  // Connections change what the node learns about its reachability: re-read it then too.
  const reread = () => ctx.refreshInfo().catch(() => {});
  const offConn = ['peer_connected', 'peer_disconnected'].map((t) => ctx.on(t, reread));
  refresh();
  reread();
  return () => { off(); offInfo(); offConn.forEach((f) => f()); invites.stop(); };
}
