"""Formal proofs of the periphery blocks (:mod:`remeco.tb.formal`): each proof passes and
each mutant is rejected with a counterexample."""

from __future__ import annotations

import pytest

from remeco.tb.formal import MUTANTS, PROOFS, run_proof, tools_available

pytestmark = pytest.mark.skipif(tools_available() is not None, reason=str(tools_available()))

@pytest.mark.parametrize("block", list(PROOFS))
def test_block_is_proven(block, tmp_path):
    res = run_proof(PROOFS[block], tmp_path)
    assert res.proven, f"{block}: {res.status} {res.detail} (log {res.log})"


@pytest.mark.parametrize("block,index", [(b, i) for b, ms in MUTANTS.items() for i in range(len(ms))])
def test_mutant_is_rejected(block, index, tmp_path):
    mutant = MUTANTS[block][index]
    res = run_proof(PROOFS[block], tmp_path, mutant=mutant, timeout=300)
    assert res.rejected, f"{block} mutant '{mutant.description}' not rejected: {res.status} (log {res.log})"
    assert res.detail.startswith("failed assertion"), res.detail
