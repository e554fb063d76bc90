"""Record runs in MLflow: params, metrics, artifacts and the resolved config.

The default backend is a sqlite file and a local artifact folder under `$LMF_HOME/mlflow`, so
tracking works offline with nothing to start. `LMF_TRACKING_URI` (or a pipeline's `tracking.uri`)
points everything at a tracking server instead. mlflow is imported inside the functions: it takes
seconds to import, and most commands never need it.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from lmfoundry.errors import InvalidInputError
from lmfoundry.paths import lmf_home
from lmfoundry.plugins import require

TRACKING_ENV = "LMF_TRACKING_URI"
ARTIFACTS_ENV = "LMF_ARTIFACT_ROOT"
MAX_PARAM_CHARS = 6000
"""MLflow's limit on a param value; longer values are cut (the full config is an artifact)."""
RUN_KINDS = ("finetune", "eval", "quantize", "pipeline", "data", "rag-index")


def mlflow_dir() -> Path:
    return lmf_home() / "mlflow"


def tracking_uri() -> str:
    """`$LMF_TRACKING_URI`, else `sqlite:///$LMF_HOME/mlflow/mlflow.db`."""
    uri = os.environ.get(TRACKING_ENV, "").strip()
    if uri:
        return uri
    return f"sqlite:///{mlflow_dir() / 'mlflow.db'}"


def artifact_root() -> str:
    """Where new experiments keep artifacts: `$LMF_ARTIFACT_ROOT`, else `$LMF_HOME/mlflow/artifacts`."""
    root = os.environ.get(ARTIFACTS_ENV, "").strip()
    return root or (mlflow_dir() / "artifacts").as_uri()


def client() -> Any:
    """An `MlflowClient` on the configured tracking and registry URI (the db is created on first use)."""

    require("mlflow", extra="track")
    from mlflow import MlflowClient

    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    uri = tracking_uri()
    if uri.startswith("sqlite:///"):
        Path(uri[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def experiment_id(mlflow_client: Any, kind: str) -> str:
    """The experiment `lmf-<kind>`, created with its artifacts under the artifact root."""
    name = f"lmf-{kind}"
    found = mlflow_client.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    location = artifact_root().rstrip("/") + f"/{name}"
    return str(mlflow_client.create_experiment(name, artifact_location=location))


def _leaves(data: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(`a.b.c` key, value) for every non-mapping value of a nested mapping."""
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from _leaves(value, name + ".")
        else:
            yield name, value


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested params as `a.b.c` keys with string values (lists as JSON), cut to MLflow's limit."""
    return {
        name: (value if isinstance(value, str) else json.dumps(value, default=str))[:MAX_PARAM_CHARS]
        for name, value in _leaves(data, prefix)
    }


def numeric_metrics(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Finite numbers only (nested mappings flattened); None, strings and NaN are left out."""
    return {
        name: float(value)
        for name, value in _leaves(metrics, prefix)
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    }


def _check_kind(kind: str) -> None:
    if not kind or not kind.replace("-", "").isalnum():
        raise InvalidInputError(f"run kind must be a simple name like 'finetune', got {kind!r}")


def start_run(kind: str, *, run_name: str | None = None, tags: Mapping[str, str] | None = None) -> str:
    """Create a RUNNING run of `kind` (experiment `lmf-<kind>`) and return its id.

    For work that reports as it goes: `log_step_metrics` adds to it while it runs, and
    `log_run(..., run_id=...)` logs the final numbers into it and ends it.
    """
    _check_kind(kind)
    mlflow_client = client()
    run = mlflow_client.create_run(
        experiment_id(mlflow_client, kind), run_name=run_name, tags={"lmf.kind": kind, **(tags or {})}
    )
    return str(run.info.run_id)


def log_step_metrics(run_id: str, metrics: Mapping[str, Any], step: int) -> None:
    """Log the finite numbers of `metrics` at `step` of a running run (one request)."""
    import time

    from mlflow.entities import Metric

    values = numeric_metrics(metrics)
    if values:
        now = int(time.time() * 1000)
        client().log_batch(run_id, metrics=[Metric(k, v, now, step) for k, v in values.items()])


def end_run(run_id: str, status: str = "FINISHED") -> None:
    """Mark a run ended: FINISHED, FAILED or KILLED (what MLflow shows as the run's status)."""
    client().set_terminated(run_id, status=status)


def log_run(
    kind: str,
    params: Mapping[str, Any],
    metrics: Mapping[str, Any],
    artifacts: Iterable[str | Path] = (),
    resolved_config: Mapping[str, Any] | None = None,
    *,
    run_name: str | None = None,
    tags: Mapping[str, str] | None = None,
    run_id: str | None = None,
) -> str:
    """Log one finished run of `kind` (experiment `lmf-<kind>`) and return its MLflow run id.

    `params` and `metrics` may be nested (keys are joined with dots); non-numeric metrics are
    skipped. `artifacts` are files or folders copied into the run; `resolved_config` is stored as
    `resolved_config.yaml` so the run can be repeated exactly. With `run_id` (from `start_run`)
    everything goes into that run instead of a new one; either way the run ends FINISHED, or
    FAILED when logging fails.
    """
    import yaml

    _check_kind(kind)
    paths = [Path(a) for a in artifacts]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise InvalidInputError(f"artifacts to log do not exist: {', '.join(missing)}")
    mlflow_client = client()
    if run_id is None:
        run_id = start_run(kind, run_name=run_name, tags=tags)
    try:
        _log_values(mlflow_client, run_id, flatten(params), numeric_metrics(metrics))
        if resolved_config is not None:
            text = yaml.safe_dump(dict(resolved_config), sort_keys=False)
            mlflow_client.log_text(run_id, text, "resolved_config.yaml")
        for path in paths:
            if path.is_dir():
                mlflow_client.log_artifacts(run_id, str(path), artifact_path=path.name)
            else:
                mlflow_client.log_artifact(run_id, str(path))
    except BaseException:
        mlflow_client.set_terminated(run_id, status="FAILED")
        raise
    mlflow_client.set_terminated(run_id, status="FINISHED")
    return run_id


def _log_values(mlflow_client: Any, run_id: str, params: dict[str, str], metrics: dict[str, float]) -> None:
    import time

    from mlflow.entities import Metric, Param

    now = int(time.time() * 1000)
    param_items = [Param(k, v) for k, v in params.items()]
    metric_items = [Metric(k, v, now, 0) for k, v in metrics.items()]
    for start in range(0, max(len(param_items), len(metric_items)), 100):  # MLflow's batch limit
        mlflow_client.log_batch(
            run_id, metrics=metric_items[start : start + 100], params=param_items[start : start + 100]
        )


def get_run(run_id: str) -> dict[str, Any]:
    """A logged run as plain data: kind, status, params, metrics, artifact URI."""
    run = client().get_run(run_id)
    return {
        "run_id": run.info.run_id,
        "kind": run.data.tags.get("lmf.kind"),
        "status": run.info.status,
        "params": dict(run.data.params),
        "metrics": dict(run.data.metrics),
        "artifact_uri": run.info.artifact_uri,
    }
