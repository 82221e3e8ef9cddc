// The local library and previews on a 390×844 phone, driven against two real daemons
// started by daemon/tests/ui_browser.rs (`library_and_preview_on_a_phone`): B shares a
// 20 s WAV and a text file, A (this UI) has a share "Music". A friend's file previewed
// (audio seeks: its currentTime moves; text shows its first bytes); downloads to "Music"
// picked as destination and to the download folder; then B stopped and A's download
// folder changed, the Downloads view lists both, plays one with a seek, and deletes one
// only after its confirmation is accepted. Every wait is bounded.
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import {
  env, setStep, log, check, waitFor, daemonApi, axeCheck, screenshots, touchTargets,
  nav, phonePage, withBrowser, setPassword,
} from './lib.mjs';

const A = env('HDP_A_URL');
const A_STORAGE = env('HDP_A_STORAGE');
const A_MUSIC = env('HDP_A_MUSIC');
const A_DOWNLOADS = env('HDP_A_DOWNLOADS');
const MOVED = env('HDP_MOVED');
const B = env('HDP_B_URL');
const B_STORAGE = env('HDP_B_STORAGE');
const B_NAME = env('HDP_B_NAME');
const SHOTS = env('HDP_SHOTS');

const shot = screenshots(SHOTS);
const apiA = daemonApi(A, A_STORAGE).json;

// Seeks the sheet's audio to 12 s and requires currentTime to get there.
async function seekInSheet(page) {
  const audio = page.locator('dialog.sheet audio');
  await waitFor('the audio metadata', () => audio.evaluate((a) => a.readyState >= 1 && a.duration > 19));
  const before = await audio.evaluate((a) => a.currentTime);
  await audio.evaluate((a) => { a.currentTime = 12; });
  await waitFor('the seek to end', () => audio.evaluate((a) => !a.seeking && a.readyState >= 2 && a.currentTime >= 11.9));
  const after = await audio.evaluate((a) => a.currentTime);
  check(after > before, `currentTime moved: ${before} -> ${after}`);
  log(`seek ${before} -> ${after}`);
}

const closeSheet = async (page) => {
  await page.locator('dialog.sheet').getByRole('button', { name: 'Close' }).tap();
  await waitFor('the sheet closed', async () => (await page.locator('dialog.sheet').count()) === 0);
};

await withBrowser(SHOTS, async (browser, pageErrors) => {
  const { page } = await phonePage(browser, pageErrors);
  setStep('login');
  await setPassword(page, A, A_STORAGE, 'library test password');

  setStep('preview audio');
  await page.goto(`${A}/#/browse?path=${encodeURIComponent(`${B_NAME}/Media`)}`);
  await page.getByRole('button', { name: 'Preview tone.wav' }).tap();
  await seekInSheet(page);
  await shot(page, '40-preview-audio');
  await closeSheet(page);

  setStep('preview text');
  await page.getByRole('button', { name: 'Preview notes.txt' }).tap();
  await waitFor('the text', async () => (await page.locator('dialog.sheet pre').textContent()).includes('liner notes: side A'));
  await shot(page, '41-preview-text');
  await closeSheet(page);

  setStep('destination picker');
  const dest = page.locator('select[name=to]');
  await dest.waitFor();
  await dest.selectOption({ label: 'Music' });
  await page.getByRole('button', { name: 'Download tone.wav' }).tap();
  const inMusic = join(A_MUSIC, 'tone.wav');
  await waitFor('tone.wav in Music', () => existsSync(inMusic) && statSync(inMusic).size > 300_000);
  await dest.selectOption({ label: 'Download folder' });
  await page.getByRole('button', { name: 'Download notes.txt' }).tap();
  const notes = join(A_DOWNLOADS, B_NAME, 'Media', 'notes.txt');
  await waitFor('notes.txt in the download folder', () => existsSync(notes));

  setStep('friend stopped, folder moved');
  const b = daemonApi(B, B_STORAGE);
  await b.json('/api/stop', { method: 'POST' });
  await waitFor('B gone', () => b.call('/api/info').then(() => false, () => true));
  await apiA('/api/settings', { method: 'POST', body: { download_dir: MOVED } });

  setStep('downloads view');
  await nav(page, 'downloads');
  const rows = page.locator('#library .row');
  await waitFor('two downloaded files', async () => (await rows.count()) === 2);
  const status = await page.locator('.status').textContent();
  check(/2 downloaded files · .* free/.test(status), `count and free space: ${status}`);
  await shot(page, '42-downloads');
  await touchTargets(page, 'downloads');
  await axeCheck(page, 'downloads');
  await page.emulateMedia({ colorScheme: 'dark' });
  await shot(page, '42-downloads-dark');
  await axeCheck(page, 'downloads dark');
  await page.emulateMedia({ colorScheme: 'light' });

  setStep('play from the library');
  await rows.filter({ hasText: 'tone.wav' }).getByRole('button', { name: 'Play' }).tap();
  await seekInSheet(page);
  await shot(page, '43-downloads-play');
  await closeSheet(page);
  const save = await rows.filter({ hasText: 'tone.wav' }).getByRole('link', { name: 'Save' }).getAttribute('href');
  check(save.endsWith('&save=1'), `Save asks for an attachment: ${save}`);

  setStep('delete with confirmation');
  page.removeAllListeners('dialog');
  let asked = '';
  page.once('dialog', (d) => { asked = d.message(); d.dismiss(); });
  const notesRow = rows.filter({ hasText: 'notes.txt' });
  await notesRow.getByRole('button', { name: 'Delete' }).tap();
  await waitFor('the confirmation', () => asked);
  check(asked.includes('notes.txt'), `the confirmation names the file: ${asked}`);
  check(existsSync(notes) && (await rows.count()) === 2, 'dismissed: nothing deleted');
  page.once('dialog', (d) => d.accept());
  await notesRow.getByRole('button', { name: 'Delete' }).tap();
  await waitFor('the row gone', async () => (await rows.count()) === 1);
  check(!existsSync(notes), 'notes.txt deleted from the disk');
  check(existsSync(inMusic), 'the other download kept');
  const left = await apiA('/api/library');
  check(left.total === 1 && left.items[0].path.endsWith('/Music/tone.wav'), `the record gone: ${JSON.stringify(left)}`);
  await shot(page, '44-downloads-deleted');
  page.on('dialog', (d) => d.accept());
});
