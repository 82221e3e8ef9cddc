// Drives the web UI of daemon A on a phone-sized headless Chromium, against two real
// daemons started by daemon/tests/ui_browser.rs (which passes their addresses in HDP_* env).
// Every wait is bounded. Exits non-zero on the first failed check.
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync, statSync, existsSync, mkdirSync, renameSync } from 'node:fs';
import { join, relative } from 'node:path';
import {
  env, setStep, log, check, waitFor, daemonApi, axeCheck, screenshots, touchTargets,
  nav, phonePage, withBrowser,
} from './lib.mjs';

const A = env('HDP_A_URL');
const A_STORAGE = env('HDP_A_STORAGE');
const A_DOWNLOADS = env('HDP_A_DOWNLOADS');
const A_SHARE_DIR = env('HDP_A_SHARE_DIR');
const B = env('HDP_B_URL');
const B_SHARE = env('HDP_B_SHARE');
const SHOTS = env('HDP_SHOTS');
const A_SMALL_DIR = env('HDP_A_SMALL_DIR');
const A_NEXT_LISTEN = env('HDP_A_NEXT_LISTEN');
const PASSWORD = 'correct horse battery';

const shot = screenshots(SHOTS);
const apiA = daemonApi(A, A_STORAGE).json;

function files(root) {
  const out = [];
  const walk = (dir) => {
    for (const name of readdirSync(dir)) {
      const p = join(dir, name);
      if (statSync(p).isDirectory()) walk(p);
      else out.push(p);
    }
  };
  walk(root);
  return out.sort();
}
const sha256 = (p) => createHash('sha256').update(readFileSync(p)).digest('hex');

await withBrowser(SHOTS, async (browser, pageErrors) => {
  const { context, page } = await phonePage(browser, pageErrors);

  // 1. First run: the password is set with the one-time setup code.
  setStep('1 setup');
  await page.goto(A);
  await page.waitForSelector('#setup-form');
  await axeCheck(page, 'setup');
  await shot(page, '01-setup');
  const code = readFileSync(join(A_STORAGE, 'setup-code'), 'utf8').trim();
  await page.getByLabel('Setup code').fill('WRONG-CODE');
  await page.getByLabel('New password').fill(PASSWORD);
  await page.getByLabel('Repeat the password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Set password' }).tap();
  await page.getByText('wrong setup code').waitFor();
  await page.getByLabel('Setup code').fill(code.toLowerCase());
  await page.getByRole('button', { name: 'Set password' }).tap();
  await page.waitForSelector('nav#nav:not([hidden])');
  check(!existsSync(join(A_STORAGE, 'setup-code')), 'the setup code file is gone after use');
  const cookies = await context.cookies();
  const session = cookies.find((c) => c.name.startsWith('hdp_session_'));
  check(session && session.httpOnly && session.sameSite === 'Strict', `session cookie flags: ${JSON.stringify(session)}`);
  log('password set with the setup code');

  // 2. Log out, a wrong password is refused, the right one logs back in.
  setStep('2 logout/login');
  await page.goto(`${A}/#/settings`);
  await page.locator('#logout').tap();
  await page.waitForSelector('#login-form');
  await axeCheck(page, 'login');
  await shot(page, '02-login');
  await page.getByLabel('Password').fill('not the password');
  await page.getByRole('button', { name: 'Log in' }).tap();
  await page.getByText('wrong password').waitFor();
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Log in' }).tap();
  await page.waitForSelector('nav#nav:not([hidden])');
  await page.locator('#live[data-state="live"]').waitFor();
  log('logged out and back in; event stream live');

  // 3. Share a folder.
  setStep('3 shares');
  await nav(page, 'shares');
  await page.getByLabel('Folder on the NAS').fill(A_SHARE_DIR);
  await page.getByRole('button', { name: 'Share folder' }).tap();
  const shareName = A_SHARE_DIR.split('/').pop();
  await page.locator(`li[data-share="${shareName}"]`).waitFor();
  const shares = await apiA('/api/shares');
  check(shares.some((s) => s.name === shareName && s.dir.endsWith(shareName)), `share listed by the API: ${JSON.stringify(shares)}`);
  await axeCheck(page, 'shares');
  await touchTargets(page, 'shares');
  await shot(page, '03-shares');
  // A shared folder that disappears (an unplugged disk) is marked missing, and unmarked
  // when it is back; the share watcher tells the screen (shares_changed).
  const extra = `${A_SHARE_DIR}-extra`;
  mkdirSync(extra);
  await page.getByLabel('Folder on the NAS').fill(extra);
  await page.getByRole('button', { name: 'Share folder' }).tap();
  const extraCard = page.locator(`li[data-share="${extra.split('/').pop()}"]`);
  await extraCard.waitFor();
  check(!(await extraCard.locator('.missing').isVisible()), 'a present folder is not marked missing');
  renameSync(extra, `${extra}-unplugged`);
  await extraCard.getByText('Folder not found').waitFor();
  await axeCheck(page, 'shares with a missing folder');
  renameSync(`${extra}-unplugged`, extra);
  await waitFor('the folder to be back', async () => (await extraCard.locator('.missing').count()) === 0);
  log('a vanished share folder shown missing, then back');

  // 4. Own address (text, QR, copy) and connecting B by pasting its address.
  setStep('4 peers');
  const infoA = await apiA('/api/info');
  const infoB = await (await fetch(`${B}/api/info`)).json();
  await nav(page, 'peers');
  // B dialled A first (ui_browser.rs): A lists it as a request to approve or block.
  await page.locator(`li[data-peer="${infoB.name}"]`).getByText('Asks to be your friend').waitFor();
  check(await page.getByRole('button', { name: `Approve ${infoB.name}` }).isVisible(), 'a pending request offers Approve');
  check((await page.locator('.screen.peers p.status').textContent()).includes('1 asking to be your friend'), 'the request is counted');
  check((await page.locator('#my-address').textContent()) === infoA.announce_address, 'own announce address shown as text');
  await waitFor('the QR code image', () => page.locator('img.qr').evaluate((img) => img.complete && img.naturalWidth > 100));
  await page.locator('#copy-address').tap();
  await page.getByText(/Address copied|Copy failed/).waitFor();
  await page.getByLabel("Friend's address").fill(infoB.announce_address);
  await page.getByRole('button', { name: 'Connect', exact: true }).tap();
  await page.locator(`li[data-peer="${infoB.name}"]`).getByText('Online').waitFor({ timeout: 60_000 });
  await axeCheck(page, 'peers');
  await touchTargets(page, 'peers');
  await page.locator('main').evaluate((m) => { m.scrollTop = 0; });
  await shot(page, '04-peers');
  log(`connected to ${infoB.name}`);

  // 5. Browse the peer (a 10,000-entry directory stays virtualised) and search.
  setStep('5 browse');
  await nav(page, 'browse');
  await page.getByRole('link', { name: new RegExp(infoB.name) }).tap();
  await page.getByRole('link', { name: /^Music/ }).waitFor();
  await axeCheck(page, 'browse');
  await touchTargets(page, 'browse');
  await shot(page, '05-browse');
  await page.getByRole('link', { name: /^Many/ }).tap();
  await page.getByText('10,000 items').waitFor();
  const rendered = await page.locator('.vrow').count();
  check(rendered > 5 && rendered < 100, `only the visible rows are in the DOM (${rendered})`);
  const t0 = Date.now();
  await page.locator('main').evaluate((m) => { m.scrollTop = m.scrollHeight; });
  await page.getByText('file-09999.txt').waitFor();
  log(`10,000 entries: ${rendered} rows in the DOM, scrolled to the end in ${Date.now() - t0} ms`);
  await page.goto(`${A}/#/browse?path=${encodeURIComponent(infoB.name)}`);
  await page.getByLabel('Search files').fill('track');
  await page.getByRole('button', { name: 'Search', exact: true }).tap();
  await page.getByText('6 matches').waitFor();
  // A result row: the file's name first, then its folder, the friend and the size.
  const result = page.locator('.vrow', { hasText: 'track-3.flac' });
  check(await result.locator('.name').textContent() === 'track-3.flac', 'the file name comes first');
  const meta = await result.locator('.meta').textContent();
  check(meta.startsWith(`Music/Album · ${infoB.name} · `) && /\d+(\.\d)? (KB|MB)$/.test(meta), `folder, friend and size follow: ${meta}`);
  await axeCheck(page, 'search');
  await shot(page, '06-search');
  // Tapping the row opens its sheet: the whole name, where it is, and the actions.
  await result.getByRole('button', { name: /^track-3\.flac / }).tap();
  const sheet = page.getByRole('dialog', { name: 'track-3.flac' });
  await sheet.waitFor();
  check(await sheet.getByText('Music/Album', { exact: true }).isVisible(), 'the sheet names the folder');
  check(await sheet.getByText(infoB.name, { exact: true }).isVisible(), 'the sheet names the friend');
  check(await sheet.getByRole('button', { name: 'Download track-3.flac' }).isVisible(), 'the sheet offers the download');
  await axeCheck(page, 'search sheet');
  await shot(page, '06-search-sheet');
  await sheet.getByRole('button', { name: 'Close' }).tap();
  await sheet.waitFor({ state: 'detached' });

  // 6. Download a whole folder and watch its progress reach 100%.
  setStep('6 folder download');
  await page.goto(`${A}/#/browse?path=${encodeURIComponent(infoB.name)}`);
  await page.getByRole('button', { name: 'Download Music' }).tap();
  await page.getByText('Downloading Music').waitFor();
  await nav(page, 'transfers');
  const card = page.locator('article.transfer', { hasText: 'Music' }).first();
  const seen = new Set();
  await waitFor('the folder download to reach 100%', async () => {
    const v = await card.locator('[role=progressbar]').getAttribute('aria-valuenow').catch(() => null);
    if (v !== null) seen.add(Number(v));
    return (await card.getAttribute('data-state')) === 'done' && v === '100';
  }, 90_000);
  check((await card.locator('.stats').textContent()).startsWith('100%'), 'the card says 100%');
  log(`folder progress values seen: ${[...seen].sort((x, y) => x - y).join(', ')}`);
  check([...seen].some((v) => v > 0 && v < 100), 'progress was seen between 0 and 100%');
  await card.getByRole('link', { name: 'Show files' }).waitFor();
  await axeCheck(page, 'transfers');
  await touchTargets(page, 'transfers');

  // 7. The files on disk are the peer's, byte for byte.
  setStep('7 sha256');
  const originals = files(join(B_SHARE, 'Music'));
  check(originals.length === 6, `six originals (${originals.length})`);
  for (const original of originals) {
    const copy = join(A_DOWNLOADS, infoB.name, 'Music', relative(join(B_SHARE, 'Music'), original));
    check(existsSync(copy), `${copy} exists`);
    check(sha256(copy) === sha256(original), `${copy} has the original's sha256`);
  }
  log(`${originals.length} files match by sha256`);

  // Settings: a live download limit makes the next download slow enough to pause.
  setStep('8 settings');
  await nav(page, 'settings');
  await page.getByText(/^Now: down 1\.0 MB\/s/).waitFor();
  await page.getByLabel('Download limit (total)', { exact: true }).fill('3MB');
  await page.getByRole('button', { name: 'Save settings' }).tap();
  await page.getByText('1 setting saved').waitFor();
  const limits = await apiA('/api/settings');
  check(limits.limits.download === 3_000_000, `download limit set live: ${JSON.stringify(limits)}`);
  await axeCheck(page, 'settings');
  await touchTargets(page, 'settings');
  await shot(page, '08-settings');

  // 8. Pause and resume a large download.
  setStep('8 pause/resume');
  await page.goto(`${A}/#/browse?path=${encodeURIComponent(`${infoB.name}/Big`)}`);
  await page.getByRole('button', { name: 'Download big.bin' }).tap();
  await nav(page, 'transfers');
  const big = page.locator('article.transfer', { hasText: 'big.bin' }).first();
  await waitFor('the big download to make progress', async () => {
    const v = Number(await big.locator('[role=progressbar]').getAttribute('aria-valuenow').catch(() => '0'));
    return (await big.getAttribute('data-state')) === 'active' && v >= 5;
  });
  await shot(page, '09-transfers-active');
  await page.screenshot({ path: join(SHOTS, 'phone.png'), scale: 'css' });
  await big.getByRole('button', { name: /^Pause/ }).tap();
  await waitFor('the download to pause', async () => (await big.getAttribute('data-state')) === 'paused');
  const id = Number((await big.getAttribute('data-key')).split(':')[1]);
  const part = join(A_DOWNLOADS, infoB.name, 'Big', 'big.bin.part');
  check(existsSync(part), 'the .part file stays while paused');
  const pausedAt = statSync(part).size;
  await page.waitForTimeout(1500);
  const later = await apiA(`/api/transfers/${id}`);
  check(later.state === 'paused' && later.received > 0 && statSync(part).size === pausedAt && pausedAt > 0 && pausedAt < later.size, `paused download holds still (${pausedAt} then ${statSync(part).size} of ${later.size})`);
  await shot(page, '10-transfers-paused');
  await big.getByRole('button', { name: /^Resume/ }).tap();
  const resumed = await waitFor('the download to resume', async () => {
    const v = await apiA(`/api/transfers/${id}`);
    return v.state === 'active' && v.active_files.length > 0 && v.resumed_from > 0 ? v : null;
  });
  check(resumed.resumed_from === pausedAt, `resumed from the .part file's ${pausedAt} bytes (resumed_from ${resumed.resumed_from})`);

  // Reorder: A has one download slot, so two more downloads wait behind big.bin (slowed
  // down so it keeps the slot meanwhile); the second is moved above the first.
  setStep('9 reorder');
  await apiA('/api/settings', { method: 'POST', body: { download_limit: '300KB' } });
  await page.goto(`${A}/#/browse?path=${encodeURIComponent(`${infoB.name}/Many`)}`);
  for (const n of ['00001', '00002']) {
    await page.getByRole('button', { name: `Download file-${n}.txt` }).tap();
    await page.getByText(`Downloading file-${n}.txt`).waitFor();
  }
  await nav(page, 'transfers');
  const queued = (n) => page.locator('article.transfer', { hasText: `file-${n}.txt` }).first();
  for (const n of ['00001', '00002']) await waitFor(`file-${n}.txt queued`, async () => (await queued(n).getAttribute('data-state')) === 'queued');
  const queueOrder = async () => (await apiA('/api/transfers')).filter((t) => t.direction === 'download').map((t) => t.path.split('/').pop());
  const before = await queueOrder();
  check(before.slice(-2).join() === 'file-00001.txt,file-00002.txt', `queued at the end: ${before}`);
  await queued('00002').getByRole('button', { name: 'Move file-00002.txt up in the queue' }).tap();
  await waitFor('the new order in the API', async () => {
    const order = await queueOrder();
    return order.indexOf('file-00002.txt') === before.length - 2 && order.indexOf('file-00001.txt') === before.length - 1;
  });
  await waitFor('the new order on screen', () => page.locator('#downloads article.transfer').evaluateAll((cards) => {
    const names = cards.map((c) => c.querySelector('h3').textContent);
    return names.indexOf('file-00002.txt') + 1 === names.indexOf('file-00001.txt');
  }));
  check(await queued('00001').getByRole('button', { name: 'Move file-00001.txt down in the queue' }).count() === 0, 'the last download cannot move down');
  await queued('00001').getByRole('button', { name: 'Move file-00001.txt up in the queue' }).waitFor();
  await touchTargets(page, 'transfers with reorder buttons');
  await axeCheck(page, 'transfers with reorder buttons');
  await queued('00002').scrollIntoViewIfNeeded();
  await shot(page, '13-transfers-reordered');
  log(`queue reordered: ${(await queueOrder()).join(', ')}`);

  await apiA('/api/settings', { method: 'POST', body: { download_limit: 0 } });
  await waitFor('the big download to finish', async () => (await big.getAttribute('data-state')) === 'done', 120_000);
  const bigCopy = join(A_DOWNLOADS, infoB.name, 'Big', 'big.bin');
  check(sha256(bigCopy) === sha256(join(B_SHARE, 'Big', 'big.bin')), 'the paused and resumed file has the original sha256');
  log(`paused at ${pausedAt} bytes, resumed, finished; sha256 matches`);

  // Finished files open from /downloads/ with the session cookie.
  setStep('open');
  const open = big.getByRole('link', { name: 'Open' });
  await open.waitFor();
  const href = await open.getAttribute('href');
  const head = await page.request.head(`${A}${href}`);
  check(head.ok() && Number(head.headers()['content-length']) === statSync(bigCopy).size, `Open serves the file (${head.status()})`);
  await page.locator('main').evaluate((m) => { m.scrollTop = 0; });
  await shot(page, '11-transfers-done');
  for (const n of ['00001', '00002']) await waitFor(`file-${n}.txt done`, async () => (await page.locator('article.transfer', { hasText: `file-${n}.txt` }).first().getAttribute('data-state')) === 'done');

  // Settings that apply at once (download folder, upload slots) and the listen address
  // for the next start. The new folder is on a 4 MiB tmpfs: the full-disk banner shows.
  setStep('settings: folder, slots, listen');
  await nav(page, 'settings');
  const folder = page.getByLabel('Download folder');
  await waitFor('the current folder in the form', async () => (await folder.inputValue()) !== '');
  check(!(await page.locator('#problems').isVisible()), 'no banner while the disks have room');
  await folder.fill(A_SMALL_DIR);
  await page.getByLabel('Upload slots (total)').fill('3');
  await page.getByLabel('Upload slots per peer').fill('2');
  const seed = page.getByLabel('Offer finished downloads to friends');
  check(!(await seed.isChecked()), 'offering downloads shows off, as the test daemon was started');
  await seed.check();
  await page.getByLabel('Peer listen address (UDP)').fill(A_NEXT_LISTEN);
  await page.getByRole('button', { name: 'Save settings' }).tap();
  await page.getByText('Settings saved').waitFor();
  const saved = await apiA('/api/settings');
  check(saved.download_dir === A_SMALL_DIR && saved.max_uploads === 3 && saved.max_uploads_per_peer === 2 && saved.seed_downloads === true, `folder, slots and seeding applied: ${JSON.stringify(saved)}`);
  await waitFor('the new download folder to be a share', async () => (await apiA('/api/shares')).some((s) => s.dir === A_SMALL_DIR));
  check(saved.listen.saved === A_NEXT_LISTEN && saved.listen.restart_needed && saved.listen.current !== A_NEXT_LISTEN, `listen address kept for the next start: ${JSON.stringify(saved.listen)}`);
  await page.getByText(`Restart harddrive-party to listen on ${A_NEXT_LISTEN}.`).waitFor();
  const banner = page.locator('#problems [data-code="download_disk_full"]');
  await banner.waitFor();
  check(/download disk is full/.test(await banner.textContent()), 'the banner says the download disk is full');
  await axeCheck(page, 'settings with a full-disk banner');
  await touchTargets(page, 'settings with a full-disk banner');
  await page.locator('main').evaluate((m) => { m.scrollTop = 0; });
  await shot(page, '14-disk-full-banner');
  await nav(page, 'transfers');
  await page.locator('#problems [data-code="download_disk_full"]').waitFor();
  log('folder, slots and listen address saved; full-disk banner shown');

  // The same session on a desktop-sized window.
  setStep('desktop');
  const desktop = await browser.newContext({ viewport: { width: 1280, height: 800 }, storageState: await context.storageState() });
  const dpage = await desktop.newPage();
  dpage.on('pageerror', (e) => pageErrors.push(String(e)));
  await dpage.goto(`${A}/#/transfers`);
  await dpage.locator('article.transfer').first().waitFor();
  await axeCheck(dpage, 'desktop transfers');
  await dpage.screenshot({ path: join(SHOTS, '12-desktop-transfers.png') });
  await desktop.close();
});
log('all UI checks passed');
