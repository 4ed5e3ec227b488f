"""The tests' own layout: fixtures come from conftest.py files, plain helpers from tests/support, and no test
module leans on another one."""

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def python_files() -> list[Path]:
    return sorted(TESTS.rglob("*.py"))


def imports(path: Path) -> list[tuple[int, str, list[str]]]:
    """(line, module, names) of every import in a file, at any depth; a relative import's module as written."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.ImportFrom):
            found.append((node.lineno, "." * node.level + (node.module or ""), [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name, []) for alias in node.names)
    return found


def imported_modules(module: str, names: list[str]) -> list[str]:
    """The last parts of what an import brings in as modules: `from tests.goals import test_x` names test_x."""
    return [module.rsplit(".", 1)[-1]] + names


def test_no_module_of_the_tests_imports_star():
    offenders = [f"{path.relative_to(TESTS)}:{line}" for path in python_files()
                 for line, _, names in imports(path) if "*" in names]
    assert not offenders, f"`import *` hides where fixtures and helpers come from: {offenders}"


def test_no_module_of_the_tests_imports_a_test_module_or_a_conftest():
    offenders = [
        f"{path.relative_to(TESTS)}:{line} imports {module} {names}"
        for path in python_files() for line, module, names in imports(path)
        if (module.startswith("tests") or module.startswith("."))
        and any(part.startswith("test_") or part == "conftest" for part in imported_modules(module, names))
    ]
    assert not offenders, f"share helpers through tests/support and fixtures through conftest.py: {offenders}"


def test_helpers_live_in_tests_support_not_at_the_top_level():
    top = sorted(path.name for path in TESTS.glob("*.py"))
    assert top == ["__init__.py", "conftest.py"], f"only conftest.py at tests/ top level; helpers go in tests/support: {top}"
    assert not sorted(TESTS.rglob("helpers_*.py")), "helpers_*.py came back: put plain helpers in tests/support"


def test_every_folder_of_tests_is_a_package_with_its_conftest():
    for folder in sorted(p for p in TESTS.iterdir() if p.is_dir() and any(p.glob("test_*.py"))):
        assert (folder / "__init__.py").exists(), f"{folder.name}/ needs __init__.py: same-named test files would clash"
        assert (folder / "conftest.py").exists(), f"{folder.name}/ needs a conftest.py for its fixtures"


def test_test_modules_live_in_a_folder_of_their_service():
    assert not sorted(TESTS.glob("test_*.py")), "a test module belongs in a folder (goals/, checkins/, ...)"
    assert not sorted((TESTS / "support").rglob("test_*.py")), "tests/support holds helpers, not tests"
