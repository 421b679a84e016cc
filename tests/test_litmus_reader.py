"""The herdtools7 litmus reader: every corpus file it accepts, and errors naming file and line."""

from __future__ import annotations

from pathlib import Path

import pytest
from litmus_corpus import corpus

from litmus.errors import LitmusSyntaxError
from litmus.syntax import And, Atom, Quantifier, Symbol, Var, parse_test, read_test

# Files of the corpus written in forms the reader refuses on purpose, with the line it names.
REFUSED = {
    "aarch64/MP+rel+CSEL-addr.litmus": 1,  # the file holds only a path (a symbolic link's text)
}


def _all_files() -> list[str]:
    root = corpus()
    return sorted(str(p.relative_to(root)) for p in root.rglob("*.litmus"))


def test_the_corpus_is_there() -> None:
    assert len(list(corpus("bpf").glob("*.litmus"))) == 120
    assert len(list(corpus("aarch64").glob("*.litmus"))) == 80


@pytest.mark.parametrize("name", _all_files())
def test_every_corpus_file_is_read_or_refused_with_its_line(name: str) -> None:
    path = corpus(name)
    if name in REFUSED:
        with pytest.raises(LitmusSyntaxError) as err:
            read_test(path)
        assert err.value.path == str(path) and err.value.lineno == REFUSED[name]
        return
    test = read_test(path)
    assert test.threads and all(test.threads), name
    assert test.name and test.arch in ("BPF", "AArch64", "RISCV", "X86", "X86_64")


def test_a_test_is_read_field_by_field() -> None:
    test = read_test(corpus("bpf", "X+addr-reads+corr-writes+data-rw.litmus"))
    assert test.arch == "BPF" and test.name == "X+addr-reads+corr-writes+data-rw"
    assert test.init[Var(None, "x")] == Symbol("z") and test.init[Var(0, "r1")] == Symbol("y")
    assert [len(t) for t in test.threads] == [5, 2, 2]
    assert test.threads[0][0].text == "r2 = *(u32 *)(r1 + 0)" and test.threads[0][0].lineno == 20
    assert test.quantifier is Quantifier.EXISTS
    assert test.condition == And(
        (
            Atom(Var(0, "r2"), Symbol("y")),
            Atom(Var(0, "r3"), Symbol("z")),
            Atom(Var(2, "r2"), Symbol("y")),
            Atom(Var(None, "x"), Symbol("y")),
        )
    )
    assert test.observed()[:4] == [Var(0, "r2"), Var(0, "r4"), Var(2, "r2"), Var(None, "y")]


GOOD = "BPF T\n{\n0:r1=x;\n}\n P0 ;\n r0 = 1 ;\nexists (0:r0=1)\n"


@pytest.mark.parametrize(
    ("text", "line", "expected"),
    [
        ("", 1, "header"),
        ("BPF\n{}\n", 1, "header"),
        ("BPF T\n0:r1=x;\n", 2, "initial state"),
        ("BPF T\n{\n0:r1=x;\n", 2, "never closed"),
        ("BPF T\n{\n0:r1=(x);\n}\n P0 ;\n r0 = 1 ;\nexists (0:r0=1)\n", 3, "integer or a location"),
        ("BPF T\n{}\n P1 ;\n r0 = 1 ;\nexists (0:r0=1)\n", 3, "'P0'"),
        ("BPF T\n{}\n P0 ;\n r0 = 1 | r1 = 2 ;\nexists (0:r0=1)\n", 4, "columns"),
        ("BPF T\n{}\n P0 ;\n r0 = 1 ;\n", 5, "final condition"),
        ("BPF T\n{}\n P0 ;\n r0 = 1 ;\nexists (0:r0=1 /\\ )\n", 5, "atom"),
        ("BPF T\n{}\n P0 ;\n r0 = 1 ;\nexists (0:r0=1\n", 5, "')'"),
    ],
)
def test_errors_name_the_line_and_what_was_expected(text: str, line: int, expected: str) -> None:
    with pytest.raises(LitmusSyntaxError) as err:
        parse_test(text, "t.litmus")
    assert err.value.lineno == line and expected in err.value.message
    assert str(err.value).startswith(f"t.litmus:{line}: ")


def test_a_minimal_test_parses() -> None:
    test = parse_test(GOOD)
    assert test.init == {Var(0, "r1"): Symbol("x")} and test.threads[0][0].lineno == 6


def test_an_unreadable_file_is_a_syntax_error(tmp_path: Path) -> None:
    with pytest.raises(LitmusSyntaxError, match="cannot read"):
        read_test(tmp_path / "absent.litmus")


def test_arrays_are_laid_out_element_after_element() -> None:
    from litmus.check import allocate

    test = parse_test("X86_64 A\n{\nint64_t t[3]={1,-1};\n0:rax=t;\n}\n P0 ;\n nop ;\nforall 0:rax=t\n")
    addresses, memory = allocate(test)
    assert addresses["t[1]"] == addresses["t"] + 8 and addresses["t[2]"] == addresses["t"] + 16
    assert [memory[addresses[n]] for n in ("t", "t[1]", "t[2]")] == [1, (1 << 64) - 1, 0]
