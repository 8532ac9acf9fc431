// One JSON line per finished test, appended as it ends: vmtest's testScript follows this file
// while the suite runs ({"name", "outcome", "seconds", "message"}).
import { appendFileSync } from "node:fs";

const outcomes = { passed: "passed", failed: "failed", timedOut: "failed", interrupted: "error", skipped: "skipped" };

export default class JsonLinesReporter {
  constructor(options = {}) {
    this.outputFile = options.outputFile;
  }

  onTestEnd(test, result) {
    if (!this.outputFile) return;
    const line = {
      name: test.titlePath().filter(Boolean).join(" › "),
      outcome: outcomes[result.status] ?? "error",
      seconds: result.duration / 1000,
      message: (result.error?.message ?? "").split("\n")[0],
    };
    appendFileSync(this.outputFile, JSON.stringify(line) + "\n");
  }
}
