// The smoke tests' fixtures, as e2e-test/client/conftest.py gives the Python suite: one browser
// context for the run, a fresh load of the app per test, long timeouts, and a failed test's last
// state in screenshots/browser/<test>.png.
import fs from 'node:fs';
import path from 'node:path';
import { test as base, expect, type BrowserContext, type Page, type TestInfo } from '@playwright/test';
import { APP, SCREENSHOTS, TIMEOUT_MS, TRACED, contextOptions } from './settings';

export { expect };
export type { Page, WebSocket } from '@playwright/test';

/** The test's name as the JUnit report has it (describe titles and title, joined with " › "),
 * made a file name the way conftest.py makes one; report.html finds the screenshot by it. */
export function screenshotName(testInfo: Pick<TestInfo, 'titlePath'>): string {
  return testInfo.titlePath.slice(1).join(' \u203a ').replace(/[^A-Za-z0-9_.-]/g, '_');
}

async function screenshot(page: Page, name: string): Promise<string | undefined> {
  fs.mkdirSync(SCREENSHOTS, { recursive: true });
  const file = path.join(SCREENSHOTS, `${name}.png`);
  try {
    // The viewport (the app's layout is one screen): a full-page capture costs twice as long.
    await page.screenshot({ path: file, timeout: TIMEOUT_MS });
    return file;
  } catch (error) { // a crashed page must not hide the test's own failure
    console.log(`screenshot ${name} failed: ${error}`);
    return undefined;
  }
}

// One browser context for the run: under TCG a context and a page per test cost 4-5 s of each
// test. Every test still starts from a fresh load of the app with empty local storage (`app`);
// what the tests share is the server's state. The app's state after the last test is kept as
// screenshots/browser/final-state.png. (Playwright starts a new worker after a failed test, and
// with it a new context: each worker's teardown writes it, the last one's stays.)
const shared = base.extend<object, { sharedContext: BrowserContext }>({
  sharedContext: [async ({ browser }, use) => {
    const context = await browser.newContext(contextOptions);
    context.setDefaultTimeout(TIMEOUT_MS);
    await use(context);
    const live = context.pages().filter((page) => !page.isClosed());
    if (live.length) await screenshot(live[0], 'final-state');
    await context.close();
  }, { scope: 'worker' }],
  page: async ({ sharedContext }, use) => {
    // A test that closed or crashed the page must not take the next tests with it.
    const live = sharedContext.pages().filter((page) => !page.isClosed());
    await use(live[0] ?? await sharedContext.newPage());
  },
});

// The traced re-run keeps Playwright's own page: a fresh context per test, which the trace records.
const pages = TRACED ? base : (shared as unknown as typeof base);

export const test = pages.extend<{ appUrl: string; app: Page; pageSetup: void }>({
  // Long timeouts, and a failed test's last state in screenshots/browser/<test>.png (each
  // screenshot costs about a second under TCG, so passing tests take none).
  pageSetup: [async ({ page }, use, testInfo) => {
    page.setDefaultTimeout(TIMEOUT_MS);
    await use();
    if (!TRACED && testInfo.status !== testInfo.expectedStatus) {
      const file = await screenshot(page, screenshotName(testInfo));
      // Attached where it is (attach() would copy it into test-results): the JUnit names it as
      // [[ATTACHMENT|screenshots/browser/<test>.png]], relative to OUTDIR.
      if (file) testInfo.attachments.push({ name: 'screenshot', path: file, contentType: 'image/png' });
    }
  }, { auto: true }],
  // The app's address as the browser knows it (relative paths in page.request go to SERVER).
  appUrl: async ({}, use) => { // eslint-disable-line no-empty-pattern
    await use(`${APP}/`);
  },
  // The app, loaded and ready.
  app: async ({ page, appUrl }, use) => {
    await page.goto(appUrl);
    await expect(page.getByTestId('app-root')).toHaveAttribute('data-ready', 'true');
    await page.evaluate(() => localStorage.clear()); // settings an earlier test left (the page is shared)
    await use(page);
  },
});
