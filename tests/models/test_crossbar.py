"""Tests of remeco.models.crossbar against closed forms, an independent dense nodal
solver, badcrossbar and ngspice."""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import warnings

import numpy as np
import pytest

from remeco.models import crossbar
from remeco.models.crossbar import NodalCrossbar, output_currents

# A stress range, 5x the default devices' conductance (0.5..10 uS, 16 levels): IR-drop
# effects are larger here than with DeviceParams(), so accuracy bounds hold a fortiori.
LEVELS = np.linspace(0.5e-6, 10e-6, 16)


def random_tile(seed: int, m: int, n: int, p: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """A random programmed tile and ``p`` read-voltage vectors in 0..0.2 V."""
    rng = np.random.default_rng(seed)
    return rng.choice(LEVELS, size=(m, n)), rng.uniform(0.0, 0.2, size=(p, m))


def max_rel(a: np.ndarray, b: np.ndarray) -> float:
    """Largest element-wise relative difference of ``a`` from the reference ``b``."""
    return float(np.max(np.abs(a - b) / np.abs(b)))


def dense_nodal(G: np.ndarray, V: np.ndarray, r_w: float, r_b: float) -> np.ndarray:
    """Independent reference: KCL written node by node, dense solve, positive r only.

    Unknowns: word-line node (i, j) -> i*n + j, bit-line node (i, j) -> m*n + i*n + j.
    """
    m, n = G.shape
    N = 2 * m * n
    A = np.zeros((N, N))
    word = lambda i, j: i * n + j  # noqa: E731
    bit = lambda i, j: m * n + i * n + j  # noqa: E731

    def conductor(a, b, g):
        """Stamp conductance g between nodes a and b (b None: a fixed-potential node)."""
        A[a, a] += g
        if b is not None:
            A[b, b] += g
            A[a, b] -= g
            A[b, a] -= g

    for i in range(m):
        for j in range(n):
            conductor(word(i, j), bit(i, j), G[i, j])
            if j > 0:
                conductor(word(i, j), word(i, j - 1), 1 / r_w)
            if i > 0:
                conductor(bit(i, j), bit(i - 1, j), 1 / r_b)
        conductor(word(i, 0), None, 1 / r_w)  # the source end
    for j in range(n):
        conductor(bit(m - 1, j), None, 1 / r_b)  # the grounded end
    out = []
    for v in np.atleast_2d(V):
        b = np.zeros(N)
        b[[word(i, 0) for i in range(m)]] = v / r_w
        x = np.linalg.solve(A, b)
        out.append(x[[bit(m - 1, j) for j in range(n)]] / r_b)
    return np.array(out)


@pytest.fixture(scope="module")
def badcrossbar():
    """The badcrossbar oracle, imported without leaking its global side effects.

    Its import adds an "always" filter for ImportWarning (which defeats the project's
    filter for its missing-Cairo warning) and a stdout handler at INFO on the root
    logger; both are undone here.
    """
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    with warnings.catch_warnings(record=True):  # recorded and dropped, filters restored
        module = pytest.importorskip("badcrossbar")
    for handler in root.handlers[len(handlers) :]:
        root.removeHandler(handler)
    root.setLevel(level)
    return module


def oracle(bc, G, V, r_w, r_b):
    """Output currents from badcrossbar, (p, n)."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.WARNING)  # badcrossbar logs every stage at INFO
    try:
        sol = bc.compute(V.T, 1.0 / G, r_i_word_line=r_w, r_i_bit_line=r_b, node_voltages=False, all_currents=False)
    finally:
        root.setLevel(level)
    return np.atleast_2d(sol.currents.output)


# ----------------------------------------------------------------------------------
# Closed forms
# ----------------------------------------------------------------------------------


@pytest.mark.parametrize("method", crossbar.METHODS)
@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (9, 1), (7, 5), (5, 7)])
def test_zero_wire_resistance_gives_ideal_dot_product_exactly(method, shape):
    G, V = random_tile(1, *shape)
    xb = NodalCrossbar(G, 0.0, 0.0, method=method)
    assert np.array_equal(xb.transfer_matrix, G)
    assert np.array_equal(output_currents(G, V, 0, 0, method=method), V @ G)


@pytest.mark.parametrize("method", crossbar.METHODS)
@pytest.mark.parametrize("r_w, r_b", [(2.0, 2.0), (0.0, 3.0), (5.0, 0.0), (1e3, 1e4)])
def test_single_cell_closed_form(method, r_w, r_b):
    G = np.array([[7.3e-6]])
    V = np.array([[0.2], [-0.05], [0.0]])
    expected = V / (r_w + 1.0 / G[0, 0] + r_b)
    np.testing.assert_allclose(output_currents(G, V, r_w, r_b, method=method), expected, rtol=1e-13, atol=0)


def test_one_word_line_two_bit_lines_by_hand():
    # source -r_w- a -r_w- c ; a -1/G1- b1 -r_b- ground ; c -1/G2- b2 -r_b- ground
    g1, g2, r_w, r_b, v = 4e-6, 9e-6, 3.0, 2.0, 0.15
    r1 = 1 / g1 + r_b
    r2 = r_w + 1 / g2 + r_b
    r_par = r1 * r2 / (r1 + r2)
    v_a = v * r_par / (r_w + r_par)
    expected = np.array([v_a / r1, v_a / r2])
    G = np.array([[g1, g2]])
    for method in crossbar.METHODS:  # one word line: the fast method is exact too
        np.testing.assert_allclose(output_currents(G, np.array([v]), r_w, r_b, method=method), expected, rtol=1e-13)


@pytest.mark.parametrize("shape, r_w, r_b", [((3, 4), 2.0, 2.0), ((4, 3), 1.0, 4.0), ((2, 2), 50.0, 0.5), ((5, 1), 2.0, 3.0)])
def test_exact_matches_independent_dense_nodal_solver(shape, r_w, r_b):
    G, V = random_tile(2, *shape)
    # Large r: make the IR drop big enough that a wrong topology cannot hide.
    r_w, r_b = 1e3 * r_w, 1e3 * r_b
    np.testing.assert_allclose(output_currents(G, V, r_w, r_b), dense_nodal(G, V, r_w, r_b), rtol=1e-11, atol=0)


def test_transfer_matrix_rows_are_unit_input_responses_and_superpose():
    G, V = random_tile(3, 6, 5, p=2)
    r_w, r_b = 800.0, 1200.0
    T = NodalCrossbar(G, r_w, r_b).transfer_matrix
    np.testing.assert_allclose(T, dense_nodal(G, np.eye(6), r_w, r_b), rtol=1e-11, atol=0)
    # Superposition, checked against the independent solver on the combined input.
    a, b = 0.7, -1.9
    combined = dense_nodal(G, a * V[0] + b * V[1], r_w, r_b)[0]
    np.testing.assert_allclose(a * (V[0] @ T) + b * (V[1] @ T), combined, rtol=1e-10, atol=1e-22)


def test_reciprocity_rotated_transposed_crossbar():
    # Swapping sources and outputs (reciprocity) maps the crossbar onto itself
    # rotated by 180 degrees and transposed, with the wire resistances swapped.
    G, _ = random_tile(4, 13, 6)
    T = NodalCrossbar(G, 2.0, 5.0).transfer_matrix
    T_rot = NodalCrossbar(G[::-1, ::-1].T, 5.0, 2.0).transfer_matrix
    np.testing.assert_allclose(T_rot[::-1, ::-1].T, T, rtol=1e-12, atol=0)
    assert np.all(T < G)  # IR drop only ever lowers the effective conductance here


def test_sneak_paths_give_off_devices_nonzero_effective_conductance():
    G = np.full((3, 3), 1e-3)
    G[1, 1] = 0.0
    T = NodalCrossbar(G, 10.0, 10.0).transfer_matrix
    assert T[1, 1] > 0.0  # current reaches column 1 around the open device
    np.testing.assert_allclose(T, dense_nodal(G, np.eye(3), 10.0, 10.0), rtol=1e-11, atol=1e-22)


@pytest.mark.parametrize("method", crossbar.METHODS)
def test_open_rows_and_columns_stay_finite(method):
    G, V = random_tile(13, 6, 5)
    G[2, :] = 0.0
    G[:, 3] = 0.0
    I = NodalCrossbar(G, 500.0, 700.0, method=method).output_currents(V)
    assert np.all(np.isfinite(I))
    np.testing.assert_allclose(I[:, 3], 0.0, atol=0)  # nothing can reach an open column
    if method == "exact":
        np.testing.assert_allclose(I, dense_nodal(G, V, 500.0, 700.0), rtol=1e-11, atol=1e-22)


# ----------------------------------------------------------------------------------
# Oracles
# ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape, r_w, r_b",
    [
        ((16, 16), 2.0, 2.0),
        ((40, 23), 2.0, 2.0),
        ((23, 40), 1.5, 3.0),
        ((1, 33), 2.0, 2.0),
        ((33, 1), 2.0, 2.0),
        ((64, 64), 2.0, 2.0),
        ((24, 24), 5.0, 0.0),
        ((24, 24), 0.0, 5.0),
    ],
)
def test_exact_agrees_with_badcrossbar(badcrossbar, shape, r_w, r_b):
    G, V = random_tile(5 + shape[0] + 7 * shape[1], *shape, p=8)
    ours = NodalCrossbar(G, r_w, r_b).output_currents(V)
    assert max_rel(ours, oracle(badcrossbar, G, V, r_w, r_b)) <= 1e-9


def test_sparse_fallback_agrees_with_badcrossbar(badcrossbar, monkeypatch):
    # The block elimination is replaced by the sparse LU whenever a Cholesky factor
    # breaks down; force that path for both orientations.
    monkeypatch.setattr(crossbar, "_exact_block_elimination", lambda *args: None)
    for shape in [(12, 7), (7, 12)]:
        G, V = random_tile(6, *shape)
        assert max_rel(output_currents(G, V, 2.0, 3.0), oracle(badcrossbar, G, V, 2.0, 3.0)) <= 1e-9


def spice_currents(G: np.ndarray, V: np.ndarray, r_w: float, r_b: float, workdir) -> np.ndarray:
    """Output currents from an ngspice operating point of the crossbar netlist."""
    m, n = G.shape
    lines = ["crossbar"]
    for i in range(m):
        lines.append(f"VIN{i} src{i} 0 DC 0")
        for j in range(n):
            left = f"src{i}" if j == 0 else f"w{i}_{j - 1}"
            lines.append(f"RW{i}_{j} {left} w{i}_{j} {r_w:.17g}")
            lines.append(f"RD{i}_{j} w{i}_{j} b{i}_{j} {1.0 / G[i, j]:.17g}")
            below = f"b{i + 1}_{j}" if i < m - 1 else f"gnd{j}"
            lines.append(f"RB{i}_{j} b{i}_{j} {below} {r_b:.17g}")
    # 0 V sources measure the current of each bit line into ground.
    lines += [f"VOUT{j} gnd{j} 0 DC 0" for j in range(n)]
    lines += [".control", "set numdgt=15"]
    for v in V:
        lines += [f"alter VIN{i} dc = {v[i]:.17g}" for i in range(m)]
        lines += ["op", "print " + " ".join(f"i(VOUT{j})" for j in range(n))]
    lines += [".endc", ".end"]
    netlist = workdir / "crossbar.cir"
    netlist.write_text("\n".join(lines) + "\n")
    run = subprocess.run(["ngspice", "-b", str(netlist)], capture_output=True, text=True, timeout=60, cwd=workdir)
    values = [float(x) for x in re.findall(r"^i\(vout\d+\)\s*=\s*(\S+)", run.stdout, flags=re.M | re.I)]
    assert len(values) == V.shape[0] * n, run.stdout + run.stderr
    return np.array(values).reshape(V.shape[0], n)


@pytest.mark.skipif(shutil.which("ngspice") is None, reason="ngspice binary not found (apt-get install ngspice)")
@pytest.mark.parametrize("shape", [(4, 3), (3, 4)])
def test_exact_agrees_with_ngspice(tmp_path, shape):
    G, V = random_tile(7, *shape, p=3)
    V[2] = 0.0
    V[2, 1] = 0.2  # one input alone
    r_w, r_b = 2.0e3, 3.0e3  # large, so that the IR drop is far above SPICE's precision
    spice = spice_currents(G, V, r_w, r_b, tmp_path)
    assert max_rel(output_currents(G, V, r_w, r_b), spice) <= 1e-9


# ----------------------------------------------------------------------------------
# Fast method
# ----------------------------------------------------------------------------------


def test_fast_error_bound_at_128_with_2_ohm():
    # Documented in the module docstring: mean 0.04 %, max 0.07 % on column currents.
    G, V = random_tile(8, 128, 128, p=256)
    exact = NodalCrossbar(G, 2.0, 2.0).output_currents(V)
    fast = NodalCrossbar(G, 2.0, 2.0, method="fast").output_currents(V)
    ideal = V @ G
    rel = np.abs(fast - exact) / np.abs(exact)
    assert rel.mean() <= 1e-3
    assert rel.max() <= 2e-3
    # ... while ignoring IR drop is off by more than 10 %: the bound is not vacuous.
    assert np.mean(np.abs(ideal - exact) / np.abs(exact)) > 0.1


def structured_tile(kind: str) -> np.ndarray:
    """128 x 128 tiles with strongly non-uniform rows, columns or regions."""
    G = np.full((128, 128), LEVELS[0])
    if kind == "rows":
        G[::8, :] = LEVELS[-1]
    elif kind == "columns":
        G[:, ::8] = LEVELS[-1]
    else:
        G[:64, :64] = LEVELS[-1]
    return G


@pytest.mark.parametrize("kind", ["rows", "columns", "quadrant"])
def test_fast_error_on_structured_tiles(kind):
    # Documented: mean column error 0.005 % to 0.1 % on structured 128 x 128 tiles.
    G = structured_tile(kind)
    V = np.random.default_rng(12).uniform(0.0, 0.2, size=(64, 128))
    exact = NodalCrossbar(G, 2.0, 2.0).output_currents(V)
    fast = NodalCrossbar(G, 2.0, 2.0, method="fast").output_currents(V)
    assert np.mean(np.abs(fast - exact) / np.abs(exact)) <= 2e-3


@pytest.mark.parametrize("shape, r_w, r_b", [((30, 20), 0.0, 4.0), ((30, 20), 4.0, 0.0), ((1, 50), 30.0, 40.0)])
def test_fast_is_exact_when_one_wire_is_ideal_or_for_one_word_line(shape, r_w, r_b):
    G, V = random_tile(9, *shape)
    exact = NodalCrossbar(G, r_w, r_b).output_currents(V)
    assert max_rel(NodalCrossbar(G, r_w, r_b, method="fast").output_currents(V), exact) <= 1e-12


# ----------------------------------------------------------------------------------
# API
# ----------------------------------------------------------------------------------


@pytest.mark.parametrize("method", crossbar.METHODS)
def test_nodal_crossbar_and_output_currents_agree(method):
    G, V = random_tile(10, 9, 6)
    xb = NodalCrossbar(G, 2.0, 3.0, method=method)
    assert xb.shape == (9, 6) and xb.method == method
    assert xb.r_word_line == 2.0 and xb.r_bit_line == 3.0
    np.testing.assert_array_equal(xb.output_currents(V), output_currents(G, V, 2.0, 3.0, method=method))
    np.testing.assert_allclose(xb.output_currents(V), V @ xb.transfer_matrix, rtol=1e-14)
    one = xb.output_currents(V[0])
    assert one.shape == (6,)
    np.testing.assert_allclose(one, xb.output_currents(V[:1])[0], rtol=1e-14)
    assert xb.output_currents(np.zeros((0, 9))).shape == (0, 6)


def test_transfer_matrix_is_read_only_and_input_is_copied():
    G, _ = random_tile(11, 4, 4)
    xb = NodalCrossbar(G, 2.0, 2.0)
    with pytest.raises(ValueError):
        xb.transfer_matrix[0, 0] = 1.0
    before = xb.transfer_matrix.copy()
    G[:] = 1.0  # the caller's array is not the tile's
    np.testing.assert_array_equal(xb.transfer_matrix, before)


G_OK = np.full((3, 2), 1e-5)
V_OK = np.full((4, 3), 0.1)


def _with(index, value, base):
    arr = base.copy()
    arr[index] = value
    return arr


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(conductance=np.full(3, 1e-5)), "conductance"),
        (dict(conductance=np.full((2, 3, 2), 1e-5)), "conductance"),
        (dict(conductance=np.zeros((0, 3))), "conductance"),
        (dict(conductance=_with((0, 1), -1e-6, G_OK)), "conductance"),
        (dict(conductance=_with((2, 0), np.nan, G_OK)), "conductance"),
        (dict(conductance=_with((1, 1), np.inf, G_OK)), "conductance"),
        (dict(conductance=np.full((3, 2), "x")), "conductance"),
        (dict(r_word_line=-1.0), "r_word_line"),
        (dict(r_word_line=np.inf), "r_word_line"),
        (dict(r_word_line=[2.0]), "r_word_line"),
        (dict(r_bit_line=-0.5), "r_bit_line"),
        (dict(r_bit_line=np.nan), "r_bit_line"),
        (dict(voltages=np.full((4, 2), 0.1)), "voltages"),
        (dict(voltages=np.full((2, 4, 3), 0.1)), "voltages"),
        (dict(voltages=_with((1, 2), np.nan, V_OK)), "voltages"),
        (dict(voltages=_with((0, 0), -np.inf, V_OK)), "voltages"),
        (dict(method="spice"), "method"),
        (dict(method=None), "method"),
    ],
    ids=lambda x: x if isinstance(x, str) else None,
)
def test_bad_input_raises_value_error_naming_the_argument(kwargs, name):
    args = dict(conductance=G_OK, voltages=V_OK, r_word_line=2.0, r_bit_line=2.0, method="exact")
    args.update(kwargs)
    with pytest.raises(ValueError, match=name):
        output_currents(**args)
    if name != "voltages":
        with pytest.raises(ValueError, match=name):
            NodalCrossbar(args["conductance"], args["r_word_line"], args["r_bit_line"], method=args["method"])
    else:
        with pytest.raises(ValueError, match=name):
            NodalCrossbar(G_OK, 2.0, 2.0).output_currents(args["voltages"])


def test_fast_transfer_of_a_stack_is_each_tile_bit_for_bit():
    """fast_transfer_stack (programming's batched IR-drop) gives every tile the bits of
    NodalCrossbar(..., method="fast") alone: shapes with one row or column, zero devices."""
    from remeco.models.crossbar import fast_transfer_stack

    rng = np.random.default_rng(4)
    for shape in [(5, 7, 3), (2, 1, 4), (3, 16, 1), (4, 64, 48)]:
        G = rng.uniform(0.0, 2e-6, shape)
        G[0, 0, 0] = 0.0
        G[-1, :, -1] = 0.0  # a whole bit line of zeros: no current, the where= branch
        for r_w, r_b in [(2.0, 1.5), (0.3, 3.0), (0.0, 2.0)]:
            want = np.stack([NodalCrossbar(g, r_w, r_b, method="fast").transfer_matrix for g in G])
            got = fast_transfer_stack(G, r_w, r_b)
            assert got.shape == want.shape
            assert np.array_equal(got.view(np.int64), want.view(np.int64))
    with pytest.raises(ValueError, match="non-negative"):
        fast_transfer_stack(-G, 2.0, 2.0)


@pytest.mark.parametrize("seed", range(4))
def test_fast_transfer_stack_in_c_equals_the_numpy_steps_bit_for_bit(seed, monkeypatch):
    """The C line solutions of fast_transfer_stack (models/engine/ir_drop.c) against its
    numpy steps (REMECO_NO_NATIVE_PROGRAMMING=1) on random stacks: device-scale and
    zero conductances, square and oblong tiles, low and high wire resistances."""
    from remeco.models.crossbar import fast_transfer_stack
    from remeco.models.engine import native

    if native.programming() is None:
        pytest.skip("the C programming code is not available here")
    rng = np.random.default_rng([seed, 11])
    for shape in [(3, 128, 128), (2, 33, 70), (1, 70, 33), (5, 9, 1), (2, 1, 9)]:
        G = rng.uniform(1e-7, 2e-6, shape)
        G[rng.random(shape) < 0.05] = 0.0
        for r_w, r_b in [(2.33, 1.88), (1e-3, 40.0), (40.0, 1e-3), tuple(rng.uniform(0.1, 10.0, 2))]:
            got = fast_transfer_stack(G, r_w, r_b)
            monkeypatch.setenv("REMECO_NO_NATIVE_PROGRAMMING", "1")
            want = fast_transfer_stack(G, r_w, r_b)
            monkeypatch.delenv("REMECO_NO_NATIVE_PROGRAMMING")
            assert got.shape == want.shape
            assert np.array_equal(got.view(np.int64), want.view(np.int64)), (shape, r_w, r_b)
