#!/usr/bin/env bash
# Build the CPU image from this checkout with podman (or docker), offline apart from the package
# registries: no image registry is needed. Usage: deploy/build-image.sh [TAG]   (default lmfoundry:cpu)
#
# - The base image is assembled from Debian packages with mmdebstrap (python3 3.11 + venv) and
#   imported once as localhost/lmf-debian-python:bookworm, unless BASE_IMAGE names another one
#   (e.g. BASE_IMAGE=python:3.11-slim-bookworm where a registry is reachable).
# - torch and llama-cpp-python come from local wheels when they exist (/opt/wheels, .wheels/, as
#   `make install` leaves them), mounted at /wheels for the build, so nothing is compiled twice.
# - Podman on a host with hybrid cgroups and capped limits needs runc and explicit ulimits;
#   LMF_ENGINE_FLAGS and LMF_RUN_FLAGS (printed at the end) carry what this host needs.
set -euo pipefail
cd "$(dirname "$0")/.."
TAG="${1:-lmfoundry:cpu}"
ENGINE="${ENGINE:-$(command -v podman || command -v docker || true)}"
[ -n "$ENGINE" ] || { echo "build-image.sh: neither podman nor docker is installed" >&2; exit 2; }
source deploy/engine-flags.sh

BASE_IMAGE="${BASE_IMAGE:-localhost/lmf-debian-python:bookworm}"
if [ "$BASE_IMAGE" = "localhost/lmf-debian-python:bookworm" ] && ! $ENGINE $ENGINE_FLAGS image exists "$BASE_IMAGE" 2>/dev/null; then
    command -v mmdebstrap >/dev/null || { echo "build-image.sh: mmdebstrap is needed to assemble the base image" >&2; exit 2; }
    echo "assembling $BASE_IMAGE from Debian packages (once)" >&2
    mmdebstrap --quiet --variant=minbase --include=python3,python3-venv,ca-certificates bookworm - \
        | $ENGINE $ENGINE_FLAGS import --change 'CMD ["/bin/sh"]' - "$BASE_IMAGE" >/dev/null
fi

WHEELS="$(mktemp -d)"
trap 'rm -rf "$WHEELS"' EXIT
for wheel in /opt/wheels/torch-*.whl .wheels/llama_cpp_python-*.whl; do
    [ -f "$wheel" ] && cp "$wheel" "$WHEELS/"
done
# Behind a TLS-inspecting proxy pip needs the host's CA bundle: lend it to the build.
CA_BUNDLE="${PIP_CERT:-${SSL_CERT_FILE:-}}"
CA_ARGS=()
if [ -n "$CA_BUNDLE" ] && [ -f "$CA_BUNDLE" ]; then
    CA_ARGS=(--volume "$CA_BUNDLE:/run/host-ca.crt:ro" --build-arg PIP_CERT=/run/host-ca.crt)
fi
TORCH_INDEX=()
if ls "$WHEELS"/torch-*.whl >/dev/null 2>&1; then TORCH_INDEX=(--build-arg TORCH_INDEX_URL=); fi

$ENGINE $ENGINE_FLAGS build $BUILD_FLAGS --volume "$WHEELS:/wheels:ro" "${CA_ARGS[@]}" \
    --build-arg BASE_IMAGE="$BASE_IMAGE" "${TORCH_INDEX[@]}" -f deploy/Dockerfile -t "$TAG" .
echo "built $TAG; run it with: $ENGINE $ENGINE_FLAGS run $RUN_FLAGS -p 127.0.0.1:8000:8000 -v lmf-store:/data $TAG" >&2
