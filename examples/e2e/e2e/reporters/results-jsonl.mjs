// Streams each finished test as one JSON line ({"name", "outcome", "seconds", "message"}), the
// format vmtest's e2e testScript follows while the suite runs.
import { appendFileSync } from "node:fs";

export default class ResultsJsonl {
  constructor({ outputFile } = {}) {
    this.outputFile = outputFile;
  }

  onTestEnd(test, result) {
    if (!this.outputFile) return;
    const outcome = { passed: "passed", skipped: "skipped", failed: "failed", timedOut: "failed" }[result.status];
    appendFileSync(this.outputFile, JSON.stringify({
      name: test.titlePath().slice(1).join(" > "),
      outcome: outcome ?? "error",
      seconds: Math.round(result.duration) / 1000,
      message: result.error?.message?.split("\n", 1)[0] ?? "",
    }) + "\n");
  }
}
