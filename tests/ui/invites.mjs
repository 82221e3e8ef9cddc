// "Friends only" in the web UI (issue 12), on phone-sized Chromium pages against three real
// daemons started by daemon/tests/ui_invites.rs: A invites, B joins with the code (a
// revoked one first, refused, then an expired one, refused; then a photo of A's QR code), C knocks by address, is
// approved from the badge and renamed (and is B's suggestion, introduced by A), a share is
// restricted to B and reset, and C is forgotten, each checked in the daemons' own API.
// Every wait is bounded. Exits non-zero on the first failed check.
import { join } from 'node:path';
import {
  env, setStep, log, check, waitFor, daemonApi, axeCheck, screenshots, touchTargets,
  nav, phonePage, withBrowser, setPassword,
} from './lib.mjs';

const A = env('HDP_A_URL');
const B = env('HDP_B_URL');
const SHOTS = env('HDP_SHOTS');
const apiA = daemonApi(A, env('HDP_A_STORAGE'));
const apiB = daemonApi(B, env('HDP_B_STORAGE'));
const apiC = daemonApi(env('HDP_C_URL'), env('HDP_C_STORAGE'));
const PASSWORD = 'correct horse battery';
const shot = screenshots(SHOTS);

const peerIn = async (api, name) => (await api.json('/api/peers')).find((p) => p.name === name);

// The top-level entries of `peer` as `api`'s daemon sees them, or null while it cannot list.
async function sharesSeen(api, peer) {
  const r = await api.call(`/api/ls?path=${encodeURIComponent(peer)}&recursive=false`);
  if (r.status !== 200 || !Array.isArray(r.body)) return null;
  return r.body.map((e) => e.path);
}

// Makes an invite in the UI; `shares` ticked limit it to them (a guest).
async function makeInvite(page, shares = []) {
  await page.getByRole('button', { name: 'Invite', exact: true }).tap();
  await page.locator('#invite-form').waitFor({ state: 'visible' });
  await page.getByLabel('Valid for').selectOption({ label: '1 day' });
  await page.getByLabel('How many people may use it').fill('1');
  for (const share of shares) await page.locator('#invite-form').getByLabel(share, { exact: true }).check();
  await page.getByRole('button', { name: 'Make invite' }).tap();
  const code = await page.locator('#invite-code').textContent();
  check(code.startsWith('hdp-invite:'), `an invite code is shown: ${code}`);
  check(await page.locator('#invite-form').isHidden(), 'the form gives way to the code');
  const id = await page.locator('#made-invite').getAttribute('data-invite');
  await page.locator(`#invite-list li[data-invite="${id}"]`).waitFor();
  return { code, id };
}

await withBrowser(SHOTS, async (browser, pageErrors) => {
  setStep('setup');
  const { page: pageA } = await phonePage(browser, pageErrors);
  const { page: pageB } = await phonePage(browser, pageErrors);
  await setPassword(pageA, A, env('HDP_A_STORAGE'), PASSWORD);
  await setPassword(pageB, B, env('HDP_B_STORAGE'), PASSWORD);
  const infoA = await apiA.json('/api/info');
  const infoB = await apiB.json('/api/info');
  const infoC = await apiC.json('/api/info');

  // 1. A makes an invite and revokes it; B's UI is refused it with the reason.
  setStep('1 revoked invite');
  await nav(pageA, 'peers');
  const revoked = await makeInvite(pageA, ['Music']);
  const live = (await apiA.json('/api/invites')).find((i) => i.id === revoked.id);
  check(live && live.uses_left === 1 && JSON.stringify(live.shares) === '["Music"]', `the invite is live in the API, for Music only: ${JSON.stringify(live)}`);
  await pageA.locator(`#invite-list li[data-invite="${revoked.id}"]`).getByText('1 use left · only Music').waitFor();
  await pageA.getByRole('button', { name: `Revoke invite ${revoked.id}` }).tap();
  await waitFor('the invite to leave the API', async () => !(await apiA.json('/api/invites')).some((i) => i.id === revoked.id));
  await pageA.locator(`#invite-list li[data-invite="${revoked.id}"]`).waitFor({ state: 'detached' });
  check(await pageA.locator('#made-invite').count() === 0, 'the revoked code is no longer shown');
  await nav(pageB, 'peers');
  await pageB.getByLabel("Friend's address or invite code").fill(`Join me: ${revoked.code}`);
  await pageB.getByRole('button', { name: 'Connect', exact: true }).tap();
  const refusal = pageB.locator('#connect-form .form-error');
  await refusal.getByText(/revoked/).waitFor();
  log(`the revoked code is refused: ${await refusal.textContent()}`);
  check(!(await peerIn(apiB, infoA.name)) && !(await peerIn(apiA, infoB.name)), 'a refused join leaves no record on either side');
  await axeCheck(pageB, 'peers with a refused invite');
  await shot(pageB, 'invites-01-refused');

  // 1b. An invite that lapsed before it was used (made through the API: the form's
  // shortest choice is an hour): B's UI says so and asks for a new one.
  setStep('1b expired invite');
  const lapsed = await apiA.json('/api/invites', { method: 'POST', body: { expires_secs: 1 } });
  await waitFor('the invite to expire', async () => !(await apiA.json('/api/invites')).some((i) => i.id === lapsed.id));
  await pageB.getByLabel("Friend's address or invite code").fill(lapsed.code);
  await pageB.getByRole('button', { name: 'Connect', exact: true }).tap();
  await refusal.getByText('this invite has expired: ask for a new one').waitFor();
  log(`the expired code is refused: ${await refusal.textContent()}`);
  check(!(await peerIn(apiB, infoA.name)) && !(await peerIn(apiA, infoB.name)), 'an expired invite leaves no record on either side');

  // 2. A new invite; B photographs its QR code and joins with no typing.
  setStep('2 join from a QR photo');
  const invite = await makeInvite(pageA);
  await waitFor('the QR code image', () => pageA.locator('#invite-qr').evaluate((img) => img.complete && img.naturalWidth > 100));
  await axeCheck(pageA, 'peers with an invite');
  await touchTargets(pageA, 'peers with an invite');
  await shot(pageA, 'invites-02-invite'); // also clears the toasts off the QR code
  const qrPhoto = join(SHOTS, 'invite-qr.png');
  await pageA.locator('#invite-qr').screenshot({ path: qrPhoto });
  // The camera picker and the gallery picker (Android opens only the camera with capture).
  check(await pageB.locator('#qr-photo').getAttribute('capture') === 'environment', 'the photo picker opens the camera');
  check(await pageB.locator('#qr-picture').getAttribute('capture') === null, 'the picture picker can use the gallery');
  await pageB.locator('#qr-picture').setInputFiles(qrPhoto);
  await pageB.locator(`li[data-peer="${infoA.name}"]`).getByText('Online').waitFor({ timeout: 60_000 });
  const decoder = await pageB.evaluate(() => (typeof window.jsQR === 'function' ? 'jsQR' : 'BarcodeDetector'));
  log(`B read the code from a saved picture with ${decoder} and joined`);
  await waitFor('A to count B as a connected friend', async () => {
    const b = await peerIn(apiA, infoB.name);
    return b && b.trust === 'friend' && b.connected;
  });
  check((await peerIn(apiB, infoA.name)).trust === 'friend', 'B counts A as a friend');
  check(!(await apiA.json('/api/invites')).some((i) => i.id === invite.id), 'the one-use invite is used up');
  await pageA.locator(`#peer-list li[data-peer="${infoB.name}"][data-trust="friend"]`).getByText('Online').waitFor();

  // 3. C dials A's address uninvited: a request, counted on the Peers tab as it arrives (the
  // peers_changed event: no peer connects meanwhile), approved in one tap.
  setStep('3 request and approval');
  const knock = await apiC.call('/api/connect', { method: 'POST', body: { announce_address: infoA.announce_address } });
  log(`C dialled A: ${knock.status} ${JSON.stringify(knock.body)}`);
  const badge = pageA.locator('#nav a[data-screen="peers"] .count');
  await pageA.getByRole('link', { name: /Peers\W+1 waiting for approval/ }).waitFor();
  check(await badge.locator('.digits').textContent() === '1', 'the badge shows 1');
  const request = pageA.locator(`#waiting-list li[data-peer="${infoC.name}"]`);
  await request.getByText('Asks to be your friend').waitFor();
  check((await peerIn(apiA, infoC.name)).trust === 'pending', 'C is pending in the API');
  await axeCheck(pageA, 'peers with a request');
  await touchTargets(pageA, 'peers with a request');
  await pageA.locator('main').evaluate((m) => { m.scrollTop = 0; });
  await shot(pageA, 'invites-03-request');
  await pageA.getByRole('button', { name: `Approve ${infoC.name}` }).tap();
  await waitFor('A to count C as a connected friend', async () => {
    const c = await peerIn(apiA, infoC.name);
    return c && c.trust === 'friend' && c.connected;
  }, 60_000);
  await badge.waitFor({ state: 'hidden' });
  await pageA.locator(`#peer-list li[data-peer="${infoC.name}"]`).getByText('Online').waitFor();
  log('C approved from the request on the Peers tab');
  // A passes its new friend on to B, where it is only a suggestion, named after A.
  const suggestion = pageB.locator(`#waiting-list li[data-peer="${infoC.name}"]`);
  await suggestion.getByText(`Suggested: introduced by ${infoA.name}`).waitFor();
  await pageB.getByRole('link', { name: /Peers\W+1 waiting for approval/ }).waitFor();
  const suggested = await peerIn(apiB, infoC.name);
  check(suggested.trust === 'suggested' && suggested.introduced_by === infoA.name, `C is B's suggestion: ${JSON.stringify(suggested)}`);
  await axeCheck(pageB, 'peers with a suggestion');
  log(`B sees C as a suggestion introduced by A`);
  const cardC = pageA.locator(`#peer-list li[data-peer="${infoC.name}"]`);
  await cardC.getByRole('button', { name: `More for ${infoC.name}` }).tap();
  await cardC.getByLabel(`Your name for ${infoC.name}`).fill('Carol');
  await cardC.getByRole('button', { name: 'Save name' }).tap();
  await pageA.locator(`#peer-list li[data-peer="${infoC.name}"] h3`).getByText(`Carol (${infoC.name})`).waitFor();
  check((await peerIn(apiA, infoC.name)).nickname === 'Carol', 'the nickname is saved');
  await pageA.waitForTimeout(500); // the peers_changed event of the rename redraws the list
  check(await cardC.getByRole('button', { name: `Forget ${infoC.name}` }).isVisible(), 'the open More panel stays open across redraws');
  await axeCheck(pageA, 'peers with a peer menu open');
  await touchTargets(pageA, 'peers with a peer menu open');
  await cardC.scrollIntoViewIfNeeded();
  await shot(pageA, 'invites-04-peer-menu');

  // 4. Private restricted to B: B lists it, C does not; then reset to all friends.
  setStep('4 share access');
  await waitFor('C to list A', () => sharesSeen(apiC, infoA.name));
  await nav(pageA, 'shares');
  const card = pageA.locator('li[data-share="Private"]');
  await card.locator('.visible-to').getByText('Visible to: All friends').waitFor();
  await card.getByRole('button', { name: 'Access: who can see Private' }).tap();
  await card.getByLabel('Only these friends:').check();
  await card.getByRole('checkbox', { name: infoB.name }).check();
  await card.getByRole('checkbox', { name: `Carol (${infoC.name})` }).waitFor();
  await axeCheck(pageA, 'shares with the access form');
  await touchTargets(pageA, 'shares with the access form');
  await shot(pageA, 'invites-05-access');
  await card.getByRole('button', { name: 'Save access' }).tap();
  await card.locator('.visible-to').getByText(`Visible to: ${infoB.name}`).waitFor();
  const visibleTo = (await apiA.json('/api/shares')).find((s) => s.name === 'Private').visible_to;
  check(!visibleTo.all_friends && visibleTo.peers.join() === infoB.name, `Private's visible_to: ${JSON.stringify(visibleTo)}`);
  const bSees = await sharesSeen(apiB, infoA.name);
  const cSees = await sharesSeen(apiC, infoA.name);
  check(bSees.includes(`${infoA.name}/Private`) && bSees.includes(`${infoA.name}/Music`), `B sees both shares: ${bSees}`);
  check(!cSees.includes(`${infoA.name}/Private`) && cSees.includes(`${infoA.name}/Music`), `C sees Music only: ${cSees}`);
  await card.getByLabel('All friends', { exact: true }).check();
  await card.getByRole('button', { name: 'Save access' }).tap();
  await card.locator('.visible-to').getByText('Visible to: All friends').waitFor();
  await waitFor('C to see Private again', async () => (await sharesSeen(apiC, infoA.name)).includes(`${infoA.name}/Private`));
  log('Private restricted to B (C could not see it), then visible to all friends again');

  // 5. Forgetting C (confirmed in a dialog) ends the friendship: C is no longer served,
  // and if it dials again it is a stranger's request.
  setStep('5 forget');
  await nav(pageA, 'peers');
  await pageA.getByRole('button', { name: `More for ${infoC.name}` }).tap();
  await pageA.getByRole('button', { name: `Forget ${infoC.name}` }).tap();
  await pageA.locator(`#peer-list li[data-peer="${infoC.name}"]`).waitFor({ state: 'detached' });
  const forgotten = await peerIn(apiA, infoC.name);
  check(!forgotten || forgotten.trust === 'pending', `C is no friend of A: ${JSON.stringify(forgotten)}`);
  await waitFor('C to lose A', async () => !(await sharesSeen(apiC, infoA.name)));
  log('C forgotten');
});
log('all invite checks passed');
