"""Background jobs the studio starts (quantizing a model): one thread each, polled by the page.

A quantization takes seconds to minutes, longer than an HTTP request should wait, so the route
starts a job and answers at once; the page polls `/ui/api/jobs/{id}` for its stage and progress.
Progress is counted in the stages the work reports (`create_quantized`'s `on_step` messages),
not guessed from time. Jobs live in the server's memory: a restart forgets them (the store entry
a finished job made stays). One job of a kind runs at a time: two quantizations would only share
the same CPU cores and could race for the same store name.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lmfoundry.errors import InvalidInputError, LmfError

Step = Callable[[str], None]
Work = Callable[[Step], dict[str, Any]]
LOG = logging.getLogger(__name__)


@dataclass
class Job:
    """One background job; `stages` is how many `step(...)` calls the work makes before it ends."""

    id: str
    kind: str
    title: str
    stages: int
    status: str = "running"
    stage: str = "starting"
    stages_started: int = 0
    result: dict[str, Any] | None = None
    error: str | None = None
    started: float = field(default_factory=time.time)
    finished: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """The job as the page shows it; `progress` (0..1) is the share of stages completed."""
        started = max(self.stages_started - 1, 0) / self.stages
        progress = 1.0 if self.status == "done" else min(started, 0.99)
        return {
            "id": self.id,
            "kind": self.kind,
            "title": self.title,
            "status": self.status,
            "stage": self.stage,
            "stage_number": min(self.stages_started, self.stages),
            "stages": self.stages,
            "progress": round(progress, 3),
            "seconds": round((self.finished or time.time()) - self.started, 1),
            "result": self.result,
            "error": self.error,
        }


class Jobs:
    """The jobs of one server, newest last."""

    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._ids = itertools.count(1)

    def start(self, kind: str, title: str, stages: int, work: Work) -> Job:
        """Run `work(step)` in a thread; refuses while another job of `kind` runs."""
        with self._lock:
            busy = [j for j in self._jobs.values() if j.kind == kind and j.status == "running"]
            if busy:
                raise LmfError(f"{busy[0].title} is still running: wait for it to finish")
            job = Job(f"{kind}-{next(self._ids)}", kind, title, stages)
            self._jobs[job.id] = job
        threading.Thread(target=self._run, args=(job, work), name=f"studio-{job.id}", daemon=True).start()
        return job

    def _run(self, job: Job, work: Work) -> None:
        def step(message: str) -> None:
            with self._lock:
                job.stage = message
                job.stages_started += 1

        try:
            result = work(step)
        except LmfError as exc:
            self._finish(job, "failed", error=str(exc))
        except Exception as exc:  # a job must end: an unexpected failure is reported, and logged in full
            LOG.exception("studio job %s failed", job.id)
            self._finish(job, "failed", error=f"{type(exc).__name__}: {exc}")
        else:
            self._finish(job, "done", result=result)

    def _finish(
        self, job: Job, status: str, *, result: dict[str, Any] | None = None, error: str | None = None
    ) -> None:
        with self._lock:
            job.status, job.result, job.error = status, result, error
            job.stage = "done" if status == "done" else "failed"
            job.finished = time.time()

    def get(self, job_id: str) -> dict[str, Any]:
        with self._lock:
            if job_id not in self._jobs:
                raise InvalidInputError(
                    f"no studio job {job_id!r} (jobs are forgotten when the server restarts)"
                )
            return self._jobs[job_id].to_dict()

    def listing(self) -> list[dict[str, Any]]:
        with self._lock:
            return [job.to_dict() for job in self._jobs.values()]
