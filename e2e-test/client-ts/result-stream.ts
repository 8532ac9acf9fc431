// A @playwright/test reporter: one JSON line per finished test, appended to $E2E_RESULTS as each
// test ends, exactly as e2e-test/client/result_stream.py writes them for pytest:
//
//   {"name": "smoke.spec.ts::test_01_app_loads", "outcome": "passed|failed|error|skipped",
//    "seconds": 1.234, "message": "<the failure's first line>"}
//
// The host follows the file while the tests run (vmtest.guest_results.follow_results), so each
// result is on the host's terminal when its test ends. Without E2E_RESULTS it does nothing (the
// runner sets it for the first run only, not for the traced re-run of the failed tests).
// The contract: docs/browser-runner.md.
import fs from 'node:fs';
import type { Reporter, TestCase, TestError, TestResult, TestStep } from '@playwright/test/reporter';

export type Line = { name: string; outcome: 'passed' | 'failed' | 'error' | 'skipped'; seconds: number; message: string };

// Terminal colours and styles (Playwright's matcher messages carry them).
const ANSI = /\u001b\[[0-9;?]*[ -/]*[@-~]/g;

/** A message's first line, as result_stream.py keeps it: no colours, stripped, at most 300 characters. */
export function firstLine(text: string): string {
  return text.replace(ANSI, '').trim().split('\n', 1)[0].slice(0, 300);
}

/** A JSON string as Python's json.dumps writes it (ensure_ascii: \uXXXX beyond ASCII). */
function pythonString(text: string): string {
  return JSON.stringify(text).replace(/[\u0080-\uffff]/g, (char) => `\\u${char.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** The line as result_stream.py's json.dumps writes it, byte for byte: its separators, its key
 * order, seconds as a float. */
export function serialize(line: Line): string {
  const seconds = Number.isInteger(line.seconds) ? `${line.seconds}.0` : String(line.seconds);
  return `{"name": ${pythonString(line.name)}, "outcome": ${pythonString(line.outcome)}, "seconds": ${seconds}, `
    + `"message": ${pythonString(line.message)}}`;
}

/** pytest's node id for a Playwright test: the file (relative to testDir), then each describe title
 * and the test's title, joined with "::"; a named project in brackets, as a pytest parameter. */
export function nodeId(test: TestCase): string {
  const [, project, file, ...titles] = test.titlePath();
  return [file, ...titles].join('::') + (project ? `[${project}]` : '');
}

function errorText(error: TestError | undefined): string {
  return error?.message ?? error?.value ?? '';
}

/** pytest's "error" is a failure outside the test's own body (a fixture, a hook: its setup or
 * teardown); any other failure, a timeout included, is "failed". */
function failedOutside(result: TestResult): boolean {
  const failing = result.steps.find((step: TestStep) => step.error !== undefined);
  return failing !== undefined && (failing.category === 'hook' || failing.category === 'fixture');
}

export function summary(test: TestCase, result: TestResult): Line {
  const seconds = Math.round(test.results.reduce((total, each) => total + each.duration, 0)) / 1000;
  const line = (outcome: Line['outcome'], message = ''): Line => ({ name: nodeId(test), outcome, seconds, message });
  if (result.status === 'skipped') {
    const skip = [...(result.annotations ?? []), ...test.annotations].find((note) => note.type === 'skip' || note.type === 'fixme');
    return line('skipped', firstLine(skip?.description ? `Skipped: ${skip.description}` : 'Skipped'));
  }
  // An expected failure (test.fail()) passes, as in Playwright's own JUnit.
  if (result.status === test.expectedStatus) return line('passed');
  const message = firstLine(errorText(result.error ?? result.errors[0])) || firstLine(result.status);
  if (result.status === 'interrupted') return line('error', message);
  return line(failedOutside(result) ? 'error' : 'failed', message);
}

/** Whether ``result`` is the test's last attempt (a failed one is retried while retries are left). */
function final(test: TestCase, result: TestResult): boolean {
  return result.status === 'skipped' || result.status === 'interrupted' || result.status === test.expectedStatus
    || result.retry >= test.retries;
}

export default class ResultStream implements Reporter {
  private readonly path = process.env.E2E_RESULTS || '';

  printsToStdio(): boolean {
    return false;
  }

  private write(line: Line): void {
    if (!this.path) return;
    // One write of a whole line: the host reads the file while it grows.
    fs.appendFileSync(this.path, serialize(line) + '\n');
  }

  onTestEnd(test: TestCase, result: TestResult): void {
    if (final(test, result)) this.write(summary(test, result));
  }

  // An error outside every test (a file that does not load, a worker's teardown): a line of its
  // own, so that the host sees it as it happens (pytest's collection errors write none).
  onError(error: TestError): void {
    const where = error.location ? `${error.location.file.split('/').pop()}:${error.location.line}` : 'playwright';
    this.write({ name: where, outcome: 'error', seconds: 0, message: firstLine(errorText(error)) });
  }
}
