"""Events of one thread's run, and the builder an instruction semantics drives to produce them.

A thread's semantics (the BPF source or an architecture's decoded machine code) is a function
run against a ``ThreadBuilder``: it asks the builder for the value of each read and reports
writes, fences, branches and the dependencies (taints) of addresses and values. Read values
come from a replay list, so enumerating a thread's runs is re-running it with every sequence
of candidate values (``thread_runs``).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from .errors import LitmusError

Taint = frozenset[int]
NO_TAINT: Taint = frozenset()


class Kind(enum.Flag):
    R = enum.auto()
    W = enum.auto()
    F = enum.auto()
    RW = R | W


class Tag(enum.Enum):
    """Ordering annotations of an event; each model gives them their meaning."""

    ACQ = "acquire"  # load-acquire (LDAR, .aq, BPF load_acquire)
    ACQ_PC = "acquire-pc"  # RCpc load-acquire (LDAPR)
    REL = "release"  # store-release (STLR, .rl, BPF store_release)
    SC = "fully-ordered"  # BPF atomic that returns a value: a full barrier around it
    EXCL = "exclusive"  # LDXR/STXR, LR/SC
    AMO = "atomic"  # one of the two events of a single-instruction read-modify-write
    LOCK = "locked"  # a LOCK-prefixed instruction or an exchange with memory
    ISB = "isb"  # instruction synchronization barrier
    NORET = "no-return"  # a read whose value no register receives (Armv8 LSE to XZR)


@dataclass(frozen=True)
class Event:
    """One memory access or fence of a thread. ``index`` is its position in program order.

    For a fence, ``pred``/``succ`` say which earlier and later accesses it orders (Kind.R,
    Kind.W or both); ``addr``/``data``/``ctrl`` are the thread-local indices of the reads this
    event's address, written value and reaching branches depend on; ``pick_addr``/``pick_data``
    those that reach the address or value only through a conditional selection's condition
    (Armv8's pick dependencies)."""

    thread: int
    index: int
    kind: Kind
    loc: int | None = None
    rval: int | None = None
    wval: int | None = None
    tags: frozenset[Tag] = frozenset()
    pred: Kind = Kind(0)
    succ: Kind = Kind(0)
    addr: Taint = NO_TAINT
    data: Taint = NO_TAINT
    ctrl: Taint = NO_TAINT
    pick_addr: Taint = NO_TAINT
    pick_data: Taint = NO_TAINT
    insn: str = ""

    def describe(self, loc_names: dict[int, str]) -> str:
        where = loc_names.get(self.loc, hex(self.loc)) if self.loc is not None else ""
        tags = "".join(f".{t.value}" for t in sorted(self.tags, key=lambda t: t.value))
        if self.kind == Kind.F:
            what = f"F{tags}[{_kind_letters(self.pred)}->{_kind_letters(self.succ)}]"
        elif self.kind == Kind.RW:
            what = f"RMW{tags} {where} {self.rval}->{self.wval}"
        elif self.kind == Kind.R:
            what = f"R{tags} {where}={self.rval}"
        else:
            what = f"W{tags} {where}={self.wval}"
        return f"{self.thread}:{self.index} {what}" + (f"  ({self.insn})" if self.insn else "")


def _kind_letters(kind: Kind) -> str:
    return ("R" if Kind.R in kind else "") + ("W" if Kind.W in kind else "")


@dataclass
class ThreadRun:
    """A complete run of one thread: its events, the (read, write) index pairs of two-event
    atomics and the final values of its registers (named as the litmus dialect names them)."""

    thread: int
    events: list[Event]
    rmw: list[tuple[int, int]]
    registers: dict[str, int]


class NeedValue(Exception):
    """Raised by the builder when the replay list runs out: the enumerator branches here over
    the values of ``loc``, or (``loc`` None) over ``range(choices)``."""

    def __init__(self, loc: int | None, choices: int = 0):
        super().__init__(loc)
        self.loc = loc
        self.choices = choices


class LoopBound(LitmusError):
    """A thread ran longer than the step bound (a loop the enumeration cannot unroll)."""


@dataclass
class ThreadBuilder:
    """Collects a thread's events while its semantics runs; ``ctrl`` is the taint of every branch
    taken so far (control dependencies reach all later events)."""

    thread: int
    replay: tuple[int, ...]
    events: list[Event] = field(default_factory=list)
    rmw: list[tuple[int, int]] = field(default_factory=list)
    ctrl: Taint = NO_TAINT
    reads: int = 0

    def _next_value(self, loc: int) -> int:
        if self.reads == len(self.replay):
            raise NeedValue(loc)
        value = self.replay[self.reads]
        self.reads += 1
        return value

    def read(
        self,
        loc: int,
        *,
        addr: Taint = NO_TAINT,
        tags: Iterable[Tag] = (),
        insn: str = "",
        pick_addr: Taint = NO_TAINT,
    ) -> tuple[int, int]:
        """A read of ``loc``: returns (value, event index). Raises NeedValue to branch."""
        value = self._next_value(loc)
        self.events.append(
            Event(
                self.thread,
                len(self.events),
                Kind.R,
                loc,
                rval=value,
                tags=frozenset(tags),
                addr=addr,
                ctrl=self.ctrl,
                pick_addr=pick_addr,
                insn=insn,
            )
        )
        return value, len(self.events) - 1

    def write(
        self,
        loc: int,
        value: int,
        *,
        addr: Taint = NO_TAINT,
        data: Taint = NO_TAINT,
        tags: Iterable[Tag] = (),
        insn: str = "",
        pick_addr: Taint = NO_TAINT,
        pick_data: Taint = NO_TAINT,
    ) -> int:
        """A write of ``value`` to ``loc``; returns its event index."""
        self.events.append(
            Event(
                self.thread,
                len(self.events),
                Kind.W,
                loc,
                wval=value,
                tags=frozenset(tags),
                addr=addr,
                data=data,
                ctrl=self.ctrl,
                pick_addr=pick_addr,
                pick_data=pick_data,
                insn=insn,
            )
        )
        return len(self.events) - 1

    def update(
        self,
        loc: int,
        op: Callable[[int], int | None],
        *,
        addr: Taint = NO_TAINT,
        data: Taint = NO_TAINT,
        tags: Iterable[Tag] = (),
        insn: str = "",
    ) -> tuple[int, int]:
        """A single-event read-modify-write (the BPF model's atomics): returns (old value, index).
        When ``op`` gives None (a failing compare-and-exchange) the event is a plain read."""
        old = self._next_value(loc)
        new = op(old)
        if new is None:
            self.events.append(
                Event(
                    self.thread, len(self.events), Kind.R, loc, rval=old, addr=addr, ctrl=self.ctrl, insn=insn
                )
            )
        else:
            self.events.append(
                Event(
                    self.thread,
                    len(self.events),
                    Kind.RW,
                    loc,
                    rval=old,
                    wval=new,
                    tags=frozenset(tags),
                    addr=addr,
                    data=data,
                    ctrl=self.ctrl,
                    insn=insn,
                )
            )
        return old, len(self.events) - 1

    def choose(self, choices: int) -> int:
        """A nondeterministic choice in range(choices) (e.g. whether a store-conditional
        succeeds); the enumeration follows every one. Raises NeedValue to branch."""
        if self.reads == len(self.replay):
            raise NeedValue(None, choices)
        value = self.replay[self.reads]
        self.reads += 1
        return value

    def fence(self, pred: Kind, succ: Kind, *, tags: Iterable[Tag] = (), insn: str = "") -> None:
        self.events.append(
            Event(
                self.thread,
                len(self.events),
                Kind.F,
                pred=pred,
                succ=succ,
                tags=frozenset(tags),
                ctrl=self.ctrl,
                insn=insn,
            )
        )

    def branch(self, taint: Taint) -> None:
        self.ctrl = self.ctrl | taint

    def pair(self, read_index: int, write_index: int) -> None:
        """Mark a read and a later write as one atomic read-modify-write (rmw)."""
        self.rmw.append((read_index, write_index))


ThreadSemantics = Callable[[ThreadBuilder], dict[str, int]]
"""Runs a thread against a builder and returns its final registers. Raises NeedValue (to branch
on a read value), LoopBound, or LitmusError for an access outside the test's locations."""


def thread_runs(
    thread: int, semantics: ThreadSemantics, domain: Callable[[int], Iterable[int]]
) -> list[ThreadRun]:
    """Every run of ``semantics`` whose reads return values from ``domain(loc)``.

    Raises LoopBound or LitmusError from the semantics."""
    runs: list[ThreadRun] = []
    stack: list[tuple[int, ...]] = [()]
    while stack:
        replay = stack.pop()
        builder = ThreadBuilder(thread, replay)
        try:
            registers = semantics(builder)
        except NeedValue as need:
            options = range(need.choices) if need.loc is None else sorted(domain(need.loc))
            stack.extend(replay + (v,) for v in reversed(options))
            continue
        runs.append(ThreadRun(thread, builder.events, builder.rmw, registers))
    return runs
