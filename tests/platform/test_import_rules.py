"""The architecture's import rules, checked on the source.

- A service imports no other service, and none of the CLI, bench, deploy or tests.
- The kernel (services/platform) imports no service and nothing outside it.
- The kernel's api room never imports its worker room, and an api process
  (goals-api, checkins-api, metrics-api) never imports eventlet or nameko: grpcio
  blocks eventlet's green threads (docs/architecture.md, "Process model").
- The shared YAML document format imports neither the CLI nor a service.

Imports are read from every module's syntax tree, function-level imports
included, so a rule holds for code paths that tests never run.
"""

import ast
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
for _ in range(3):  # this file may sit one or two folders below tests/
    if (ROOT / "pyproject.toml").exists():
        break
    ROOT = ROOT.parent
SERVICES = sorted(p.name for p in (ROOT / "services").iterdir()
                  if p.is_dir() and p.name != "platform" and (p / "__init__.py").exists())
API_PROCESSES = [f"services.{name}.api" for name in SERVICES if (ROOT / "services" / name / "api.py").exists()]
GREEN_ONLY = ("eventlet", "nameko", "greenlet")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules_under(package: str) -> dict[str, Path]:
    return {module_name(p): p for p in (ROOT / package.replace(".", "/")).rglob("*.py")}


@cache
def imports_of(path: Path) -> frozenset[str]:
    """Absolute names of everything the module imports, relative imports resolved."""
    module = module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(filter(None, [*anchor, base]))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return frozenset(found)


def offending(path: Path, forbidden: tuple[str, ...]) -> list[str]:
    return sorted(name for name in imports_of(path) if any(name == f or name.startswith(f + ".") for f in forbidden))


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_imports_no_other_service_nor_the_cli_bench_deploy_or_tests(service):
    forbidden = (*(f"services.{other}" for other in SERVICES if other != service),
                 "v2mom_cli", "bench", "deploy", "tests")
    broken = {name: bad for name, path in modules_under(f"services.{service}").items()
              if (bad := offending(path, forbidden))}
    assert not broken, f"services/{service} imports what it must not: {broken}"


def test_the_kernel_imports_no_service_and_nothing_outside_it():
    forbidden = (*(f"services.{name}" for name in SERVICES), "v2mom_cli", "v2mom_format", "bench", "deploy", "tests")
    broken = {name: bad for name, path in modules_under("services.platform").items()
              if (bad := offending(path, forbidden))}
    assert not broken, f"the kernel imports what it must not: {broken}"


def test_the_kernels_api_room_never_reaches_its_worker_room_or_eventlet():
    forbidden = ("services.platform.worker", *GREEN_ONLY)
    for room in ("core", "store", "bus", "api"):
        broken = {name: bad for name, path in modules_under(f"services.platform.{room}").items()
                  if (bad := offending(path, forbidden))}
        assert not broken, f"services/platform/{room} is used by api processes but imports: {broken}"


def test_the_yaml_document_format_is_neutral():
    forbidden = ("v2mom_cli", "services", "deploy", "bench")
    broken = {name: bad for name, path in modules_under("v2mom_format").items() if (bad := offending(path, forbidden))}
    assert not broken, f"v2mom_format imports what it must not: {broken}"


def project_closure(entry: str) -> dict[str, list[str]]:
    """Every project module an entry module reaches, with who imported it (static, whole tree)."""
    known = {**modules_under("services"), **modules_under("v2mom_format")}
    seen, todo, importer = set(), [entry], {entry: []}
    while todo:
        name = todo.pop()
        if name in seen or name not in known:
            continue
        seen.add(name)
        for imported in imports_of(known[name]):
            for candidate in (imported, imported.rpartition(".")[0]):
                if candidate in known and candidate not in importer:
                    importer[candidate] = [*importer[name], name]
                    todo.append(candidate)
    return {name: importer[name] for name in seen}


@pytest.mark.parametrize("entry", API_PROCESSES)
def test_no_module_an_api_process_reaches_imports_eventlet(entry):
    known = {**modules_under("services"), **modules_under("v2mom_format")}
    green = {name: (offending(known[name], GREEN_ONLY), " -> ".join([*path, name]))
             for name, path in project_closure(entry).items() if offending(known[name], GREEN_ONLY)}
    assert not green, f"{entry} reaches modules that import eventlet or nameko: {green}"


@pytest.mark.parametrize("entry", API_PROCESSES)
def test_an_api_process_really_loads_no_eventlet(entry):
    """The static check's ground truth: import the api module as its process would, and look."""
    probe = (f"import sys, {entry}; "
             f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {GREEN_ONLY!r}); "
             "print(','.join(bad)); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{entry} loads {result.stdout.strip() or result.stderr[-2000:]}"


def test_the_rules_catch_a_violation():
    """A check that cannot fail is no check: a planted import must be reported."""
    planted = ROOT / "services" / SERVICES[0] / "_planted_for_test.py"
    other = next(name for name in SERVICES if name != SERVICES[0])
    planted.write_text(f"from services.{other} import api\nimport eventlet\n", encoding="utf-8")
    try:
        imports_of.cache_clear()
        assert offending(planted, (f"services.{other}",)) == [f"services.{other}", f"services.{other}.api"]
        assert offending(planted, GREEN_ONLY) == ["eventlet"]
        with pytest.raises(AssertionError, match="_planted_for_test"):
            test_a_service_imports_no_other_service_nor_the_cli_bench_deploy_or_tests(SERVICES[0])
    finally:
        planted.unlink()
        imports_of.cache_clear()
