"""Stress scenarios as data: one YAML file per scenario under tests/stress/<suite>/, validated like
the architecture profiles (base.profiles.validate), and the verdict each mutation must get.

An icache scenario names its program generator (harness.stress.programs.GENERATORS), the
generator's parameters, the mutations it runs besides the correct protocol, and where the rules
of the architectures make a mutation's verdict differ from what the profile's
``code_modification`` gives, the rules it must be reported with instead (``expect``), each with
the reason. A kernel scenario is a guest shell script with the regexes its output must match; it may load a
kernel module of tests/kernel_modules/ (harness.kernel_modules) and run again under kernel
mutations (KernelMutation: the module patches kernel text without a step the architecture needs),
each with the rules it must be reported with per architecture.
A litmus scenario names BPF litmus tests and the ordering mutations checked on them, with the
tests whose compiled code the architecture's model must report under each (``expect``). A
realjit scenario names a program of harness.realjit (a real JIT library driven by a C program),
the mutations it is also built with, the rules each must be reported with where it changes the
program, and the sanitizer's known open false positives on it, each with its reason.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import Any, Literal

from base.errors import InputError
from base.profiles import Field, MapOf, available_arches, first_rule, load_profile
from harness.icache import expected_cross_mutation_rules, expected_mutation_rules
from harness.kernel_modules import module_names
from jit_core.backend import get_backend
from jit_core.intrinsics import ICACHE_MUTATIONS, ORDERING_MUTATIONS, Mutation

from .realjit_scenarios import (
    KNOWN_FALSE_POSITIVE,
    FalsePositive,
    RealjitScenario,
    false_positive_rules,
    parse_realjit,
)
from .scenario_checks import (
    NOT_APPLICABLE,
    NOT_DETECTED,
    ScenarioError,
    check_arch,
    check_expect_mutation,
    check_mutations,
    check_name,
    check_rules,
    parse_cpus,
    parse_may_also,
    read_scenario,
    validate_scenario,
)

__all__ = [
    "GENERATOR_NAMES",
    "KERNEL_MUTATIONS",
    "KNOWN_FALSE_POSITIVE",
    "MIN_ITERATIONS",
    "NOT_APPLICABLE",
    "NOT_DETECTED",
    "STRESS_DIR",
    "STRESS_MUTATIONS",
    "SUITES",
    "Expected",
    "FalsePositive",
    "IcacheScenario",
    "KernelMutation",
    "KernelScenario",
    "LitmusScenario",
    "RealjitScenario",
    "Scenario",
    "ScenarioError",
    "StressMutation",
    "expected_rules",
    "false_positive_rules",
    "load_suite",
    "min_threads",
    "mutations_for",
    "override_params",
    "parse_icache",
    "parse_kernel",
    "parse_litmus",
    "parse_realjit",
    "threaded",
    "tolerated_rules",
]

STRESS_DIR = Path(__file__).resolve().parent.parent.parent / "tests" / "stress"
SUITES = ("icache", "kernel", "litmus", "realjit")
# harness.stress.programs.GENERATORS, checked there
GENERATOR_NAMES = ("install", "publish", "patch", "reuse")
Expected = Literal["clean", "caught"]


class StressMutation(StrEnum):
    """Bugs of a JIT's install sequence around icache_sync (jit_core's mutations break the
    sequence itself): each is a real bug class the stress programs can be built with."""

    SKIP_SYNC = "skip_sync"  # RW -> RX with mprotect only, no cache maintenance
    SYNC_BEFORE_LAST_WRITE = "sync_before_last_write"  # an exit stub written after the flush
    SYNC_WRONG_BUFFER = "sync_wrong_buffer"  # the source buffer flushed instead of the code
    SYNC_NULL_RANGE = "sync_null_range"  # __clear_cache(NULL, NULL)
    MEMBARRIER_UNREGISTERED = "membarrier_unregistered"  # SYNC_CORE without registering first
    MEMBARRIER_PLAIN = "membarrier_plain"  # PRIVATE_EXPEDITED: orders memory, syncs no core
    PATCH_IMMEDIATE = "patch_immediate"  # a running MOV's immediate patched, not a branch
    TORN_PATCH = "torn_patch"  # one instruction written with two 16-bit stores
    REUSE_WHILE_RUNNING = "reuse_while_running"  # a code buffer reused while a thread runs the old code


STRESS_MUTATIONS: dict[StressMutation, str] = {
    StressMutation.SKIP_SYNC: "no icache_sync at all: the code is made executable with mprotect only",
    StressMutation.SYNC_BEFORE_LAST_WRITE: "icache_sync before the last 8 bytes of code are written",
    StressMutation.SYNC_WRONG_BUFFER: "icache_sync of the buffer the code was copied from",
    StressMutation.SYNC_NULL_RANGE: "icache_sync of the empty range at address 0",
    StressMutation.MEMBARRIER_UNREGISTERED: "membarrier SYNC_CORE without registering (EPERM)",
    StressMutation.MEMBARRIER_PLAIN: "membarrier PRIVATE_EXPEDITED, which serializes no core",
    StressMutation.PATCH_IMMEDIATE: "live patch of a MOV immediate in running code instead of a branch",
    StressMutation.TORN_PATCH: "live patch of a branch written with two 16-bit stores",
    StressMutation.REUSE_WHILE_RUNNING: "the code buffer rewritten for the next function while an executor "
    "is still inside the old one",
}


class KernelMutation(StrEnum):
    """Bugs of a kernel's own code patching that a scenario's module commits on request (its
    ``mutation`` parameter, which the scenario's command passes from ``$MUTATION``)."""

    NO_ICACHE_FLUSH = "no_icache_flush"  # text written with the patching API's write, its flush skipped


KERNEL_MUTATIONS: dict[KernelMutation, str] = {
    KernelMutation.NO_ICACHE_FLUSH: "kernel text written through the patching API's own write primitive "
    "without the instruction-cache flush the API does after it, then run on another CPU",
}

_PARAMS_SCHEMA: dict[str, Field] = {
    "threads": Field(int, "executor threads besides the writer (0: the writer runs the code)", minimum=0),
    "iterations": Field(int, "code installs per program", minimum=2),
    "seed": Field(int, "chooses the values the generations return"),
    "filler": Field(int, "add instructions in the installed function (its size)", minimum=1),
    "placement": Field(int, "offset of the code in its two-page region (a multiple of 8)", minimum=0),
    "mapping": Field(str, "how the code region is mapped", choices=("rwx", "dual", "mprotect")),
    "publish": Field(
        str, "how executors are synchronized", required=False, choices=("context_sync", "membarrier")
    ),
    "migrate": Field(bool, "the writer moves to the other CPU between sync and call", required=False),
}

ICACHE_SCHEMA: dict[str, Field] = {
    "name": Field(str, "the scenario's name; must equal the file name's stem"),
    "description": Field(str, "what the scenario does, one line"),
    "generator": Field(str, "program generator (harness.stress.programs)", choices=GENERATOR_NAMES),
    "params": Field(_PARAMS_SCHEMA, "the generator's parameters"),
    "mutations": Field(list, "mutations run besides none: jit_core's icache ones and StressMutation names"),
    "cpus": Field(dict, "per architecture, the stress models to run on (default: all)", required=False),
    "expect": Field(
        MapOf(
            {
                "why": Field(str, "the manual's rule that gives these verdicts"),
            "may_also": Field(dict, "per architecture, rules the executor may also hit when it runs the "
                              "code while the writer is between steps (concurrent patching)", required=False),
                **{
                    arch: Field(list, f"rules on {arch}, each maybe 'unless <flag>'", required=False)
                    for arch in available_arches()
                },
            }
        ),
        "per mutation: the rules it must be reported with where the profile's do not apply",
        required=False,
    ),
}

LITMUS_SCHEMA: dict[str, Field] = {
    "name": Field(str, "the scenario's name; must equal the file name's stem"),
    "description": Field(str, "what the scenario does, one line"),
    "tests": Field(list, "BPF litmus tests: file patterns relative to this file's folder"),
    "iterations": Field(int, "native runs of each test in a guest", minimum=1),
    "mutations": Field(list, "ordering mutations checked besides none (by the model only: a guest on "
                       "this host cannot show what they break)", required=False),
    "expect": Field(
        MapOf(
            {
                "why": Field(str, "what the tests rely on that the mutation drops"),
                **{
                    arch: Field(list, f"tests (file stems) whose code the model must report on {arch}",
                                required=False)
                    for arch in available_arches()
                },
            }
        ),
        "per mutation: the tests it must be caught on, per architecture (unlisted: clean)",
        required=False,
    ),
}

KERNEL_SCHEMA: dict[str, Field] = {
    "name": Field(str, "the scenario's name; must equal the file name's stem"),
    "description": Field(str, "what the scenario does, one line"),
    "command": Field(str, "guest shell script; exits 0 when the workload worked"),
    "timeout_s": Field(float, "time limit of the sanitized command, before slowdown", minimum=1),
    "expect_stdout": Field(list, "regexes that must all match the command's stdout"),
    "arches": Field(list, "architectures it runs on"),
    "slow": Field(bool, "minutes long: not in `make test` (`make run` runs it)", required=False),
    "module": Field(str, "a kernel module of tests/kernel_modules/, built for the guest's kernel "
                    "(harness.kernel_modules) and copied in; the command finds it at $MODULE",
                    required=False),
    "mutations": Field(list, "kernel mutations (KernelMutation) run besides none, each in a fresh guest; "
                       "the command finds the name at $MUTATION (none: the correct code)", required=False),
    "expect": Field(
        MapOf(
            {
                "why": Field(str, "the manual's rule that gives these verdicts"),
                **{
                    arch: Field(list, f"rules on {arch}, each maybe 'unless <flag>'; an architecture not "
                                "named does not run the mutation", required=False)
                    for arch in available_arches()
                },
            }
        ),
        "per mutation: the rules it must be reported with (none is always clean)",
        required=False,
    ),
}


@dataclass(frozen=True)
class IcacheScenario:
    """One icache scenario file."""

    name: str
    path: Path
    description: str
    generator: str
    params: Mapping[str, Any]
    mutations: tuple[str, ...]
    cpus: Mapping[str, tuple[str, ...]]
    expect: Mapping[str, Mapping[str, tuple[str, ...]]] = field(default_factory=dict)
    tolerated: Mapping[str, Mapping[str, tuple[str, ...]]] = field(default_factory=dict)
    suite: str = "icache"

    def runs_on(self, arch: str) -> bool:
        """Whether the scenario runs on ``arch`` at all (its ``cpus`` may leave an architecture out)."""
        return bool(self.cpus.get(arch, True))

    @property
    def install(self) -> str:
        """``cross-thread`` when executor threads run the code, else ``same-thread``."""
        return "cross-thread" if self.params["threads"] else "same-thread"


@dataclass(frozen=True)
class KernelScenario:
    """One kernel scenario file."""

    name: str
    path: Path
    description: str
    command: str
    timeout_s: float
    expect_stdout: tuple[str, ...]
    arches: tuple[str, ...]
    slow: bool = False
    module: str | None = None
    mutations: tuple[str, ...] = ()
    expect: Mapping[str, Mapping[str, tuple[str, ...]]] = field(default_factory=dict)  # mutation, arch
    suite: str = "kernel"


@dataclass(frozen=True)
class LitmusScenario:
    """One litmus scenario file: BPF litmus tests compiled by jit_core, checked against each
    architecture's memory model and run natively in its guest (litmus.check_jit, run_in_guest)."""

    name: str
    path: Path
    description: str
    tests: tuple[Path, ...]
    iterations: int
    mutations: tuple[str, ...] = ()
    caught: Mapping[str, Mapping[str, frozenset[str]]] = field(default_factory=dict)  # mutation, arch
    suite: str = "litmus"

    def expected(self, test: Path, arch: str, mutation: str) -> Expected:
        """Whether the model must report ``test``'s code on ``arch`` under ``mutation``."""
        return "caught" if test.stem in self.caught.get(mutation, {}).get(arch, ()) else "clean"


Scenario = IcacheScenario | KernelScenario | LitmusScenario | RealjitScenario


def parse_icache(data: Any, path: Path) -> IcacheScenario:
    """Validate a loaded icache scenario file. Raises ScenarioError naming file, field and choices."""
    source = str(path)
    validate_scenario(data, ICACHE_SCHEMA, source)
    check_name(data, path)
    valid = [m for m in (*ICACHE_MUTATIONS, *StressMutation) if m != Mutation.NONE]
    check_mutations(data["mutations"], valid, source)
    cpus = parse_cpus(data.get("cpus"), source)
    expect: dict[str, dict[str, tuple[str, ...]]] = {}
    tolerated: dict[str, dict[str, tuple[str, ...]]] = {}
    for mutation, entry in (data.get("expect") or {}).items():
        check_expect_mutation(mutation, data["mutations"], source)
        expect[mutation] = {
            arch: check_rules(rules, arch, f"{source}: field 'expect.{mutation}.{arch}'")
            for arch, rules in entry.items()
            if arch not in ("why", "may_also")
        }
        also = parse_may_also(entry, f"{source}: field 'expect.{mutation}.may_also")
        if also:
            tolerated[mutation] = also
    for mutation in data["mutations"]:
        if mutation in StressMutation.__members__.values():
            missing = [a for a in available_arches() if a not in expect.get(mutation, {})]
            if missing:
                raise ScenarioError(
                    f"{source}: field 'expect.{mutation}': missing the rules for "
                    f"{', '.join(missing)} (a scenario's own mutation states every "
                    "architecture's)"
                )
    if data["params"]["placement"] % 8:
        raise ScenarioError(
            f"{source}: field 'params.placement': expected a multiple of 8, got {data['params']['placement']}"
        )
    return IcacheScenario(
        name=data["name"],
        path=path,
        description=data["description"],
        generator=data["generator"],
        params=dict(data["params"]),
        mutations=tuple(data["mutations"]),
        cpus=cpus,
        expect=expect,
        tolerated=tolerated,
    )


def parse_kernel(data: Any, path: Path) -> KernelScenario:
    """Validate a loaded kernel scenario file. Raises ScenarioError naming file, field and choices."""
    source = str(path)
    validate_scenario(data, KERNEL_SCHEMA, source)
    check_name(data, path)
    for arch in data["arches"]:
        check_arch(arch, f"{source}: field 'arches'")
    for pattern in data["expect_stdout"]:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ScenarioError(
                f"{source}: field 'expect_stdout': {pattern!r} is not a regex: {exc}"
            ) from exc
    module = data.get("module")
    if module is not None and module not in module_names():
        raise ScenarioError(f"{source}: field 'module': unknown kernel module {module!r}; expected one of "
                            f"{', '.join(module_names())} (folders of tests/kernel_modules/)")  # fmt: skip
    mutations = check_mutations(data.get("mutations") or [], list(KernelMutation), source)
    expect: dict[str, dict[str, tuple[str, ...]]] = {}
    for name, entry in (data.get("expect") or {}).items():
        where = f"{source}: field 'expect.{name}"
        check_expect_mutation(name, mutations, source)
        expect[name] = {}
        for arch, rules in entry.items():
            if arch == "why":
                continue
            if arch not in data["arches"]:
                raise ScenarioError(f"{where}.{arch}': the scenario does not run on {arch}; expected one of "
                                    f"{', '.join(data['arches'])}")  # fmt: skip
            expect[name][arch] = check_rules(rules, arch, f"{where}.{arch}'")
            if not rules or set(rules) & {NOT_DETECTED, NOT_APPLICABLE}:
                raise ScenarioError(f"{where}.{arch}': expected the rules that catch it (leave out an "
                                    "architecture it changes nothing on)")  # fmt: skip
    for name in mutations:
        if not expect.get(name):
            raise ScenarioError(f"{source}: field 'expect.{name}': missing; a kernel mutation states the "
                                "rules it must be reported with on each architecture it runs on")  # fmt: skip
    return KernelScenario(
        name=data["name"],
        path=path,
        description=data["description"],
        command=data["command"],
        timeout_s=float(data["timeout_s"]),
        expect_stdout=tuple(data["expect_stdout"]),
        arches=tuple(data["arches"]),
        slow=bool(data.get("slow", False)),
        module=module,
        mutations=tuple(mutations),
        expect=expect,
    )


def parse_litmus(data: Any, path: Path) -> LitmusScenario:
    """Validate a loaded litmus scenario file. Raises ScenarioError naming file, field and choices,
    and a pattern that matches no file."""
    source = str(path)
    validate_scenario(data, LITMUS_SCHEMA, source)
    check_name(data, path)
    tests: list[Path] = []
    for pattern in data["tests"]:
        found = sorted(path.parent.glob(pattern))
        if not found:
            raise ScenarioError(f"{source}: field 'tests': {pattern!r} matches no file under {path.parent}")
        tests += found
    mutations = check_mutations(data.get("mutations") or [], list(ORDERING_MUTATIONS), source)
    stems = {p.stem for p in tests}
    caught: dict[str, dict[str, frozenset[str]]] = {}
    for name, entry in (data.get("expect") or {}).items():
        check_expect_mutation(name, mutations, source)
        for arch, names in entry.items():
            if arch == "why":
                continue
            at = f"{source}: field 'expect.{name}.{arch}'"
            if name not in get_backend(arch).mutations:
                raise ScenarioError(f"{at}: {name} does not change {arch}'s code: nothing to catch there")
            unknown = sorted(set(names) - stems)
            if unknown:
                raise ScenarioError(f"{at}: {unknown[0]!r} is not a test of the scenario; "
                                    f"expected some of {', '.join(sorted(stems))}")  # fmt: skip
        caught[name] = {arch: frozenset(names) for arch, names in entry.items() if arch != "why"}
    return LitmusScenario(name=data["name"], path=path, description=data["description"],
                          tests=tuple(p.resolve() for p in tests), iterations=data["iterations"],
                          mutations=tuple(mutations), caught=caught)  # fmt: skip


_PARSERS: dict[str, Any] = {
    "icache": parse_icache, "kernel": parse_kernel, "litmus": parse_litmus, "realjit": parse_realjit,
}


@cache
def load_suite(suite: str, directory: Path = STRESS_DIR) -> tuple[Scenario, ...]:
    """Every scenario of ``suite``, sorted by name. Raises InputError for an unknown suite and
    ScenarioError for a bad file."""
    if suite not in SUITES:
        raise InputError("suite", suite, SUITES)
    parse = _PARSERS[suite]
    return tuple(parse(read_scenario(path), path) for path in sorted((directory / suite).glob("*.yaml")))


MIN_ITERATIONS = 2  # the generations alternate: fewer installs never run a stale one
_THREADED_GENERATORS = ("publish",)  # the generators whose programs start ``threads`` executors


def threaded(scenario: IcacheScenario) -> bool:
    """Whether ``threads`` is a parameter of the scenario's program (the publish generator's
    executors); elsewhere it only says whether the install is same- or cross-thread."""
    return scenario.generator in _THREADED_GENERATORS


def min_threads(scenario: IcacheScenario) -> int:
    """The fewest executor threads the scenario's generator takes: 1 for publish, else 0."""
    return 1 if threaded(scenario) else 0


def override_params(
    scenario: IcacheScenario, iterations: int | None = None, threads: int | None = None
) -> IcacheScenario:
    """``scenario`` with its ``iterations`` and ``threads`` replaced where given (None: its own).
    Raises InputError naming the option and its valid range: iterations at least 2, threads at
    least 1 for the publish generator and 0 for the others."""
    params = dict(scenario.params)
    if iterations is not None:
        if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < MIN_ITERATIONS:
            raise InputError("--iterations", iterations, hint=f"an integer, at least {MIN_ITERATIONS}")
        params["iterations"] = iterations
    if threads is not None:
        least = min_threads(scenario)
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < least:
            raise InputError(
                "--threads", threads,
                hint=f"an integer, at least {least} for {scenario.name} (the {scenario.generator} generator)",
            )  # fmt: skip
        params["threads"] = threads
    return scenario if params == scenario.params else replace(scenario, params=params)


def mutations_for(scenario: Scenario, arch: str) -> list[str]:
    """``none`` and the scenario's mutations that change ``arch``'s program (a jit_core mutation
    the backend does not implement would run the correct protocol again, as would a scenario's
    own mutation its ``expect`` states as NOT_APPLICABLE there; a realjit or kernel mutation runs
    where its ``expect`` names the architecture)."""
    if isinstance(scenario, RealjitScenario | KernelScenario):
        return [Mutation.NONE, *(m for m in scenario.mutations if arch in scenario.expect[m])]
    if isinstance(scenario, IcacheScenario):
        applies = [m for m in scenario.mutations if scenario.expect.get(m, {}).get(arch) != (NOT_APPLICABLE,)]
    else:
        applies = list(scenario.mutations)
    changed = get_backend(arch).mutations
    return [Mutation.NONE, *(m for m in applies if m in StressMutation.__members__.values() or m in changed)]


def tolerated_rules(
    scenario: IcacheScenario | RealjitScenario, arch: str, cpu: str, mutation: str
) -> set[str]:
    """Rules ``mutation`` may be reported with besides its expected ones (``expect.may_also``):
    steps an executor running concurrently with the writer can catch it between. Each entry
    ``rule unless <flag>`` counts on CPUs without the flag. Raises InputError for an unknown
    architecture or CPU model."""
    model = load_profile(arch).cpu_model(cpu)
    flags = {"idc": bool(model.idc), "dic": bool(model.dic)}
    out = set()
    for entry in scenario.tolerated.get(mutation, {}).get(arch, ()):
        rule, _, flag = entry.partition(" unless ")
        if not flags.get(flag, False):
            out.add(rule)
    return out


def expected_rules(
    scenario: IcacheScenario | RealjitScenario | KernelScenario, arch: str, cpu: str, mutation: str
) -> set[str]:
    """The rules ``mutation`` of ``scenario`` must be reported with on ``arch``/``cpu`` (empty: clean).

    From the scenario's ``expect`` where it names the mutation and architecture, else from the
    profile's rules for the install kind (harness.icache.expectations). Raises InputError for an
    unknown architecture or CPU model. A bug the sanitizer has no rule for gives {NOT_DETECTED}."""
    model = load_profile(arch).cpu_model(cpu)
    flags = {"idc": bool(model.idc), "dic": bool(model.dic)}
    stated = scenario.expect.get(mutation, {}).get(arch)
    if stated is not None:
        return first_rule(stated, flags) if stated else set()
    if mutation == Mutation.NONE or isinstance(scenario, RealjitScenario | KernelScenario):
        return set()
    by_profile = (
        expected_cross_mutation_rules if scenario.install == "cross-thread" else expected_mutation_rules
    )
    return by_profile(arch, flags["idc"], flags["dic"])[Mutation(mutation)]
