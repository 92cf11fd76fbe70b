"""The exact campaign engine: the emulation contract at the speed of the CPU's integer units.

:func:`infer` / :class:`Engine` evaluate a mapped network on a chip instance and give the
same int32 logits as the reference executor (:func:`remeco.models.network.infer`,
``executor="emulation"``), bit for bit, for every plan, fault map, IR-drop and D2D
variation. See :mod:`.core` for the two paths (the fused C kernel and the torch-op path
that runs on any torch device) and :mod:`.layout` for what they precompute.
"""

from .core import ENGINES, PATHS, Engine, PreparedChip, infer, resolve_path
from .native import KernelUnavailable

__all__ = ["ENGINES", "PATHS", "Engine", "PreparedChip", "infer", "resolve_path", "KernelUnavailable"]
