# shellcheck shell=bash
# makeWrapper ORIGINAL WRAPPER FLAGS...: the setup hook of nixpkgs' makeWrapper
# (pkgs/build-support/setup-hooks/make-wrapper.sh), for the flags this repository passes:
# --set, --set-default, --prefix, --suffix, --add-flags. Any other flag is an error.
# The wrapper runs under the builder's bash with -eu and execs ORIGINAL with the flags first.
# shellcheck disable=SC2016 # the wrapper expands these at its run, not this function
makeWrapper() {
    local original=$1 wrapper=$2 flags=""
    shift 2
    [[ -f "$original" && -x "$original" ]] || { echo "makeWrapper: $original is not an executable file" >&2; return 1; }
    mkdir -p "$(dirname "$wrapper")"
    {
        printf '#! %s -eu\n' "$BASH"
        while (($#)); do
            case "$1" in
            --set) printf 'export %s=%q\n' "$2" "$3"; shift 3 ;;
            --set-default) printf 'export %s=${%s-%q}\n' "$2" "$2" "$3"; shift 3 ;;
            --prefix)
                [ -z "$4" ] || printf 'export %s=%q${%s:+%q$%s}\n' "$2" "$4" "$2" "$3" "$2"
                shift 4 ;;
            --suffix)
                [ -z "$4" ] || printf 'export %s=${%s:+$%s%q}%q\n' "$2" "$2" "$2" "$3" "$4"
                shift 4 ;;
            --add-flags) flags="$flags $2"; shift 2 ;;
            *) echo "makeWrapper: this reproduction does not know $1" >&2; return 1 ;;
            esac
        done
        printf 'exec %q%s "$@"\n' "$original" "$flags"
    } > "$wrapper"
    chmod +x "$wrapper"
}
