// Bandwidth limits (live), the password, and read-only facts set at start-up.
import { api, setCsrf } from './api.js';
import { h, field, busy, fmtRate, toast } from './ui.js';

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

  const cur = h('input', { type: 'password', name: 'current_password', autocomplete: 'current-password', required: true });
  const pw = h('input', { type: 'password', name: 'new_password', autocomplete: 'new-password', minlength: '8', required: true });
  const pw2 = h('input', { type: 'password', name: 'new_password2', autocomplete: 'new-password', minlength: '8', required: true });
  const pwErr = h('p', { class: 'form-error', role: 'alert' });
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
    h('section', { class: 'card', 'aria-labelledby': 'pw-h' }, h('h2', { id: 'pw-h' }, 'Password'), pwForm),
    h('section', { class: 'card', 'aria-labelledby': 'dev-h' }, h('h2', { id: 'dev-h' }, 'This node'), facts,
      h('p', { class: 'hint' }, 'The download folder, upload slots and listen address are set when the daemon starts (flags or config file).')),
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
  api('/api/settings').then((s) => show(s.limits)).catch((e) => toast(e.message, 'error'));
  api('/api/info').then((i) => { ctx.info = i; fill(i); }).catch(() => {});
}
