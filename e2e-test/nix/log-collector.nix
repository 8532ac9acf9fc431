# `collect-logs` for interactive debugging inside the server VM (seed 000). The testScript does
# not use it: vmtest.logs collects and redacts from the host side into the driver's out dir.
{ pkgs, ... }:
{
  environment.systemPackages = [
    (pkgs.writeShellApplication {
      name = "collect-logs";
      runtimeInputs = with pkgs; [ coreutils gzip systemd ];
      text = ''
        ARTIFACT_DIR="''${ARTIFACT_DIR:-/tmp/alicia-e2e-artifacts}"
        LOGS_DIR="$ARTIFACT_DIR/logs"
        mkdir -p "$LOGS_DIR"
        journalctl -u alicia --no-pager --output=json > "$LOGS_DIR/backend.jsonl"
        journalctl -u alicia --no-pager > "$LOGS_DIR/backend-stderr.log"
        journalctl -u postgresql --no-pager > "$LOGS_DIR/postgresql.log"
        cp /var/log/nginx/access.log "$LOGS_DIR/nginx-access.log" 2>/dev/null || true
        cp /var/log/nginx/error.log "$LOGS_DIR/nginx-error.log" 2>/dev/null || true
        journalctl --no-pager -b --priority=err > "$LOGS_DIR/system-errors.log"
        find "$LOGS_DIR" -type f -size +10M -exec gzip {} +
        echo "Logs collected to $LOGS_DIR"
      '';
    })
  ];
}
