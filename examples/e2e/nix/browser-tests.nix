# Alicia's browser suite (TypeScript, @playwright/test, in ../e2e) as vmtest's e2e client runs it:
# `e2e-run-browser-tests OUTDIR` writes junit-browser.xml, results.jsonl (a line per test as it
# ends), playwright.log, screenshots/browser/, test-results/ (traces of the failed tests) and,
# last, exit-status. Playwright and its browsers are nixpkgs' playwright-test: no npm install.
{ stdenvNoCC, writeShellApplication, playwright-test, coreutils, findutils }:
let
  suite = stdenvNoCC.mkDerivation {
    pname = "alicia-browser-tests";
    version = "0.4.0";
    src = ../e2e;
    installPhase = ''
      mkdir -p $out/share/alicia-browser-tests
      cp -r . $out/share/alicia-browser-tests/
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
    export ALICIA_E2E_OUT="$out"
    status=0
    playwright test --config ${suite}/share/alicia-browser-tests/playwright.config.ts \
      > "$out/playwright.log" 2>&1 || status=$?
    # The failed tests' last screens, where vmtest's report looks for them.
    find "$out/test-results" -name '*.png' -exec cp --backup=numbered -t "$out/screenshots/browser" {} +
    echo "$status" > "$out/exit-status"
    exit "$status"
  '';
}
