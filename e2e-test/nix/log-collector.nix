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
        # Each log on its own: under writeShellApplication's errexit, one that fails must not
        # stop the ones after it (its status is reported, its output kept).
        collect() {
          local name=$1
          shift
          "$@" > "$LOGS_DIR/$name" 2>&1 || echo "collect-logs: $name: exit status $?" >&2
        }
        # A unit's journal, then the package's own log file when there is one.
        journal_and_file() {
          journalctl --no-pager -u "$1"
          if [ -f "$2" ]; then
            printf '==> %s <==\n' "$2"
            cat "$2"
          fi
        }
        collect backend.jsonl journalctl -u alicia --no-pager --output=json
        collect backend-stderr.log journalctl -u alicia --no-pager
        # services.postgresql logs to the journal (postgresql.service, postgresql-setup.service).
        collect postgresql.log journalctl --no-pager -u 'postgresql*'
        # nginx: the access log is the package's default file; errors go to stderr, that is the
        # journal (services.nginx.logError = "stderr"), and to the file only if configured so.
        collect nginx-access.log cat /var/log/nginx/access.log
        collect nginx-error.log journal_and_file nginx.service /var/log/nginx/error.log
        collect system-errors.log journalctl --no-pager -b --priority=err
        find "$LOGS_DIR" -type f -size +10M -exec gzip {} +
        echo "Logs collected to $LOGS_DIR"
      '';
    })
  ];
}
