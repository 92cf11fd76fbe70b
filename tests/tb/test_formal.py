"""Formal proofs of the periphery blocks (:mod:`remeco.tb.formal`): each proof passes and
each mutant is rejected with a counterexample."""

from __future__ import annotations

import pytest

from remeco.tb.formal import MUTANTS, PROOFS, run_proof, tools_available

pytestmark = pytest.mark.skipif(tools_available() is not None, reason=str(tools_available()))

#: Proofs that close in seconds; the requantizer's does not finish yet (README "Proofs")
#: and runs only as `slow`.
CLOSED = ("adc", "shift_add", "averager", "combine", "axil")


@pytest.mark.parametrize("block", [b if b in CLOSED else pytest.param(b, marks=pytest.mark.slow) for b in PROOFS])
def test_block_is_proven(block, tmp_path):
    res = run_proof(PROOFS[block], tmp_path)
    assert res.proven, f"{block}: {res.status} {res.detail} (log {res.log})"


@pytest.mark.parametrize("block,index", [
    (b, i) if b != "requant" else pytest.param(b, i, marks=pytest.mark.slow)  # base case too slow today
    for b, ms in MUTANTS.items() for i in range(len(ms))])
def test_mutant_is_rejected(block, index, tmp_path):
    mutant = MUTANTS[block][index]
    res = run_proof(PROOFS[block], tmp_path, mutant=mutant, timeout=300)
    assert res.rejected, f"{block} mutant '{mutant.description}' not rejected: {res.status} (log {res.log})"
    assert res.detail.startswith("failed assertion"), res.detail
