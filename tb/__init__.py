"""cocotb test benches and the simulator runner.

:func:`verify` runs every block's bench against the emulation model and returns one row
``(component, vectors, mismatches, seconds)`` per block (what ``remeco verify`` prints,
:mod:`remeco.host.rtl_cli`).
"""

__all__ = ["verify", "VerifyParams"]


def __getattr__(name: str):
    # Lazy: bench modules are imported inside the simulator, which needs none of this.
    if name in __all__:
        from . import verification as _verification

        return getattr(_verification, name)
    raise AttributeError(name)
