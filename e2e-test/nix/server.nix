# The e2e server VM (seed 000), hermetic: the LLM/ASR/TTS/embeddings endpoints and LiveKit are
# local mocks instead of internet hosts, PostgreSQL is reached over its Unix socket only, and
# the security headers survive in locations that add headers of their own.
{ config, pkgs, lib, ... }:
let
  alicia = pkgs.alicia;
  mocks = pkgs.alicia-mocks;
  postgresWithVector = pkgs.postgresql_17.withPackages (p: [ p.pgvector ]);
  mockUrl = "http://127.0.0.1:9090/v1";
  livekitUrl = "ws://server:7880";
  securityHeaders = ''
    add_header X-Frame-Options "SAMEORIGIN" always;
    add_header X-Content-Type-Options "nosniff" always;
    add_header X-XSS-Protection "1; mode=block" always;
  '';
in
{
  imports = [ ./common.nix ./log-collector.nix ];

  virtualisation.diskSize = 4096;

  networking.firewall.allowedTCPPorts = [ 80 8888 7880 ];

  services.postgresql = {
    enable = true;
    package = postgresWithVector;
    enableTCPIP = false;
    authentication = lib.mkForce ''
      local all all peer
    '';
    ensureDatabases = [ "alicia" ];
    ensureUsers = [ { name = "alicia"; ensureDBOwnership = true; } ];
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
  systemd.services.alicia-db-init = {
    description = "Alicia database extensions";
    requires = [ "postgresql.service" ];
    after = [ "postgresql.service" "postgresql-setup.service" ];
    wantedBy = [ "multi-user.target" ];
    path = [ postgresWithVector ];
    serviceConfig = { Type = "oneshot"; RemainAfterExit = true; User = "postgres"; };
    script = ''
      psql -d alicia -c 'CREATE EXTENSION IF NOT EXISTS pgcrypto' -c 'CREATE EXTENSION IF NOT EXISTS vector'
    '';
  };

  users.users.alicia = {
    isSystemUser = true;
    group = "alicia";
    home = "/var/lib/alicia";
    createHome = true;
  };
  users.groups.alicia = { };

  environment.etc."alicia/env" = {
    mode = "0600";
    text = ''
      ALICIA_LLM_API_KEY=test-api-key
      ALICIA_LIVEKIT_API_KEY=APIkey1234
      ALICIA_LIVEKIT_API_SECRET=Fm2gvy8tLtzjDagyRe45Z/XLhC8BaDk5NF+bWdgvHy4=
    '';
  };
  environment.etc."alicia/migrations".source = "${alicia}/share/alicia/migrations";

  systemd.services.alicia-migrate = {
    description = "Alicia Database Migrations";
    requires = [ "postgresql.service" "alicia-db-init.service" ];
    after = [ "postgresql.service" "alicia-db-init.service" ];
    before = [ "alicia.service" ];
    wantedBy = [ "multi-user.target" ];
    environment.ALICIA_POSTGRES_URL = "postgresql://alicia@/alicia?host=/run/postgresql";
    serviceConfig = {
      Type = "oneshot";
      RemainAfterExit = true;
      User = "alicia";
      Group = "alicia";
      ExecStart = "${alicia}/bin/alicia-migrate ${alicia}/share/alicia/migrations";
    };
  };

  systemd.services.alicia-llm-mock = {
    description = "Hermetic OpenAI-compatible mock (LLM, embeddings, ASR, TTS)";
    # Test infrastructure starts once the stack under test is up (the testScript waits for its port).
    after = [ "nginx.service" ];
    wantedBy = [ "multi-user.target" ];
    serviceConfig = {
      EnvironmentFile = "/etc/alicia/env";
      ExecStart = "${mocks}/bin/alicia-llm-mock --host 127.0.0.1 --port 9090";
      DynamicUser = true;
      # It runs on the CPU the stack under test leaves idle.
      CPUWeight = "idle";
    };
  };

  systemd.services.alicia-livekit = {
    description = "LiveKit stand-in validating Alicia's access tokens";
    after = [ "nginx.service" ];
    wantedBy = [ "multi-user.target" ];
    serviceConfig = {
      EnvironmentFile = "/etc/alicia/env";
      ExecStart = "${mocks}/bin/alicia-livekit-standin --host 0.0.0.0 --port 7880";
      DynamicUser = true;
      # It runs on the CPU the stack under test leaves idle.
      CPUWeight = "idle";
    };
  };

  systemd.services.alicia = {
    description = "Alicia Voice Assistant Backend";
    after = [ "network-online.target" "postgresql.service" "alicia-migrate.service" ];
    requires = [ "postgresql.service" "alicia-migrate.service" ];
    wants = [ "network-online.target" ];
    wantedBy = [ "multi-user.target" ];
    environment = {
      ALICIA_SERVER_HOST = "127.0.0.1";
      ALICIA_SERVER_PORT = "8888";
      ALICIA_POSTGRES_URL = "postgresql://alicia@/alicia?host=/run/postgresql";
      ALICIA_LLM_URL = mockUrl;
      ALICIA_LLM_MODEL = "qwen3-8b";
      ALICIA_LLM_MAX_TOKENS = "32368";
      ALICIA_LLM_TEMPERATURE = "0.1";
      ALICIA_ASR_URL = mockUrl;
      ALICIA_ASR_MODEL = "whisper";
      ALICIA_TTS_URL = mockUrl;
      ALICIA_TTS_MODEL = "kokoro";
      ALICIA_TTS_VOICE = "af_heart";
      ALICIA_EMBEDDING_URL = mockUrl;
      ALICIA_EMBEDDING_MODEL = "e5-large";
      ALICIA_LIVEKIT_URL = livekitUrl;
      ALICIA_STATIC_DIR = "${alicia}/share/alicia/frontend";
    };
    serviceConfig = {
      Type = "simple";
      User = "alicia";
      Group = "alicia";
      WorkingDirectory = "/var/lib/alicia";
      EnvironmentFile = "/etc/alicia/env";
      ExecStart = "${alicia}/bin/alicia server";
      # The same script as the Debian twin's /usr/lib/alicia/alicia-healthcheck: bash's own
      # connect() while the port is closed, curl once it accepts.
      ExecStartPost = pkgs.writeShellScript "alicia-healthcheck" ''
        exec 4<> <(:)
        while (( SECONDS < 30 )); do  # a deadline: once the port accepts, each try takes seconds
          if { exec 3<>/dev/tcp/127.0.0.1/8888; } 2>/dev/null; then
            exec 3>&-
            if ${pkgs.curl}/bin/curl -sf --max-time 2 http://127.0.0.1:8888/health | ${pkgs.gnugrep}/bin/grep -q '"status": *"ok"'; then
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
      ReadWritePaths = [ "/var/lib/alicia" ];
    };
  };

  services.nginx = {
    enable = true;
    recommendedGzipSettings = true;
    recommendedOptimisation = true;
    recommendedProxySettings = true;
    virtualHosts."_" = {
      default = true;
      root = "${alicia}/share/alicia/frontend";
      locations = {
        "/api/" = {
          proxyPass = "http://127.0.0.1:8888/api/";
          proxyWebsockets = true;
          extraConfig = ''
            proxy_connect_timeout 300s;
            proxy_send_timeout 300s;
            proxy_read_timeout 300s;
            client_max_body_size 10m;
          '';
        };
        "/health".proxyPass = "http://127.0.0.1:8888/health";
        "/ws" = {
          proxyPass = "http://127.0.0.1:8888/ws";
          proxyWebsockets = true;
          extraConfig = "proxy_read_timeout 86400;";
        };
        "/config.json".extraConfig = ''
          default_type application/json;
          add_header Cache-Control "no-store, no-cache, must-revalidate";
          ${securityHeaders}
          return 200 '{"livekitUrl": "${livekitUrl}"}';
        '';
        "/" = {
          tryFiles = "$uri $uri/ /index.html";
          extraConfig = ''
            location ~* \.(js|css|png|jpg|jpeg|gif|ico|svg|woff|woff2|ttf|eot)$ {
              expires 1y;
              add_header Cache-Control "public, immutable";
              ${securityHeaders}
            }
          '';
        };
      };
      extraConfig = securityHeaders;
    };
  };

  systemd.services.nginx = {
    after = [ "alicia.service" ];
    wants = [ "alicia.service" ];
  };

  environment.systemPackages = with pkgs; [ curl jq postgresWithVector htop ];
}
