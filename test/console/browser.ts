/**
 * Real headless Chromium for the console tests (Debian `chromium`, driven by playwright-core): one
 * browser per test file with a fresh temporary profile; one context (cookie jar) per operator.
 * `hasChromium` is false when /usr/bin/chromium is missing, and the tests skip saying so.
 */
import { existsSync } from 'node:fs';
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core';

export const CHROMIUM = '/usr/bin/chromium';
export const hasChromium = existsSync(CHROMIUM);
if (!hasChromium) {
  console.warn(`console browser tests SKIPPED: ${CHROMIUM} is missing (install it: apt-get update && apt-get install -y chromium)`);
}

export async function launch(): Promise<Browser> {
  // launch() starts Chromium with a fresh temporary user-data dir, removed on close.
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'],
  });
}

export interface OperatorPage {
  context: BrowserContext;
  page: Page;
  /** Uncaught page errors and console errors (a test asserts there are none). */
  errors: string[];
}

/** A new cookie jar, the console opened and logged in by typing the token into the form. */
export async function loginAs(browser: Browser, base: string, token: string, viewport = { width: 1280, height: 900 }): Promise<OperatorPage> {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
  page.on('console', (m) => {
    // The browser logs every non-2xx answer; the tests provoke 401/403 on purpose.
    if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) errors.push(`console: ${m.text()}`);
  });
  await page.goto(`${base}/console/`);
  await page.getByLabel('Operator token').fill(token);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.locator('#link-state[data-state="live"]').waitFor();
  return { context, page, errors };
}
