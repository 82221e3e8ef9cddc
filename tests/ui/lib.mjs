// Helpers shared by the browser tests (phone.mjs, invites.mjs): bounded waits, checks
// that name the step they failed in, axe-core, screenshots, touch-target sizes, a
// phone-sized Chromium and the daemons' HTTP API with their bearer token.
import { chromium } from 'playwright-core';
import { readFileSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { createRequire } from 'node:module';

export const T = 30_000;

export const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`missing ${name}`);
  return v;
};

let step = 'start';
export const setStep = (name) => { step = name; };
export const log = (msg) => console.log(`[ui] ${msg}`);
export function check(cond, msg) {
  if (!cond) throw new Error(`${step}: ${msg}`);
}

export async function waitFor(what, fn, limit = T) {
  const deadline = Date.now() + limit;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`${step}: timed out after ${limit} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

// A daemon's API as the CLI sees it (the bearer token in its storage). `call` answers
// {status, body} for checking refusals; `json` requires success.
export function daemonApi(url, storage) {
  const token = readFileSync(join(storage, 'api-token'), 'utf8').trim();
  const call = async (path, { method = 'GET', body } = {}) => {
    const r = await fetch(`${url}${path}`, {
      method,
      headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(90_000),
    });
    const text = await r.text();
    let parsed = null;
    try { parsed = text ? JSON.parse(text) : null; } catch { parsed = text; }
    return { status: r.status, body: parsed };
  };
  const json = async (path, init) => {
    const r = await call(path, init);
    check(r.status >= 200 && r.status < 300, `${path} answered ${r.status}: ${JSON.stringify(r.body)}`);
    return r.body;
  };
  return { call, json };
}

const require = createRequire(import.meta.url);
const axeSource = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
const a11y = [];
export async function axeCheck(page, screen) {
  if (!(await page.evaluate(() => typeof window.axe !== 'undefined'))) await page.evaluate(axeSource);
  const result = await page.evaluate(async () => {
    const r = await window.axe.run(document, { resultTypes: ['violations'] });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.length, help: v.help, where: v.nodes.slice(0, 3).map((n) => `${n.target.join(' ')} ${n.failureSummary || ''}`.replace(/\s+/g, ' ')) }));
  });
  for (const v of result) log(`axe ${screen}: ${v.impact} ${v.id} (${v.nodes}): ${v.help} at ${v.where.join(' | ')}`);
  const critical = result.filter((v) => v.impact === 'critical' || v.impact === 'serious');
  a11y.push({ screen, violations: result.length, critical: critical.length });
  check(critical.length === 0, `critical or serious accessibility violations on ${screen}: ${critical.map((v) => v.id).join(', ')}`);
}
const a11ySummary = () => a11y.map((r) => `${r.screen} ${r.critical} critical/${r.violations}`).join(', ');

export function screenshots(dir) {
  mkdirSync(dir, { recursive: true });
  rmSync(join(dir, 'failure.png'), { force: true });
  return async (page, name) => {
    await page.evaluate(() => document.getElementById('toasts').replaceChildren());
    await page.waitForTimeout(350); // let transitions settle
    await page.screenshot({ path: join(dir, `${name}.png`) });
  };
}

// Big touch targets: every visible button and link in the nav and lists is ≥ 44 px.
export async function touchTargets(page, screen) {
  const small = await page.evaluate(() => [...document.querySelectorAll('main button, main a.button, main a.rowlink, nav a')]
    .filter((e) => e.offsetParent !== null)
    .map((e) => { const r = e.getBoundingClientRect(); return { t: e.textContent.trim().slice(0, 30) || e.getAttribute('aria-label'), w: r.width, h: r.height }; })
    .filter((r) => r.w < 44 || r.h < 44));
  check(small.length === 0, `touch targets under 44 px on ${screen}: ${JSON.stringify(small)}`);
}

export const nav = (page, screen) => page.locator(`#nav a[data-screen="${screen}"]`).tap();

export const PHONE = { viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true, deviceScaleFactor: 2, locale: 'en-US' };

function launchChromium() {
  return chromium.launch({
    executablePath: process.env.HDP_CHROMIUM || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    timeout: T,
  });
}

// A phone-sized page whose uncaught errors land in `pageErrors`; dialogs are accepted.
export async function phonePage(browser, pageErrors) {
  const context = await browser.newContext(PHONE);
  context.setDefaultTimeout(T);
  const page = await context.newPage();
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  page.on('dialog', (d) => d.accept());
  return { context, page };
}

// Runs `body(browser, pageErrors)` in a fresh Chromium, then requires that no page threw;
// on failure the open pages are photographed to SHOTS/failure.png, failure-2.png, …
export async function withBrowser(shotsDir, body) {
  const browser = await launchChromium();
  const pageErrors = [];
  try {
    await body(browser, pageErrors);
    setStep('page errors');
    check(pageErrors.length === 0, `uncaught errors in the page: ${pageErrors.join(' | ')}`);
    log(`accessibility: ${a11ySummary()}`);
  } catch (e) {
    const pages = browser.contexts().flatMap((c) => c.pages());
    for (const [i, p] of pages.entries()) {
      await p.screenshot({ path: join(shotsDir, i ? `failure-${i + 1}.png` : 'failure.png') }).catch(() => {});
    }
    throw e;
  } finally {
    await browser.close();
  }
}

// The first-run password, set with the daemon's one-time setup code.
export async function setPassword(page, url, storage, password) {
  await page.goto(url);
  await page.waitForSelector('#setup-form');
  await page.getByLabel('Setup code').fill(readFileSync(join(storage, 'setup-code'), 'utf8').trim());
  await page.getByLabel('New password').fill(password);
  await page.getByLabel('Repeat the password').fill(password);
  await page.getByRole('button', { name: 'Set password' }).tap();
  await page.waitForSelector('nav#nav:not([hidden])');
}
