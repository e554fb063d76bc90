"""Keep other libraries' chatter that is not about the user's input off the user's screen.

What a user of lmfoundry sees is our progress display, our results, and warnings about their
input. Libraries we build on print things that are none of those:

- bm25s sets its own logger to DEBUG, so any root handler prints "DEBUG:bm25s:...";
- bitsandbytes, imported by peft whenever it is installed, warns on CPUs with AVX-512 BF16 that
  it cannot fetch an optional kernel from the hub while offline (lmfoundry's QLoRA does not use
  bitsandbytes; the kernels package warns about the same fetch);
- peft reads transformers' deprecated `is_gradient_checkpointing` in every `PeftModel`, and its
  prompt-learning methods (prefix, P-tuning v2) pass the deprecated `past_key_values`;
- transformers draws tqdm bars while loading, converting and saving weights, interleaved with
  our own display.

`silence_library_noise()` (run when lmfoundry is imported) quiets the first three by their exact
logger names and message; `quiet_loading()` turns transformers' bars off around one of our loads
and restores the previous state; `stderr_held()` holds the one bar that has no switch. Nothing
here hides an error, and nothing applies to a library's messages in general.
"""

from __future__ import annotations

import contextlib
import io
import logging
import sys
import warnings
from collections.abc import Iterator

_LOGGER_LEVELS = {
    "bm25s": logging.WARNING,
    "bitsandbytes.backends.cpu.ops": logging.ERROR,
    "kernels._internals.hf_hub": logging.ERROR,
}
"""A filter, not just a level: bm25s sets its logger's level to DEBUG when it is imported."""


class _AtLeast(logging.Filter):
    """Pass records at `level` or above, whatever level the library sets on its logger later."""

    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= self.level


def silence_library_noise() -> None:
    """Set the few third-party loggers and warnings listed in the module docstring to quiet."""
    for name, level in _LOGGER_LEVELS.items():
        logger = logging.getLogger(name)
        logger.setLevel(level)
        if not any(isinstance(rule, _AtLeast) for rule in logger.filters):
            logger.addFilter(_AtLeast(level))
    for message in (r"`is_gradient_checkpointing` is deprecated", r"`past_key_values` is deprecated"):
        warnings.filterwarnings("ignore", message=message, category=FutureWarning)


@contextlib.contextmanager
def quiet_loading() -> Iterator[None]:
    """transformers' own progress bars off for the block, restored after."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


@contextlib.contextmanager
def stderr_held() -> Iterator[None]:
    """Hold what a library writes to stderr during the block (a tqdm bar it has no switch for, like
    transformers' GGUF conversion); shown only if the block fails. For short, single calls only."""
    held = io.StringIO()
    try:
        with contextlib.redirect_stderr(held):
            yield
    except BaseException:
        sys.stderr.write(held.getvalue())
        raise
