// Alicia's browser suite. On vmtest's client VM the app is http://server (nginx in front of the
// backend); ALICIA_E2E_OUT is the OUTDIR of e2e-run-browser-tests.
import { defineConfig, devices } from "@playwright/test";

const out = process.env.ALICIA_E2E_OUT ?? "test-output";

export default defineConfig({
  testDir: "./tests",
  outputDir: `${out}/test-results`,
  timeout: 60_000,
  reporter: [
    ["list"],
    ["junit", { outputFile: `${out}/junit-browser.xml` }],
    ["./reporters/results-jsonl.mjs", { outputFile: `${out}/results.jsonl` }],
  ],
  use: {
    baseURL: process.env.ALICIA_BASE_URL ?? "http://server",
    screenshot: "only-on-failure",
    trace: "retain-on-failure",
  },
  projects: [{ name: "chromium", use: { ...devices["Desktop Chrome"], channel: "chromium" } }],
});
