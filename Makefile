# Two entry points; both do all set-up first (scripts/setup.sh is idempotent).
.PHONY: setup reproduce test demo bench

setup:
	bash scripts/setup.sh

# The main job on the embedded default data.
reproduce: setup
	.venv/bin/remeco reproduce

# The test suite (what CI runs).
# One BLAS / OpenMP thread per pytest worker: two workers already fill two cores.
test: setup
	OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 .venv/bin/python -m pytest -n 2 --dist loadgroup

bench: setup
	OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/ir_drop.py
	.venv/bin/python bench/campaign.py
	.venv/bin/python bench/rtl_sim.py
