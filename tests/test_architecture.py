"""The doors between the packages (docs/architecture.md, "Layers"): the import-linter contracts
hold, the import graph has no cycle, no private name crosses a package, and the checks that say
so can fail."""

import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _load_checker():
    spec = importlib.util.spec_from_file_location("check_architecture", ROOT / "scripts" / "check_architecture.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


checker = _load_checker()


def _write_package(root: Path, name: str, files: dict[str, str]) -> None:
    package = root / name
    package.mkdir()
    (package / "__init__.py").write_text("")
    for filename, text in files.items():
        (package / filename).write_text(textwrap.dedent(text))


def test_the_import_contracts_hold():
    result = subprocess.run(
        [str(Path(sys.executable).with_name("lint-imports")), "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def test_the_two_apps_import_each_other_without_a_cycle():
    assert checker.import_cycles() == []


def test_no_private_name_crosses_a_package():
    assert [str(problem) for problem in checker.private_imports()] == []


@pytest.fixture
def scratch_packages(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in [name for name in sys.modules if name.startswith(("scratch_low", "scratch_high"))]:
        del sys.modules[name]


def test_a_cycle_is_found_with_the_modules_named(scratch_packages):
    _write_package(scratch_packages, "scratch_low", {"a.py": "from scratch_high import b\n"})
    _write_package(scratch_packages, "scratch_high", {"b.py": "def f():\n    from scratch_low import a\n"})

    assert checker.import_cycles(("scratch_low", "scratch_high")) == [["scratch_high.b", "scratch_low.a"]]


def test_a_private_name_from_another_package_is_refused_and_a_sibling_may_use_it(scratch_packages):
    _write_package(
        scratch_packages,
        "scratch_low",
        {"inner.py": "_secret = 1\n", "sibling.py": "from scratch_low.inner import _secret\n"},
    )
    _write_package(scratch_packages, "scratch_high", {"outer.py": "from scratch_low.inner import _secret, public\n"})

    problems = checker.private_imports(scratch_packages, ("scratch_low", "scratch_high"))

    assert [(p.module, p.line) for p in problems] == [("scratch_high.outer", 1)]
    assert "scratch_low.inner._secret" in problems[0].text


#: The imports inside functions that say why (docs/architecture.md): a new one must be argued here.
ALLOWED_FUNCTION_IMPORTS = {
    "orders/apps.py": 2,  # AppConfig.ready: checks, receivers, tasks and the models, once ready
    "fulfillment/apps.py": 1,
    "fulfillment_site/console/apps.py": 1,
    "fulfillment_site/celery.py": 1,  # the worker's start-up check; loads before the app registry
    "fulfillment_site/logs.py": 1,  # Celery kept out of the settings' import path
}


def test_imports_inside_functions_do_not_grow():
    found: dict[str, int] = {}
    for package in checker.PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            lines = [line for line in path.read_text(encoding="utf-8").splitlines() if "PLC0415" in line]
            if lines:
                found[str(path.relative_to(ROOT))] = len(lines)
    assert found == ALLOWED_FUNCTION_IMPORTS


def test_row_locks_do_not_conflict_with_foreign_key_checks():
    """docs/reliability.md: every row lock is FOR NO KEY UPDATE. A plain FOR UPDATE conflicts with
    the key-share lock PostgreSQL's foreign-key check takes at COMMIT, and a staff retry holding an
    order FOR UPDATE deadlocked with a run committing an attempt row that references it."""
    plain = []
    for package in checker.PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if "select_for_update(" in line and "no_key=True" not in line:
                    plain.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert plain == [], "lock with select_for_update(no_key=True):\n" + "\n".join(plain)
