# The smoke tests of e2e-test/client-ts (@playwright/test, TypeScript) as a browser suite for the
# NixOS client: `bin/e2e-run-browser-tests OUTDIR`, the runner contract of docs/browser-runner.md,
# which the e2e-browser-tests unit runs (the very runner the Debian client-ts image installs,
# machines/client/e2e-run-browser-tests-ts, wrapped with where the suite is, Node.js and the browser).
#
# The node_modules are package-lock.json's, each package fetched by its own `resolved` URL and
# `integrity` hash (nixpkgs' importNpmLock: no npmDepsHash to keep in step with the lock) and
# installed by buildNpmPackage's `npm install --ignore-scripts` offline: Playwright's browser
# download never runs. The browser is nixpkgs' (playwright-driver.browsers, as packages.nix's
# Python suite finds it): the full Chromium, launched by path (E2E_CHROMIUM), headless. By path,
# not by PLAYWRIGHT_BROWSERS_PATH's revision directory: the lock's @playwright/test need not be
# the nixpkgs playwright-driver's version (Playwright drives a Chromium a few versions apart; the
# closer the two, the safer: docs/browser-runner.md).
#
# The flake's overlay makes it `alicia-e2e-client-tests-ts`, and its `e2e-ts` check passes it to
# webStackE2e as browserSuite with browserLog = "playwright.log".
{ pkgs, lib ? pkgs.lib }:
let
  suiteDir = ../client-ts;
  package = builtins.fromJSON (builtins.readFile (suiteDir + "/package.json"));
  # The suite without a checkout's own node_modules (a flake's source has none: it is not tracked).
  src = builtins.path {
    path = suiteDir;
    name = "${package.name}-source";
    filter = path: type: baseNameOf path != "node_modules";
  };
  browsers = pkgs.playwright-driver.browsers;
  # The fonts the browser renders with: all of DejaVu, as the Debian client's fonts-dejavu-core
  # (why through FONTCONFIG_FILE: packages.nix).
  browserFonts = pkgs.makeFontsConf { fontDirectories = [ pkgs.dejavu_fonts ]; };
in
pkgs.buildNpmPackage {
  pname = package.name;
  inherit (package) version;
  inherit src;
  npmDeps = pkgs.importNpmLock { npmRoot = suiteDir; };
  npmConfigHook = pkgs.importNpmLock.npmConfigHook;
  # No build script: Playwright transpiles the TypeScript itself when it loads it.
  dontNpmBuild = true;
  nativeBuildInputs = [ pkgs.makeWrapper ];
  # patchShebangs gives the runner's `#!/usr/bin/env bash` this bash.
  buildInputs = [ pkgs.bash ];
  # The suite where npm would install it (importNpmLock's post-install hook puts the unpatched
  # package.json and lock back there), with its node_modules; the runner cds into it.
  installPhase = ''
    runHook preInstall
    suite=$out/lib/node_modules/${package.name}
    mkdir -p "$suite" $out/bin
    cp -r ./* "$suite"/
    install -Dm755 ${../machines/client/e2e-run-browser-tests-ts} $out/libexec/e2e-run-browser-tests
    chrome=
    for candidate in ${browsers}/chromium-*/chrome-linux64/chrome ${browsers}/chromium-*/chrome-linux/chrome; do
      if [ -x "$candidate" ]; then
        chrome=$candidate
        break
      fi
    done
    if [ -z "$chrome" ]; then
      echo "no full Chromium (chromium-*/chrome-linux*/chrome) in ${browsers}" >&2
      exit 1
    fi
    makeWrapper $out/libexec/e2e-run-browser-tests $out/bin/e2e-run-browser-tests \
      --set E2E_TESTS_DIR "$suite" \
      --prefix PATH : ${lib.makeBinPath [ pkgs.nodejs pkgs.coreutils ]} \
      --set PLAYWRIGHT_BROWSERS_PATH ${browsers} \
      --set FONTCONFIG_FILE ${browserFonts} \
      --set E2E_CHROMIUM "$chrome"
    runHook postInstall
  '';
  passthru = {
    # What the lock pins, to compare with pkgs.playwright-driver.version (the browsers' Playwright).
    playwrightVersion = (builtins.fromJSON (builtins.readFile (suiteDir + "/package-lock.json")))
      .packages."node_modules/@playwright/test".version;
  };
  meta = {
    description = "Alicia's browser smoke tests (@playwright/test) as bin/e2e-run-browser-tests OUTDIR";
    mainProgram = "e2e-run-browser-tests";
  };
}
