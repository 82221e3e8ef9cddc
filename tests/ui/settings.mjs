// The Settings screen on a 390×844 phone, against a real daemon started by
// daemon/tests/ui_browser.rs (`settings_screen_on_a_phone`). Each changed field is its own
// POST: one save with a bad value saves the good ones and shows the refusal (the UI's check
// or the daemon's own words) under its field; alternative speeds get limits, a weekly
// schedule and a one-tap mode; network settings that apply after a restart say so.
// Every effect is checked through the daemon's API. Every wait is bounded.
import { createSocket } from 'node:dgram';
import {
  env, setStep, log, check, waitFor, daemonApi, axeCheck, screenshots, touchTargets,
  nav, phonePage, withBrowser, setPassword,
} from './lib.mjs';

const A = env('HDP_A_URL');
const A_STORAGE = env('HDP_A_STORAGE');
const SHOTS = env('HDP_SHOTS');

const shot = screenshots(SHOTS);
const { json: apiA, call: callA } = daemonApi(A, A_STORAGE);
const settings = () => apiA('/api/settings');

await withBrowser(SHOTS, async (browser, pageErrors) => {
  const { page } = await phonePage(browser, pageErrors);
  const field = (name) => page.getByLabel(name, { exact: true });
  const errorOf = (key) => page.locator(`#s-${key}-err`);
  // Saves and waits for the summary toast (an earlier one cleared first).
  const save = async (summary) => {
    await page.evaluate(() => document.getElementById('toasts').replaceChildren());
    await page.getByRole('button', { name: 'Save settings' }).tap();
    await page.locator('#toasts .toast span', { hasText: new RegExp(`^${summary}$`) }).waitFor();
  };

  setStep('login');
  await setPassword(page, A, A_STORAGE, 'settings test password');
  await nav(page, 'settings');
  const before = await settings();
  await waitFor('the settings in the form', async () => (await field('Download folder').inputValue()) === before.download_dir);
  log(`started with ${JSON.stringify(before)}`);

  setStep('layout');
  const layout = await page.evaluate(() => ({
    wide: document.documentElement.scrollWidth,
    // What a finger hits for each input: the input, or the label around it.
    small: [...document.querySelectorAll('main input')].filter((i) => i.offsetParent !== null)
      .map((i) => ({ name: i.name, h: (i.closest('label') || i).getBoundingClientRect().height }))
      .filter((r) => r.h < 44),
  }));
  check(layout.wide <= 390, `nothing wider than the phone: ${layout.wide} px`);
  check(layout.small.length === 0, `inputs under 44 px: ${JSON.stringify(layout.small)}`);
  await touchTargets(page, 'settings');
  await axeCheck(page, 'settings');
  const fixed = await page.evaluate((keys) => keys.filter((k) => document.getElementById(`s-${k}-hint`))
    .filter((k) => !document.getElementById(`s-${k}-hint`).textContent.includes('Set when harddrive-party started')), before.set_at_start);
  check(fixed.length === 0, `settings given at start say so: ${fixed}`);
  await shot(page, '20-settings');

  // (a) Four good values and two bad ones in one save.
  setStep('one save, two refusals');
  await field('Download slots (total)').fill('3');
  await field('Free space to keep').fill('1GB');
  await field('Rescan shares every (minutes)').fill('30');
  await field('Background hashing rate').fill('20MB');
  await field('Tries before giving up').fill('5000');
  await field('Peer listen address (UDP)').fill('nonsense');
  await save('4 settings saved; 2 need fixing');
  let s = await settings();
  check(s.max_downloads === 3 && s.min_free_space === 1e9 && s.rescan_interval === 1800 && s.background_hash_rate === 20e6,
    `the good values saved: ${JSON.stringify(s)}`);
  check(s.retry_limit === before.retry_limit && s.listen.saved === before.listen.saved, `the bad ones not: ${JSON.stringify(s)}`);
  const listen = field('Peer listen address (UDP)');
  const listenError = await errorOf('listen').textContent();
  check(/IP address and a port/.test(listenError), `the listen address's error under it: "${listenError}"`);
  check(/whole number from 1 to 1000/.test(await errorOf('retry_limit').textContent()), 'the retry limit says its range');
  check(await listen.getAttribute('aria-invalid') === 'true', 'the listen field is marked invalid');
  check((await listen.getAttribute('aria-describedby')).split(' ').includes('s-listen-err'), 'and its error is read with it');
  check(await listen.inputValue() === 'nonsense', 'the refused value stays to be fixed');
  check(await field('Free space to keep').inputValue() === '1GB' && await field('Download slots (total)').inputValue() === '3', 'the saved values shown');
  check(await page.evaluate(() => document.activeElement.id) === 's-retry_limit', 'the first refused field has the focus');
  await axeCheck(page, 'settings with errors');
  await shot(page, '21-settings-errors');

  // The daemon's own refusal (an address this machine does not have) shows under the field.
  setStep('the daemon refuses a field');
  const direct = await callA('/api/settings', { method: 'POST', body: { listen: '192.0.2.1:41000' } });
  check(direct.status >= 400 && direct.body.error, `the daemon refuses 192.0.2.1:41000: ${JSON.stringify(direct)}`);
  await field('Tries before giving up').fill('7');
  await listen.fill('192.0.2.1:41000');
  await save('1 setting saved; 1 needs fixing');
  const refusal = await errorOf('listen').textContent();
  check(refusal.length > 0 && direct.body.error.endsWith(refusal), `the daemon's message "${direct.body.error}" under the field: "${refusal}"`);
  check(await errorOf('retry_limit').textContent() === '' && await field('Tries before giving up').getAttribute('aria-invalid') === null, 'the fixed field lost its error');
  s = await settings();
  check(s.retry_limit === 7 && s.listen.saved === before.listen.saved, `retry limit saved, listen address not: ${JSON.stringify(s)}`);
  await listen.fill(before.listen.saved || '');

  // (b) Alternative speeds: a limit, a weekly schedule, then On and Off in one tap each.
  setStep('alternative speeds');
  await field('Alternative download limit (total)').fill('500KB');
  await field('Weekly schedule').check();
  await save('1 setting saved; 1 needs fixing');
  check(/start and an end time/.test(await errorOf('alt_schedule').textContent()), 'a schedule without times is refused');
  check(await errorOf('listen').textContent() === '', 'the listen address put back lost its error');
  for (const day of ['Mon', 'Tue', 'Wed', 'Thu', 'Fri']) await page.getByRole('checkbox', { name: day, exact: true }).check();
  await field('Start time').fill('18:00');
  await field('End time').fill('23:30');
  await save('1 setting saved');
  s = await settings();
  check(s.alt_speed.limits.download === 500_000, `alternative download limit: ${JSON.stringify(s.alt_speed)}`);
  check(JSON.stringify(s.alt_speed.schedule) === JSON.stringify({ days: [0, 1, 2, 3, 4], from: '18:00', to: '23:30' }), `schedule: ${JSON.stringify(s.alt_speed.schedule)}`);
  check(await errorOf('alt_schedule').textContent() === '', 'the schedule lost its error');
  const now = page.locator('p[role=status]', { hasText: /^Now:/ });
  await page.getByRole('radio', { name: 'Off', exact: true }).tap();
  await waitFor('alternative speeds off', async () => {
    const v = await settings();
    return v.alt_speed.mode === 'off' && !v.alt_speed_active && v.effective_limits.download === v.limits.download;
  });
  await waitFor('the Now line to say off', async () => /^Now: .*Alternative speeds off\.$/.test(await now.textContent()));
  const normal = await now.textContent();
  await page.getByRole('radio', { name: 'On', exact: true }).tap();
  await waitFor('alternative speeds on', async () => {
    const v = await settings();
    return v.alt_speed.mode === 'on' && v.alt_speed_active && v.effective_limits.download === 500_000;
  });
  await waitFor('the Now line to show them', async () => /^Now: down 500 KB\/s.*Alternative speeds on\.$/.test(await now.textContent()));
  const alternative = await now.textContent();
  check(alternative !== normal && await page.getByRole('radio', { name: 'On', exact: true }).isChecked(), 'On is checked and the Now line changed');
  await page.getByRole('radio', { name: 'Schedule', exact: true }).tap();
  await waitFor('mode schedule', async () => (await settings()).alt_speed.mode === 'schedule');
  await field('Weekly schedule').uncheck();
  check(!(await field('Start time').isVisible()), 'no times without a schedule');
  await save('1 setting saved');
  check((await settings()).alt_speed.schedule === null, 'the schedule removed');
  log(`Now line: "${normal}", then "${alternative}"`);

  // (c) mDNS and the listen address apply after a restart, and their hints say when one is
  // needed (not for a switch given at start: that value applies again then).
  setStep('network after a restart');
  const mdns = field('Find friends on this network (mDNS)');
  check(await mdns.getAttribute('role') === 'switch' && await mdns.isChecked() === before.mdns.saved, 'the mDNS switch shows the saved value');
  const target = !before.mdns.saved;
  await mdns.setChecked(target);
  await save('1 setting saved');
  s = await settings();
  check(s.mdns.saved === target && await mdns.isChecked() === target, `mDNS ${target ? 'on' : 'off'} from the next start: ${JSON.stringify(s.mdns)}`);
  const hint = await page.locator('#s-mdns-hint').textContent();
  const atStart = s.set_at_start.includes('mdns');
  const restart = s.mdns.current !== s.mdns.saved && !atStart;
  check(hint.includes(`Restart harddrive-party to turn it ${target ? 'on' : 'off'}`) === restart, `restart hint ${restart ? 'shown' : 'not shown'}: ${hint}`);
  check(hint.includes('applies again at the next start') === atStart, `set at start ${atStart ? 'said' : 'not said'}: ${hint}`);
  log(`mDNS hint: ${hint}`);
  const port = await new Promise((resolve) => {
    const sock = createSocket('udp4');
    sock.bind(0, '127.0.0.1', () => { const p = sock.address().port; sock.close(() => resolve(p)); });
  });
  const next = `127.0.0.1:${port}`;
  await listen.fill(next);
  await save('1 setting saved');
  s = await settings();
  check(s.listen.saved === next && s.listen.restart_needed && s.listen.current === before.listen.current, `listen address kept for the next start: ${JSON.stringify(s.listen)}`);
  await page.getByText(`Restart harddrive-party to listen on ${next}.`).waitFor();
  await touchTargets(page, 'settings saved');

  // (d) Dark mode.
  setStep('dark');
  await page.emulateMedia({ colorScheme: 'dark' });
  await page.locator('main').evaluate((m) => { m.scrollTop = 0; });
  await shot(page, '22-settings-dark');
  await axeCheck(page, 'settings dark');
  await page.emulateMedia({ colorScheme: 'light' });
  log('settings screen checks passed');
});
