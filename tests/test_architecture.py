"""The architecture as rules that can fail: layers import downward only, functions stay small, the
CLI stays thin, and docs/ARCHITECTURE.md names exactly the modules and commands that exist."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Each package may import the packages listed for it (and itself), nothing above.
LAYERS = {
    "core": set(),
    "retrieval": {"core"},
    "microtheory": {"core", "retrieval"},
    "critique": {"core", "retrieval", "microtheory"},  # critique builds on trees and datasets
    "pipeline": {"core", "retrieval", "microtheory", "critique"},
    "cli": {"core", "retrieval", "microtheory", "critique", "pipeline"},
}
MAX_LINES, MAX_PARAMS, MAX_CLI_BODY = 80, 10, 40


def _modules(pkg: str) -> list[Path]:
    return sorted(p for p in (ROOT / pkg).rglob("*.py") if "weights" not in p.parts)


def _functions(tree: ast.AST) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    return [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]


def _n_params(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    a = fn.args
    names = [x.arg for x in (*a.posonlyargs, *a.args, *a.kwonlyargs)]
    names += [x.arg for x in (a.vararg, a.kwarg) if x is not None]
    return len([n for n in names if n not in ("self", "cls")])


def _body_lines(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    body = fn.body
    if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant):
        body = body[1:] or body  # the docstring is not logic
    return (body[-1].end_lineno or body[-1].lineno) - body[0].lineno + 1


@pytest.mark.parametrize("pkg", sorted(LAYERS))
def test_imports_point_down(pkg: str) -> None:
    bad = []
    for path in _modules(pkg):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
            for name in names:
                top = name.split(".")[0]
                if top in LAYERS and top != pkg and top not in LAYERS[pkg]:
                    bad.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not bad, "upward imports:\n" + "\n".join(bad)


def test_library_functions_are_small() -> None:
    bad = []
    for pkg in sorted(set(LAYERS) - {"cli"}):
        for path in _modules(pkg):
            for fn in _functions(ast.parse(path.read_text(encoding="utf-8"))):
                lines = (fn.end_lineno or fn.lineno) - fn.lineno + 1
                if lines > MAX_LINES or _n_params(fn) > MAX_PARAMS:
                    bad.append(f"{path.relative_to(ROOT)}:{fn.lineno} {fn.name}: {lines} lines, "
                               f"{_n_params(fn)} parameters")
    assert not bad, f"over {MAX_LINES} lines or {MAX_PARAMS} parameters:\n" + "\n".join(bad)


def test_cli_commands_are_thin() -> None:
    bad = []
    for path in _modules("cli"):
        for fn in _functions(ast.parse(path.read_text(encoding="utf-8"))):
            if _body_lines(fn) > MAX_CLI_BODY:
                bad.append(f"{path.relative_to(ROOT)}:{fn.lineno} {fn.name}: body of {_body_lines(fn)} lines")
    assert not bad, f"CLI bodies over {MAX_CLI_BODY} lines:\n" + "\n".join(bad)


def _doc_modules() -> set[str]:
    """Every `pkg/module` or `pkg/sub/` path written in backticks in the architecture page."""
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    return set(re.findall(r"`((?:core|retrieval|microtheory|critique|pipeline|cli)/[\w/]+?(?:\.py|/))`", text))


def test_architecture_page_names_every_module_and_only_existing_ones() -> None:
    named = _doc_modules()
    missing = sorted(m for m in named if not (ROOT / m).exists())
    assert not missing, f"docs/ARCHITECTURE.md names modules that do not exist: {missing}"
    actual = {str(p.relative_to(ROOT)) for pkg in LAYERS for p in _modules(pkg) if p.name != "__init__.py"}
    covered = {a for a in actual if a in named or any(a.startswith(d) for d in named if d.endswith("/"))}
    assert actual == covered, f"modules missing from docs/ARCHITECTURE.md: {sorted(actual - covered)}"


def test_architecture_page_lists_exactly_the_cli_commands() -> None:
    import typer.main

    from cli.main import app

    def names(group: object, prefix: str = "") -> set[str]:
        out = set()
        for name, cmd in getattr(group, "commands", {}).items():
            full = f"{prefix}{name}"
            sub = names(cmd, full + " ")
            out |= sub if sub else {full}
        return out

    actual = names(typer.main.get_command(app))
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"`microtheory ([a-z][a-z0-9 -]*?[a-z0-9])`", text))
    assert actual - documented == set(), f"commands missing from docs/ARCHITECTURE.md: {sorted(actual - documented)}"
    stale = {d for d in documented if d not in actual}
    assert not stale, f"docs/ARCHITECTURE.md names commands that do not exist: {sorted(stale)}"
