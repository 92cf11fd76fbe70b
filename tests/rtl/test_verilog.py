"""Verilog generation: every block and the PE, lint-clean with the waiver list, which is minimal."""

from __future__ import annotations

import json
import re

import pytest

from remeco.rtl.verilog import VERILATOR_WAIVERS, LayerParams, generate, lint


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    out = tmp_path_factory.mktemp("verilog")
    return out, generate(out, LayerParams())


def test_generate_writes_every_block(generated):
    out, files = generated
    names = {p.stem for p in files}
    assert names == {f"remeco_{n}" for n in ("crossbar", "adc", "shift_add", "averager", "combine", "requant", "pe")}
    for p in files:
        assert re.search(rf"^module {p.stem}\(", p.read_text(), re.M)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["widths"] == LayerParams().widths()
    ports = manifest["modules"]["remeco_pe"]["ports"]
    assert ports["x__payload"] == {"flow": "In", "width": 8}
    assert ports["o__valid"]["flow"] == "Out"


@pytest.mark.sim
def test_lint_clean_with_waivers(generated):
    _, files = generated
    for p in files:
        clean, msg = lint(p)
        assert clean, f"{p.name}:\n{msg}"


@pytest.mark.sim
def test_every_waiver_is_needed(generated):
    _, files = generated
    for name in VERILATOR_WAIVERS:
        tripped = [p.name for p in files if f"%Warning-{name}" in lint(p, exclude=(name,))[1]]
        assert tripped, f"waiver {name} is not needed by any generated module; remove it"


def test_components_subset_and_unknown_name():
    from remeco.rtl.verilog import COMPONENT_NAMES, components

    comps = components(LayerParams(), ("requant", "adc"))
    assert list(comps) == ["requant", "adc"]
    for c in comps.values():
        c._MustUse__used = True  # built only to look at them
    with pytest.raises(ValueError, match="bogus"):
        components(LayerParams(), ("adc", "bogus"))
    assert COMPONENT_NAMES[-1] == "pe"


@pytest.mark.parametrize("field, value", [("neurons", 0), ("fan_in", 0), ("adc_shift", 33), ("max_copies_log2", 9)])
def test_layer_params_validate(field, value):
    with pytest.raises(ValueError, match=field):
        LayerParams(**{field: value})
