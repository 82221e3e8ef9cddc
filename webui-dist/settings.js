// Bandwidth limits, the download folder and upload slots (all live), the peer listen
// address (from the next start), the password, and read-only facts about this node.
import { api, setCsrf } from './api.js';
import { h, field, busy, errorLine, fmtRate, toast } from './ui.js';

const LIMITS = [
  ['download_limit', 'download', 'Download limit (total)'],
  ['upload_limit', 'upload', 'Upload limit (total)'],
  ['peer_download_limit', 'peer_download', 'Download limit per peer'],
  ['peer_upload_limit', 'peer_upload', 'Upload limit per peer'],
];

// A rate as the daemon parses it back: 3000000 -> "3MB".
function rateText(n) {
  if (!n) return '0';
  for (const [unit, f] of [['GB', 1e9], ['MB', 1e6], ['KB', 1e3]]) {
    if (n % f === 0) return `${n / f}${unit}`;
  }
  return String(n);
}

export function settingsScreen(main, ctx) {
  const inputs = {};
  const limitFields = LIMITS.map(([key, , label]) => {
    inputs[key] = h('input', { name: key, inputmode: 'text', autocomplete: 'off', spellcheck: 'false', placeholder: '0 = no limit' });
    return field(label, inputs[key]);
  });
  const current = h('p', { class: 'hint', role: 'status' });
  const help = h('p', { class: 'hint' }, 'Bytes per second, for example 5MB or 800KB; 0 for no limit. Changes apply at once.');
  const save = h('button', { class: 'primary', type: 'submit' }, 'Save limits');
  const limitsForm = h('form', { class: 'stack', id: 'limits-form' }, current, help, ...limitFields, save);

  function show(limits) {
    for (const [key, short] of LIMITS) inputs[key].value = rateText(limits[short]);
    current.textContent = `Now: down ${limits.download ? fmtRate(limits.download) : 'unlimited'}, up ${limits.upload ? fmtRate(limits.upload) : 'unlimited'}.`;
  }
  limitsForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    const body = {};
    for (const [key] of LIMITS) body[key] = inputs[key].value.trim() || '0';
    await busy(save, 'Saving…', async () => {
      const r = await api('/api/settings', { method: 'POST', body });
      show(r.limits);
      toast('Limits saved', 'ok');
    });
  });

  // Download folder, upload slots, listen address.
  const dir = h('input', { name: 'download_dir', autocomplete: 'off', autocapitalize: 'off', spellcheck: 'false', class: 'mono' });
  const slots = h('input', { name: 'max_uploads', type: 'number', inputmode: 'numeric', min: '1', max: '1024', step: '1' });
  const peerSlots = h('input', { name: 'max_uploads_per_peer', type: 'number', inputmode: 'numeric', min: '1', max: '1024', step: '1' });
  const seed = h('input', { name: 'seed_downloads', type: 'checkbox', 'aria-describedby': 'seed-hint' });
  const notifyUrl = h('input', { name: 'notify_url', type: 'url', inputmode: 'url', autocomplete: 'off', autocapitalize: 'off', spellcheck: 'false', class: 'mono', placeholder: 'http://ntfy.lan/harddrive-party' });
  const listen = h('input', { name: 'listen', autocomplete: 'off', autocapitalize: 'off', spellcheck: 'false', class: 'mono', placeholder: '0.0.0.0:0' });
  const nodeStatus = h('p', { class: 'hint', role: 'status', id: 'node-status' });
  const saveNode = h('button', { class: 'primary', type: 'submit' }, 'Save settings');
  const nodeForm = h('form', { class: 'stack', id: 'node-form' },
    field('Download folder', dir, 'A folder on the NAS. New downloads go there at once; files already downloaded stay where they are.'),
    field('Upload slots (total)', slots, 'Files sent to peers at once; more wait in a queue. Applies at once.'),
    field('Upload slots per peer', peerSlots),
    h('div', { class: 'field' }, h('label', { class: 'choice' }, seed, 'Offer finished downloads to friends'),
      h('p', { class: 'hint', id: 'seed-hint' }, 'Shares the download folder, so friends can fetch from you what you fetched. Its access can be limited like any share.')),
    field('Notifications (ntfy topic or webhook)', notifyUrl, 'An http:// address on your network: finished and failed downloads, a full disk and friend requests are sent there, at most one message every 30 s. Empty: off.'),
    field('Peer listen address (UDP)', listen, 'IP:PORT for connections from peers; port 0 picks any. Applies when harddrive-party restarts, and your address for friends changes with the port.'),
    nodeStatus, saveNode);
  let loaded = null;
  const SET_AT_START = { download_dir: 'download folder', max_uploads: 'upload slots', max_uploads_per_peer: 'upload slots per peer', seed_downloads: 'offering downloads', notify_url: 'notifications', listen: 'listen address' };

  function showNode(st) {
    loaded = st;
    dir.value = st.download_dir;
    slots.value = String(st.max_uploads);
    peerSlots.value = String(st.max_uploads_per_peer);
    seed.checked = st.seed_downloads;
    notifyUrl.value = st.notify_url;
    listen.value = st.listen.saved || '';
    const lines = [`Listening on ${st.listen.current || 'unknown'}.`];
    if (st.listen.restart_needed) lines.push(`Restart harddrive-party to listen on ${st.listen.saved}.`);
    const fixed = st.set_at_start.filter((k) => SET_AT_START[k]).map((k) => SET_AT_START[k]);
    if (fixed.length) lines.push(`Set when the daemon started (flag or config file): ${fixed.join(', ')}. A change here lasts until the next restart.`);
    nodeStatus.textContent = lines.join(' ');
  }
  nodeForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    if (!loaded) return;
    // Only what changed: an unchanged listen address set by --listen would be refused.
    const body = {};
    if (dir.value.trim() !== loaded.download_dir) body.download_dir = dir.value.trim();
    for (const [input, key] of [[slots, 'max_uploads'], [peerSlots, 'max_uploads_per_peer']]) {
      const n = Number(input.value);
      if (!Number.isInteger(n) || n < 1 || n > 1024) { toast('Upload slots: a whole number from 1 to 1024', 'error'); input.focus(); return; }
      if (n !== loaded[key]) body[key] = n;
    }
    if (seed.checked !== loaded.seed_downloads) body.seed_downloads = seed.checked;
    if (notifyUrl.value.trim() !== loaded.notify_url) body.notify_url = notifyUrl.value.trim();
    if (listen.value.trim() !== (loaded.listen.saved || '')) body.listen = listen.value.trim();
    if (Object.keys(body).length === 0) { toast('Nothing to save', 'info'); return; }
    await busy(saveNode, 'Saving…', async () => {
      const r = await api('/api/settings', { method: 'POST', body });
      showNode(r);
      toast('Settings saved', 'ok');
      fill(await ctx.refreshInfo());
    });
  });

  const cur = h('input', { type: 'password', name: 'current_password', autocomplete: 'current-password', required: true });
  const pw = h('input', { type: 'password', name: 'new_password', autocomplete: 'new-password', minlength: '8', required: true });
  const pw2 = h('input', { type: 'password', name: 'new_password2', autocomplete: 'new-password', minlength: '8', required: true });
  const pwErr = errorLine();
  const change = h('button', { class: 'primary', type: 'submit' }, 'Change password');
  const pwForm = h('form', { class: 'stack', id: 'password-form' },
    field('Current password', cur), field('New password', pw, 'At least 8 characters. Other devices are logged out.'), field('Repeat the new password', pw2), pwErr, change);
  pwForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    pwErr.textContent = '';
    if (pw.value !== pw2.value) { pwErr.textContent = 'The new passwords do not match.'; return; }
    await busy(change, 'Saving…', async () => {
      try {
        const r = await api('/api/auth/password', { method: 'POST', body: { current_password: cur.value, new_password: pw.value } });
        setCsrf(r.csrf_token);
        pwForm.reset();
        toast('Password changed', 'ok');
      } catch (ex) { pwErr.textContent = ex.message; }
    });
  });

  const facts = h('dl', { class: 'facts' });
  const logout = h('button', { class: 'danger wide', type: 'button', id: 'logout' }, 'Log out');
  logout.addEventListener('click', () => ctx.logout());

  main.append(h('section', { class: 'screen settings' },
    h('h1', {}, 'Settings'),
    h('section', { class: 'card', 'aria-labelledby': 'bw-h' }, h('h2', { id: 'bw-h' }, 'Bandwidth'), limitsForm),
    h('section', { class: 'card', 'aria-labelledby': 'node-h' }, h('h2', { id: 'node-h' }, 'Folder, slots and network'), nodeForm),
    h('section', { class: 'card', 'aria-labelledby': 'pw-h' }, h('h2', { id: 'pw-h' }, 'Password'), pwForm),
    h('section', { class: 'card', 'aria-labelledby': 'dev-h' }, h('h2', { id: 'dev-h' }, 'This node'), facts),
    logout));

  function fill(info) {
    const rows = [
      ['Name', info.name], ['Version', info.version], ['Download folder', info.download_dir],
      ['Storage', info.storage], ['Peer listen address (UDP)', info.listen_address || 'unknown'],
      ['Peers connected', String(info.peers_connected)],
    ];
    facts.replaceChildren(...rows.flatMap(([k, v]) => [h('dt', {}, k), h('dd', { class: 'mono' }, v)]));
  }
  fill(ctx.info);
  api('/api/settings').then((s) => { show(s.limits); showNode(s); }).catch((e) => toast(e.message, 'error'));
  ctx.refreshInfo().then(fill).catch(() => {});
}
