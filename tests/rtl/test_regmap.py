import re

import pytest

from remeco.rtl import regmap
from remeco.rtl.regmap import REGISTERS, Field, Register, by_offset, lookup, validate


def test_table_is_valid_aligned_and_lookups_agree():
    validate(REGISTERS)
    for r in REGISTERS:
        assert r.offset % 4 == 0
        assert lookup(r.name) is r
        assert by_offset(r.offset) is r
    assert len({r.offset for r in REGISTERS}) == len(REGISTERS)
    for name in ("ID", "CONTROL", "STATUS", "CYCLES_LO", "CYCLES_HI", "FAULT_SEED", "FAULT_RATE",
                 "FAULT_ON_FRACTION", "FAULT_CONTROL", "CODE_ON", "CODE_OFF", "LAYER_ADC_SHIFT",
                 "FAULT_WORDS", "LOAD_ADDRESS", "CAP_CODE_WORDS"):
        lookup(name)
    assert lookup("LAYER_ADC_SHIFT").width == 5  # the contract's adc_shift <= 31 on the fabric
    assert max(r.offset for r in REGISTERS) < 1 << regmap.ADDR_BITS


def test_invalid_offsets_have_no_register():
    used = {r.offset for r in REGISTERS}
    assert by_offset(0x2) is None  # misaligned
    assert by_offset(max(used) + 4) is None
    assert 0x1C not in used and by_offset(0x1C) is None  # a hole in the map
    with pytest.raises(KeyError, match="NOPE"):
        lookup("NOPE")


@pytest.mark.parametrize(
    "table, match",
    [
        ((Register("A", 0, "ro"), Register("B", 0, "rw")), "overlaps"),
        ((Register("A", 2, "ro"),), "aligned"),
        ((Register("A", 0, "ro"), Register("A", 4, "ro")), "duplicate"),
        ((Register("A", 0, "xx"),), "access"),
        ((Register("A", 0, "rw", width=40),), "width"),
        ((Register("A", 0, "rw", width=4, reset=16),), "reset"),
        ((Register("A", 0, "rw", width=4, fields=(Field("X", 3, 2),)),), "field X"),
        ((Register("A", 0, "rw", fields=(Field("X", 0, 2), Field("Y", 1))),), "overlaps"),
    ],
)
def test_validate_rejects_bad_tables(table, match):
    with pytest.raises(ValueError, match=match):
        validate(table)


def test_field_value():
    assert regmap.field_value("CONTROL", START=1) == 1
    assert regmap.field_value("FAULT_CONTROL", GENERATE=1, ENABLE=1) == 0b101
    with pytest.raises(ValueError, match="START"):
        regmap.field_value("CONTROL", START=2)


def test_markdown_lists_every_register_with_its_offset():
    md = regmap.to_markdown()
    for r in REGISTERS:
        assert re.search(rf"\| `0x{r.offset:03X}` \| {r.name} \| {r.access} \|", md), r.name
        for f in r.fields:
            assert f"{r.name}.{f.name}" in md
    # every table row has the same number of cells (pipes in descriptions are escaped)
    tables = [block.splitlines() for block in md.split("\n\n") if block.startswith("|")]
    assert len(tables) == 3  # registers, error codes, descriptor fields
    for rows, cells in zip(tables, (7, 4, 4)):
        assert {len(re.findall(r"(?<!\\)\|", line)) for line in rows} == {cells}
    for e in regmap.ERRORS:
        assert f"| {e.code} | {e.name} |" in md
    for f in regmap.DESCRIPTOR_FIELDS:
        assert f"| {f.name} |" in md


def test_error_codes_are_one_table():
    assert [e.code for e in regmap.ERRORS] == list(range(len(regmap.ERRORS)))
    assert (regmap.ERR_NONE, regmap.ERR_BAD_RUN, regmap.ERR_LOAD_RANGE, regmap.ERR_BUSY) == (0, 1, 2, 3)
    assert regmap.error_meaning(regmap.ERR_BUSY) == "command while busy"
    assert regmap.error_meaning(99) == "unknown"
    for e in regmap.ERRORS:  # the register's description is generated from the table
        assert f"{e.code} {e.description}" in lookup("ERROR_CODE").description


def test_descriptor_fields_match_the_fabric_words():
    from remeco.models.fabric import decode_descriptors

    word = 0
    values = {"SLICE": 5, "K": 3, "FIRST": 1, "LAST": 0, "END": 1}
    for name, v in values.items():
        word |= v << regmap.descriptor_field(name).lsb
    decoded = decode_descriptors([word])
    assert {k.upper(): int(v[0]) for k, v in decoded.items()} == values
    assert regmap.DESCRIPTOR_BITS == 11
    with pytest.raises(KeyError, match="NOPE"):
        regmap.descriptor_field("NOPE")


def test_c_header_defines_every_register():
    h = regmap.to_c_header(prefix="ACC_")
    assert h.startswith("/*") and "#ifndef ACC_REGMAP_H" in h and h.rstrip().endswith("*/")
    for r in REGISTERS:
        assert re.search(rf"#define ACC_{r.name} 0x{r.offset:03X}u", h), r.name
        for f in r.fields:
            assert f"#define ACC_{r.name}_{f.name}_MASK 0x{f.mask:X}u" in h
    assert "#define ACC_ERR_BUSY 3u" in h and "#define ACC_DESC_END_MASK 0x400u" in h
    assert f"#define REMECO_ID_RESET 0x{regmap.ID_VALUE:X}u" in regmap.to_c_header()


def test_main_writes_both_files(tmp_path, capsys):
    assert regmap.main([str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "regmap.md").read_text() == regmap.to_markdown()
    assert (tmp_path / "out" / "regmap.h").read_text() == regmap.to_c_header()
    assert "regmap.h" in capsys.readouterr().out


def test_regmap_does_not_import_amaranth():
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(regmap))
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert not any("amaranth" in n for n in names)


def test_committed_docs_are_generated_from_the_table():
    """docs/regmap.md and docs/regmap.h are what `python -m remeco.rtl.regmap docs` writes."""
    from pathlib import Path

    docs = Path(__file__).resolve().parents[2] / "docs"
    assert (docs / "regmap.md").read_text() == regmap.to_markdown(), "regenerate: python -m remeco.rtl.regmap docs"
    assert (docs / "regmap.h").read_text() == regmap.to_c_header(), "regenerate: python -m remeco.rtl.regmap docs"
