# shellcheck shell=bash disable=SC2154 # src, out and the phases' lists come from the derivation
# The builder of build-python-package.nix: each phase as the nixpkgs hook of that name runs it.
set -eu -o pipefail

echo "unpackPhase"
cp -r "$src" source
chmod -R u+w source
cd source

# pypa-build-hook.sh
echo "pypaBuildPhase"
python3 -m build --no-isolation --outdir dist/

# pypa-install-hook.sh: every wheel into $out, then $out's site-packages first on PYTHONPATH.
echo "pypaInstallPhase"
for wheel in dist/*.whl; do
    python3 -m installer --prefix "$out" "$wheel"
done
site=$(python3 -c 'import sys, sysconfig; print(sysconfig.get_paths(vars={"base": sys.argv[1], "platbase": sys.argv[1]})["purelib"])' "$out")
export PYTHONPATH="$site:$PYTHONPATH"

# python-imports-check-hook.sh: from $out, so the source tree cannot stand in for the package.
if [ -n "$pythonImportsCheck" ]; then
    echo "pythonImportsCheckPhase: $pythonImportsCheck"
    (cd "$out" && PYTHON_IMPORTS_CHECK="$pythonImportsCheck" python3 -c \
        'import os, importlib; list(map(importlib.import_module, os.environ["PYTHON_IMPORTS_CHECK"].split()))')
fi

# pytest-check-hook.sh: enabled paths (globs expanded, each must match), disabled paths and
# tests, then pytestFlags.
if [ -n "$doCheck" ]; then
    echo "pytestCheckPhase"
    flags=(-m pytest)
    for path in $enabledTestPaths; do
        if [[ "$path" == *::* ]]; then
            flags+=("$path")
        else
            readarray -t -O "${#flags[@]}" flags < <(python3 -c '
import glob, sys
found = glob.glob(sys.argv[1])
if not found:
    sys.exit(f"Enabled tests path glob {sys.argv[1]!r} does not match any paths. Aborting")
print("\n".join(found))' "$path")
        fi
    done
    for path in $disabledTestPaths; do
        if [[ "$path" == *::* ]]; then flags+=("--deselect=$path"); else flags+=("--ignore-glob=$path"); fi
    done
    if [ -n "$disabledTests" ]; then
        expression=""
        for name in $disabledTests; do expression="${expression:+$expression and }not ($name)"; done
        flags+=(-k "$expression")
    fi
    # shellcheck disable=SC2206 # words, as the hook's concatTo splits them
    flags+=($pytestFlags)
    echo "pytest flags: ${flags[*]}"
    python3 "${flags[@]}"
fi
