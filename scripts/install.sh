#!/usr/bin/env bash
# Installs ragsweep for CPU into ./.venv (idempotent). Usage: scripts/install.sh [dev]
# RAGSWEEP_EXTRAS: the extras to install (default cpu; dev adds dev).
#
# - Every package is pinned by constraints.txt, the one lock that GPU nodes, cluster nodes and the images use too
#   (scripts/lock.sh regenerates it). Its torch==2.13.0 takes the CPU wheel on this kind of machine; GPU
#   machines install `pip install -c constraints.txt -e ".[gpu,cluster]"` and get the CUDA build of that version.
# - dev also puts checkov (the Kubernetes manifest scanner the tests run) in its own venv, .venv-checks: its pins
#   conflict with the project's.
# - llama-cpp-python ships as source only. A default (-march=native) build crashed on the first
#   multi-token prompt on an AVX512/AMX machine, so we build a portable wheel once (about 6 minutes on
#   2 cores) into ~/.cache/ragsweep/wheels, keyed by version and build flags, and install that file.
#   Override the flags with RAGSWEEP_LLAMA_CMAKE_ARGS.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${RAGSWEEP_EXTRAS:-cpu}"  # the Dockerfile adds cluster,tracking-server
if [ "${1:-}" = "dev" ]; then extras="$extras,dev"; fi
pip_q=(--quiet --disable-pip-version-check)
# Bytecode is compiled once, here, on every core (compile_bytecode below), never left to first import: with
# PYTHONDONTWRITEBYTECODE set (as on some machines and images) or a read-only install, Python would compile every
# module it imports from source again in every new process (each search's driver, Ray workers, servers), which
# was a third of a search's CPU. pip's own compile is serial, so it is skipped.
stack_q=("${pip_q[@]}" --no-compile)
compile_bytecode() {
  # compileall writes .pyc whatever PYTHONDONTWRITEBYTECODE says; files already compiled are skipped. A few
  # packages ship files that are not Python 3 (templates, fixtures): those stay uncompiled, as pip leaves them.
  "$py" -m compileall -q -j 0 "$@" > /dev/null 2>&1 || true
}

if [ ! -x .venv/bin/python ]; then
  echo "[install] creating .venv"
  python3 -m venv .venv
fi
py=.venv/bin/python

llama_version=$(sed -n 's/^llama-cpp-python==//p' constraints.txt)
cmake_args=${RAGSWEEP_LLAMA_CMAKE_ARGS:-"-DGGML_NATIVE=OFF -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"}
build_id=$(printf '%s %s' "$llama_version" "$cmake_args" | sha256sum | cut -c1-12)
wheel_dir="${RAGSWEEP_WHEEL_CACHE:-$HOME/.cache/ragsweep/wheels}/llama-cpp-python-$build_id"
marker=.venv/.llama-cpp-python-$build_id
if [ ! -f "$marker" ]; then
  if ! ls "$wheel_dir"/llama_cpp_python-*.whl >/dev/null 2>&1; then
    echo "[install] building llama-cpp-python $llama_version (portable CPU build, once: about 6 minutes on 2 cores)"
    mkdir -p "$wheel_dir"
    CMAKE_ARGS="$cmake_args" "$py" -m pip wheel "${pip_q[@]}" --no-deps --no-cache-dir --no-binary llama-cpp-python \
      -w "$wheel_dir" "llama-cpp-python==$llama_version"
  fi
  "$py" -m pip install "${pip_q[@]}" -c constraints.txt --force-reinstall --no-deps "$wheel_dir"/llama_cpp_python-*.whl
  touch "$marker"
fi

echo "[install] installing ragsweep[$extras] and its dependencies"
"$py" -m pip install "${stack_q[@]}" -c constraints.txt "$wheel_dir"/llama_cpp_python-*.whl -e ".[$extras]"
echo "[install] compiling bytecode (the environment and the project)"
compile_bytecode "$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" search pipelines judges
if [ "${1:-}" = "dev" ] && [ ! -x .venv-checks/bin/checkov ]; then
  echo "[install] installing checkov into .venv-checks"
  python3 -m venv .venv-checks
  .venv-checks/bin/pip install "${pip_q[@]}" "checkov==$(sed -n 's/^checkov==//p' scripts/lock-inputs-checks.txt)"
fi
echo "[install] done"
