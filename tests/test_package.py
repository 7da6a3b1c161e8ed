"""What the distribution holds: every package on disk, and the config groups (conf/) as the
package `lrlab_conf`, so that an installed lrlab runs from any folder (`.ci/installed` builds
the wheel, installs it into a fresh environment and trains from an empty folder)."""

from __future__ import annotations

import ast
import sys
import tomllib
from fnmatch import fnmatch
from pathlib import Path

from tests.project import ROOT


def setuptools_settings():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_package_on_disk_is_in_the_distribution():
    listed = set(setuptools_settings()["packages"])
    on_disk = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for top in ("trainer", "schedules", "metrics", "hydra_plugins")
        for init in (ROOT / top).rglob("__init__.py")
    }
    assert on_disk <= listed, f"add to pyproject.toml's packages: {sorted(on_disk - listed)}"
    # conf/ as lrlab_conf, and the namespace Hydra finds its plugins in.
    assert listed - on_disk == {"lrlab_conf", "hydra_plugins"}, sorted(listed - on_disk)


def test_every_config_file_is_shipped_as_package_data():
    settings = setuptools_settings()
    assert settings["package-dir"]["lrlab_conf"] == "conf"
    patterns = settings["package-data"]["lrlab_conf"]
    conf = ROOT / "conf"
    files = [p.relative_to(conf).as_posix() for p in conf.rglob("*") if p.is_file()]
    unshipped = [
        f
        for f in files
        if f.endswith(".yaml")
        and not any(fnmatch(f, p) and f.count("/") == p.count("/") for p in patterns)
    ]
    assert not unshipped, f"conf files a wheel would leave out: {unshipped}"
    assert all(f.endswith(".yaml") or f == "__init__.py" for f in files), files


def test_the_apps_find_their_configs_through_the_package_not_the_checkout():
    import lrlab_conf

    from trainer.config import CONF, CONF_PACKAGE

    assert Path(lrlab_conf.__file__).parent == CONF and (CONF / "train.yaml").is_file()
    for app in (ROOT / "trainer" / "__main__.py", ROOT / "trainer" / "config" / "preview_app.py"):
        calls = [
            node
            for node in ast.walk(ast.parse(app.read_text()))
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "main"
        ]
        paths = [k.value for c in calls for k in c.keywords if k.arg == "config_path"]
        assert [ast.unparse(p) for p in paths] == ["CONF_PACKAGE"], app
    assert CONF_PACKAGE == "pkg://lrlab_conf"


def test_the_schedule_library_imports_no_app_code():
    # schedules/ holds the schedule families: Keras and NumPy, no OmegaConf, Hydra or trainer
    # (its __main__ alone starts the preview app, which lives in trainer.config).
    allowed = {"keras", "numpy", "schedules", "__future__"} | set(sys.stdlib_module_names)
    for path in sorted((ROOT / "schedules").glob("*.py")):
        if path.name == "__main__.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] in allowed, f"{path.name} imports {name}"


def _import_graph():
    """{module: modules of the project it imports}, at any level (a function-level import
    is still a dependency); a module's own parent packages are left out."""
    modules = {}
    for top in ("trainer", "schedules", "metrics", "hydra_plugins"):
        for path in (ROOT / top).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path

    def project_module(name):
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name

    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*up, *([node.module] if node.module else [])])
                targets = [base, *(f"{base}.{a.name}" for a in node.names)]
            else:
                continue
            for target in map(project_module, targets):
                if target and target != name and not name.startswith(f"{target}."):
                    deps.add(target)
        graph[name] = deps
    return graph


def test_no_module_imports_itself_back():
    graph = _import_graph()

    def reaches(start, goal, seen):
        for nxt in graph[start]:
            if nxt == goal or (nxt not in seen and not seen.add(nxt) and reaches(nxt, goal, seen)):
                return True
        return False

    cycles = sorted(m for m in graph if reaches(m, m, set()))
    assert not cycles, f"modules on an import cycle: {cycles}"
