# Sourced by deploy/*.sh: the flags this host's container engine needs (bash).
# Podman defaults to crun, which refuses hosts with hybrid (v1 + v2) cgroups; runc handles them.
# Its default RLIMIT_NPROC/NOFILE exceed what a host without CAP_SYS_RESOURCE lets it set (seen:
# podman lowers its own process limit to 32768, then asks for more), so we ask for the host's open
# file limit and 4096 processes. Docker needs none of this.
ENGINE_FLAGS=""
BUILD_FLAGS=""
RUN_FLAGS=""
if [ "$(basename "$ENGINE")" = "podman" ]; then
    if command -v runc >/dev/null && [ -d /sys/fs/cgroup/memory ]; then ENGINE_FLAGS="--runtime runc"; fi
    LIMITS="--ulimit nofile=$(ulimit -Hn):$(ulimit -Hn) --ulimit nproc=4096:4096"
    BUILD_FLAGS="--format docker $LIMITS"
    RUN_FLAGS="$LIMITS"
fi
