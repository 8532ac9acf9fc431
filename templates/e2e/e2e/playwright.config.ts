// Run by e2e-run-browser-tests (browser-suite.nix) on the client VM: the app is http://server.
import { defineConfig, devices } from "@playwright/test";

const out = process.env.E2E_OUT ?? "/tmp/e2e";

export default defineConfig({
  testDir: ".",
  outputDir: `${out}/test-results`,
  reporter: [
    ["list"],
    ["junit", { outputFile: `${out}/junit-browser.xml` }],
    ["./jsonl-reporter.mjs", { outputFile: `${out}/results.jsonl` }],
  ],
  use: { baseURL: "http://server", screenshot: "only-on-failure", trace: "retain-on-failure" },
  // nixpkgs' Chromium in its headless mode (the `chromium` channel), as nixpkgs' own test runs it.
  projects: [{ name: "chromium", use: { ...devices["Desktop Chrome"], channel: "chromium" } }],
});
