// Every setting a phone can change: bandwidth (normal and alternative speeds, their weekly
// schedule and mode), downloads, uploads, sharing and network (from the next start), the
// password, and read-only facts about this node. Each changed field is checked on its own and
// sent as its own POST, so a refused value shows under its field and never holds up the others.
import { api, setCsrf } from './api.js';
import { h, field, busy, errorLine, fmtRate, toast } from './ui.js';

const LIMITS = [
  ['download', 'Download limit (total)'], ['upload', 'Upload limit (total)'],
  ['peer_download', 'Download limit per peer'], ['peer_upload', 'Upload limit per peer'],
];
const DAYS = ['Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat', 'Sun'];
const AMOUNT = /^\d+(\.\d+)?\s*([kmg](i?b)?|b)?(\/s)?$/i;
const ADDRESS = /^(\d{1,3}(\.\d{1,3}){3}|\[[\da-f:.]+\]):\d{1,5}$/i;
const RESTART = 'Applies when harddrive-party restarts.';

// An amount as the daemon parses it back: 3000000 -> "3MB", 268435456 -> "256MiB".
function amount(n) {
  if (!n) return '0';
  for (const [unit, f] of [['GB', 1e9], ['MB', 1e6], ['KB', 1e3], ['GiB', 2 ** 30], ['MiB', 2 ** 20], ['KiB', 1024]]) {
    if (n % f === 0) return `${n / f}${unit}`;
  }
  return String(n);
}
const rate = (n) => (n ? fmtRate(n) : 'unlimited');
const fail = (message) => { throw new Error(message); };
const val = (f) => (f.val ? f.val() : f.input.type === 'checkbox' ? f.input.checked : f.input.value.trim());
function set(f, v) {
  if (f.set) f.set(v);
  else if (f.input.type === 'checkbox') f.input.checked = v;
  else f.input.value = v;
}
// A field's error line, read with it (aria-describedby) and flagged on its inputs.
function mark(f, message) {
  f.err.textContent = message;
  for (const i of f.marks || [f.input]) {
    if (message) i.setAttribute('aria-invalid', 'true');
    else i.removeAttribute('aria-invalid');
  }
}

export function settingsScreen(main, ctx) {
  const F = [];
  let view = null;

  // A setting: `key` is its POST field, `get(view)` the value shown, `parse` turns what was
  // typed into the value to send or throws a human message, `note(view)` adds to the hint.
  function add(key, input, label, hint, get, parse = (s) => s, note) {
    const f = { key, input, hint, get, parse, note, err: errorLine() };
    const id = `s-${key}`;
    input.id = id;
    f.err.id = `${id}-err`;
    f.hintEl = h('p', { class: 'hint', id: `${id}-hint` });
    input.setAttribute('aria-describedby', `${id}-hint ${id}-err`);
    const box = input.type === 'checkbox';
    F.push(f);
    return h('div', { class: 'field' },
      box ? h('label', { class: 'choice' }, input, label) : h('label', { for: id }, label),
      box ? null : input, f.err, f.hintEl);
  }
  const text = (key, attrs) => h('input', { name: key, autocomplete: 'off', autocapitalize: 'off', spellcheck: 'false', ...attrs });
  const num = (key, label, min, max, hint, scale = 1) => add(key,
    h('input', { name: key, type: 'number', inputmode: 'numeric', min, max, step: 1 }), label, hint,
    (v) => String(+(v[key] / scale).toFixed(2)),
    (s) => (/^\d+$/.test(s) && +s >= min && +s <= max ? s * scale : fail(`Give a whole number from ${min} to ${max}.`)));
  const amt = (key, label, get, zero, hint) => add(key, text(key, { placeholder: `0 = ${zero}` }), label, hint,
    (v) => amount(get(v)),
    (s) => (!s ? '0' : AMOUNT.test(s) ? s : fail(`Give an amount such as 5MB or 800KB, or 0 for ${zero}.`)));
  const box = (key, label, hint, get, note) => add(key, h('input', { name: key, type: 'checkbox', role: note ? 'switch' : null }), label, hint, get, undefined, note);
  // No restart helps a switch given at start: that value applies again then.
  const restartNote = (key) => (v) => (v[key].current === v[key].saved || v.set_at_start.includes(key) ? `Now ${v[key].current ? 'on' : 'off'}.`
    : `Restart harddrive-party to turn it ${v[key].saved ? 'on' : 'off'}.`);
  const limits = (prefix, label, get) => LIMITS.map(([k, l]) => amt(`${prefix}${k}_limit`, label(l), (v) => get(v)[k], 'no limit'));

  // The alternative speeds' weekly window; "no schedule" is the box unticked.
  const schedOn = h('input', { type: 'checkbox', name: 'alt_schedule_on' });
  const days = DAYS.map((d) => h('input', { type: 'checkbox', name: 'alt_day', value: d }));
  const from = h('input', { type: 'time', name: 'alt_from' });
  const to = h('input', { type: 'time', name: 'alt_to' });
  const hours = h('div', { class: 'stack' },
    h('fieldset', { class: 'days' }, h('legend', {}, 'Days (none ticked: every day)'), days.map((d, i) => h('label', {}, d, DAYS[i]))),
    h('div', { class: 'pair' }, field('Start time', from), field('End time', to)));
  const sched = add('alt_schedule', schedOn, 'Weekly schedule', 'In the NAS’s local time; an end before the start runs past midnight.',
    (v) => JSON.stringify(v.alt_speed.schedule && { days: v.alt_speed.schedule.days, from: v.alt_speed.schedule.from, to: v.alt_speed.schedule.to }),
    (s) => { const o = JSON.parse(s); return !o || (o.from && o.to) ? o : fail('Give a start and an end time, such as 18:00 and 23:30.'); });
  const schedField = F.at(-1);
  Object.assign(schedField, {
    marks: [from, to],
    val: () => JSON.stringify(schedOn.checked ? { days: days.flatMap((d, i) => (d.checked ? [i] : [])), from: from.value, to: to.value } : null),
    set: (s) => {
      const o = JSON.parse(s);
      schedOn.checked = !!o;
      hours.hidden = !o;
      if (o) {
        days.forEach((d, i) => { d.checked = o.days.includes(i); });
        from.value = o.from;
        to.value = o.to;
      }
    },
  });
  schedOn.addEventListener('change', () => { hours.hidden = !schedOn.checked; });
  sched.append(hours, schedField.err);

  // Schedule / On / Off applies at the tap, without Save.
  const now = h('p', { class: 'hint', role: 'status' });
  const modeErr = errorLine();
  const modes = ['schedule', 'on', 'off'].map((m) => h('input', { type: 'radio', name: 'alt_mode', value: m }));
  const modeBox = h('fieldset', { class: 'seg', 'aria-describedby': 'mode-hint' },
    h('legend', {}, 'Alternative speeds'), modes.map((r, i) => h('label', {}, r, ['Schedule', 'On', 'Off'][i])));
  modeBox.addEventListener('change', async (e) => {
    modeErr.textContent = '';
    try {
      status(await api('/api/settings', { method: 'POST', body: { alt_mode: e.target.value } }));
    } catch (ex) {
      modeErr.textContent = ex.message;
      if (view) status(view);
    }
  });

  const saveBtn = h('button', { class: 'primary', type: 'submit' }, 'Save settings');
  const card = (id, title, ...kids) => h('section', { class: 'card stack', 'aria-labelledby': id }, h('h2', { id }, title), ...kids);
  const form = h('form', { id: 'settings-form', novalidate: true },
    card('bw-h', 'Bandwidth', now, modeBox,
      h('p', { class: 'hint', id: 'mode-hint' }, 'Schedule: in the hours set below. On and Off: until you change it.'), modeErr,
      h('p', { class: 'hint' }, 'Bytes per second, for example 5MB or 800KB; 0 for no limit. Changes apply at once.'),
      limits('', (l) => l, (v) => v.limits),
      h('h3', {}, 'Alternative limits and schedule'),
      limits('alt_', (l) => `Alternative ${l[0].toLowerCase()}${l.slice(1)}`, (v) => v.alt_speed.limits),
      sched),
    card('dl-h', 'Downloads',
      add('download_dir', text('download_dir', { class: 'mono' }), 'Download folder', 'A folder on the NAS. New downloads go there at once; files already downloaded stay where they are.', (v) => v.download_dir),
      num('max_downloads', 'Download slots (total)', 1, 1024, 'Files fetched at once; 16 files of at most 64 KiB count as one.'),
      num('max_downloads_per_peer', 'Download slots per peer', 1, 1024),
      amt('min_free_space', 'Free space to keep', (v) => v.min_free_space, 'none', 'Downloads wait while the download disk has less free space, for example 1GB.'),
      num('retry_limit', 'Tries before giving up', 1, 1000, 'Failed tries of a file before it is given up; a lost friend or a full disk is no try.'),
      num('retry_backoff', 'Wait before retrying (seconds)', 1, 3600, 'Before the first retry; it doubles after each failure.'),
      box('seed_downloads', 'Offer finished downloads to friends', 'Shares the download folder, so friends can fetch from you what you fetched. Its access can be limited like any share.', (v) => v.seed_downloads),
      add('notify_url', text('notify_url', { type: 'url', inputmode: 'url', class: 'mono', placeholder: 'https://ntfy.sh/your-topic' }),
        'Notifications (ntfy topic or webhook)', 'An ntfy topic or webhook address (https://, or http:// on your network; router builds take http:// only): finished and failed downloads, a full disk and friend requests are sent there, at most one message every 30 s. Empty: off.',
        (v) => v.notify_url, (s) => (!s || /^https?:\/\/[^\s/]+/i.test(s) ? s : fail('Give an address starting with https:// or http://, or leave it empty.')))),
    card('up-h', 'Uploads',
      num('max_uploads', 'Upload slots (total)', 1, 1024, 'Files sent to peers at once; more wait in a queue. Applies at once.'),
      num('max_uploads_per_peer', 'Upload slots per peer', 1, 1024)),
    card('sh-h', 'Sharing',
      num('rescan_interval', 'Rescan shares every (minutes)', 1, 43200, 'New and changed files in your shares are found this often; at most 43200 (30 days).', 60),
      amt('background_hash_rate', 'Background hashing rate', (v) => v.background_hash_rate, 'as fast as possible', 'How fast shared files are read to hash them, for example 20MB; lower it if the NAS gets slow.')),
    card('net-h', 'Network',
      add('listen', text('listen', { class: 'mono', placeholder: '0.0.0.0:0' }), 'Peer listen address (UDP)',
        `IP:PORT for connections from peers; port 0 picks any. ${RESTART} Your address for friends changes with the port.`,
        (v) => v.listen.saved || '', (s) => (ADDRESS.test(s) ? s : fail('Give an IP address and a port, such as 0.0.0.0:41000.')),
        (v) => `Listening on ${v.listen.current || 'unknown'}.${v.listen.restart_needed ? ` Restart harddrive-party to listen on ${v.listen.saved}.` : ''}`),
      box('mdns', 'Find friends on this network (mDNS)', RESTART, (v) => v.mdns.saved, restartNote('mdns')),
      box('upnp', 'Ask the router to open a port (UPnP)', RESTART, (v) => v.upnp.saved, restartNote('upnp'))),
    h('div', { class: 'savebar' }, saveBtn));
  // Saved, and the first refusal focused, in the order shown.
  F.sort((a, b) => (a.input.compareDocumentPosition(b.input) & Node.DOCUMENT_POSITION_FOLLOWING ? -1 : 1));

  // The view's facts: the limits in force, restarts needed, what was set at start.
  function status(v) {
    view = v;
    const e = v.effective_limits;
    const peer = e.peer_download || e.peer_upload ? `; per peer down ${rate(e.peer_download)}, up ${rate(e.peer_upload)}` : '';
    now.textContent = `Now: down ${rate(e.download)}, up ${rate(e.upload)}${peer}. Alternative speeds ${v.alt_speed_active ? 'on' : 'off'}.`;
    for (const r of modes) r.checked = r.value === v.alt_speed.mode;
    for (const f of F) {
      f.hintEl.textContent = [f.hint, f.note && f.note(v),
        v.set_at_start.includes(f.key) && 'Set when harddrive-party started (flag or config file), which applies again at the next start.'].filter(Boolean).join(' ');
    }
  }
  // Shows a view; fields in `keep` (refused) keep what was typed.
  function fill(v, keep = []) {
    for (const f of F) {
      f.base = f.get(v);
      if (!keep.includes(f)) set(f, f.base);
    }
    status(v);
  }

  form.addEventListener('submit', (e) => {
    e.preventDefault();
    if (!view) return;
    busy(saveBtn, 'Saving…', async () => {
      const changed = F.filter((f) => val(f) !== f.base);
      for (const f of F) if (!changed.includes(f)) mark(f, '');
      if (!changed.length) { toast('Nothing to save', 'info'); return; }
      const bad = [];
      for (const f of changed) {
        try {
          await api('/api/settings', { method: 'POST', body: { [f.key]: f.parse(val(f)) } });
          mark(f, '');
        } catch (ex) {
          mark(f, ex.message.replace(new RegExp(`^${f.key}: `), ''));
          bad.push(f);
        }
      }
      fill(await api('/api/settings'), bad);
      const ok = changed.length - bad.length;
      const fix = bad.length ? `; ${bad.length} need${bad.length > 1 ? '' : 's'} fixing` : '';
      toast(`${ok ? `${ok} setting${ok === 1 ? '' : 's'} saved` : 'Nothing saved'}${fix}`, bad.length ? 'error' : 'ok');
      if (bad.length) (bad[0].marks || [bad[0].input])[0].focus();
      ctx.refreshInfo().then(facts).catch(() => {});
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

  const dl = h('dl', { class: 'facts' });
  const logout = h('button', { class: 'danger wide', type: 'button', id: 'logout' }, 'Log out');
  logout.addEventListener('click', () => ctx.logout());

  main.append(h('section', { class: 'screen settings' },
    h('h1', {}, 'Settings'), form,
    card('pw-h', 'Password', pwForm),
    card('dev-h', 'This node', dl),
    logout));

  function facts(info) {
    const rows = [
      ['Name', info.name], ['Version', info.version], ['Download folder', info.download_dir],
      ['Storage', info.storage], ['Peer listen address (UDP)', info.listen_address || 'unknown'],
      ['Peers connected', String(info.peers_connected)],
    ];
    dl.replaceChildren(...rows.flatMap(([k, v]) => [h('dt', {}, k), h('dd', { class: 'mono' }, v)]));
  }
  facts(ctx.info);
  api('/api/settings').then((v) => fill(v)).catch((e) => toast(e.message, 'error'));
  ctx.refreshInfo().then(facts).catch(() => {});
}
