"""The layout holds: architecture facts live in one place each, and imports go one way.

Architecture names may appear in the project's code only where that architecture lives: its
profile (arch_profiles/), its backend (jit_core/<arch>/) and its sanitizer rule file
(harness/sanitizer/arch_<arch>.c). Tests, docs, data and the guest programs' C sources of
harness/realjit/src/ are not scanned.
"""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

from base.profiles import available_arches, load_profile

ROOT = Path(__file__).resolve().parent.parent
CODE_SUFFIXES = {".py", ".sh", ".c", ".h", ".toml"}
CODE_NAMES = {"Makefile"}
# harness/realjit/src/ holds the C sources of guest programs (a real JIT's test driver, with
# per-architecture #if like tests/sanitizer_progs/), which the host's code only compiles.
NOT_SCANNED = ("tests/", "docs/", "arch_profiles/", "harness/realjit/src/")
# The sanitizer's C rule files are chosen by one table in plugin.c, which names their symbols
# (arch_<name>); the C test of the rule engine is a test.
RULE_FILE_TABLE = "harness/sanitizer/plugin.c"
RULE_FILE_SYMBOL = re.compile(r"\barch_[a-z0-9_]+")
C_TESTS = re.compile(r"^harness/sanitizer/[^/]+_test\.c$")


def arch_names() -> dict[str, set[str]]:
    """Every spelling of each architecture its profile gives: our name, Debian's, `uname -m`'s
    and QEMU's (the suffix of its system emulator)."""
    names = {}
    for arch in available_arches():
        profile = load_profile(arch)
        spellings = {arch, profile.debian_arch, *profile.host_machines}
        spellings.add(profile.qemu_binary.removeprefix("qemu-system-"))
        names[arch] = {s.lower() for s in spellings}
    return names


def _allowed(path: str, arch: str) -> bool:
    return path.startswith((f"jit_core/{arch}/", f"harness/sanitizer/arch_{arch}."))


def _scanned_files() -> list[str]:
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [
        path
        for path in out.splitlines()
        if (Path(path).suffix in CODE_SUFFIXES or Path(path).name in CODE_NAMES)
        and not path.startswith(NOT_SCANNED)
        and not C_TESTS.match(path)
        and (ROOT / path).is_file()
    ]


def test_architecture_names_appear_only_where_the_architecture_lives() -> None:
    patterns = {
        arch: re.compile(r"(?<![a-z0-9])(" + "|".join(map(re.escape, sorted(names))) + r")(?![a-z0-9])", re.I)
        for arch, names in arch_names().items()
    }
    found = []
    for path in _scanned_files():
        for number, line in enumerate((ROOT / path).read_text(errors="replace").splitlines(), 1):
            if path == RULE_FILE_TABLE:
                line = RULE_FILE_SYMBOL.sub("", line)
            for arch, pattern in patterns.items():
                if pattern.search(line) and not _allowed(path, arch):
                    found.append(f"{path}:{number}: {line.strip()}")
    assert not found, "architecture names outside their architecture's files:\n" + "\n".join(found)


# Which top-level parts each part may import: base is the bottom layer; images and jit_core sit on
# it; harness uses all three; ci and the benches are at the top.
MAY_IMPORT = {
    "base": {"base"},
    "images": {"base", "images"},
    "jit_core": {"base", "jit_core"},
    "harness": {"base", "images", "jit_core", "harness"},
    "ci": {"base", "images", "jit_core", "harness", "ci"},
}


def _project_imports(path: Path) -> set[tuple[int, str]]:
    tree = ast.parse(path.read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {(node.lineno, alias.name.split(".")[0]) for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add((node.lineno, node.module.split(".")[0]))
    return {(n, name) for n, name in out if name in MAY_IMPORT}


def test_imports_go_one_way() -> None:
    wrong = [
        f"{path.relative_to(ROOT)}:{line}: imports {name}"
        for part, allowed in MAY_IMPORT.items()
        for path in sorted((ROOT / part).rglob("*.py"))
        for line, name in sorted(_project_imports(path))
        if name not in allowed
    ]
    assert not wrong, "\n".join(wrong)


def _public_modules() -> list[Path]:
    return [path for part in MAY_IMPORT for path in sorted((ROOT / part).rglob("*.py"))]


def test_every_module_says_what_it_exports() -> None:
    """Each module of the packages has ``__all__``; it names only what the module defines or
    imports, and every public function and class the module defines."""
    problems = []
    for path in _public_modules():
        tree = ast.parse(path.read_text())
        exported: list[str] | None = None
        bound: set[str] = set()
        defined: set[str] = set()
        for node in tree.body:
            if isinstance(node, ast.Assign | ast.AnnAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for target in targets:
                    if isinstance(target, ast.Name) and target.id == "__all__" and node.value is not None:
                        exported = list(ast.literal_eval(node.value))
                    names = target.elts if isinstance(target, ast.Tuple) else [target]
                    bound |= {n.id for n in names if isinstance(n, ast.Name)}
            elif isinstance(node, ast.FunctionDef | ast.ClassDef):
                defined.add(node.name)
            elif isinstance(node, ast.Import | ast.ImportFrom):
                bound |= {(a.asname or a.name).split(".")[0] for a in node.names}
        where = path.relative_to(ROOT)
        if exported is None:
            problems.append(f"{where}: no __all__")
            continue
        problems += [f"{where}: __all__ names {name!r}, which it does not define"
                     for name in exported if name not in bound | defined]  # fmt: skip
        missing = sorted(name for name in defined if not name.startswith("_") and name not in exported)
        problems += [f"{where}: public {name!r} is missing from __all__" for name in missing]
    assert not problems, "\n".join(problems)
