// What the runner's environment says (docs/browser-runner.md), read by the config and the fixtures
// alike: the config in the runner's process, the fixtures in its worker.
import path from 'node:path';
import type { BrowserContextOptions } from '@playwright/test';

export const ARTIFACTS = process.env.E2E_ARTIFACTS || '/tmp/e2e';
// The server as the tests' own API requests (page.request, from Playwright's driver) reach it.
export const SERVER = process.env.E2E_SERVER || 'http://server';
// The browser opens the app as http://alicia.localhost, which it resolves to the server: a
// *.localhost origin is a secure context (getUserMedia, for the voice tests) without TLS, and
// the headless shell, unlike the full browser, ignores --unsafely-treat-insecure-origin-as-secure.
export const APP_HOST = 'alicia.localhost';
export const APP = `http://${APP_HOST}`;
// Empty (the Nix client may say so): Playwright's own browser from PLAYWRIGHT_BROWSERS_PATH.
export const CHROMIUM = process.env.E2E_CHROMIUM ?? '/usr/bin/chromium-headless-shell';
// Under TCG emulation a page does in seconds what takes milliseconds under KVM.
export const TIMEOUT_MS = Number(process.env.E2E_TIMEOUT_MS || '45000');
// A whole test (pytest has no such limit; Playwright's default of 30 s is far too short under TCG).
export const TEST_TIMEOUT_MS = Number(process.env.E2E_TEST_TIMEOUT_MS || '600000');
// The runner's re-run of the failed tests: a fresh context per test, traced.
export const TRACED = process.env.E2E_TRACED === '1';
export const SCREENSHOTS = path.join(ARTIFACTS, 'screenshots', 'browser');

export const contextOptions: BrowserContextOptions = {
  baseURL: SERVER,
  viewport: { width: 1280, height: 800 },
  permissions: ['microphone'],
};

export const chromiumArgs: string[] = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-dev-shm-usage',
  '--use-fake-ui-for-media-stream',
  '--use-fake-device-for-media-stream',
  `--host-resolver-rules=MAP ${APP_HOST} ${new URL(SERVER).hostname}`,
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  // Extra flags for experiments (e.g. E2E_CHROMIUM_ARGS="--js-flags=--jitless").
  ...(process.env.E2E_CHROMIUM_ARGS || '').split(/\s+/).filter(Boolean),
];
