"""Chip programming speed: CPU seconds per ``program_network`` (default ChipParams).

Times the base and committee plans on fresh chip instances with the memos cleared
before every call ("cold": the raw programming speed) and a campaign task, all six plans
of one instance in a row in campaign order as ``remeco reproduce`` groups them
("grouped": devices and tiles shared between plans come from the memos). The network and
plans are those of ``bench/campaign.py`` (``reproduce.prepare``, cached in the temporary
directory; the paper LeNet trains once, ~4 min). ``--old REV`` also times the models
package of git revision ``REV`` (extracted to a temporary directory) for a before/after
comparison. CPU time (``time.process_time``), so a loaded machine disturbs it less.

Run: ``python bench/programming.py [--net lenet5|lenet_paper] [--instances 5] [--old a17f720~1]``.
"""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _mapped(net: str):
    """The six plans of ``net`` mapped as a campaign maps them (``bench/campaign.py``)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from campaign import _setup

    return _setup(net, 1)["mapped"]


def _time(program, clear, mapped, params, plans, instances, grouped):
    t0 = time.process_time()
    for i in range(instances):
        for plan in plans:
            if not grouped:
                clear()
            program(mapped[plan], params, seed=0, instance=1000 + i)
    return (time.process_time() - t0) / instances


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--net", choices=("lenet5", "lenet_paper"), default="lenet5")
    ap.add_argument("--instances", type=int, default=5)
    ap.add_argument("--old", default=None, help="git revision to compare with (e.g. HEAD~1)")
    args = ap.parse_args()
    mapped = _mapped(args.net)
    from remeco.models import chip
    from remeco.models.network import program_network

    variants = [("new", program_network, chip.ChipParams(), chip.clear_tile_cache)]
    if args.old:
        tmp = Path(tempfile.mkdtemp())
        root = Path(__file__).resolve().parents[1]
        archive = subprocess.run(["git", "-C", str(root), "archive", args.old, "models"], check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(tmp)], input=archive, check=True)
        (tmp / "models").rename(tmp / "remeco_old_models")
        sys.path.insert(0, str(tmp))
        old_net = importlib.import_module("remeco_old_models.network")
        old_chip = importlib.import_module("remeco_old_models.chip")
        variants.insert(0, (f"old ({args.old})", old_net.program_network, old_chip.ChipParams(),
                            getattr(old_chip, "clear_tile_cache", lambda: None)))
    print(f"{args.net}: CPU seconds per program_network, mean over {args.instances} instances")
    from remeco.models.redundancy import PLAN_NAMES

    for name, program, params, clear in variants:
        program(mapped["base"], params, seed=0, instance=0)  # warm-up
        base = _time(program, clear, mapped, params, ["base"], args.instances, False)
        committee = _time(program, clear, mapped, params, ["committee"], args.instances, False)
        clear()
        grouped = _time(program, clear, mapped, params, list(PLAN_NAMES), args.instances, True)
        print(f"{name:>16}: base {base:.4f} s  committee {committee:.4f} s  six plans of one instance "
              f"in campaign order {grouped:.4f} s ({grouped / len(PLAN_NAMES):.4f} s per plan)", flush=True)


if __name__ == "__main__":
    main()
