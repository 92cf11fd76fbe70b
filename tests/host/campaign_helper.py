"""Tasks for the campaign-runner tests, and a script that runs one campaign.

The tasks live in this plain module (not in a test module) so that every kind of worker
(spawned pool processes, dask workers) can import them by name; the tests put this
folder on ``sys.path``, which spawned children inherit.

Run as ``python campaign_helper.py DB EXECUTOR`` it runs :data:`SLOW_SPEC` into the
store ``DB``; the kill-and-resume test kills it part-way.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from remeco.models.random import rng_for

#: Small but slow enough campaign that a kill lands in the middle of it.
SLOW_SPEC = {"seed": 7, "images": 1000, "p": 0.9, "sleep": 0.05}
SLOW_INSTANCES = 12
SLOW_PLANS = ["none", "msb", "layer-avg"]


def draw(spec: dict[str, Any], instance: int, plan: str) -> dict[str, Any]:
    """Deterministic fake metrics of one (instance, plan), from (seed, instance, plan) only."""
    rng = rng_for(spec["seed"], instance, f"campaign-test/{plan}")
    images = spec["images"]
    correct = int(rng.binomial(images, spec["p"]))
    return {"accuracy": correct / images, "correct": correct, "images": images, "noise": float(rng.normal())}


def slow_task(spec: dict[str, Any], instance: int, plan: str) -> dict[str, Any]:
    """:func:`draw` after sleeping ``spec["sleep"]`` seconds."""
    time.sleep(spec.get("sleep", 0.0))
    return draw(spec, instance, plan)


def grouped_task(spec: dict[str, Any], instance: int, plans: list[str]) -> dict[str, dict[str, Any]]:
    """Grouped form of :func:`slow_task`: one sleep for all plans of an instance."""
    time.sleep(spec.get("sleep", 0.0))
    return {plan: draw(spec, instance, plan) for plan in plans}


def never_called(spec: dict[str, Any], instance: int, plan: str) -> dict[str, Any]:
    """A task that must not run (for the finished-campaign no-op test)."""
    raise AssertionError(f"task called for ({instance}, {plan!r})")


def failing_task(spec: dict[str, Any], instance: int, plan: str) -> dict[str, Any]:
    """:func:`draw`, except that instance ``spec["fail_at"]`` raises."""
    if instance == spec["fail_at"]:
        raise RuntimeError(f"chip {instance} exploded")
    return draw(spec, instance, plan)


def mutating_task(spec: dict[str, Any], instance: int, plan: str) -> dict[str, Any]:
    """:func:`draw` on a spec it then vandalizes (the runner must hand out fresh copies)."""
    out = draw(spec, instance, plan)
    spec["seed"] += 1
    return out


def main(argv: list[str]) -> int:
    from remeco.host.campaign import run_campaign
    from remeco.host.store import ResultStore

    db, executor = argv
    with ResultStore(db) as store:
        run_campaign(
            SLOW_SPEC, slow_task, instances=SLOW_INSTANCES, plans=SLOW_PLANS, store=store, executor=executor, workers=2, progress=False
        )
    return 0


if __name__ == "__main__":
    # Import ourselves by name so the task is pickled as campaign_helper.slow_task, which
    # spawned workers can import, rather than as __main__.slow_task.
    import campaign_helper

    sys.exit(campaign_helper.main(sys.argv[1:]))
