// Reachability at a glance (issue 13) on a 390×844 phone, against two real daemons
// befriended on loopback by daemon/tests/ui_browser.rs (`reachability_on_a_phone`): the
// Peers screen's status block next to A's address and QR says what A's own /api/info says
// (online, NAT type, public address, port mapping), and B's row says "direct" or "relayed"
// as /api/peers has it, in light and dark mode, with nothing wider than the screen.
// Every wait is bounded.
import {
  env, setStep, log, check, waitFor, daemonApi, axeCheck, screenshots, nav, phonePage, withBrowser, setPassword,
} from './lib.mjs';

const A = env('HDP_A_URL');
const A_STORAGE = env('HDP_A_STORAGE');
const B_NAME = env('HDP_B_NAME');
const SHOTS = env('HDP_SHOTS');
const shot = screenshots(SHOTS);
const apiA = daemonApi(A, A_STORAGE).json;

// The words the UI uses for each API value (webui-dist/peers.js).
const NAT_TEXT = {
  none: 'no NAT (public address)',
  cone: 'cone NAT: friends can reach you directly',
  symmetric: 'symmetric NAT: some friends need a relay',
  unknown: 'unknown (no STUN answer yet)',
};

await withBrowser(SHOTS, async (browser, pageErrors) => {
  const { page } = await phonePage(browser, pageErrors);
  setStep('login');
  await setPassword(page, A, A_STORAGE, 'reach test password');

  setStep('status block');
  await nav(page, 'peers');
  const reach = page.locator('#reach');
  await reach.waitFor();
  const info = await apiA('/api/info');
  const text = async (key) => (await reach.locator(`dd[data-reach="${key}"]`).textContent()).trim();
  const online = await text('online');
  check(online.startsWith(info.online ? 'Online' : 'Offline'), `online ${info.online} shown as "${online}"`);
  const nat = await text('nat');
  check(nat === NAT_TEXT[info.nat_type], `nat_type ${info.nat_type} shown as "${nat}"`);
  const pub = await text('public');
  check(info.public_address ? pub === info.public_address : pub === 'not known yet', `public_address ${info.public_address} shown as "${pub}"`);
  const mapping = await text('mapping');
  check(info.port_mapping ? mapping.endsWith(`mapped ${info.port_mapping.external_address}`) : mapping === 'no port mapping',
    `port_mapping ${JSON.stringify(info.port_mapping)} shown as "${mapping}"`);
  log(`status: ${online} / ${nat} / ${pub} / ${mapping}`);

  setStep('friend path');
  const peer = (await apiA('/api/peers')).find((p) => p.name === B_NAME);
  check(peer && peer.connected && peer.connection, `A has B connected: ${JSON.stringify(peer)}`);
  const tag = page.locator(`li[data-peer="${B_NAME}"] .badge.path`);
  await waitFor('B row path tag', async () => (await tag.count()) === 1);
  const shown = (await tag.textContent()).trim();
  check(shown === peer.connection, `B's connection ${peer.connection} shown as "${shown}"`);
  log(`friend ${B_NAME}: ${shown}`);

  setStep('layout');
  for (const scheme of ['light', 'dark']) {
    await page.emulateMedia({ colorScheme: scheme });
    const wide = await page.evaluate(() => ({
      page: document.documentElement.scrollWidth,
      over: [...document.querySelectorAll('#reach dd, #peer-list li *')]
        .filter((e) => e.offsetParent !== null && e.getBoundingClientRect().right > window.innerWidth + 0.5)
        .map((e) => e.textContent.slice(0, 40)),
    }));
    check(wide.page <= 390 && wide.over.length === 0, `nothing wider than 390 px (${scheme}): ${JSON.stringify(wide)}`);
    await reach.scrollIntoViewIfNeeded();
    await shot(page, `30-reach-status-${scheme}`);
    await page.locator(`li[data-peer="${B_NAME}"]`).scrollIntoViewIfNeeded();
    await shot(page, `31-reach-friend-${scheme}`);
  }
  await page.emulateMedia({ colorScheme: 'light' });
  await axeCheck(page, 'peers reachability');

  setStep('live');
  // A peer event makes the screen re-read /api/info and redraw the rows; B's tag goes
  // when B disconnects and comes back on reconnect.
  await apiA('/api/disconnect', { method: 'POST', body: { peer: B_NAME } });
  await waitFor('B tag gone after disconnect', async () => (await tag.count()) === 0, 15_000);
  await apiA('/api/connect', { method: 'POST', body: { announce_address: peer.announce_address } });
  await waitFor('B tag back after reconnect', async () => (await tag.count()) === 1, 15_000);
  const again = (await apiA('/api/peers')).find((p) => p.name === B_NAME);
  check((await tag.textContent()).trim() === again.connection, `after reconnect: ${again.connection}`);
  log('tag follows peer events');
});
