#!/usr/bin/env bash
# Builds llama.cpp's own `llama-server` (the serving baseline of bench/serve.py and bench/generate.py)
# from the llama.cpp sources vendored in the llama-cpp-python sdist the Makefile already compiles,
# with the same portable AVX2 flags, once; prints the binary's path. Usage: bench/build_llama_server.sh
# Needs cmake and a C++ compiler; about 5-10 minutes on 2 cores. PyPI is the only download.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION="${LLAMA_CPP_VERSION:-0.3.36}"
OUT=".wheels/llama-server-$VERSION"
if [ -x "$OUT/llama-server" ]; then echo "$OUT/llama-server"; exit 0; fi
PY="${PYTHON:-.venv/bin/python}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
echo "building llama-server from llama-cpp-python $VERSION's vendored llama.cpp (once)" >&2
"$PY" -m pip download --quiet --no-deps --no-binary :all: "llama-cpp-python==$VERSION" -d "$WORK" >&2
tar -xzf "$WORK"/llama_cpp_python-"$VERSION".tar.gz -C "$WORK"
SRC="$WORK/llama_cpp_python-$VERSION/vendor/llama.cpp"
# Flags as LLAMA_CMAKE_ARGS in the Makefile: -march=native builds crash on some of these CPUs.
cmake -S "$SRC" -B "$WORK/build" -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF \
    -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON -DBUILD_SHARED_LIBS=OFF \
    -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON \
    -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF >&2
cmake --build "$WORK/build" --target llama-server -j "${JOBS:-2}" >&2
mkdir -p "$OUT.tmp" && cp "$WORK/build/bin/llama-server" "$OUT.tmp/" && rm -rf "$OUT" && mv "$OUT.tmp" "$OUT"
echo "$OUT/llama-server"
