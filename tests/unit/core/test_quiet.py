"""What lmfoundry keeps off the screen is exactly the named third-party noise, and nothing it hides
is lost when something fails."""

from __future__ import annotations

import logging
import sys
import warnings

import pytest

from lmfoundry.quiet import quiet_loading, silence_library_noise, stderr_held


def test_bm25s_debug_lines_stay_hidden_after_bm25s_resets_its_level(caplog: pytest.LogCaptureFixture) -> None:
    silence_library_noise()
    logger = logging.getLogger("bm25s")
    logger.setLevel(logging.DEBUG)  # what `import bm25s` does
    with caplog.at_level(logging.DEBUG, logger="bm25s"):
        logger.debug("Building index from tokens")
        logger.warning("a real problem")
    assert [r.getMessage() for r in caplog.records] == ["a real problem"]


def test_only_the_named_deprecations_are_ignored() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        silence_library_noise()
        warnings.warn(
            "`is_gradient_checkpointing` is deprecated and will be removed", FutureWarning, stacklevel=1
        )
        warnings.warn("`past_key_values` is deprecated and will be removed", FutureWarning, stacklevel=1)
        warnings.warn("`something_else` is deprecated", FutureWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["`something_else` is deprecated"]


def test_quiet_loading_turns_transformers_bars_off_and_restores_them() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.enable_progress_bar()
    with quiet_loading():
        assert not hf_logging.is_progress_bar_enabled()
    assert hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    with quiet_loading():
        pass
    assert not hf_logging.is_progress_bar_enabled()
    hf_logging.enable_progress_bar()


def test_held_stderr_is_dropped_on_success_and_shown_on_failure(capsys: pytest.CaptureFixture[str]) -> None:
    with stderr_held():
        sys.stderr.write("progress 50%\r")
    assert capsys.readouterr().err == ""
    with pytest.raises(RuntimeError), stderr_held():
        sys.stderr.write("converting...\n")
        raise RuntimeError("bad file")
    assert capsys.readouterr().err == "converting...\n"
