# lib.<system>.webStackE2e: the e2e suite for your web app: a `server` VM (PostgreSQL, your app's
# migrations, your app, nginx: nixosModules.e2e-server) and a `client` VM running your browser
# suite against it (nixosModules.e2e-client), or the same two as systemd-nspawn containers
# (`nodeKind = "container"`), driven by e2e-test/test_script.py (the Alicia
# suite's testScript, which `make e2e` runs on the portable runtime). Returns the check: a
# verdict with `.artifacts` (report.html, junit.xml, junit-browser.xml, logs/, screenshots/,
# test-results/, summary.json) and `.driverInteractive` (lib/nix/test-with-artifacts.nix).
#
#   checks.x86_64-linux.e2e = vmtest.lib.x86_64-linux.webStackE2e {
#     app = "alicia";
#     package = self.packages.x86_64-linux.alicia;
#     browserSuite = self.packages.x86_64-linux.alicia-browser-tests;
#     environment.ALICIA_SERVER_PORT = "8888";
#     secrets.ALICIA_LLM_API_KEY = "test-api-key";
#     databaseUrlVariable = "ALICIA_POSTGRES_URL";
#   };
#
# The names the testScript needs (units, paths, port, secrets to redact, helper services) reach
# it as JSON: the testScript starts with `VMTEST_E2E = "<json>"`, which
# vmtest.suites.web_stack.web_stack_from reads (without it the script checks Alicia's stack).
{ pkgs, lib, arguments, hostSystem, withArtifacts, forceAccel, ... }:
let
  function = "vmtest.lib.${hostSystem}.webStackE2e";
  required = {
    # The app's name: the package has bin/<app> and bin/<app>-migrate; the units
    # (<app>.service, <app>-migrate.service, <app>-db-init.service), the system user, the
    # database and /etc/<app>/ are named after it.
    app = { kind = "string"; about = "the app's name (bin/<app>, <app>.service, database <app>)"; };
    # The app package. Contract: `bin/<app> server` serves HTTP on 127.0.0.1:<port>, configured by
    # its environment; `bin/<app>-migrate DIR` applies DIR's migrations; `<healthPath>` answers
    # {"status": "ok", "database": "ok"} once healthy.
    package = { kind = "package"; about = "the app package (bin/<app> server, bin/<app>-migrate DIR)"; };
    # The browser suite: a package with `bin/e2e-run-browser-tests OUTDIR`, which writes
    # junit-browser.xml, results.jsonl, its log, screenshots/browser/, test-results/ and, last,
    # exit-status into OUTDIR (nixosModules.e2e-client documents the contract).
    browserSuite = { kind = "package"; about = "the browser suite (bin/e2e-run-browser-tests OUTDIR)"; };
  };
  optional = {
    # The check's name (its artifacts are <name>-artifacts). Default "<app>-e2e".
    name = { kind = "string"; about = "the check's name"; };
    # The migrations directory (NNN_name.up.sql / .down.sql). Default <package>/share/<app>/migrations.
    migrations = { kind = "path"; about = "the migrations directory"; };
    # The app's environment (not secret), for the app and its migrate command.
    environment = { kind = "attrs"; about = "the app's environment"; };
    # Test secrets: NAME = value, in /etc/<app>/env (mode 0600, the app's EnvironmentFile). Every
    # value is redacted from the artifacts, from the first line on. They are in the Nix store.
    secrets = { kind = "attrs"; about = "test secrets for /etc/<app>/env"; };
    # The app's port on 127.0.0.1. Default 8888.
    port = { kind = "int"; about = "the app's port on 127.0.0.1"; };
    # The health endpoint. Default "/health".
    healthPath = { kind = "string"; about = "the app's health endpoint"; };
    # What the health endpoint's JSON must contain. Default { status = "ok"; database = "ok"; }.
    healthy = { kind = "attrs"; about = "what the health JSON must contain"; };
    # An environment variable set to the database URL (Unix socket, peer authentication). Default none.
    databaseUrlVariable = { kind = "string"; about = "the variable that gets the database URL"; };
    # Extensions created before the migrations and checked by the migrations step. Default [ ].
    databaseExtensions = { kind = "list"; about = "PostgreSQL extensions the app needs"; };
    # The PostgreSQL server, with the extensions' packages. Default pkgs.postgresql_17 (the nodes').
    postgresqlPackage = { kind = "package"; about = "the PostgreSQL server"; };
    # A frontend nginx serves at / (index.html fallback). Default none: / goes to the app.
    staticRoot = { kind = "path"; about = "the frontend directory nginx serves at /"; };
    # Locations nginx passes to the app, beside the health endpoint. Default [ "/api/" ].
    proxyLocations = { kind = "list"; about = "locations nginx passes to the app"; };
    # Headers the client must see through nginx. Default X-Frame-Options SAMEORIGIN and
    # X-Content-Type-Options nosniff (what nixosModules.e2e-server adds).
    expectHeaders = { kind = "attrs"; about = "headers the client must see through nginx"; };
    # Services your server modules add that the browser suite needs (mocks): unit = port. The
    # testScript waits for each unit and port before the browser suite. Default { }.
    helperServices = { kind = "attrs"; about = "unit = port of services the browser suite needs"; };
    # The browser suite's log in OUTDIR, copied to logs/client/. Default "pytest.log".
    browserLog = { kind = "string"; about = "the browser suite's log file in OUTDIR"; };
    # More NixOS modules for each node (mocks, nginx locations, packages, sizes).
    serverModules = { kind = "list"; about = "more NixOS modules for the server"; };
    clientModules = { kind = "list"; about = "more NixOS modules for the client"; };
    # The testScript. Default: e2e-test/test_script.py (the stack JSON is prepended either way).
    testScript = { kind = "string"; about = "the testScript"; };
    # node.specialArgs, more Python packages for the driver, the driver's timeout (default 3600 s).
    specialArgs = { kind = "attrs"; about = "module arguments for your modules' imports"; };
    extraPythonPackages = { kind = "function"; about = "more Python packages for the driver"; };
    globalTimeout = { kind = "int"; about = "seconds before the driver gives up"; };
    # Fail instead of running the VMs under TCG when the host has no KVM (qemu.forceAccel: nixpkgs
    # 26.05 and later; with an older nixpkgs, true is an error). Default false.
    forceAccel = { kind = "bool"; about = "fail instead of falling back to TCG (nixpkgs 26.05 and later)"; };
    # How server and client run: "vm" (the test option `nodes.<name>`: QEMU VMs, every nixpkgs) or
    # "container" (`containers.<name>`: systemd-nspawn containers sharing the host's kernel and
    # store, from nixos-26.05 on; with an older nixpkgs it is an error naming the revisions that
    # have them). The same roles, testScript and artifacts either way; a container gets no VM
    # sizes (memory, cores, disk, graphics). Default "vm".
    nodeKind = { kind = "string"; about = "\"vm\" (QEMU VMs) or \"container\" (systemd-nspawn, nixpkgs 26.05 and later)"; };
  };
in
given:
let
  args = arguments.check { inherit function required optional; } given;
  inherit (args) app package;
  name = args.name or "${app}-e2e";
  port = args.port or 8888;
  healthPath = args.healthPath or "/health";
  databaseExtensions = args.databaseExtensions or [ ];
  secrets = args.secrets or { };
  helperServices = args.helperServices or { };
  nodeKind = args.nodeKind or "vm";
  kinds = [ "vm" "container" ];
  # What nixosModules.e2e-server declares, by name, for the testScript (vmtest.suites.web_stack).
  stack = {
    version = 1;
    inherit name;
    app_unit = "${app}.service";
    migrate_unit = "${app}-migrate.service";
    chain = [ "postgresql.service" "${app}-migrate.service" "${app}.service" "nginx.service" ];
    inherit port;
    health_path = healthPath;
    healthy = args.healthy or { status = "ok"; database = "ok"; };
    proxied_headers = args.expectHeaders or {
      X-Frame-Options = "SAMEORIGIN";
      X-Content-Type-Options = "nosniff";
    };
    database = app;
    migrations_dir = "/etc/${app}/migrations";
    required_extensions = databaseExtensions;
    env_file = "/etc/${app}/env";
    helpers = helperServices;
    secrets = builtins.attrValues secrets;
    browser_log = args.browserLog or "pytest.log";
  };
  # The JSON as a Python string literal (Nix's JSON string escapes are Python's too).
  prelude = ''
    # Prepended by vmtest's ${function}: the stack under test (vmtest.suites.web_stack).
    VMTEST_E2E = ${builtins.toJSON (builtins.toJSON stack)}
  '';
  # A lean test machine; your modules win (mkDefault). The sizes are QEMU's (qemu-vm.nix): a
  # container has no such options (nixos/modules/virtualisation/nspawn-container), so they are
  # the VMs' only.
  lean = {
    system.stateVersion = lib.mkDefault "25.11";
    documentation.enable = lib.mkDefault false;
    nix.enable = lib.mkDefault false;
  };
  vmSize = diskSize: {
    virtualisation = {
      memorySize = lib.mkDefault 2048;
      cores = lib.mkDefault 2;
      graphics = lib.mkDefault false;
    } // lib.optionalAttrs (diskSize != null) { diskSize = lib.mkDefault diskSize; };
  };
  sized = diskSize: lib.optional (nodeKind == "vm") (vmSize diskSize);
  server = {
    imports = [ ./modules/e2e-server.nix lean ] ++ sized 4096 ++ (args.serverModules or [ ]);
    vmtest.e2e.server = {
      enable = true;
      inherit app package port healthPath databaseExtensions secrets;
      environment = args.environment or { };
    }
    // lib.optionalAttrs (args ? migrations) { migrations = "${args.migrations}"; }
    // lib.optionalAttrs (args ? databaseUrlVariable) { inherit (args) databaseUrlVariable; }
    // lib.optionalAttrs (args ? postgresqlPackage) { inherit (args) postgresqlPackage; }
    // lib.optionalAttrs (args ? staticRoot) { staticRoot = "${args.staticRoot}"; }
    // lib.optionalAttrs (args ? proxyLocations) { inherit (args) proxyLocations; };
  };
  client = {
    imports = [ ./modules/e2e-client.nix lean ] ++ sized null ++ (args.clientModules or [ ]);
    vmtest.e2e.client = {
      enable = true;
      inherit (args) browserSuite;
    };
  };
  # The machines as containers: a test module that asks the test framework's `options` whether it
  # declares `containers` (nixos/lib/testing/nodes.nix, nixos-26.05 and later), as forceAccel asks
  # for qemu.forceAccel, and is an error naming the function where it does not.
  asContainers = { options, ... }: {
    config =
      if options ? containers then { containers = { inherit server client; }; }
      else throw ("${function}: `nodeKind = \"container\"` needs the test option `containers` "
        + "(systemd-nspawn machines), which the test framework of this nixpkgs does not declare "
        + "(nixos-26.05 and later do); use nodeKind = \"vm\" (the default) with this nixpkgs");
  };
  machines =
    if !(builtins.elem nodeKind kinds) then
      throw "${function}: the argument `nodeKind` is \"${nodeKind}\"; it is \"vm\" or \"container\""
    else if nodeKind == "container" && (args.forceAccel or false) then
      throw "${function}: `forceAccel = true` is about QEMU, and `nodeKind = \"container\"` runs no QEMU"
    else if nodeKind == "vm" then { nodes = { inherit server client; }; }
    else { imports = [ asContainers ]; };
in
withArtifacts {
  inherit name;
  imports = lib.optional (args.forceAccel or false) (forceAccel function) ++ [ machines ];
  node.specialArgs = args.specialArgs or { };
  extraPythonPackages = args.extraPythonPackages or (_: [ ]);
  globalTimeout = args.globalTimeout or 3600;
  testScript = prelude + (args.testScript or (builtins.readFile ../../e2e-test/test_script.py));
}
