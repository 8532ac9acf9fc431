# The browser suite as vmtest's client runs it: `e2e-run-browser-tests OUTDIR` runs the
# Playwright tests in ./e2e against http://server and writes into OUTDIR junit-browser.xml,
# results.jsonl (a line per finished test), playwright.log, screenshots/browser/, test-results/
# and, last, exit-status. Playwright and its browsers are nixpkgs' (playwright-test).
{ stdenvNoCC, writeShellApplication, playwright-test, coreutils, findutils }:
let
  tests = stdenvNoCC.mkDerivation {
    pname = "myapp-e2e-tests";
    version = "0.1.0";
    src = ./e2e;
    installPhase = ''
      mkdir -p $out/share/e2e
      cp -r . $out/share/e2e/
    '';
  };
in
writeShellApplication {
  name = "e2e-run-browser-tests";
  runtimeInputs = [ playwright-test coreutils findutils ];
  text = ''
    out=''${1:?usage: e2e-run-browser-tests OUTDIR}
    rm -rf "$out"
    mkdir -p "$out/screenshots/browser" "$out/test-results"
    export E2E_OUT="$out"
    status=0
    playwright test --config ${tests}/share/e2e/playwright.config.ts > "$out/playwright.log" 2>&1 || status=$?
    find "$out/test-results" -name '*.png' -exec cp --backup=numbered -t "$out/screenshots/browser" {} +
    echo "$status" > "$out/exit-status"
    exit "$status"
  '';
}
