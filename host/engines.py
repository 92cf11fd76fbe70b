"""Which executor a campaign evaluates its chip instances with (``--engine``, ``--device``).

Every campaign (``reproduce``, ``dse``, ``search``, ``bundle``) computes the same thing:
the int32 logits of a mapped network on a programmed chip instance, as
:mod:`remeco.models.emulation` states them. The engines differ in speed only:

``native`` (default)
    :class:`remeco.models.engine.Engine` with the fused C kernel (falls back to its
    torch path, with one line on stderr, where the kernel cannot build or run).
``torch``
    The engine's torch-op path, on ``--device`` (``cpu`` by default, ``cuda`` on a GPU).
``reference``
    :func:`remeco.models.network.infer`, the readable reference executor.

The engine is deliberately *not* part of a campaign's spec: the same command with any
engine writes identical rows, so a campaign started with one engine may be resumed
with another (tests/host/test_engines.py checks that the rows and the JSON are equal).
"""

from __future__ import annotations

import argparse

import numpy as np

from remeco.host.cli import UserError
from remeco.models.engine import ENGINES, Engine, resolve_path

__all__ = ["ENGINES", "DEFAULT_ENGINE", "add_engine_arguments", "check_engine", "EngineCache"]

#: The engine campaigns use unless told otherwise.
DEFAULT_ENGINE = "native"


def add_engine_arguments(p: argparse.ArgumentParser) -> None:
    """Add ``--engine`` and ``--device`` to a campaign command's parser."""
    p.add_argument("--engine", default=DEFAULT_ENGINE, choices=ENGINES,
                   help="executor of the emulation contract: native (fused kernel, default), torch, or "
                        "reference (the readable executor); all give identical rows")
    p.add_argument("--device", default=None,
                   help="torch device for --engine torch (cpu, cuda, cuda:1, ...; default cpu)")


def check_engine(engine: str, device: str | None) -> None:
    """Raise :class:`UserError` (one line) for an engine/device the run cannot use.

    For ``native`` the kernel is loaded (built if needed) here, in the caller's process, so
    a fallback to the torch path is one line before the work, not one per pool worker.
    """
    if engine not in ENGINES:
        raise UserError(f"--engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if device is None:
        if engine == "native":
            # Load (or build) the kernel here, once: a fallback to the torch path is said in
            # this process, and pool workers, which inherit that, do not say it again.
            resolve_path("native")
        return
    if not isinstance(device, str):
        raise UserError(f"--device must be a torch device name such as cpu or cuda:0, got {type(device).__name__}")
    if engine != "torch":
        raise UserError(f"--device selects the torch engine's device; use it with --engine torch, not {engine}")
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError) as exc:
        raise UserError(f"--device {device!r} is not a torch device ({exc})") from None
    if dev.type == "cpu":
        return
    module = getattr(torch, dev.type, None)
    available = getattr(module, "is_available", None)
    if available is None or not available():
        raise UserError(f"--device {device}: torch has no {dev.type} device on this machine")
    count = getattr(module, "device_count", lambda: 1)()
    if dev.index is not None and dev.index >= count:
        raise UserError(f"--device {device}: this machine has {count} {dev.type} device(s)")


class EngineCache:
    """Per-worker engines of one campaign, one per mapped network (built once, reused by
    every chip instance the worker evaluates)."""

    def __init__(self, engine: str = DEFAULT_ENGINE, device: str | None = None) -> None:
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
        self.engine, self.device = engine, device
        self._engines: dict[int, tuple[object, Engine]] = {}

    def logits(self, mapped, images: np.ndarray, programmed, params=None) -> np.ndarray:
        """int32 logits of ``images`` on chip instance ``programmed`` of ``mapped``."""
        if self.engine == "reference":
            from remeco.models.network import infer

            return infer(mapped, images, executor="emulation", programmed=programmed, params=params)
        entry = self._engines.get(id(mapped))
        if entry is None or entry[0] is not mapped:  # keyed by identity; the mapped object is kept alive
            entry = (mapped, Engine(mapped, self.engine, self.device))
            self._engines[id(mapped)] = entry
        return entry[1].infer(images, programmed)
