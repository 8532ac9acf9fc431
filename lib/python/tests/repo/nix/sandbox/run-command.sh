# shellcheck shell=bash disable=SC2154 # buildCommand and the PATH come from the derivation
# runCommand's builder: stdenv's shell options, then the build command, from the build directory.
set -eu -o pipefail
cd "$NIX_BUILD_TOP"
eval "$buildCommand"
