// The smoke suite's configuration for `e2e-run-browser-tests OUTDIR` (docs/browser-runner.md):
// the system Chromium (E2E_CHROMIUM) headless with fake media devices, one worker (the tests run in
// order and share the server's state), JUnit into OUTDIR/junit-browser.xml, each test's line into
// $E2E_RESULTS (result-stream.ts), Playwright's own output into OUTDIR/test-results.
// The runner's traced re-run of the failed tests (E2E_TRACED=1) writes OUTDIR/test-results/traced
// and no JUnit: the first run's JUnit and exit status are the result.
import path from 'node:path';
import { defineConfig, type ReporterDescription } from '@playwright/test';
import {
  ARTIFACTS, CHROMIUM, TEST_TIMEOUT_MS, TIMEOUT_MS, TRACED, chromiumArgs, contextOptions,
} from './settings';

const reporters: ReporterDescription[] = [
  ['list'],
  ...(TRACED ? [] : [['junit', { outputFile: path.join(ARTIFACTS, 'junit-browser.xml') }] as ReporterDescription]),
  ['./result-stream.ts'],
];

export default defineConfig({
  testDir: './tests',
  outputDir: path.join(ARTIFACTS, 'test-results', ...(TRACED ? ['traced'] : [])),
  fullyParallel: false,
  workers: 1,
  retries: 0,
  forbidOnly: true,
  timeout: TEST_TIMEOUT_MS,
  expect: { timeout: TIMEOUT_MS },
  reporter: reporters,
  use: {
    ...contextOptions,
    headless: true,
    actionTimeout: TIMEOUT_MS,
    navigationTimeout: TIMEOUT_MS,
    // Tracing every test nearly doubles its time under TCG: only the re-run of the failed ones traces.
    trace: TRACED ? 'on' : 'off',
    // A failed test's last state goes to screenshots/browser/<test>.png (fixtures.ts), as the
    // Python suite's; Playwright's own only in the traced re-run.
    screenshot: TRACED ? 'only-on-failure' : 'off',
    launchOptions: {
      ...(CHROMIUM ? { executablePath: CHROMIUM } : {}),
      args: chromiumArgs,
    },
  },
});
