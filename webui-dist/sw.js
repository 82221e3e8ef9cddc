// The app shell, so the installed app opens when the daemon is out of reach (browsers run
// service workers only in a secure context: localhost, or HTTPS in front of the daemon).
// Network first, so a new release shows at once; the cache answers only when the network
// fails. Only the shell: nothing from the API, the event stream or downloaded files.
const CACHE = 'hdp-shell';
// Paths of the API, the event stream and the files (`/library?path=…`).
const PRIVATE = ['/api/', '/ws', '/downloads/'];
const isPrivate = (path) => path === '/library' || PRIVATE.some((p) => path.startsWith(p));

self.addEventListener('install', (e) => e.waitUntil(caches.open(CACHE).then((c) => c.add('/')).then(() => self.skipWaiting())));
self.addEventListener('activate', (e) => e.waitUntil(self.clients.claim()));
self.addEventListener('fetch', (e) => {
  const url = new URL(e.request.url);
  if (e.request.method !== 'GET' || url.origin !== location.origin || isPrivate(url.pathname)) return;
  e.respondWith(fetch(e.request).then((r) => {
    if (r.ok) {
      const copy = r.clone();
      e.waitUntil(caches.open(CACHE).then((c) => c.put(e.request, copy)));
    }
    return r;
  }).catch(() => caches.match(e.request).then((hit) => hit || Response.error())));
});
