# nixosModules.e2e-server: the server role of vmtest's web-stack e2e suite, for any app that keeps
# the contract below. PostgreSQL (reached over its Unix socket only), the app's migrations, the
# app, and nginx in front of it, as units that come up in this order:
#   postgresql.service → <app>-db-init.service → <app>-migrate.service → <app>.service → nginx.service
# The app package's contract: `bin/<app> server` serves HTTP on 127.0.0.1:<port>, configured by
# its environment (and the secrets' EnvironmentFile); `bin/<app>-migrate DIR` applies DIR's
# migrations (golang-migrate's NNN_name.up.sql / .down.sql); `<healthPath>` answers
# {"status": "ok", "database": "ok"} once it is healthy.
# The e2e testScript (e2e-test/test_script.py, through lib.<system>.webStackE2e) relies on the
# unit names, /etc/<app>/env (the secrets, mode 0600) and /etc/<app>/migrations declared here.
# Add to the vhost "_" (services.nginx.virtualHosts."_".locations) and to the units from your own
# server modules; config.vmtest.e2e.server.securityHeaders are the headers to repeat in a location
# that adds headers of its own (nginx does not inherit add_header into it).
# Nothing here is QEMU's: the role serves a VM (`nodes.server`) and a container (`containers.server`)
# alike; lib.<system>.webStackE2e gives a VM server its sizes (a 4096 MiB disk among them).
{ config, lib, pkgs, ... }:
let
  cfg = config.vmtest.e2e.server;
  inherit (cfg) app;
  databaseUrl = "postgresql://${app}@/${app}?host=/run/postgresql";
  # The app and its migrations get the same environment (the migrate command needs the database).
  environment = cfg.environment // lib.optionalAttrs (cfg.databaseUrlVariable != null) {
    ${cfg.databaseUrlVariable} = databaseUrl;
  };
  appUrl = "http://127.0.0.1:${toString cfg.port}";
  proxied = location: {
    proxyPass = "${appUrl}${location}";
    proxyWebsockets = true;
    extraConfig = ''
      proxy_connect_timeout 300s;
      proxy_send_timeout 300s;
      proxy_read_timeout 300s;
      client_max_body_size 10m;
    '';
  };
in
{
  options.vmtest.e2e.server = {
    enable = lib.mkEnableOption "the server role of vmtest's web-stack e2e suite";
    app = lib.mkOption {
      type = lib.types.str;
      example = "alicia";
      description = "The app's name: bin/<app> and bin/<app>-migrate in the package; the units, system user, database and /etc/<app>/ are named after it.";
    };
    package = lib.mkOption {
      type = lib.types.package;
      description = "The app package: bin/<app> (run as `<app> server`) and bin/<app>-migrate (run as `<app>-migrate DIR`).";
    };
    migrations = lib.mkOption {
      type = lib.types.str;
      default = "${cfg.package}/share/${app}/migrations";
      defaultText = lib.literalExpression ''"''${package}/share/''${app}/migrations"'';
      description = "The migrations directory (NNN_name.up.sql and .down.sql), at /etc/<app>/migrations in the VM.";
    };
    environment = lib.mkOption {
      type = lib.types.attrsOf lib.types.str;
      default = { };
      example = { ALICIA_SERVER_PORT = "8888"; };
      description = "The app's environment (not secret: it is in the unit file). The migrate unit gets it too.";
    };
    secrets = lib.mkOption {
      type = lib.types.attrsOf lib.types.str;
      default = { };
      example = { ALICIA_LLM_API_KEY = "test-api-key"; };
      description = "Test secrets, written to /etc/<app>/env (mode 0600, the app's EnvironmentFile). The e2e testScript redacts their values from every artifact. They are in the Nix store: test values only.";
    };
    port = lib.mkOption {
      type = lib.types.port;
      default = 8888;
      description = "The port the app listens on, on 127.0.0.1 (nginx proxies to it; the health check polls it).";
    };
    healthPath = lib.mkOption {
      type = lib.types.str;
      default = "/health";
      description = "The app's health endpoint; it answers {\"status\": \"ok\", …} when healthy.";
    };
    databaseUrlVariable = lib.mkOption {
      type = lib.types.nullOr lib.types.str;
      default = null;
      example = "ALICIA_POSTGRES_URL";
      description = "An environment variable to set to the database's URL (postgresql://<app>@/<app>?host=/run/postgresql, peer authentication over the socket), for the app and its migrations.";
    };
    databaseExtensions = lib.mkOption {
      type = lib.types.listOf lib.types.str;
      default = [ ];
      example = [ "pgcrypto" "vector" ];
      description = "PostgreSQL extensions <app>-db-init.service creates in the app's database before the migrations (their packages: postgresqlPackage).";
    };
    postgresqlPackage = lib.mkOption {
      type = lib.types.package;
      default = pkgs.postgresql_17;
      defaultText = lib.literalExpression "pkgs.postgresql_17";
      example = lib.literalExpression "pkgs.postgresql_17.withPackages (p: [ p.pgvector ])";
      description = "The PostgreSQL server, with the packages of databaseExtensions.";
    };
    staticRoot = lib.mkOption {
      type = lib.types.nullOr lib.types.str;
      default = null;
      example = lib.literalExpression ''"''${pkgs.alicia}/share/alicia/frontend"'';
      description = "A single-page frontend nginx serves at / (unknown paths fall back to index.html); null: / goes to the app.";
    };
    proxyLocations = lib.mkOption {
      type = lib.types.listOf lib.types.str;
      default = [ "/api/" ];
      description = "Locations nginx passes to the app (WebSockets allowed), beside healthPath.";
    };
    securityHeaders = lib.mkOption {
      type = lib.types.lines;
      default = ''
        add_header X-Frame-Options "SAMEORIGIN" always;
        add_header X-Content-Type-Options "nosniff" always;
        add_header X-XSS-Protection "1; mode=block" always;
      '';
      description = "nginx add_header lines for every response (the e2e suite checks X-Frame-Options and X-Content-Type-Options through nginx).";
    };
  };

  config = lib.mkIf cfg.enable {
    networking.firewall.allowedTCPPorts = [ 80 ];

    services.postgresql = {
      enable = true;
      package = cfg.postgresqlPackage;
      enableTCPIP = false;
      authentication = lib.mkForce ''
        local all all peer
      '';
      ensureDatabases = [ app ];
      ensureUsers = [ { name = app; ensureDBOwnership = true; } ];
      settings = {
        shared_buffers = "128MB";
        effective_cache_size = "256MB";
        work_mem = "4MB";
        maintenance_work_mem = "64MB";
        log_statement = "all";
        log_duration = true;
      };
    };

    # services.postgresql.initialScript's job, idempotently, after ensureDatabases/ensureUsers.
    systemd.services."${app}-db-init" = {
      description = "${app} database extensions";
      requires = [ "postgresql.service" ];
      after = [ "postgresql.service" "postgresql-setup.service" ];
      wantedBy = [ "multi-user.target" ];
      path = [ cfg.postgresqlPackage ];
      serviceConfig = { Type = "oneshot"; RemainAfterExit = true; User = "postgres"; };
      script = ''
        extensions=(${lib.escapeShellArgs cfg.databaseExtensions})
        for extension in "''${extensions[@]}"; do
          psql -d ${lib.escapeShellArg app} -c "CREATE EXTENSION IF NOT EXISTS \"$extension\""
        done
      '';
    };

    users.users.${app} = {
      isSystemUser = true;
      group = app;
      home = "/var/lib/${app}";
      createHome = true;
    };
    users.groups.${app} = { };

    environment.etc."${app}/env" = {
      mode = "0600";
      text = lib.concatStrings (lib.mapAttrsToList (name: value: "${name}=${value}\n") cfg.secrets);
    };
    environment.etc."${app}/migrations".source = cfg.migrations;

    systemd.services."${app}-migrate" = {
      description = "${app} database migrations";
      requires = [ "postgresql.service" "${app}-db-init.service" ];
      after = [ "postgresql.service" "${app}-db-init.service" ];
      before = [ "${app}.service" ];
      wantedBy = [ "multi-user.target" ];
      inherit environment;
      serviceConfig = {
        Type = "oneshot";
        RemainAfterExit = true;
        User = app;
        Group = app;
        ExecStart = "${cfg.package}/bin/${app}-migrate ${cfg.migrations}";
      };
    };

    systemd.services.${app} = {
      description = "${app}, the app under test";
      after = [ "network-online.target" "postgresql.service" "${app}-migrate.service" ];
      requires = [ "postgresql.service" "${app}-migrate.service" ];
      wants = [ "network-online.target" ];
      wantedBy = [ "multi-user.target" ];
      inherit environment;
      serviceConfig = {
        Type = "simple";
        User = app;
        Group = app;
        WorkingDirectory = "/var/lib/${app}";
        EnvironmentFile = "/etc/${app}/env";
        ExecStart = "${cfg.package}/bin/${app} server";
        # The same check as the Debian twin's (e2e-test/machines/server): bash's own connect()
        # while the port is closed, curl once it accepts. The unit is started (and the chain goes
        # on) once the app answers healthy.
        ExecStartPost = pkgs.writeShellScript "${app}-healthcheck" ''
          exec 4<> <(:)
          while (( SECONDS < 30 )); do  # a deadline: once the port accepts, each try takes seconds
            if { exec 3<>/dev/tcp/127.0.0.1/${toString cfg.port}; } 2>/dev/null; then
              exec 3>&-
              if ${pkgs.curl}/bin/curl -sf --max-time 2 ${appUrl}${cfg.healthPath} | ${pkgs.gnugrep}/bin/grep -q '"status": *"ok"'; then
                echo "Backend is healthy"
                exit 0
              fi
            fi
            read -r -t 0.1 -u 4 || true
          done
          echo "Backend failed to become healthy"
          exit 1
        '';
        Restart = "on-failure";
        RestartSec = "5s";
        NoNewPrivileges = true;
        PrivateTmp = true;
        ProtectSystem = "strict";
        ProtectHome = true;
        ReadWritePaths = [ "/var/lib/${app}" ];
      };
    };

    services.nginx = {
      enable = true;
      recommendedGzipSettings = true;
      recommendedOptimisation = true;
      recommendedProxySettings = true;
      virtualHosts."_" = {
        default = true;
        root = cfg.staticRoot;
        locations = lib.genAttrs cfg.proxyLocations proxied // {
          ${cfg.healthPath}.proxyPass = "${appUrl}${cfg.healthPath}";
          "/" = if cfg.staticRoot != null then {
            tryFiles = "$uri $uri/ /index.html";
            extraConfig = ''
              location ~* \.(js|css|png|jpg|jpeg|gif|ico|svg|woff|woff2|ttf|eot)$ {
                expires 1y;
                add_header Cache-Control "public, immutable";
                ${cfg.securityHeaders}
              }
            '';
          } else proxied "/";
        };
        extraConfig = cfg.securityHeaders;
      };
    };

    systemd.services.nginx = {
      after = [ "${app}.service" ];
      wants = [ "${app}.service" ];
    };

    environment.systemPackages = [ pkgs.curl pkgs.jq cfg.postgresqlPackage ];
  };
}
