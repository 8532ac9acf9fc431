# The e2e suite's packages: the reference `alicia` (replace it through the flake's overlay with
# the real Alicia), the hermetic service mocks, and the client's browser tests.
{ pkgs, lib ? pkgs.lib }:
let
  appPython = pkgs.python3.withPackages (ps: [ ps.aiohttp ps.psycopg ]);
  testPython = pkgs.python3.withPackages (ps: [ ps.pytest ps.pytest-playwright ps.playwright ]);
  # The fonts the browser renders with: all of DejaVu, as the Debian client's fonts-dejavu-core.
  # Through FONTCONFIG_FILE, not the client's `fonts.packages`: Playwright's Chromium wrapper sets
  # FONTCONFIG_FILE itself unless it is set (makeWrapper --set-default), to a fonts.conf of its own
  # without font directories (DejaVu Sans at most), so /etc/fonts, which fonts.packages feeds,
  # never reaches the browser.
  browserFonts = pkgs.makeFontsConf { fontDirectories = [ pkgs.dejavu_fonts ]; };
in
rec {
  # Alicia's package contract (seed 000): bin/alicia (`alicia server`), bin/alicia-migrate,
  # share/alicia/migrations/NNN_*.{up,down}.sql, share/alicia/frontend/.
  alicia = pkgs.stdenvNoCC.mkDerivation {
    pname = "alicia-reference";
    version = "0.1.0";
    src = ../app;
    nativeBuildInputs = [ pkgs.makeWrapper ];
    installPhase = ''
      runHook preInstall
      mkdir -p $out/bin $out/lib/alicia $out/share/alicia
      cp -r alicia_ref $out/lib/alicia/
      cp -r migrations frontend $out/share/alicia/
      makeWrapper ${appPython}/bin/python3 $out/bin/alicia \
        --add-flags "-m alicia_ref" --prefix PYTHONPATH : $out/lib/alicia
      install -Dm755 alicia-migrate $out/libexec/alicia-migrate
      makeWrapper $out/libexec/alicia-migrate $out/bin/alicia-migrate \
        --prefix PATH : ${lib.makeBinPath [ pkgs.postgresql_17 pkgs.coreutils ]}
      runHook postInstall
    '';
    meta.mainProgram = "alicia";
  };

  alicia-mocks = pkgs.stdenvNoCC.mkDerivation {
    pname = "alicia-e2e-mocks";
    version = "0.1.0";
    src = ../mocks;
    nativeBuildInputs = [ pkgs.makeWrapper ];
    installPhase = ''
      mkdir -p $out/bin $out/lib
      cp *.py $out/lib/
      makeWrapper ${appPython}/bin/python3 $out/bin/alicia-llm-mock --add-flags $out/lib/llm_mock.py
      makeWrapper ${appPython}/bin/python3 $out/bin/alicia-livekit-standin --add-flags $out/lib/livekit_standin.py
    '';
  };

  # The 12 smoke tests, runnable as `e2e-run-browser-tests OUTDIR`: the very script the Debian
  # client installs (machines/client/e2e-run-browser-tests), wrapped with where the tests are,
  # the Python that runs them and Playwright's browsers. `$out` here is this package's output;
  # the client's e2e-browser-tests unit runs the command.
  # The browser is found as nixpkgs' own test finds it (nixos/tests/playwright-python.nix):
  # PLAYWRIGHT_BROWSERS_PATH at playwright-driver.browsers, and the full Chromium in its headless
  # mode (channel "chromium"; pytest-playwright's --browser-channel, through PYTEST_ADDOPTS, so
  # the runner both twins share is unchanged). Without a channel Playwright would launch the
  # headless shell from the same directory, which no nixpkgs test runs. E2E_CHROMIUM empty: no
  # executable of our own (the Debian client names its own).
  alicia-e2e-client-tests = pkgs.stdenvNoCC.mkDerivation {
    pname = "alicia-e2e-client-tests";
    version = "0.1.0";
    src = ../client;
    nativeBuildInputs = [ pkgs.makeWrapper ];
    # patchShebangs gives the runner's `#!/usr/bin/env bash` this bash.
    buildInputs = [ pkgs.bash ];
    installPhase = ''
      runHook preInstall
      mkdir -p $out/share/e2e-tests $out/bin
      cp *.py pytest.ini $out/share/e2e-tests/
      install -Dm755 ${../machines/client/e2e-run-browser-tests} $out/libexec/e2e-run-browser-tests
      makeWrapper $out/libexec/e2e-run-browser-tests $out/bin/e2e-run-browser-tests \
        --set E2E_TESTS_DIR $out/share/e2e-tests \
        --prefix PATH : ${lib.makeBinPath [ testPython pkgs.coreutils ]} \
        --set PLAYWRIGHT_BROWSERS_PATH ${pkgs.playwright-driver.browsers} \
        --set PYTEST_ADDOPTS --browser-channel=chromium \
        --set FONTCONFIG_FILE ${browserFonts} \
        --set E2E_CHROMIUM ""
      runHook postInstall
    '';
  };
}
