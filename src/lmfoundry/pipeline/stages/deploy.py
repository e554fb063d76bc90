"""Serve the registry's champion: hot-load its adapter into a running server, or start one."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmfoundry.errors import InvalidInputError
from lmfoundry.pipeline import server_control
from lmfoundry.pipeline.context import StageContext
from lmfoundry.pipeline.stage_kind import StageKind
from lmfoundry.track import registry


@dataclass
class Options:
    registry: str = ""
    """Registered model whose `alias` version is deployed."""
    alias: str = "champion"
    adapter_name: str = "champion"
    """Name the adapter is served under (clients ask for MODEL:champion)."""
    url: str | None = None
    """A running server (ours or vLLM) to load into; None = start/reuse a local `lmf serve`."""
    server_kind: str = "lmf"
    """lmf (POST /v1/adapters) | vllm (POST /v1/load_lora_adapter, VLLM_ALLOW_RUNTIME_LORA_UPDATING=1)."""
    served_model: str | None = None
    """Model id the remote server serves (default: the registered base)."""
    api_key: str | None = None
    host: str = "127.0.0.1"
    port: int = 0
    """0 = any free port."""
    threads: int | None = None
    startup_timeout_s: float = 300.0


def _adapter_root(ctx: StageContext, adapter: str) -> Path:
    """The server may load adapters from the work folder, or from the adapter's own folder."""
    path = Path(adapter).resolve()
    return ctx.workdir if path.is_relative_to(ctx.workdir) else path.parent


def run(ctx: StageContext, options: Options) -> dict[str, Any]:
    if not options.registry:
        raise InvalidInputError("deploy stage needs 'registry' (the registered model to serve)")
    version, pointer = registry.resolve(options.registry, options.alias)
    if not pointer.adapter:
        raise InvalidInputError(f"{options.registry} v{version} has no adapter; deploy serves adapters")
    pid = None
    if options.url:
        url, base_id = options.url.rstrip("/"), options.served_model or pointer.base
    else:
        record = server_control.running_record(ctx.workdir)
        if record is not None and record.model != pointer.base:
            server_control.stop_server(ctx.workdir)
            record = None
        if record is None:
            ctx.progress.note(f"starting lmf serve {pointer.base}")
            record = server_control.start_server(pointer.base, ctx.workdir, _adapter_root(ctx, pointer.adapter),
                                         host=options.host, port=options.port, threads=options.threads,
                                         timeout_s=options.startup_timeout_s)  # fmt: skip
        url, base_id, pid = record.url, pointer.base, record.pid
    ctx.progress.note(f"loading {options.registry} v{version} as {options.adapter_name}")
    with server_control.http_client(url, options.api_key, timeout=120.0) as client:
        server_control.load_adapter(client, options.adapter_name, pointer.adapter, options.server_kind)
        if options.server_kind == "lmf" and not options.served_model:
            base_id = _served_base(client)
    model_id = options.adapter_name if options.server_kind == "vllm" else f"{base_id}:{options.adapter_name}"
    return {"url": url, "model_id": model_id, "base_model_id": base_id, "pid": pid, "version": version,
            "adapter": pointer.adapter, "base": pointer.base, "registry": options.registry,
            "alias": options.alias, "server_kind": options.server_kind}  # fmt: skip


def _served_base(client: Any) -> str:
    """The id our server gives its base model (the first of /v1/models; adapters are BASE:NAME)."""
    response = client.get("/v1/models")
    response.raise_for_status()
    return str(response.json()["data"][0]["id"])


def fresh(ctx: StageContext, outputs: dict[str, Any]) -> bool:
    """Reusable while the alias still points at the deployed version and the server still runs
    and serves its adapter under the name (a promote or rollback since then re-deploys)."""

    try:
        version, _pointer = registry.resolve(outputs["registry"], outputs["alias"])
    except registry.RegistryError:
        return False
    if version != outputs["version"]:
        return False
    if outputs.get("server_kind") == "vllm":
        return server_control.healthy(outputs["url"])
    if outputs.get("pid") is not None and not server_control.is_our_process(int(outputs["pid"])):
        return False
    if not server_control.healthy(outputs["url"]):
        return False
    try:
        with server_control.http_client(outputs["url"], timeout=10.0) as client:
            adapters = client.get("/v1/adapters").json().get("data", [])
    except Exception:
        return False
    name = outputs["model_id"].rsplit(":", 1)[-1]
    return any(a.get("name") == name and a.get("path") == outputs["adapter"] for a in adapters)


KIND = StageKind(Options, run, fresh, summary=(__doc__ or "").strip().splitlines()[0])
