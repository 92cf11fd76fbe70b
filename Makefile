# Two entry points; both do all set-up first (scripts/setup.sh is idempotent).
.PHONY: setup reproduce test demo bench

setup:
	bash scripts/setup.sh

# The main job on the embedded default data.
reproduce: setup
	.venv/bin/remeco demo

# The test suite (what CI runs).
test: setup
	.venv/bin/python -m pytest -n 2 --dist loadgroup

bench: setup
	.venv/bin/python bench/ir_drop.py
