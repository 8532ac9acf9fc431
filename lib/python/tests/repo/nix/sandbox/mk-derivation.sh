# shellcheck shell=bash disable=SC2154 # src, out, the phases and the inputs come from the derivation
# stdenvNoCC.mkDerivation's builder for the phases this repository's packages use
# (pkgs/stdenv/generic/setup.sh): nativeBuildInputs' bin on PATH and their setup hooks sourced,
# buildInputs' bin on HOST_PATH; unpack a directory source; installPhase with its hooks; then
# fixup's patchShebangs --host of $out (pkgs/build-support/setup-hooks/patch-shebangs.sh).
set -eu -o pipefail
HOST_PATH=""
for input in $nativeBuildInputs; do
    PATH="$input/bin:$PATH"
    if [ -f "$input/nix-support/setup-hook" ]; then
        # shellcheck source=/dev/null
        source "$input/nix-support/setup-hook"
    fi
done
for input in $buildInputs; do
    HOST_PATH="${HOST_PATH:+$HOST_PATH:}$input/bin"
done
runHook() {
    local hook=$1
    if [ -n "${!hook:-}" ]; then eval "${!hook}"; fi
}

echo "unpackPhase"
cp -r "$src" source
chmod -R u+w source
cd source

echo "installPhase"
eval "$installPhase"

# An executable script's interpreter, outside the store, becomes the one HOST_PATH has:
# `#!/usr/bin/env X` looks up X, any other the interpreter's name. A missing one stays.
echo "fixupPhase: patchShebangs --host $out"
while IFS= read -r -d '' file; do
    head -c 2 "$file" | grep -q '^#!' || continue
    read -r line < "$file" || true
    read -r interpreter first rest <<< "${line:2}"
    case "$interpreter" in /nix/store/*) continue ;; esac
    if [[ "$interpreter" == */bin/env ]]; then
        found=$(PATH="$HOST_PATH" type -P "$first" || true)
        arguments=$rest
    else
        found=$(PATH="$HOST_PATH" type -P "$(basename "${interpreter:-/bin/sh}")" || true)
        arguments="$first${rest:+ $rest}"
    fi
    if [ -n "$found" ]; then
        echo "$file: interpreter directive changed from \"$line\" to \"#!$found${arguments:+ $arguments}\""
        sed -i "1s|.*|#!$found${arguments:+ $arguments}|" "$file"
    fi
done < <(find "$out" -type f -perm -0100 -print0)
