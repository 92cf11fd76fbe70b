"""The engine (remeco.models.engine) against the reference executor, bit for bit.

The reference is ``network.infer(executor="emulation")``, the readable statement of the
contract. Every fast path (the fused kernel on AMX-INT8 and on AVX-512 VNNI, the torch
path) must give the same int32 logits on LeNet-5 under every plan and chip variant, on
random networks with random formats and random cell codes (negative ones included), and
must fail the same way on bad input.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from remeco.models.chip import ChipParams
from remeco.models.emulation import EmulationFormat
from remeco.models.engine import Engine, infer as engine_infer, native
from remeco.models.engine.layout import native_supported
from remeco.models.network import ProgrammedNetwork, calibrate_adc_shifts, infer, map_network, program_network
from remeco.models.quantized import QuantizedLayer, QuantizedNetwork
from remeco.models.redundancy import PLAN_NAMES, RedundancyPlan, make_plan
from remeco.models.sensitivity import neuron_sensitivity


def _kernel_isas() -> list[str]:
    try:
        native.load()
    except native.KernelUnavailable:
        return []
    return ["vnni"] + (["amx"] if native.amx_available() else [])


#: (path, isa) pairs to check: the torch path always, the kernel's ISAs where they run.
PATHS = [("torch", None)] + [("native", isa) for isa in ("vnni", "amx")]


def _engine(mapped, path, isa):
    if path == "native" and isa not in _kernel_isas():
        pytest.skip(f"the kernel's {isa} path does not run on this machine")
    engine = Engine(mapped, path, isa=isa)
    assert engine.path == path and engine.isa == isa
    return engine


@pytest.fixture(scope="module")
def lenet(lenet5_small, mnist5k):
    model, net = lenet5_small
    train, test = mnist5k
    fmt = EmulationFormat()
    shifts = calibrate_adc_shifts(net, fmt, train.images[:100])
    sens = neuron_sensitivity(model, train.images[:64], train.labels[:64])
    sizes = [layer.out_features for layer in net.layers]
    plans = {name: make_plan(name, sizes, sens, n_slices=fmt.n_slices) for name in PLAN_NAMES}
    mapped = {name: map_network(net, plan, fmt, shifts) for name, plan in plans.items()}
    return mapped, test.images[:48]


@pytest.mark.parametrize("plan", PLAN_NAMES)
def test_every_plan_on_a_faulty_chip_matches_the_reference(lenet, plan):
    mapped, images = lenet
    m = mapped[plan]
    chip = program_network(m, ChipParams(), seed=0, instance=2)  # faults, D2D, IR-drop
    ref = infer(m, images, executor="emulation", programmed=chip)
    checked = 0
    for path, isa in PATHS:
        if path == "native" and isa not in _kernel_isas():
            continue
        out = Engine(m, path, isa=isa).infer(images, chip, batch_size=20)
        assert out.dtype == np.int32
        np.testing.assert_array_equal(out, ref, err_msg=f"{path}/{isa}")
        checked += 1
    assert checked >= 1


@pytest.mark.parametrize(
    "params",
    [
        ChipParams.ideal(),
        ChipParams(stuck_at_rate=0.2, d2d_sigma=0.3),
        ChipParams(ir_drop="none", wire_resistance=0.0),
        ChipParams(stuck_at_rate=0.05, stuck_on_fraction=0.0, write_verify=False),
    ],
    ids=["ideal", "many-faults", "no-ir-drop", "stuck-off-no-verify"],
)
@pytest.mark.parametrize("path,isa", PATHS)
def test_chip_variants_match_the_reference(lenet, params, path, isa):
    mapped, images = lenet
    m = mapped["sensitive_neuron"]  # copies on some neurons: exercises copy averaging
    engine = _engine(m, path, isa)
    for instance in (0, 7):
        chip = program_network(m, params, seed=3, instance=instance)
        np.testing.assert_array_equal(engine.infer(images[:24], chip),
                                      infer(m, images[:24], executor="emulation", programmed=chip))


def test_prepared_chip_is_reused_and_infer_helper_agrees(lenet):
    mapped, images = lenet
    m = mapped["committee"]
    chip = program_network(m, ChipParams(), seed=1, instance=0)
    ref = engine_infer(m, images, chip, engine="reference")
    np.testing.assert_array_equal(ref, infer(m, images, executor="emulation", programmed=chip))
    engine = Engine(m)
    prepared = engine.prepare(chip)
    # one preparation, several batches and orders: same logits
    np.testing.assert_array_equal(engine.infer(images, prepared), ref)
    np.testing.assert_array_equal(engine.infer(images[::-1], prepared), ref[::-1])
    np.testing.assert_array_equal(engine_infer(m, images, chip, engine="torch"), ref)


# ------------------------------------------------------------------ random networks


def _random_network(rng: np.random.Generator, conv_padding: int, stride: int) -> QuantizedNetwork:
    """conv (3 x 9 x 9 input) + max pool -> dense -> dense logits, random integers."""

    def layer(kind, k, n, input_shape, relu, **geo):
        weight = rng.integers(-127, 128, size=(k, n)).astype(np.int8)
        bias = rng.integers(-5000, 5000, size=n).astype(np.int32)
        mult, shift = (int(rng.integers(1 << 14, 1 << 15)), int(rng.integers(20, 26))) if relu else (0, 0)
        return QuantizedLayer(kind, weight, bias, (n, k), input_shape, geo.get("kernel", 1), geo.get("stride", 1),
                              geo.get("padding", 0), geo.get("pool", 1), 1.0, 1.0, 1.0, mult, shift, relu)

    c, h = 3, 9
    kernel, channels = 3, 7
    ho = (h + 2 * conv_padding - kernel) // stride + 1
    pool = 2 if ho % 2 == 0 else 1
    conv = layer("conv", c * kernel * kernel, channels, (c, h, h), True, kernel=kernel, stride=stride,
                 padding=conv_padding, pool=pool)
    flat = channels * (ho // pool) ** 2
    hidden = int(rng.integers(17, 40))
    dense = layer("dense", flat, hidden, (flat,), True)
    last = layer("dense", hidden, 5, (hidden,), False)
    return QuantizedNetwork("random", (c, h, h), 5, [conv, dense, last])


def _random_chip(rng: np.random.Generator, mapped) -> ProgrammedNetwork:
    fmt = mapped.fmt
    codes = []
    for _ in range(1 << mapped.plan.committee_log2):
        per_layer = []
        for m in mapped.layers:
            shape = (m.row_tiles, m.col_tiles, fmt.rows, fmt.cols)
            c = rng.integers(fmt.code_min, fmt.code_max + 1, size=shape)
            # extremes too: whole columns at the code range's ends
            c[..., 0] = fmt.code_max
            c[..., -1] = fmt.code_min
            per_layer.append(c.astype(np.int64))
        codes.append(tuple(per_layer))
    return ProgrammedNetwork((), tuple(codes))


FORMATS = [
    dict(),
    dict(rows=16, cols=24, adc_bits=5),
    dict(rows=40, cols=32, slice_bits=2, n_slices=4, code_bits=8, code_frac=3, adc_bits=6),
    dict(rows=64, cols=16, slice_bits=1, n_slices=8, code_bits=12, code_frac=6, adc_bits=10),
    dict(rows=100, cols=64, code_bits=15, code_frac=9, adc_bits=12),
    dict(rows=8, cols=8, slice_bits=8, n_slices=1, code_bits=14, code_frac=4, adc_bits=7),
]


def _random_mapped(rng, case: int, n_images: int):
    """A random network in format ``FORMATS[case]`` mapped with random copies per neuron
    and slice, ``n_images`` random images (the first all zeros: every plane skipped) and
    the ADC shifts: (mapped, images, shifts)."""
    fmt = EmulationFormat(**FORMATS[case])
    net = _random_network(rng, conv_padding=case % 2, stride=1 + (case % 3 == 2))
    images = rng.integers(0, 256, size=(n_images, *net.input_shape)).astype(np.uint8)
    images[0] = 0
    shifts = tuple(int(s) for s in rng.integers(0, 7, size=len(net.layers)))
    copies = tuple(rng.integers(0, 3, size=(layer.out_features, fmt.n_slices)) for layer in net.layers)
    mapped = map_network(net, RedundancyPlan("random", copies, committee_log2=int(case % 2)), fmt, shifts)
    return mapped, images, shifts


@pytest.mark.parametrize("case", range(len(FORMATS)))
@pytest.mark.parametrize("path,isa", PATHS)
def test_random_networks_formats_and_codes_match_the_reference(case, path, isa):
    rng = np.random.default_rng(100 + case)
    mapped, images, shifts = _random_mapped(rng, case, 13)
    if path == "native" and any(native_supported(m, s) for m, s in zip(mapped.layers, shifts)):
        pytest.skip("format outside the kernel's exact range")
    engine = _engine(mapped, path, isa)
    chip = _random_chip(rng, mapped)
    try:
        ref = infer(mapped, images, executor="emulation", programmed=chip)
    except OverflowError:
        with pytest.raises(OverflowError):
            engine.infer(images, chip)
        return
    np.testing.assert_array_equal(engine.infer(images, chip, batch_size=5), ref)


@pytest.mark.parametrize("case", range(len(FORMATS)))
@pytest.mark.parametrize("tables", ["every layer", "int32 entries", "none"])
def test_vnni_column_sum_tables_on_and_off_match_the_reference(case, tables, monkeypatch):
    """The VNNI path's column sums from tables of 8-row input patterns (layout.lut_tables;
    int16 entries where every sum fits, else int32) and from vpdpwssd per row pair: all
    the reference's logits, on random formats (tiles of 8 to 100 rows, partial 8-row
    groups) and codes at the range's ends."""
    from remeco.models.engine import core

    if "vnni" not in _kernel_isas():
        pytest.skip("no kernel here")
    monkeypatch.delenv("REMECO_NO_LUT", raising=False)
    monkeypatch.delenv("REMECO_LUT_I32", raising=False)
    if tables == "none":
        monkeypatch.setenv("REMECO_NO_LUT", "1")
    else:
        monkeypatch.setattr(core, "LUT_MAX_BYTES", 1 << 40)
    if tables == "int32 entries":
        monkeypatch.setenv("REMECO_LUT_I32", "1")
    rng = np.random.default_rng(300 + case)
    mapped, images, shifts = _random_mapped(rng, case, 11)
    images[1, :, ::2] = 0  # zero groups between non-zero ones
    if any(native_supported(m, s) for m, s in zip(mapped.layers, shifts)):
        pytest.skip("format outside the kernel's exact range")
    engine = _engine(mapped, "native", "vnni")
    chip = _random_chip(rng, mapped)
    prepared = engine.prepare(chip)
    used = [layer.struct.lut_rows for layers in prepared.copies for layer in layers]
    assert used == [0 if tables == "none" else 8] * len(used)
    narrow = [layer.struct.lut_i16 for layers in prepared.copies for layer in layers]
    if tables != "every layer":
        assert not any(narrow)
    elif case == 0:  # 10-bit codes: eight of them sum within int16
        assert all(narrow)
    try:
        ref = infer(mapped, images, executor="emulation", programmed=chip)
    except OverflowError:
        with pytest.raises(OverflowError):
            engine.infer(images, prepared)
        return
    np.testing.assert_array_equal(engine.infer(images, prepared, batch_size=4), ref)


def test_paper_lenet_shapes_match_the_reference(mnist5k):
    """The paper's LeNet (865,858 parameters; fan-ins up to 3,136: 25 row tiles, 32 column
    blocks) after a token training: every path gives the reference's logits."""
    from remeco.models import nn as rn

    train, test = mnist5k
    net = rn.export(rn.train("lenet_paper", train.subset(range(64)), epochs=1, seed=0, threads=1))
    fmt = EmulationFormat()
    shifts = calibrate_adc_shifts(net, fmt, train.images[:32])
    sizes = [layer.out_features for layer in net.layers]
    images = test.images[:3]
    for plan in ("layer_averaging",):  # copies of every column: averaging by index on top of base
        mapped = map_network(net, make_plan(plan, sizes, n_slices=fmt.n_slices), fmt, shifts)
        assert max(layer.row_tiles for layer in mapped.layers) >= 25
        chip = program_network(mapped, ChipParams(), seed=0, instance=1)
        ref = infer(mapped, images, executor="emulation", programmed=chip)
        for path, isa in PATHS:
            if path == "native" and isa not in _kernel_isas():
                continue
            np.testing.assert_array_equal(Engine(mapped, path, isa=isa).infer(images, chip), ref, err_msg=f"{plan} {path}/{isa}")


def test_accumulator_overflow_is_an_error_like_the_reference():
    rng = np.random.default_rng(5)
    k, n = 16, 3
    weight = np.full((k, n), 127, np.int8)
    bias = np.full(n, np.iinfo(np.int32).max - k * 255 * 127, np.int32)
    last = QuantizedLayer("dense", weight, bias, (n, k), (k,), 1, 1, 0, 1, 1.0, 1.0, 1.0, 0, 0, False)
    net = QuantizedNetwork("overflow", (1, 4, 4), n, [last])
    fmt = EmulationFormat(adc_bits=16)  # no clamping: cells at code_max weigh ~415, not 127
    mapped = map_network(net, make_plan("base", [n]), fmt, (0,))
    chip = _random_chip(rng, mapped)
    chip = ProgrammedNetwork((), tuple(tuple(np.full_like(c, fmt.code_max) for c in cs) for cs in chip.codes))
    images = np.full((2, 1, 4, 4), 255, np.uint8)
    with pytest.raises(OverflowError):
        infer(mapped, images, executor="emulation", programmed=chip)
    for path, isa in PATHS:
        if path == "native" and isa not in _kernel_isas():
            continue
        with pytest.raises(OverflowError):
            Engine(mapped, path, isa=isa).infer(images, chip)


# ------------------------------------------------------------------ bad input


def test_bad_images_and_chips_are_one_line_errors(lenet):
    mapped, images = lenet
    m = mapped["base"]
    chip = program_network(m, ChipParams(), seed=0, instance=0)
    engine = Engine(m)
    with pytest.raises(ValueError, match="uint8"):
        engine.infer(images.astype(np.float32), chip)
    with pytest.raises(ValueError, match="shape"):
        engine.infer(images[:, :, :10], chip)
    assert engine.infer(images[:0], chip).shape == (0, m.network.num_classes)
    two = mapped["committee"]
    with pytest.raises(ValueError, match="committee copies"):
        Engine(two).prepare(chip)
    with pytest.raises(ValueError, match="engine"):
        engine_infer(m, images, chip, engine="fast")
    with pytest.raises(ValueError, match="isa"):
        Engine(m, isa="sse")


@pytest.mark.parametrize("path,isa", PATHS)
def test_inputs_wider_than_input_bits_fail_like_the_reference(path, isa):
    rng = np.random.default_rng(9)
    fmt = EmulationFormat(input_bits=4)
    net = _random_network(rng, conv_padding=0, stride=1)
    mapped = map_network(net, make_plan("base", [layer.out_features for layer in net.layers]), fmt, (0, 0, 0))
    engine = _engine(mapped, path, isa)
    chip = _random_chip(rng, mapped)
    images = np.full((2, *net.input_shape), 16, np.uint8)
    with pytest.raises(ValueError):
        infer(mapped, images, executor="emulation", programmed=chip)
    with pytest.raises(ValueError):
        engine.infer(images, chip)


def test_without_the_kernel_the_engine_falls_back_to_torch_with_one_line():
    code = (
        "from remeco.models.engine import Engine, resolve_path, native\n"
        "print(resolve_path('native'))\n"
        "print(native.amx_available())\n"
    )
    env = {**os.environ, "REMECO_NO_KERNEL": "1"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["torch", "False"]
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "REMECO_NO_KERNEL" in lines[0]


def test_amx_can_be_turned_off(monkeypatch):
    if not _kernel_isas():
        pytest.skip("no kernel here")
    monkeypatch.setenv("REMECO_NO_AMX", "1")
    assert not native.amx_available()
    net = _random_network(np.random.default_rng(1), 0, 1)
    mapped = map_network(net, make_plan("base", [layer.out_features for layer in net.layers]), EmulationFormat(),
                         (2, 2, 2))
    assert Engine(mapped).isa == "vnni"
    with pytest.raises(ValueError, match="AMX"):
        Engine(mapped, isa="amx")
