"""Nodal IR-drop model of a passive crossbar: output currents and the transfer matrix.

Circuit (the conventions of badcrossbar)
----------------------------------------
A crossbar of ``m`` word lines (rows) and ``n`` bit lines (columns). Device ``(i, j)``
of conductance ``G[i, j]`` joins word-line node ``(i, j)`` to bit-line node ``(i, j)``.
Word line ``i`` is driven at its left end by an ideal source ``V[i]``; bit line ``j``
is held at 0 V at its bottom end (after row ``m - 1``), where its output current is
read. Adjacent nodes are joined by one wire segment, including the first one:
source -> node ``(i, 0)`` on a word line (``r_word_line`` each) and node
``(m - 1, j)`` -> ground on a bit line (``r_bit_line`` each). The far end of a word
line (after column ``n - 1``) and the top of a bit line (before row 0) are open.

The circuit is linear in the applied voltages, so ``I = V @ T`` with the transfer
matrix ``T`` (m, n): ``T[i, j]`` is the output current of column ``j`` per volt on
word line ``i`` with every other source at 0 V, the *effective conductance* of cell
``(i, j)`` including IR drop and sneak paths. Everything here computes ``T`` once per
programmed tile; each batch of inputs then costs one matrix product.

Exact method
------------
Nodal analysis of all ``2 m n`` nodes, solved directly by exploiting the structure
(dimensions below assume ``n <= m``; otherwise the reciprocal, transposed crossbar is
solved and ``T`` is mapped back, so the block size is always ``min(m, n)``):

1. Each word line only couples the bit-line nodes of its own row, so its ``n`` nodes
   are eliminated in closed form: with ``A_i = g_w L + diag(G_i)`` (``L`` the chain
   Laplacian of a line grounded at its source), row ``i`` of bit-line nodes sees the
   dense Schur complement ``E_i = diag(G_i) - diag(G_i) A_i^-1 diag(G_i)`` and the
   source injects ``h_i V_i`` with ``h_i = g_w G_i * (A_i^-1 e_0)``.
2. What remains is block tridiagonal in the rows (bit-line segments couple row ``i``
   to ``i +- 1`` with ``g_b I``). Block elimination from the open top towards the
   grounded bottom keeps Schur complements ``S_i = g_b I + Delta_i`` with
   ``Delta_i = E_i + g_b S_{i-1}^-1 Delta_{i-1}``; this form never subtracts two
   nearly equal ``O(g_b)`` numbers, so the small device terms keep their digits.
3. The output currents depend only on the bottom row of bit-line nodes, so no back
   substitution is needed: the right-hand sides of all ``m`` inputs are carried
   through the elimination (``Y_i = S_i^-1 (g_b Y_{i-1} + h_i e_i^T)``) and
   ``T = g_b Y_{m-1}^T``.

Cost ``O(m n^3 + m^2 n^2)`` in dense BLAS-3 blocks, with a working set of two ``n x n``
matrices and one ``n x (n + m)`` matrix reused by every row. Every ``S_i`` is SPD (a
Schur complement of an SPD matrix), so a failed Cholesky factorization can only mean a
breakdown in floating point: the code then falls back to a sparse LU solve of the full
nodal system (no tile in the tests or the benchmark triggers it; a test forces it).

Accuracy, measured against an extended-precision iterative refinement of the full
nodal system (128 x 128, default device range, 2 ohm): about 1e-12 relative, half the
error of a plain sparse LU (badcrossbar). When a wire resistance is zero its lines are
equipotential and the model reduces to independent loaded chains, solved exactly in
``O(m n)`` (below); both zero gives ``T = G`` exactly.

Fast method
-----------
Line solutions with one mean-field sneak-path correction, ``O(m n)``: two batched
tridiagonal factorizations (a ladder fed at one end responds with the running product
of its per-node attenuations, the reciprocal LDL^T pivots) and a few element-wise
passes, no per-cell Python. At 128 x 128 it builds ``T`` in about 0.45 ms against
about 40 ms for the exact method (2-core machine; see ``bench/ir_drop.py``).

* Each bit line, with the other devices shunted to grounded word lines, is solved
  exactly as a ladder network: ``X[i, j]``, the fraction of a current injected at
  row ``i`` that reaches the output of bit line ``j``.
* A device's bit-line end rises by ``Z_ii`` per ampere (the bit line's
  driving-point resistance, approximated as ``r_b (m - i) X[i, j]``), so the device
  loads its word line with ``G (1 - G Z_ii)``.
* Each word line is solved exactly as a ladder with those loads: node voltages ``U``
  per volt, and ``T0 = G U X``.
* The fraction ``1 - X - G Z_ii`` of the current leaks from the bit lines into the
  other word lines, which rise and push current back into all bit lines. In mean
  field (the other word lines carry the driven line's current profile, their devices
  have the column-mean conductances weighted by that profile) the rise telescopes to
  the driven line's own IR drop ``1 - U``, so this first reflection costs no extra
  pass over the array.

The method is exact when either wire resistance is zero and for a single word line;
otherwise its error grows with the IR-drop parameter ``r G n^2``. Measured against the
exact method (default device range: 16 levels 0.5..10 uS drawn uniformly; 256 input
vectors uniform in 0..0.2 V; mean over 3 random tiles, max over all; "columns":
relative error of the column currents; "T": per-cell relative error of the transfer
matrix; "no IR drop": the error of ``T = G``, for scale):

====  =======  ===================  ===================  ===================
size  r (ohm)  columns mean / max   T mean / max         no IR drop mean/max
====  =======  ===================  ===================  ===================
32    2        1.1e-7 / 5.9e-7      3.3e-7 / 1.2e-5      0.8 % / 1.1 %
64    2        5.0e-6 / 1.4e-5      1.1e-5 / 2.7e-4      3.0 % / 4.1 %
128   1        5.2e-5 / 1.0e-4      1.1e-4 / 1.8e-3      5.8 % / 7.9 %
128   2        0.039 % / 0.074 %    0.078 % / 1.2 %      12 % / 16 %
128   5        0.51 % / 0.95 %      0.95 % / 12 %        29 % / 40 %
256   1        0.27 % / 0.49 %      0.52 % / 6.5 %       23 % / 31 %
256   2        1.7 % / 3.1 %        3.0 % / 29 %         45 % / 63 %
====  =======  ===================  ===================  ===================

Structured 128 x 128 tiles at 2 ohm (every 8th row or column at G_on, the rest at
G_off; one quadrant at G_on; 80 % of the cells at G_off) give mean column errors of
0.005 % to 0.1 %.

The largest per-cell errors are on low-conductance cells, whose small effective
conductance is most affected by the neglected higher-order sneak paths. The test-suite
checks the 128 x 128, 2 ohm row with a margin (mean <= 0.1 %, max <= 0.2 %). In terms
of ``r G_on n^2`` (``n`` the larger dimension) the mean column error stays below
0.1 % up to about 0.3 and reaches about 0.5 % at 0.8 and 2 % at 1.3; beyond that, or
when per-cell accuracy matters, use the exact method.
"""

from __future__ import annotations

import math
import numbers
import threading

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from scipy.linalg import lapack

__all__ = ["METHODS", "NodalCrossbar", "fast_transfer_stack", "output_currents"]

#: Accepted values of the ``method`` argument.
METHODS = ("exact", "fast")


# ----------------------------------------------------------------------------------
# Input validation
# ----------------------------------------------------------------------------------


def _check_conductance(conductance: npt.ArrayLike) -> np.ndarray:
    """Return ``conductance`` as a float64 (m, n) array or raise ``ValueError``."""
    arr = np.asarray(conductance)
    if arr.dtype == object or not (
        np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
    ):
        raise ValueError(f"conductance must be a real numeric array, got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise ValueError(f"conductance must be a 2-D (m, n) array, got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"conductance must have at least one row and one column, got shape {arr.shape}")
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError("conductance must be finite (no NaN or inf)")
    if np.any(arr < 0):
        raise ValueError("conductance must be non-negative (siemens)")
    return arr


def _check_resistance(value: float, name: str) -> float:
    """Return a wire resistance as a float or raise ``ValueError`` naming ``name``."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a real number (ohm per segment), got {value!r}")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if value < 0:
        raise ValueError(f"{name} must be non-negative, got {value!r}")
    return value


def _check_method(method: str) -> str:
    """Return ``method`` or raise ``ValueError`` listing the accepted values."""
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    return method


def _check_voltages(voltages: npt.ArrayLike, m: int) -> tuple[np.ndarray, bool]:
    """Return ``voltages`` as a float64 (p, m) array and whether it was 1-D."""
    arr = np.asarray(voltages)
    if arr.dtype == object or not (
        np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
    ):
        raise ValueError(f"voltages must be a real numeric array, got dtype {arr.dtype}")
    if arr.ndim not in (1, 2) or arr.shape[-1] != m:
        raise ValueError(
            f"voltages must have shape (p, {m}) or ({m},) for a crossbar with {m} word lines, "
            f"got shape {arr.shape}"
        )
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError("voltages must be finite (no NaN or inf)")
    return (arr[None, :], True) if arr.ndim == 1 else (arr, False)


# ----------------------------------------------------------------------------------
# Batched chains
# ----------------------------------------------------------------------------------


def _chain_attenuations(diag: np.ndarray, off: np.ndarray) -> np.ndarray:
    """Per-node attenuations of many loaded chains fed at their last node, in place.

    Parameters
    ----------
    diag:
        (k, L) C-ordered diagonals of ``k`` chains of ``L`` nodes; chain ``c`` is the
        SPD tridiagonal matrix ``A_c`` with diagonal ``diag[c]`` and off-diagonal
        ``-1``. Overwritten with the result.
    off:
        Scratch array of at least ``k L - 1`` floats (overwritten).

    Returns
    -------
    numpy.ndarray
        ``diag``, now holding ``1 / d`` for the pivots ``d`` of ``A_c = L D L^T``.

    Notes
    -----
    The solution of ``A_c x = e_{L-1}`` is ``x_k = prod_{j >= k} 1 / d_j``: the forward
    solve of ``e_{L-1}`` is trivial and the backward one is ``x_k = x_{k+1} / d_k``
    (the sub-diagonal of ``L`` is ``-1 / d``). One LAPACK ``dpttrf`` over the chains
    laid end to end (zero couplings at the seams) gives all the pivots.
    """
    k, length = diag.shape
    if length > 1:
        flat = diag.reshape(-1)
        off = off[: k * length - 1]
        off.fill(-1.0)
        off[length - 1 :: length] = 0.0
        pivots, _, info = lapack.dpttrf(flat, off, overwrite_d=1, overwrite_e=1)
        if info != 0:  # cannot happen for chains grounded at one end; guard anyway
            raise np.linalg.LinAlgError(f"tridiagonal chain factorization failed (info={info})")
        if not np.shares_memory(pivots, flat):
            flat[...] = pivots
    return np.reciprocal(diag, out=diag)


def _word_line_voltages(load: np.ndarray, r_w: float, work: np.ndarray | None = None) -> np.ndarray:
    """Node voltages of every word line driven by 1 V, loaded by ``load`` to ground.

    Word line ``i`` in units of ``g_w``: ``(L + r_w diag(load_i)) u_i = e_0`` where
    ``L`` has 2 on the diagonal (1 at the open far end). ``work`` is an optional
    scratch array of ``2 m n`` floats. Returns a new C-ordered (m, n) array.
    """
    m, n = load.shape
    work = np.empty(2 * m * n) if work is None else work
    # Chains numbered from the open far end, so that the source feeds the last node.
    chains = np.multiply(load[:, ::-1], r_w, out=work[: m * n].reshape(m, n))
    chains += 2.0
    chains[:, 0] -= 1.0
    _chain_attenuations(chains, work[m * n :])
    # u at position j (counted from the source) is the product of the attenuations
    # from the source up to j: a running product over the chains read backwards.
    return np.multiply.accumulate(chains[:, ::-1], axis=1, out=np.empty((m, n)))


def _bit_line_transmission(load: np.ndarray, r_b: float, work: np.ndarray | None = None) -> np.ndarray:
    """Fraction of a current injected at ``(i, j)`` that leaves bit line ``j`` at the bottom.

    Each bit line is a chain grounded below row ``m - 1`` and open above row 0, loaded
    by ``load[:, j]`` to ground. By reciprocity the fraction equals the response to a
    unit injection at the bottom: ``(L + r_b diag(load_j)) x_j = e_{m-1}``. ``work`` is
    an optional scratch array of ``2 m n`` floats. Returns a new C-ordered (m, n) array.
    """
    m, n = load.shape
    work = np.empty(2 * m * n) if work is None else work
    chains = np.multiply(load.T, r_b, out=work[: m * n].reshape(n, m))
    chains += 2.0
    chains[:, 0] -= 1.0
    _chain_attenuations(chains, work[m * n :])
    backwards = chains[:, ::-1]
    np.multiply.accumulate(backwards, axis=1, out=backwards)
    return chains.T.copy()  # a new array even when the transpose is contiguous


# ----------------------------------------------------------------------------------
# Exact transfer matrix
# ----------------------------------------------------------------------------------


def _exact_block_elimination(G: np.ndarray, r_w: float, r_b: float) -> np.ndarray | None:
    """Exact transfer matrix by block elimination over rows, block size ``n``.

    Both resistances must be positive. Returns ``None`` if a Cholesky factorization
    breaks down, so that the caller can fall back to a general sparse solver.
    """
    m, n = G.shape
    g_b = 1.0 / r_b
    diag_idx = np.diag_indices(n)
    # Diagonal of the chain Laplacian L of one word line (source end grounded, far end
    # open); row i solves with L + r_w diag(G_i), i.e. r_w (g_w L + diag(G_i)).
    base = np.full(n, 2.0)
    base[-1] = 1.0
    off = -np.ones(n - 1)
    # Work arrays reused by every row, Fortran-ordered so that LAPACK works in place:
    # fresh n x n temporaries per row would dominate the run time through page faults.
    green = np.empty((n, n), order="F")  # word line i: r_w (g_w L + diag(G_i))^-1
    chol = np.empty((n, n), order="F")
    # [Delta_i | F_i] before the solve of row i, S_i^-1 [Delta_i | F_i] after it.
    work = np.zeros((n, n + m), order="F")
    delta = work[:, :n]
    for i in range(m):
        g_row = G[i]
        # Step 1: Schur complement of word line i onto its bit-line nodes.
        if n == 1:
            green[0, 0] = 1.0 / (1.0 + r_w * g_row[0])
        else:
            green.fill(0.0)
            green[diag_idx] = 1.0
            _, _, solved, info = lapack.dptsv(base + r_w * g_row, off, green, overwrite_b=1)
            if info != 0:
                return None
            if solved is not green:  # in place unless f2py had to copy
                green[...] = solved
        # green = (L + r_w diag(G_i))^-1, so h_i = G_i * green[:, 0] and
        # E_i = diag(G_i) - r_w diag(G_i) green diag(G_i).
        work[:, n + i] = g_row * green[:, 0]
        green *= r_w * g_row[:, None]
        green *= g_row[None, :]
        # Step 2: Schur complement of everything above row i,
        # Delta_i = E_i + g_b S_{i-1}^-1 Delta_{i-1} (never subtracts O(g_b) numbers).
        if i == 0:
            np.negative(green, out=delta)
        else:
            delta *= g_b
            delta -= green
            work[:, n : n + i] *= g_b  # F_i = [g_b Y_{i-1} | h_i]
        delta[diag_idx] += g_row
        chol[...] = delta
        chol[diag_idx] += g_b
        factor, info = lapack.dpotrf(chol, lower=0, clean=0, overwrite_a=1)
        if info != 0:
            return None
        # Step 3: carry S_i^-1 [Delta_i | F_i] to the next row (only F_i at the bottom).
        rhs = work[:, : n + i + 1] if i < m - 1 else work[:, n:]
        solved, info = lapack.dpotrs(factor, rhs, lower=0, overwrite_b=1)
        if info != 0:
            return None
        if solved is not rhs and not np.shares_memory(solved, rhs):
            rhs[...] = solved
    transfer = g_b * work[:, n:].T
    return transfer if np.all(np.isfinite(transfer)) else None


def _nodal_matrix(G: np.ndarray, r_w: float, r_b: float) -> sp.csc_matrix:
    """Full nodal conductance matrix, word-line nodes first, both row-major."""
    m, n = G.shape
    size = m * n
    g_w, g_b = 1.0 / r_w, 1.0 / r_b
    idx = np.arange(size).reshape(m, n)
    d_word = np.full((m, n), 2.0 * g_w)
    d_word[:, -1] = g_w
    d_bit = np.full((m, n), 2.0 * g_b)
    d_bit[0, :] = g_b
    rows = [idx, idx + size, idx[:, 1:], idx[:, :-1], idx[1:] + size, idx[:-1] + size, idx, idx + size]
    cols = [idx, idx + size, idx[:, :-1], idx[:, 1:], idx[:-1] + size, idx[1:] + size, idx + size, idx]
    vals = [
        d_word + G,
        d_bit + G,
        np.full((m, n - 1), -g_w),
        np.full((m, n - 1), -g_w),
        np.full((m - 1, n), -g_b),
        np.full((m - 1, n), -g_b),
        -G,
        -G,
    ]
    data = np.concatenate([v.ravel() for v in vals])
    row = np.concatenate([r.ravel() for r in rows])
    col = np.concatenate([c.ravel() for c in cols])
    return sp.csc_matrix((data, (row, col)), shape=(2 * size, 2 * size))


def _sparse_transfer(G: np.ndarray, r_w: float, r_b: float) -> np.ndarray:
    """Exact transfer matrix by sparse LU of the full nodal system (fallback).

    Uses the symmetry of the nodal matrix: ``T[i, j] = g_w g_b (A^-1)[word(i, 0),
    bit(m - 1, j)]``, so ``min(m, n)`` right-hand sides suffice.
    """
    m, n = G.shape
    size = m * n
    g_w, g_b = 1.0 / r_w, 1.0 / r_b
    lu = spla.splu(_nodal_matrix(G, r_w, r_b))
    word_first = np.arange(m) * n
    bit_last = size + (m - 1) * n + np.arange(n)
    if n <= m:
        rhs = np.zeros((2 * size, n))
        rhs[bit_last, np.arange(n)] = 1.0
        return g_w * g_b * lu.solve(rhs)[word_first, :]
    rhs = np.zeros((2 * size, m))
    rhs[word_first, np.arange(m)] = 1.0
    return g_w * g_b * lu.solve(rhs)[bit_last, :].T


def _exact_transfer(G: np.ndarray, r_w: float, r_b: float) -> np.ndarray:
    """Exact transfer matrix (see the module docstring)."""
    if r_w == 0.0 and r_b == 0.0:
        return G.copy()
    if r_b == 0.0:
        # Bit lines at 0 V: word lines are independent loaded chains.
        return G * _word_line_voltages(G, r_w)
    if r_w == 0.0:
        # Word lines at their source voltage: bit lines are independent loaded chains.
        return G * _bit_line_transmission(G, r_b)
    m, n = G.shape
    if n <= m:
        transfer = _exact_block_elimination(G, r_w, r_b)
    else:
        # Reciprocity: swapping the roles of sources and outputs gives the same
        # crossbar rotated by 180 degrees and transposed, with r_w and r_b swapped.
        rotated = _exact_block_elimination(np.ascontiguousarray(G[::-1, ::-1].T), r_b, r_w)
        transfer = None if rotated is None else np.ascontiguousarray(rotated[::-1, ::-1].T)
    if transfer is None:
        transfer = _sparse_transfer(G, r_w, r_b)
    return transfer


# ----------------------------------------------------------------------------------
# Fast transfer matrix
# ----------------------------------------------------------------------------------


def _fast_transfer(G: np.ndarray, r_w: float, r_b: float) -> np.ndarray:
    """Approximate transfer matrix from line solutions (see the module docstring)."""
    if r_w == 0.0 or r_b == 0.0:
        return _exact_transfer(G, r_w, r_b)  # independent chains: exact and as cheap
    m, n = G.shape
    # One scratch array for both chain solves and in-place updates elsewhere: at a
    # few microseconds per pass, touching fresh pages would cost as much as the maths.
    work = np.empty(2 * m * n)
    reach = _bit_line_transmission(G, r_b, work)
    # G times the bit line's driving-point resistance at each device's lower end.
    g_z = reach * (r_b * (m - np.arange(m, dtype=np.float64)))[:, None]
    g_z *= G
    g_eff = np.subtract(1.0, g_z)
    g_eff *= G  # the device in series with that resistance, to first order
    u = _word_line_voltages(g_eff, r_w, work)
    transfer = G * reach
    transfer *= u
    # First reflection of the sneak current. Of the current a device of the driven
    # row i injects into bit line j', the fraction 1 - reach - G Z_ii leaks into the
    # other word lines; they rise, and their devices push current back into the bit
    # lines. Mean field: the word line of a leaking row rises like the driven one,
    # r_w sum_j (min(j, j') + 1) I_j with the same current profile, which telescopes
    # to 1 - u[i, j'] (the driven line's own IR drop), times the conductance of the
    # rows' devices, here the column means weighted by where the driven row's
    # current flows. No further pass along the lines.
    device = np.multiply(g_eff, u, out=g_eff)
    total = device.sum(axis=1)
    g_push = np.divide(device @ G.mean(axis=0), total, out=np.zeros(m), where=total > 0.0)
    leak = np.subtract(1.0, reach, out=reach)
    leak -= g_z
    leak *= np.subtract(1.0, u, out=u)
    leak *= g_push[:, None]
    transfer += leak
    return transfer


def _chain_pivots(d: np.ndarray) -> None:
    """LAPACK ``dpttrf``'s pivots of many chains at once, in place: ``d[p]`` holds node ``p``
    of every chain (any shape after the first axis), the diagonal before and the pivot
    after. Off-diagonals are -1, so dpttrf's step ``d[p] - (e / d[p - 1]) e`` is
    ``d[p] - 1 / d[p - 1]`` with the same roundings (``e = -1``: the division and the
    product are exact negations, with or without a fused multiply-add), bit for bit
    (:func:`_chain_attenuations` runs dpttrf over the chains laid end to end, one node
    after the other; here a step covers a node of every chain)."""
    inv = np.empty(d.shape[1:])
    for p in range(1, d.shape[0]):
        np.divide(1.0, d[p - 1], out=inv)
        np.subtract(d[p], inv, out=d[p])


def fast_transfer_stack(G: np.ndarray, r_w: float, r_b: float) -> np.ndarray:
    """``NodalCrossbar(G[t], r_w, r_b, method="fast").transfer_matrix`` of every tile of a
    stack ``G`` ``(T, m, n)`` at once, bit for bit: :func:`_fast_transfer`'s element-wise
    steps run on the whole stack (the chains of all tiles in one ``dpttrf``, laid end to
    end with zero couplings at the seams, as the chains of one tile already are), and its
    two reductions per tile on the tile's own 2-D array (the row sums, and the product
    with the column means, a BLAS matrix-vector product). Saves the per-tile overhead of
    the ~30 array operations of a small tile. Returns a new ``(T, m, n)`` array.
    """
    G = np.asarray(G)
    if G.ndim != 3 or G.shape[0] == 0:
        raise ValueError(f"G must be a non-empty (T, m, n) stack, got shape {G.shape}")
    for t in range(G.shape[0]):
        _check_conductance(G[t])  # the checks and messages of NodalCrossbar
    G = np.ascontiguousarray(G, dtype=np.float64)  # read only: no copy of a float64 stack
    r_w, r_b = _check_resistance(r_w, "r_w"), _check_resistance(r_b, "r_b")
    if r_w == 0.0 or r_b == 0.0:
        return np.stack([_fast_transfer(g, r_w, r_b) for g in G])
    from .engine.native import programming

    lib = programming()
    if lib is not None:
        return _fast_transfer_stack_native(lib, G, r_w, r_b)
    T, m, n = G.shape
    # _bit_line_transmission of every tile: the chains are the (T n) bit lines, node i at
    # row i, so one row of the stack holds node i of every chain and the pivots advance a
    # row at a time over all chains at once (_chain_pivots); the suffix products of the
    # attenuations likewise (np.multiply.accumulate of the reversed chains).
    reach = np.multiply(G, r_b)
    reach += 2.0
    reach[:, 0, :] -= 1.0
    _chain_pivots(reach.reshape(T, m, n).transpose(1, 0, 2))
    np.reciprocal(reach, out=reach)
    for i in range(m - 2, -1, -1):
        np.multiply(reach[:, i + 1, :], reach[:, i, :], out=reach[:, i, :])
    g_z = reach * (r_b * (m - np.arange(m, dtype=np.float64)))[:, None]
    g_z *= G
    g_eff = np.subtract(1.0, g_z)
    g_eff *= G
    # _word_line_voltages of every tile: the chains are the (T m) word lines, numbered from
    # the open far end (column n - 1); held column-major so that a node of every chain is
    # one contiguous row.
    wl = np.multiply(g_eff.transpose(0, 2, 1), r_w, out=np.empty((T, n, m)))
    wl += 2.0
    wl[:, n - 1, :] -= 1.0
    _chain_pivots(wl[:, ::-1, :].transpose(1, 0, 2))
    np.reciprocal(wl, out=wl)
    for j in range(1, n):
        np.multiply(wl[:, j - 1, :], wl[:, j, :], out=wl[:, j, :])
    u = np.ascontiguousarray(wl.transpose(0, 2, 1))
    transfer = G * reach
    transfer *= u
    device = np.multiply(g_eff, u, out=g_eff)
    g_push = np.empty((T, m))
    for t in range(T):
        total = device[t].sum(axis=1)
        g_push[t] = np.divide(device[t] @ G[t].mean(axis=0), total, out=np.zeros(m), where=total > 0.0)
    leak = np.subtract(1.0, reach, out=reach)
    leak -= g_z
    leak *= np.subtract(1.0, u, out=u)
    leak *= g_push[:, :, None]
    transfer += leak
    return transfer


def _fast_transfer_stack_native(lib, G: np.ndarray, r_w: float, r_b: float) -> np.ndarray:
    """:func:`fast_transfer_stack` (checked float64 stack, both resistances > 0) with its
    element-wise steps and line solutions in C (``models/engine/ir_drop.c``: the same
    float operations in the same order) and its two reductions per tile here, as there."""
    T, m, n = G.shape
    transfer = np.empty((T, m, n))
    device, leak = _scratch((2, T, m, n))
    if lib.remeco_fast_transfer_lines(T, m, n, G.ctypes.data, r_w, r_b, transfer.ctypes.data, device.ctypes.data,
                                      leak.ctypes.data):
        raise MemoryError("fast IR drop: out of memory in the C code")
    g_push = np.empty((T, m))
    for t in range(T):
        total = device[t].sum(axis=1)
        g_push[t] = np.divide(device[t] @ G[t].mean(axis=0), total, out=np.zeros(m), where=total > 0.0)
    lib.remeco_fast_transfer_leak(T, m, n, leak.ctypes.data, g_push.ctypes.data, transfer.ctypes.data)
    return transfer


_SCRATCH = threading.local()
_SCRATCH_MAX = 1 << 22  # float64 elements kept between calls (32 MB)


def _scratch(shape: tuple[int, ...]) -> np.ndarray:
    """An uninitialised float64 array of ``shape``, reused by the next call of this thread
    (up to ``_SCRATCH_MAX`` elements): fresh pages for every tile stack cost about as much
    as the C arithmetic on them."""
    size = math.prod(shape)
    held = getattr(_SCRATCH, "buf", None)
    if held is None or held.size < size:
        held = np.empty(size)
        if size <= _SCRATCH_MAX:
            _SCRATCH.buf = held
    return held[:size].reshape(shape)


# ----------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------


class NodalCrossbar:
    """A programmed crossbar tile: IR drop solved once, any number of inputs after.

    The constructor computes the transfer matrix ``T`` (all the heavy work); each call
    of :meth:`output_currents` is then a matrix product ``V @ T``.

    Parameters
    ----------
    conductance:
        (m, n) device conductances in siemens, non-negative and finite; ``m`` word
        lines (inputs), ``n`` bit lines (outputs).
    r_word_line:
        Resistance of one word-line segment in ohm (non-negative, finite).
    r_bit_line:
        Resistance of one bit-line segment in ohm (non-negative, finite).
    method:
        ``"exact"`` (nodal analysis, about 1e-12 relative) or ``"fast"`` (line
        solutions with a sneak-path correction, error documented in the module
        docstring).

    Raises
    ------
    ValueError
        On a malformed or negative / non-finite conductance, a negative or non-finite
        resistance, or an unknown method.

    Examples
    --------
    >>> xb = NodalCrossbar(np.full((2, 3), 1e-5), 2.0, 2.0)
    >>> xb.output_currents(np.array([0.1, 0.2])).shape
    (3,)
    """

    def __init__(
        self,
        conductance: npt.ArrayLike,
        r_word_line: float,
        r_bit_line: float,
        method: str = "exact",
    ) -> None:
        self._conductance = _check_conductance(conductance)
        self._r_word_line = _check_resistance(r_word_line, "r_word_line")
        self._r_bit_line = _check_resistance(r_bit_line, "r_bit_line")
        self._method = _check_method(method)
        solve = _exact_transfer if method == "exact" else _fast_transfer
        transfer = solve(self._conductance, self._r_word_line, self._r_bit_line)
        # Read-only so that a caller cannot silently desynchronise T from G.
        transfer.flags.writeable = False
        self._conductance.flags.writeable = False
        self._transfer = transfer

    @property
    def transfer_matrix(self) -> np.ndarray:
        """(m, n) effective conductances in siemens: ``output_currents(V) == V @ T``.

        ``T[i, j]`` is the output current of bit line ``j`` per volt applied to word
        line ``i`` with all other inputs at 0 V. Read-only.
        """
        return self._transfer

    @property
    def conductance(self) -> np.ndarray:
        """(m, n) programmed device conductances in siemens (read-only copy)."""
        return self._conductance

    @property
    def shape(self) -> tuple[int, int]:
        """``(m, n)``: number of word lines and of bit lines."""
        return self._conductance.shape

    @property
    def r_word_line(self) -> float:
        """Resistance of one word-line segment in ohm."""
        return self._r_word_line

    @property
    def r_bit_line(self) -> float:
        """Resistance of one bit-line segment in ohm."""
        return self._r_bit_line

    @property
    def method(self) -> str:
        """``"exact"`` or ``"fast"``."""
        return self._method

    def output_currents(self, voltages: npt.ArrayLike) -> np.ndarray:
        """Output currents of the bit lines for a batch of word-line voltages.

        Parameters
        ----------
        voltages:
            (p, m) applied voltages in volts, one input vector per row, or a single
            (m,) vector.

        Returns
        -------
        numpy.ndarray
            (p, n) output currents in amperes, or (n,) for a 1-D input.

        Raises
        ------
        ValueError
            If ``voltages`` has the wrong shape or contains NaN or inf.
        """
        v, one_d = _check_voltages(voltages, self._conductance.shape[0])
        currents = v @ self._transfer
        return currents[0] if one_d else currents

    def __repr__(self) -> str:
        m, n = self.shape
        return (
            f"NodalCrossbar({m}x{n}, r_word_line={self._r_word_line!r}, "
            f"r_bit_line={self._r_bit_line!r}, method={self._method!r})"
        )


def output_currents(
    conductance: npt.ArrayLike,
    voltages: npt.ArrayLike,
    r_word_line: float,
    r_bit_line: float,
    method: str = "exact",
) -> np.ndarray:
    """Output currents of a crossbar with line resistance (one-shot convenience).

    For many inputs on one programmed tile, build a :class:`NodalCrossbar` once and
    call its :meth:`~NodalCrossbar.output_currents`; this function does both.

    Parameters
    ----------
    conductance:
        (m, n) device conductances in siemens, non-negative and finite.
    voltages:
        (p, m) voltages applied to the word lines in volts, or a single (m,) vector.
    r_word_line:
        Resistance of one word-line segment in ohm (non-negative, finite).
    r_bit_line:
        Resistance of one bit-line segment in ohm (non-negative, finite).
    method:
        ``"exact"`` or ``"fast"`` (see the module docstring).

    Returns
    -------
    numpy.ndarray
        (p, n) bit-line output currents in amperes, or (n,) for a 1-D input.

    Raises
    ------
    ValueError
        On malformed, negative or non-finite arguments or an unknown method; the
        message names the argument.
    """
    # Validate the cheap argument first so that a bad input never costs a solve.
    g = _check_conductance(conductance)
    _check_voltages(voltages, g.shape[0])
    return NodalCrossbar(g, r_word_line, r_bit_line, method).output_currents(voltages)
