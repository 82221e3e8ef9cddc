// The app shell: first-run setup, login, the live event stream (/ws) and the screen router.
import { api, setCsrf, whenLoggedOut } from './api.js';
import { h, field, busy, errorLine, clearToasts } from './ui.js';
import { browseScreen } from './browse.js';
import { transfersScreen } from './transfers.js';
import { libraryScreen } from './library.js';
import { peersScreen, waitsForApproval } from './peers.js';
import { sharesScreen } from './shares.js';
import { settingsScreen } from './settings.js';

const SCREENS = {
  browse: browseScreen,
  transfers: transfersScreen,
  downloads: libraryScreen,
  peers: peersScreen,
  shares: sharesScreen,
  settings: settingsScreen,
};
const TITLES = { browse: 'Browse', transfers: 'Transfers', downloads: 'Downloads', peers: 'Peers', shares: 'Shares', settings: 'Settings' };

const main = document.getElementById('main');
const nav = document.getElementById('nav');
const problemsBox = document.getElementById('problems');

// Shared state and a tiny event bus for the screens.
const listeners = new Map();
export const ctx = {
  info: null,
  transfers: new Map(), // "download:7" -> TransferView
  on(type, fn) {
    if (!listeners.has(type)) listeners.set(type, new Set());
    listeners.get(type).add(fn);
    return () => listeners.get(type).delete(fn);
  },
  emit(type, data) {
    for (const fn of listeners.get(type) || []) fn(data);
  },
  async refreshTransfers() {
    const list = await api('/api/transfers');
    ctx.transfers.clear();
    for (const t of list) ctx.transfers.set(`${t.direction}:${t.id}`, t);
    ctx.emit('transfers');
    countFailed();
  },
  peers: [],
  // /api/peers, which also carries the count on the Peers tab.
  async refreshPeers() {
    ctx.peers = await api('/api/peers');
    showWaiting(ctx.peers.filter(waitsForApproval).length);
    ctx.emit('peers', ctx.peers);
    return ctx.peers;
  },
  loggedOut: () => showAuth(),
  // /api/info, which also carries the problems shown in the banner.
  async refreshInfo() {
    ctx.info = await api('/api/info');
    showProblems(ctx.info.problems || []);
    ctx.emit('info', ctx.info);
    return ctx.info;
  },
};

// A banner over every screen for what the user must fix (a full disk). Rewritten only
// when it changes, so screen readers announce it once.
let shownProblems = '';
function showProblems(list) {
  const sig = JSON.stringify(list);
  if (sig === shownProblems) return;
  shownProblems = sig;
  problemsBox.replaceChildren(...list.map((p) => h('p', { 'data-code': p.code }, p.message)));
  problemsBox.hidden = list.length === 0;
}

// A count on a tab, read as "Peers, 2 waiting for approval"; seen as a 2 on the icon.
function tabCount(screen, meaning) {
  const digits = h('span', { class: 'digits' });
  const badge = h('span', { class: 'count', hidden: true },
    h('span', { class: 'sr-only' }, ', '), digits, h('span', { class: 'sr-only' }, ` ${meaning}`));
  nav.querySelector(`a[data-screen="${screen}"]`).append(badge);
  return (count) => { digits.textContent = String(count); badge.hidden = count === 0; };
}
// Requests and suggestions waiting for the user, and downloads that failed (what the
// notifications also tell, for whoever has none set).
const showWaiting = tabCount('peers', 'waiting for approval');
const showFailed = tabCount('transfers', 'failed');
const countFailed = () => showFailed([...ctx.transfers.values()].filter((t) => t.direction === 'download' && t.state === 'failed').length);

// A burst of knocks or connections asks for the peers once.
const PEERS_REFRESH_DELAY_MS = 250;
let peersTimer = 0;
function refreshPeersSoon() {
  clearTimeout(peersTimer);
  peersTimer = setTimeout(() => ctx.refreshPeers().catch(() => {}), PEERS_REFRESH_DELAY_MS);
}
for (const type of ['peer_connected', 'peer_disconnected', 'peers_changed', 'resync']) ctx.on(type, refreshPeersSoon);

// Free space changes without events: look again now and then.
const PROBLEMS_POLL_MS = 30000;
let problemsTimer = 0;

let cleanup = null;
let started = false;

function route() {
  if (!started) return;
  const hash = location.hash.replace(/^#\/?/, '');
  const [name, query = ''] = hash.split('?');
  const screen = SCREENS[name] ? name : 'browse';
  if (cleanup) { cleanup(); cleanup = null; }
  clearToasts();
  for (const a of nav.querySelectorAll('a')) {
    if (a.dataset.screen === screen) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  document.title = `${TITLES[screen]} · harddrive-party`;
  main.replaceChildren();
  main.scrollTop = 0;
  cleanup = SCREENS[screen](main, ctx, new URLSearchParams(query)) || null;
}

// ---- live events ----
let socket = null;
let retry = 0;
let retryTimer = 0;

function setLive(state) {
  const live = document.getElementById('live');
  live.dataset.state = state;
  document.getElementById('live-text').textContent =
    { live: 'Live', connecting: 'Connecting', offline: 'Offline' }[state];
}

function connectEvents() {
  clearTimeout(retryTimer);
  if (socket) { socket.onclose = null; socket.close(); }
  setLive('connecting');
  const proto = location.protocol === 'https:' ? 'wss' : 'ws';
  const ws = new WebSocket(`${proto}://${location.host}/ws`);
  socket = ws;
  ws.onopen = () => {
    retry = 0;
    setLive('live');
    // Events may have been missed while disconnected: resynchronise.
    ctx.refreshTransfers().catch(() => {});
    ctx.refreshInfo().catch(() => {});
    ctx.emit('resync');
  };
  ws.onmessage = (msg) => {
    let ev;
    try { ev = JSON.parse(msg.data); } catch { return; }
    if (ev.type === 'transfer') {
      const { type, ...t } = ev;
      ctx.transfers.set(`${t.direction}:${t.id}`, t);
      ctx.emit('transfer', t);
      countFailed();
    } else {
      ctx.emit(ev.type, ev);
    }
  };
  ws.onclose = () => {
    if (socket !== ws) return;
    socket = null;
    setLive('offline');
    const delay = Math.min(10000, 1000 * 2 ** retry);
    retry = Math.min(retry + 1, 4);
    retryTimer = setTimeout(async () => {
      // A closed socket may mean the session ended: check before reconnecting.
      try {
        const s = await api('/api/auth/session');
        if (s.login_required && !s.logged_in) { showAuth(); return; }
      } catch { /* daemon down: keep retrying */ }
      connectEvents();
    }, delay);
  };
}

function stopEvents() {
  clearTimeout(retryTimer);
  clearInterval(problemsTimer);
  clearTimeout(peersTimer);
  showProblems([]);
  showWaiting(0);
  if (socket) { socket.onclose = null; socket.close(); socket = null; }
}

// ---- authentication screens ----
function authCard(title, intro, form) {
  started = false;
  if (cleanup) { cleanup(); cleanup = null; }
  stopEvents();
  nav.hidden = true;
  document.getElementById('me').textContent = '';
  setLive('offline');
  document.title = `${title} · harddrive-party`;
  main.replaceChildren(h('section', { class: 'auth card' }, h('h1', {}, title), intro, form));
  const first = form.querySelector('input');
  if (first) first.focus();
}

function showSetup(session) {
  const code = h('input', { name: 'setup_code', autocomplete: 'one-time-code', autocapitalize: 'characters', spellcheck: 'false', required: true });
  const pw = h('input', { type: 'password', name: 'password', autocomplete: 'new-password', minlength: '8', required: true });
  const pw2 = h('input', { type: 'password', name: 'password2', autocomplete: 'new-password', minlength: '8', required: true });
  const err = errorLine();
  const submit = h('button', { class: 'primary wide', type: 'submit' }, 'Set password');
  const form = h('form', { class: 'stack', id: 'setup-form' },
    field('Setup code', code, "Printed when the package was installed. On the machine, `sudo harddrive-party setup-code` shows it again; it is also in the log: journalctl -u harddrive-party (Debian, Ubuntu), logread -e harddrive-party (OpenWrt), podman or docker logs (container)."),
    field('New password', pw, 'At least 8 characters.'),
    field('Repeat the password', pw2),
    err, submit);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    err.textContent = '';
    if (pw.value !== pw2.value) { err.textContent = 'The passwords do not match.'; return; }
    await busy(submit, 'Saving…', async () => {
      try {
        const r = await api('/api/auth/setup', { method: 'POST', body: { setup_code: code.value, password: pw.value } });
        setCsrf(r.csrf_token);
        await startApp();
      } catch (ex) { err.textContent = ex.message; }
    });
  });
  authCard('Welcome', h('p', {}, 'Choose a password for this NAS. You need the one-time setup code the daemon printed when it first started.'), form);
}

function showLogin() {
  const pw = h('input', { type: 'password', name: 'password', autocomplete: 'current-password', required: true });
  const err = errorLine();
  const submit = h('button', { class: 'primary wide', type: 'submit' }, 'Log in');
  const form = h('form', { class: 'stack', id: 'login-form' }, field('Password', pw), err, submit);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    err.textContent = '';
    await busy(submit, 'Checking…', async () => {
      try {
        const r = await api('/api/auth/login', { method: 'POST', body: { password: pw.value } });
        setCsrf(r.csrf_token);
        pw.value = '';
        await startApp();
      } catch (ex) { err.textContent = ex.message; pw.select(); }
    });
  });
  authCard('Log in', h('p', {}, 'Enter the password of this harddrive-party node.'), form);
}

async function showAuth() {
  setCsrf(null);
  let session;
  try {
    session = await api('/api/auth/session');
  } catch (e) {
    main.replaceChildren(h('section', { class: 'card' }, h('h1', {}, 'Cannot reach the NAS'), h('p', {}, e.message),
      h('button', { class: 'primary', onclick: () => showAuth() }, 'Try again')));
    return;
  }
  if (!session.password_set) showSetup(session);
  else if (!session.logged_in) showLogin();
  else { setCsrf(session.csrf_token); await startApp(); }
}

async function startApp() {
  await ctx.refreshInfo();
  document.getElementById('me').textContent = ctx.info.name;
  nav.hidden = false;
  started = true;
  clearInterval(problemsTimer);
  problemsTimer = setInterval(() => ctx.refreshInfo().catch(() => {}), PROBLEMS_POLL_MS);
  connectEvents();
  route();
}

export async function logout() {
  try { await api('/api/auth/logout', { method: 'POST', body: {} }); } catch { /* ends anyway */ }
  await showAuth();
}

ctx.logout = logout;
whenLoggedOut(() => { if (started) showAuth(); });
window.addEventListener('hashchange', route);
showAuth();
// Installable as an app, and opening offline, where the browser allows it (sw.js).
if ('serviceWorker' in navigator && window.isSecureContext) navigator.serviceWorker.register('/sw.js').catch(() => {});
