// The Transfers screen on a 390×844 phone, driven against two real daemons started by
// daemon/tests/ui_browser.rs (`transfers_screen_on_a_phone`): B shares at 1 MB/s, A (this
// UI) downloads. Live progress moves between two samples, the active download comes first,
// the filters show the right rows, a failure that cannot heal offers no Resume, "Clear
// finished" removes done rows and keeps the files, and a toast covers no control and can
// be dismissed. Every wait is bounded.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import {
  env, setStep, log, check, waitFor, daemonApi, axeCheck, screenshots, touchTargets,
  nav, phonePage, withBrowser, setPassword,
} from './lib.mjs';

const A = env('HDP_A_URL');
const A_STORAGE = env('HDP_A_STORAGE');
const A_DOWNLOADS = env('HDP_A_DOWNLOADS');
const B_NAME = env('HDP_B_NAME');
const SHOTS = env('HDP_SHOTS');

const shot = screenshots(SHOTS);
const apiA = daemonApi(A, A_STORAGE).json;

const visibleNames = (page) => page.locator('#downloads article.transfer:not([hidden]) h3').allTextContents();

await withBrowser(SHOTS, async (browser, pageErrors) => {
  const { page } = await phonePage(browser, pageErrors);
  setStep('login');
  await setPassword(page, A, A_STORAGE, 'progress test password');

  setStep('queue');
  const small = (await apiA('/api/downloads', { method: 'POST', body: { path: `${B_NAME}/Slow/small.bin` } })).id;
  await waitFor('small.bin done', async () => (await apiA(`/api/transfers/${small}`)).state === 'done');
  const missing = (await apiA('/api/downloads', { method: 'POST', body: { path: `${B_NAME}/Slow/missing.bin` } })).id;
  await waitFor('missing.bin failed', async () => (await apiA(`/api/transfers/${missing}`)).state === 'failed');
  await apiA('/api/downloads', { method: 'POST', body: { path: `${B_NAME}/Slow/big.bin` } });

  setStep('live progress');
  await nav(page, 'transfers');
  const big = page.locator('article.transfer', { hasText: 'big.bin' }).first();
  const value = async () => Number(await big.locator('[role=progressbar]').getAttribute('aria-valuenow'));
  await waitFor('big.bin active with bytes', async () => (await big.getAttribute('data-state')) === 'active' && (await value()) > 0);
  const first = await value();
  await page.waitForTimeout(1500);
  const second = await value();
  check(second > first && second < 100, `the bar moves: ${first}% then ${second}%`);
  const stats = await big.locator('.stats').textContent();
  check(/\/s/.test(stats), `speed shown: ${stats}`);
  const names = await visibleNames(page);
  check(names[0] === 'big.bin', `the active download first: ${names}`);
  await shot(page, '20-transfers-live');
  log(`progress ${first}% -> ${second}%`);

  setStep('final failure');
  const failed = page.locator('article.transfer', { hasText: 'missing.bin' }).first();
  check(await failed.getByRole('button', { name: /^Resume/ }).count() === 0, 'no Resume for not found');
  const failedBadge = page.locator('#nav a[data-screen="transfers"] .count');
  await waitFor('the failed download counted on the Transfers tab', async () => (await failedBadge.isVisible()) && (await failedBadge.locator('.digits').textContent()) === '1');
  check((await failedBadge.textContent()).includes('1 failed'), 'the count is read as "1 failed"');
  const why = await failed.locator('.error-text').textContent();
  check(why.includes('failed for good') && why.includes('no such file'), `the failure says why: ${why}`);

  setStep('filters');
  const expect = { Active: ['big.bin'], Done: ['small.bin'], Failed: ['missing.bin'] };
  for (const [chip, want] of Object.entries(expect)) {
    await page.locator('.chips button', { hasText: chip }).tap();
    const shown = await visibleNames(page);
    check(shown.join() === want.join(), `${chip} shows ${want}, not ${shown}`);
    check(await page.locator(`.chips button[aria-pressed="true"]`).textContent() === chip, `${chip} is pressed`);
  }
  await shot(page, '21-transfers-failed-filter');
  await page.locator('.chips button', { hasText: 'All' }).tap();
  check((await visibleNames(page)).length === 3, 'All shows every download');
  await touchTargets(page, 'transfers with filters');
  await axeCheck(page, 'transfers with filters');

  setStep('clear finished');
  await page.getByText('downloaded files are kept').waitFor();
  await page.getByRole('button', { name: 'Clear finished' }).tap();
  const toast = page.locator('#toasts .toast', { hasText: 'files kept' });
  await toast.waitFor();
  await waitFor('small.bin gone from the list', async () => (await page.locator('article.transfer', { hasText: 'small.bin' }).count()) === 0);
  check(existsSync(join(A_DOWNLOADS, B_NAME, 'Slow', 'small.bin')), 'the cleared file is still on disk');

  setStep('toast');
  const overlaps = await page.evaluate(() => {
    const t = document.querySelector('#toasts .toast').getBoundingClientRect();
    const controls = [...document.querySelectorAll('button, a.button, nav a, input, [role=progressbar]')]
      .filter((e) => !e.closest('#toasts') && e.offsetParent !== null);
    const hit = (r) => r.width > 0 && r.left < t.right && t.left < r.right && r.top < t.bottom && t.top < r.bottom;
    return controls.filter((e) => hit(e.getBoundingClientRect())).map((e) => e.textContent.trim() || e.getAttribute('aria-label'));
  });
  check(overlaps.length === 0, `the toast covers ${overlaps}`);
  await page.screenshot({ path: join(SHOTS, '22-transfers-toast.png') });
  await toast.getByRole('button', { name: 'Dismiss' }).tap();
  await waitFor('the toast dismissed', async () => (await toast.count()) === 0);
  // A toast raised here does not follow to another screen.
  await page.getByRole('button', { name: 'Move big.bin up in the queue' }).tap();
  await page.locator('#toasts .toast', { hasText: 'moved up' }).waitFor();
  await nav(page, 'peers');
  // The tap only starts the route change: wait for the Peers screen before looking.
  await page.locator('#nav a[data-screen="peers"][aria-current="page"]').waitFor();
  const left = await page.locator('#toasts .toast').allTextContents();
  check(left.length === 0, `toasts stay on their screen (left: ${JSON.stringify(left)})`);
  await nav(page, 'transfers');
  await shot(page, '23-transfers-cleared');
  setStep('installable');
  // 127.0.0.1 is a secure context, so the shell's service worker runs here as on localhost.
  const worker = await page.evaluate(async () => {
    const reg = await navigator.serviceWorker.ready;
    const cache = await caches.open('hdp-shell');
    return { scope: reg.scope, active: reg.active !== null, shell: (await cache.keys()).map((r) => new URL(r.url).pathname) };
  });
  check(worker.active && new URL(worker.scope).pathname === '/', `the service worker controls the app: ${JSON.stringify(worker)}`);
  check(worker.shell.includes('/') && !worker.shell.some((p) => p.startsWith('/api/')), `the shell is cached, the API is not: ${worker.shell}`);
  log('transfers screen checks passed');
});
