# What the Alicia server adds to vmtest's e2e server role (lib/nix/modules/e2e-server.nix: the
# database, alicia-migrate, alicia, nginx, configured in ./default.nix): the hermetic mocks
# (LLM/ASR/TTS/embeddings and a LiveKit stand-in, seed 000's internet hosts), Alicia's WebSocket
# and /config.json locations (the security headers repeated where a location adds headers of its
# own), and collect-logs for interactive debugging.
{ config, pkgs, ... }:
let
  mocks = pkgs.alicia-mocks;
  livekitUrl = "ws://server:7880";
  inherit (config.vmtest.e2e.server) securityHeaders;
in
{
  imports = [ ./common.nix ./log-collector.nix ];

  networking.firewall.allowedTCPPorts = [ 8888 7880 ];

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

  services.nginx.virtualHosts."_".locations = {
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
  };

  environment.systemPackages = [ pkgs.htop ];
}
