"""Native quantized GEMV: equals x @ W.T with the dequantized weight (SIMD and portable C alike),
falls back to the torch band path when off, unsupported or uncompilable, and caches its build."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from lmfoundry.quantize import linear as ql
from lmfoundry.quantize import native

QuantLinear = ql.quant_linear_class()
needs_cc = pytest.mark.skipif(
    shutil.which(native.compiler()[0]) is None, reason="no C compiler ($CC or cc) to build the kernel"
)


@pytest.fixture(autouse=True)
def default_switches(monkeypatch: pytest.MonkeyPatch) -> None:
    """The kernel on and its SIMD code allowed, whatever the environment running the tests says."""
    monkeypatch.delenv("LMF_NATIVE_KERNELS", raising=False)
    monkeypatch.delenv("LMF_NATIVE_SIMD", raising=False)


@pytest.fixture
def fresh_kernel() -> Iterator[None]:
    """Build or load the library again inside this test (its own $LMF_HOME) and forget it after."""
    native.reset()
    yield
    native.reset()


def _layer(in_f: int, out_f: int, method: str, block: int, dq: bool, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return QuantLinear.from_linear(torch.nn.Linear(in_f, out_f), method, block, dq)


def _expected(layer: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.linear(x, layer.dequantize_weight(), layer.bias)


def _assert_close(got: torch.Tensor, expected: torch.Tensor) -> None:
    # float sums in another order: 1e-4 relative to the output's scale
    scale = expected.abs().max().item()
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4 * scale)


def _forward(layer: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Output and how many kernel matmuls it took."""
    before = native.counts["calls"]
    with torch.no_grad():
        y = layer(x)
    return y, native.counts["calls"] - before


@needs_cc
@pytest.mark.parametrize("simd", ["1", "0"])
@pytest.mark.parametrize("rows", [1, 3, 16])
@pytest.mark.parametrize("block", [64, 32])
@pytest.mark.parametrize("double_quant", [False, True])
@pytest.mark.parametrize("method", ["nf4", "fp4", "int8"])
def test_kernel_matches_dequantized_weight(
    method: str, double_quant: bool, block: int, rows: int, simd: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LMF_NATIVE_SIMD", simd)
    layer = _layer(192, 37, method, block, double_quant)
    x = torch.randn(rows, 192)
    y, calls = _forward(layer, x)
    assert calls == 1
    _assert_close(y, _expected(layer, x))


@needs_cc
@pytest.mark.parametrize("rows", [10, ql.NATIVE_MAX_ROWS])
@pytest.mark.parametrize("method", ["nf4", "int8"])
def test_simd_and_portable_code_agree_on_a_threaded_shape(
    method: str, rows: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # big enough that the rows are split across threads (MIN_PARALLEL_VALUES in qgemv.c)
    layer = _layer(512, 301, method, 64, True, seed=1)
    x = torch.randn(rows, 1, 512)
    simd, calls = _forward(layer, x)
    monkeypatch.setenv("LMF_NATIVE_SIMD", "0")
    portable, more_calls = _forward(layer, x)
    assert calls == more_calls == 1
    _assert_close(simd, _expected(layer, x))
    _assert_close(portable, simd)


@needs_cc
def test_build_without_simd_code_runs_the_portable_loops(
    fresh_kernel: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # what a CPU without AVX2, or another architecture, compiles and runs
    monkeypatch.setattr(native, "FLAGS", (*native.FLAGS, "-DQG_NO_SIMD"))
    lib = native.library()
    assert lib is not None and lib.qgemv_simd_available() == 0
    layer = _layer(256, 40, "nf4", 64, True)
    x = torch.randn(3, 256)
    y, calls = _forward(layer, x)
    assert calls == 1
    _assert_close(y, _expected(layer, x))


@pytest.mark.parametrize(("in_f", "block"), [(100, 64), (96, 64), (72, 8)])
def test_unsupported_shapes_use_the_band_path(in_f: int, block: int) -> None:
    # blocks straddling weight rows (in_f % block != 0) or blocks not a multiple of 16 values
    layer = _layer(in_f, 30, "nf4", block, True)
    x = torch.randn(1, in_f)
    y, calls = _forward(layer, x)
    assert calls == 0
    _assert_close(y, _expected(layer, x))


def test_many_rows_and_other_dtypes_use_the_band_path() -> None:
    layer = _layer(128, 24, "nf4", 64, False)
    x = torch.randn(ql.NATIVE_MAX_ROWS + 1, 128)
    y, calls = _forward(layer, x)
    assert calls == 0
    _assert_close(y, _expected(layer, x))
    y, calls = _forward(layer, x[:1].double())
    assert calls == 0
    assert y.dtype == torch.float64


@needs_cc
def test_env_switch_turns_the_kernel_off(monkeypatch: pytest.MonkeyPatch) -> None:
    layer = _layer(128, 24, "fp4", 32, True)
    x = torch.randn(1, 128)
    monkeypatch.setenv("LMF_NATIVE_KERNELS", "0")
    y, calls = _forward(layer, x)
    assert calls == 0
    _assert_close(y, _expected(layer, x))
    monkeypatch.setenv("LMF_NATIVE_KERNELS", "1")
    assert _forward(layer, x)[1] == 1


def _failing_compiler(tmp_path: Path) -> str:
    script = tmp_path / "cc"
    script.write_text("#!/bin/sh\necho 'fatal error: no headers here' >&2\nexit 1\n")
    script.chmod(0o755)
    return str(script)


@pytest.mark.parametrize("cc", ["/bin/false", "/bin/true", "missing", "failing"])
def test_broken_compiler_warns_once_and_uses_the_torch_path(
    cc: str,
    fresh_kernel: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    compilers = {"missing": str(tmp_path / "no-such-cc"), "failing": _failing_compiler(tmp_path)}
    monkeypatch.setenv("CC", compilers.get(cc, cc))
    layer = _layer(128, 24, "nf4", 64, True)
    x = torch.randn(1, 128)
    with caplog.at_level(logging.WARNING, logger=native.__name__):
        first, calls = _forward(layer, x)
        second, more_calls = _forward(layer, x)
    assert calls == more_calls == 0
    _assert_close(first, _expected(layer, x))
    assert torch.equal(first, second)
    warnings = [r.getMessage() for r in caplog.records if r.name == native.__name__]
    assert len(warnings) == 1
    assert "native 4-bit/int8 kernels unavailable" in warnings[0] and "torch path" in warnings[0]
    if cc == "failing":
        assert "no headers here" in warnings[0]
    leftovers = list(native.cache_dir().glob("*")) if native.cache_dir().is_dir() else []
    assert leftovers == []  # no partial library left behind


@needs_cc
def test_compiler_without_openmp_still_gets_a_serial_kernel(
    fresh_kernel: None,
    lmf_home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Like clang without libomp: -fopenmp is refused, the build is retried without it."""
    script = tmp_path / "cc-no-openmp"
    real = shutil.which(native.compiler()[0])
    script.write_text(
        "#!/bin/sh\n"
        'for a in "$@"; do [ "$a" = "-fopenmp" ] && { echo "unsupported option -fopenmp" >&2; exit 1; }; done\n'
        f'exec {real} "$@"\n'
    )
    script.chmod(0o755)
    monkeypatch.setenv("CC", str(script))
    layer = _layer(256, 512, "nf4", 64, True)
    x = torch.randn(3, 256)
    with caplog.at_level(logging.WARNING, logger=native.__name__):
        y, calls = _forward(layer, x)
    assert calls == 1
    _assert_close(y, _expected(layer, x))
    assert [r for r in caplog.records if r.name == native.__name__] == []
    assert len(list(native.cache_dir().iterdir())) == 1  # the serial build, no partial file


@needs_cc
def test_build_is_cached_and_reused(fresh_kernel: None, lmf_home: Path) -> None:
    compiles = native.counts["compiles"]
    assert native.library() is not None
    assert native.counts["compiles"] == compiles + 1
    (built,) = native.cache_dir().glob("qgemv-*.so")
    assert native.cache_dir().is_relative_to(lmf_home)
    mtime = built.stat().st_mtime_ns
    native.reset()
    assert native.library() is not None
    assert native.counts["compiles"] == compiles + 1
    assert built.stat().st_mtime_ns == mtime
    assert [p.name for p in native.cache_dir().iterdir()] == [built.name]


@needs_cc
def test_compiler_flags_and_cc_arguments_are_part_of_the_key(
    fresh_kernel: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert native.library() is not None
    native.reset()
    monkeypatch.setattr(native, "FLAGS", (*native.FLAGS, "-DQG_TEST_VARIANT=1"))
    assert native.library() is not None
    native.reset()
    monkeypatch.setenv("CC", "cc -DQG_TEST_CC_ARG=1")  # like CC="ccache gcc"
    assert native.library() is not None
    assert len(list(native.cache_dir().glob("qgemv-*.so"))) == 3


@needs_cc
def test_concurrent_first_builds_agree(lmf_home: Path) -> None:
    code = "from lmfoundry.quantize import native\nassert native.library() is not None\n"
    env = {**os.environ, "LMF_HOME": str(lmf_home)}
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env) for _ in range(3)]
    assert [p.wait(timeout=300) for p in procs] == [0, 0, 0]
    (only,) = native.cache_dir().iterdir()  # one library for the one key, no temporary files left
    assert only.name.startswith("qgemv-") and only.suffix == ".so"


def test_import_loads_neither_torch_nor_the_compiler(lmf_home: Path) -> None:
    code = (
        "import sys\nfrom lmfoundry.quantize import linear, native\n"
        "assert 'torch' not in sys.modules\nassert native.counts == {'calls': 0, 'compiles': 0}\n"
    )
    env = {**os.environ, "LMF_HOME": str(lmf_home)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
    assert not native.cache_dir().exists()
