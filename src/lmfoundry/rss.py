"""Resident memory of this process: the peak (VmHWM) and the current size (VmRSS), in bytes.

Why VmHWM and not `getrusage(RUSAGE_SELF).ru_maxrss`: on Linux, `execve` folds the *pre-exec*
high-water mark into `ru_maxrss`, and a child forked from a large parent starts with the
parent's RSS, so a child spawned by a 1 GB process reads at least 1 GB. `/proc/self/status`
VmHWM belongs to the new address space only. Elsewhere we fall back to `ru_maxrss`.
"""

from __future__ import annotations

import resource
import sys
from pathlib import Path


def _status_kib(field: str) -> int | None:
    status = Path("/proc/self/status")
    if not status.is_file():
        return None
    for line in status.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return None


def peak_rss_bytes() -> int:
    """This process's peak resident set size (VmHWM), in bytes."""
    kib = _status_kib("VmHWM")
    if kib is not None:
        return kib * 1024
    usage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(usage) if sys.platform == "darwin" else int(usage) * 1024


def current_rss_bytes() -> int:
    """This process's resident set size now (VmRSS), in bytes; the peak where /proc is missing."""
    kib = _status_kib("VmRSS")
    return kib * 1024 if kib is not None else peak_rss_bytes()
