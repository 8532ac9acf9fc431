# nixosModules.e2e-client: the client role of vmtest's web-stack e2e suite. It runs your browser
# suite against the server (http://server, the node's name) as the oneshot
# e2e-browser-tests.service, which the e2e testScript starts (`systemctl start --no-block`) and
# follows. A unit, not `systemd-run`: its PATH is what it declares (a transient unit on NixOS
# has systemd's bin only).
# The browser suite's contract: `bin/e2e-run-browser-tests OUTDIR` runs the tests and writes into
# OUTDIR (/tmp/e2e here) junit-browser.xml, results.jsonl (one JSON object a line as each test
# ends: {"name", "outcome": "passed|failed|error|skipped", "seconds", "message"}), its log
# (browserLog of webStackE2e; pytest.log by default), screenshots/browser/, test-results/, and
# exit-status last (the suite's exit status, written once the rest is complete).
{ config, lib, pkgs, ... }:
let
  cfg = config.vmtest.e2e.client;
in
{
  options.vmtest.e2e.client = {
    enable = lib.mkEnableOption "the client role of vmtest's web-stack e2e suite";
    browserSuite = lib.mkOption {
      type = lib.types.package;
      description = "The browser suite: a package with bin/e2e-run-browser-tests OUTDIR (see the contract above).";
    };
  };

  config = lib.mkIf cfg.enable {
    environment.systemPackages = [ cfg.browserSuite pkgs.curl ];

    systemd.services.e2e-browser-tests = {
      description = "The e2e browser suite (started by the testScript)";
      path = [ cfg.browserSuite ];
      # Browsers keep their caches under HOME; a unit has none of its own.
      environment.HOME = "/root";
      serviceConfig = {
        Type = "oneshot";
        ExecStart = "${cfg.browserSuite}/bin/e2e-run-browser-tests /tmp/e2e";
      };
    };
  };
}
