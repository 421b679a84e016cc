"""Reader of herdtools7's litmus format, independent of the instruction dialect.

A test is a header line (``ARCH NAME``), optional quoted/``key=value`` lines, an initial state
in braces, a thread table (columns separated by ``|``, rows ended by ``;``), an optional
``locations [...]`` line and a final condition (``exists``, ``~exists`` or ``forall`` over
``T:reg=value``, ``loc=value`` and ``[loc]=value`` atoms joined by ``/\\``, ``\\/`` and ``~``).
The instructions of each thread are kept as text with their line numbers: a dialect parser
(chosen by the header word) turns them into something executable.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

from .errors import LitmusSyntaxError


class Quantifier(enum.Enum):
    EXISTS = "exists"
    NOT_EXISTS = "~exists"
    FORALL = "forall"


@dataclass(frozen=True)
class Symbol:
    """A location name used as a value (an address), e.g. ``0:r1=x``."""

    name: str


Value = int | Symbol


@dataclass(frozen=True)
class Var:
    """A final-state variable: a register of thread ``thread`` or (thread None) a location."""

    thread: int | None
    name: str

    def __str__(self) -> str:
        return f"{self.thread}:{self.name}" if self.thread is not None else f"[{self.name}]"


@dataclass(frozen=True)
class Atom:
    var: Var
    value: Value


@dataclass(frozen=True)
class Not:
    arg: Cond


@dataclass(frozen=True)
class And:
    args: tuple[Cond, ...]


@dataclass(frozen=True)
class Or:
    args: tuple[Cond, ...]


@dataclass(frozen=True)
class Const:
    value: bool


Cond = Atom | Not | And | Or | Const


@dataclass(frozen=True)
class Line:
    """One instruction (or label) of a thread, with where it came from."""

    text: str
    lineno: int



def split_operands(text: str, brackets: str = "[]") -> list[str]:
    """Comma-separated operands, each kept whole inside the pairs of ``brackets`` (opening,
    closing, opening, closing...)."""
    depth_change = {**dict.fromkeys(brackets[::2], 1), **dict.fromkeys(brackets[1::2], -1)}
    out, depth, current = [], 0, ""
    for ch in text:
        if ch == "," and depth == 0:
            out.append(current.strip())
            current = ""
            continue
        depth += depth_change.get(ch, 0)
        current += ch
    return [*out, current.strip()] if current.strip() else out

_LABEL = re.compile(r"([a-z_][\w.]*)\s*:$")


def split_labels(lines: list[Line], width: int) -> tuple[dict[str, int], list[Line]]:
    """A thread's labels (lower case) at the address of the instruction each precedes, with
    instructions ``width`` bytes apart from 0, and its instruction lines."""
    labels: dict[str, int] = {}
    body: list[Line] = []
    for line in lines:
        m = _LABEL.match(line.text.strip().lower())
        if m:
            labels[m.group(1)] = width * len(body)
        else:
            body.append(line)
    return labels, body


@dataclass
class LitmusTest:
    """A parsed test. ``init`` maps variables to their initial values; ``types`` holds the C type
    words given in the initial state (e.g. ``uint64_t``), which some dialects use for sizes."""

    path: str
    arch: str
    name: str
    init: dict[Var, Value]
    threads: list[list[Line]]
    quantifier: Quantifier
    condition: Cond
    locations: list[Var] = field(default_factory=list)
    types: dict[Var, str] = field(default_factory=dict)
    arrays: dict[str, int] = field(default_factory=dict)  # name -> length; element k is "name[k]"
    init_line: int = 0  # where the initial state's '{' is, for errors about it

    def observed(self) -> list[Var]:
        """The variables of a final state: the ``locations`` line, then the condition's atoms."""
        seen: list[Var] = []
        for var in [*self.locations, *atoms_of(self.condition)]:
            if var not in seen:
                seen.append(var)
        return seen

    def memory_names(self) -> list[str]:
        """Every location named in the initial state, values or the condition, in first-seen order."""
        names: list[str] = []

        def add(name: str) -> None:
            if name not in names:
                names.append(name)

        for var, value in self.init.items():
            if var.thread is None:
                add(var.name)
            if isinstance(value, Symbol):
                add(value.name)
        for var in self.observed():
            if var.thread is None:
                add(var.name)
        for atom in _atoms(self.condition):
            if isinstance(atom.value, Symbol):
                add(atom.value.name)
        return names


def atoms_of(cond: Cond) -> list[Var]:
    return [a.var for a in _atoms(cond)]


def _atoms(cond: Cond) -> list[Atom]:
    if isinstance(cond, Atom):
        return [cond]
    if isinstance(cond, Not):
        return _atoms(cond.arg)
    if isinstance(cond, (And, Or)):
        return [a for arg in cond.args for a in _atoms(arg)]
    return []


def evaluate(cond: Cond, holds: Callable[[Atom], bool]) -> bool:
    """The truth of ``cond`` when each atom's truth is ``holds(atom)``."""
    if isinstance(cond, Atom):
        return holds(cond)
    if isinstance(cond, Not):
        return not evaluate(cond.arg, holds)
    if isinstance(cond, And):
        return all(evaluate(a, holds) for a in cond.args)
    if isinstance(cond, Or):
        return any(evaluate(a, holds) for a in cond.args)
    return cond.value


_COMMENT = re.compile(r"\(\*.*?\*\)", re.S)
_INT = re.compile(r"-?(0x[0-9a-fA-F]+|\d+)$")
_QUANT = re.compile(r"^\s*(~\s*exists|exists|forall)\b")


def parse_value(text: str) -> Value:
    text = text.strip()
    if _INT.match(text):
        return int(text, 0)
    if re.fullmatch(r"[A-Za-z_][\w.]*", text):
        return Symbol(text)
    raise ValueError(text)


def _strip_comments(text: str) -> str:
    """Comments replaced by as many newlines as they span, so line numbers stay right."""
    return _COMMENT.sub(lambda m: "\n" * m.group(0).count("\n"), text)


def read_test(path: Path) -> LitmusTest:
    """Parse the litmus file ``path``.

    Raises LitmusSyntaxError (naming file, line and what was expected) on anything malformed,
    and on an unreadable file."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise LitmusSyntaxError(str(path), 0, f"cannot read the file: {exc.strerror}") from exc
    return parse_test(text, str(path))


def parse_test(text: str, path: str = "<string>") -> LitmusTest:
    """Parse litmus ``text`` (``path`` names it in errors). Raises LitmusSyntaxError."""
    lines = _strip_comments(text).split("\n")
    i = 0
    while i < len(lines) and not lines[i].strip():
        i += 1
    if i == len(lines):
        raise LitmusSyntaxError(path, 1, "expected a header line 'ARCH NAME', found an empty file")
    header = lines[i].split()
    if len(header) < 2:
        raise LitmusSyntaxError(path, i + 1, f"expected a header line 'ARCH NAME', found {lines[i]!r}")
    arch, name = header[0], header[1]
    i += 1
    header_line = i
    while i < len(lines) and "{" not in lines[i]:
        i += 1
    if i == len(lines):
        raise LitmusSyntaxError(
            path, header_line + 1, "expected the initial state '{ ... }' after the header"
        )
    brace_line = i + 1
    init_start = i + 1
    body = lines[i].split("{", 1)[1]
    while _closing_brace(body) < 0:
        i += 1
        if i == len(lines):
            raise LitmusSyntaxError(path, brace_line, "the initial state '{' is never closed by '}'")
        body += "\n" + lines[i]
    end = _closing_brace(body)
    init_text, rest = body[:end], body[end + 1 :]
    init, types, arrays = _parse_init(init_text, path, init_start)
    lines[i] = rest
    threads, i = _parse_threads(lines, i, path)
    locations: list[Var] = []
    tail = "\n".join(lines[i:])
    tail_line = i + 1
    loc_match = re.match(r"\s*locations\s*\[([^\]]*)\]", tail)
    if loc_match:
        for item in loc_match.group(1).split(";"):
            if item.strip():
                locations.append(_parse_var(item.strip(), path, tail_line))
        tail_line += tail[: loc_match.end()].count("\n")
        tail = tail[loc_match.end() :]
    tail_line += len(tail) - len(tail.lstrip("\n"))
    match = _QUANT.match(tail)
    if not match:
        raise LitmusSyntaxError(
            path, min(tail_line, len(lines)), "expected a final condition: exists, ~exists or forall"
        )
    quant = Quantifier.NOT_EXISTS if match.group(1).startswith("~") else Quantifier(match.group(1))
    cond = _CondParser(tail[match.end() :], path, tail_line).parse()
    return LitmusTest(path, arch, name, init, threads, quant, cond, locations, types, arrays, brace_line)


def _closing_brace(text: str) -> int:
    """Index of the '}' closing an already opened '{' (array initializers nest), or -1."""
    depth = 1
    for k, ch in enumerate(text):
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if depth == 0:
            return k
    return -1


def _parse_var(text: str, path: str, lineno: int) -> Var:
    text = text.strip()
    m = re.fullmatch(r"(\d+)\s*:\s*([A-Za-z_%][\w.]*)", text)
    if m:
        return Var(int(m.group(1)), m.group(2))
    m = re.fullmatch(r"\[?\s*([A-Za-z_][\w.]*)\s*\]?", text)
    if m:
        return Var(None, m.group(1))
    raise LitmusSyntaxError(path, lineno, f"expected 'T:register' or a location name, found {text!r}")


def _parse_init(
    text: str, path: str, first_line: int
) -> tuple[dict[Var, Value], dict[Var, str], dict[str, int]]:
    init: dict[Var, Value] = {}
    types: dict[Var, str] = {}
    arrays: dict[str, int] = {}
    lineno = first_line
    for chunk in text.split(";"):
        item = chunk.strip()
        here = lineno + len(chunk) - len(chunk.lstrip("\n")) if item else lineno
        lineno += chunk.count("\n")
        if not item:
            continue
        ctype = None
        m = re.match(r"((?:unsigned\s+)?[A-Za-z_]\w*)(\s*\*\s*|\s+)([^=\s].*)$", item)
        if m and not re.match(r"\d", item):
            ctype, item = m.group(1) + ("*" if "*" in m.group(2) else ""), m.group(3)
        array = re.fullmatch(r"([A-Za-z_]\w*)\s*\[\s*(\d+)\s*\]\s*(?:=\s*\{([^}]*)\})?", item)
        if array:
            name, length = array.group(1), int(array.group(2))
            values = [v for v in (array.group(3) or "").split(",") if v.strip()]
            if len(values) > length:
                raise LitmusSyntaxError(path, here, f"expected at most {length} values for {name}[{length}]")
            arrays[name] = length
            for k in range(length):
                element = Var(None, f"{name}[{k}]" if k else name)
                init[element] = parse_value(values[k]) if k < len(values) else 0
                if ctype is not None:
                    types[element] = ctype
            continue
        lhs, eq, rhs = item.partition("=")
        var = _parse_var(lhs, path, here)
        if ctype is not None:
            types[var] = ctype
        try:
            init[var] = parse_value(rhs) if eq else 0
        except ValueError:
            raise LitmusSyntaxError(
                path,
                here,
                f"expected an integer or a location as the initial value of {var}, found {rhs.strip()!r}",
            ) from None
    return init, types, arrays


def _parse_threads(lines: list[str], i: int, path: str) -> tuple[list[list[Line]], int]:
    """The thread table starting at line index i; returns the threads and the index after it."""
    while i < len(lines) and not lines[i].strip():
        i += 1
    if i == len(lines):
        raise LitmusSyntaxError(path, i, "expected the thread table header 'P0 | P1 ... ;'")
    heads = [h.strip() for h in lines[i].strip().rstrip(";").split("|")]
    for k, head in enumerate(heads):
        if head != f"P{k}":
            raise LitmusSyntaxError(path, i + 1, f"expected thread header 'P{k}', found {head!r}")
    threads: list[list[Line]] = [[] for _ in heads]
    i += 1
    pending = ""
    pending_line = i + 1
    while i < len(lines):
        raw = lines[i]
        if not pending and (_QUANT.match(raw) or re.match(r"\s*(locations|filter)\b", raw)):
            break
        if not pending:
            pending_line = i + 1
        pending += raw
        i += 1
        if ";" not in pending:
            if pending.strip() and i == len(lines):
                raise LitmusSyntaxError(path, pending_line, "expected ';' at the end of a thread row")
            continue
        row, _, after = pending.partition(";")
        pending = after if after.strip() else ""
        cells = row.split("|")
        if len(cells) > len(heads):
            raise LitmusSyntaxError(
                path, pending_line, f"a row has {len(cells)} columns, the table header {len(heads)}"
            )
        for k, cell in enumerate(cells):
            if cell.strip():
                threads[k].append(Line(cell.strip(), pending_line))
    return threads, i


class _CondParser:
    """Recursive descent over ``~``, ``/\\``, ``\\/``, parentheses and atoms."""

    TOKEN = re.compile(r"\s*(/\\|\\/|~|\(|\)|true|false|[^\s()/\\~]+(?:\s*=\s*[^\s()/\\~]+)?)")

    def __init__(self, text: str, path: str, lineno: int):
        self.path, self.lineno = path, lineno
        self.tokens: list[str] = []
        pos = 0
        text = re.sub(r"\s*([:=])\s*", r"\1", text.rstrip().rstrip(";"))
        while pos < len(text):
            if text[pos:].strip() == "":
                break
            m = self.TOKEN.match(text, pos)
            if not m:
                self.fail(f"unexpected text {text[pos : pos + 20]!r} in the condition")
            self.tokens.append(m.group(1))
            pos = m.end()
        self.pos = 0

    def fail(self, message: str) -> NoReturn:
        raise LitmusSyntaxError(self.path, self.lineno, message)

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def parse(self) -> Cond:
        cond = self.disjunction()
        if self.peek() is not None:
            self.fail(f"expected the end of the condition, found {self.peek()!r}")
        return cond

    def disjunction(self) -> Cond:
        args = [self.conjunction()]
        while self.peek() == "\\/":
            self.pos += 1
            args.append(self.conjunction())
        return args[0] if len(args) == 1 else Or(tuple(args))

    def conjunction(self) -> Cond:
        args = [self.unary()]
        while self.peek() == "/\\":
            self.pos += 1
            args.append(self.unary())
        return args[0] if len(args) == 1 else And(tuple(args))

    def unary(self) -> Cond:
        tok = self.peek()
        if tok is None:
            self.fail("expected an atom 'var=value', '~' or '(' in the condition")
        self.pos += 1
        if tok == "~":
            return Not(self.unary())
        if tok == "(":
            inner = self.disjunction()
            if self.peek() != ")":
                self.fail("expected ')' in the condition")
            self.pos += 1
            return inner
        if tok in ("true", "false"):
            return Const(tok == "true")
        lhs, eq, rhs = tok.partition("=")
        if not eq:
            self.fail(f"expected an atom 'var=value', found {tok!r}")
        try:
            return Atom(_parse_var(lhs, self.path, self.lineno), parse_value(rhs))
        except ValueError:
            self.fail(f"expected an integer or a location after '=', found {rhs.strip()!r}")
            raise
