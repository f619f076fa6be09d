"""slowburn as an Airflow provider package: provider info, connection types, plugin registration, dependencies.

Discovery is checked the way a user meets it: a wheel of this tree is built and installed with --target,
and Airflow runs in a subprocess on a site-packages view without the shared venv's own slowburn
distribution, so the result does not depend on what the shared venv happens to have installed.
"""
from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from importlib.metadata import PackageNotFoundError, distribution, packages_distributions
from pathlib import Path

import jsonschema
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from slowburn.airflow.provider_info import get_provider_info

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "plugins" / "slowburn"
AIRFLOW_ONLY = PACKAGE / "airflow"
SLOWBURN_TYPES = ("slowburn_warehouse", "slowburn_hubspot", "slowburn_salesforce", "slowburn_mailchimp")


def _airflow_schema(name: str) -> dict:
    import airflow

    return json.loads((Path(airflow.__file__).parent / name).read_text())


# ------------------------------------------------------------------------------------------ provider info
def provider_info_errors(info: dict) -> list[str]:
    """Every way `info` breaks Airflow's runtime schema or the stricter provider.yaml rules for connection forms."""
    runtime = _airflow_schema("provider_info.schema.json")
    strict = _airflow_schema("provider.yaml.schema.json")["properties"]["connection-types"]
    errors = [f"provider_info.schema.json: {e.json_path}: {e.message}"
              for e in jsonschema.Draft7Validator(runtime).iter_errors(info)]
    errors += [f"provider.yaml.schema.json: {e.json_path}: {e.message}"
               for e in jsonschema.Draft7Validator(strict).iter_errors(info.get("connection-types", []))]
    behaviours = _airflow_schema("customized_form_field_behaviours.schema.json")
    for conn in info.get("connection-types", []):
        behaviour = conn.get("ui-field-behaviour", {})
        as_airflow_reads_it = {"hidden_fields": behaviour.get("hidden-fields", []),
                               "relabeling": behaviour.get("relabeling", {}),
                               "placeholders": behaviour.get("placeholders", {})}
        errors += [f"{conn['connection-type']} ui-field-behaviour: {e.message}"
                   for e in jsonschema.Draft7Validator(behaviours).iter_errors(as_airflow_reads_it)]
        for name, field in conn.get("conn-fields", {}).items():
            errors += [f"{conn['connection-type']} field {name} default: {e.message}"
                       for e in jsonschema.Draft7Validator(field["schema"]).iter_errors(field["schema"].get("default"))]
    return errors


def test_provider_info_passes_airflows_own_schemas():
    info = get_provider_info()
    assert provider_info_errors(info) == []
    assert info["package-name"] == "slowburn"
    assert info["versions"][0] == _pyproject_version()
    assert [c["connection-type"] for c in info["connection-types"]] == list(SLOWBURN_TYPES)


def test_a_broken_provider_info_is_refused():
    info = get_provider_info()
    info["description"] = 3
    warehouse = info["connection-types"][0]
    warehouse["ui-field-behaviour"]["hidden-fields"] = ["hostname"]
    warehouse["conn-fields"]["dialect"]["schema"]["default"] = "oracle"
    del info["connection-types"][1]["conn-fields"]["client_id"]["label"]
    errors = "\n".join(provider_info_errors(info))
    assert "$.description" in errors
    assert "'hostname' is not one of" in errors
    assert "field dialect default: 'oracle' is not one of" in errors
    assert "'label' is a required property" in errors


def test_each_connection_type_is_its_hooks_and_every_form_field_is_read():
    """The hook class declares the same type and name, and no form field is one the code never reads."""
    import importlib

    strings_in_code = {node.value for path in PACKAGE.rglob("*.py") for node in ast.walk(ast.parse(path.read_text()))
                       if isinstance(node, ast.Constant) and isinstance(node.value, str)}
    for conn in get_provider_info()["connection-types"]:
        module, _, name = conn["hook-class-name"].rpartition(".")
        hook = getattr(importlib.import_module(module), name)
        assert (hook.conn_type, hook.hook_name) == (conn["connection-type"], conn["hook-name"])
        assert "get_connection_form_widgets" not in vars(hook) and "get_ui_field_behaviour" not in vars(hook), \
            "Airflow >= 3.2 deprecates these; declare the form in provider_info.py"
        unread = [f for f in conn.get("conn-fields", {}) if f not in strings_in_code]
        assert unread == [], f"{conn['connection-type']}: form fields no code reads: {unread}"


def _pyproject_version() -> str:
    text = (PACKAGE / "__init__.py").read_text()
    return re.search(r'__version__ = "([^"]+)"', text).group(1)


# -------------------------------------------------------------------------------------- connections work
def test_warehouse_connection_of_the_new_type_reaches_sqlite_and_old_types_still_work(tmp_path, monkeypatch):
    import sqlalchemy as sa

    from slowburn.airflow.hooks import SlowburnWarehouseHook, connection_url

    db = tmp_path / "wh.db"
    monkeypatch.setenv("AIRFLOW_CONN_WH_NEW", json.dumps({"conn_type": "slowburn_warehouse", "host": str(db),
                                                          "extra": {"dialect": "sqlite"}}))
    monkeypatch.setenv("AIRFLOW_CONN_WH_OLD", json.dumps({"conn_type": "sqlite", "host": str(db)}))
    new_url = SlowburnWarehouseHook("wh_new").sqlalchemy_url()
    assert new_url == SlowburnWarehouseHook("wh_old").sqlalchemy_url() == f"sqlite:///{db}"
    with sa.create_engine(new_url).begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
        conn.exec_driver_sql("INSERT INTO t VALUES (7)")
    with sa.create_engine(SlowburnWarehouseHook("wh_old").sqlalchemy_url()).connect() as conn:
        assert conn.exec_driver_sql("SELECT x FROM t").scalar() == 7

    assert connection_url("slowburn_warehouse", "db.internal", "sb", "p@ss", 5433, "leads", {}) == \
        connection_url("postgres", "db.internal", "sb", "p@ss", 5433, "leads", None) == \
        "postgresql+psycopg2://sb:p%40ss@db.internal:5433/leads"
    assert connection_url("slowburn_warehouse", "ignored", None, None, None, None,
                          '{"sqlalchemy_url": "sqlite:///x.db", "dialect": "postgresql"}') == "sqlite:///x.db"
    with pytest.raises(ValueError, match="dialect 'oracle' is not supported; use postgresql or sqlite"):
        connection_url("slowburn_warehouse", "h", None, None, None, None, {"dialect": "oracle"})


@pytest.mark.postgres
def test_warehouse_connection_of_the_new_type_reaches_postgresql(monkeypatch):
    import sqlalchemy as sa

    from slowburn.airflow.hooks import SlowburnWarehouseHook

    monkeypatch.setenv("AIRFLOW_CONN_WH_PG", json.dumps({"conn_type": "slowburn_warehouse", "host": "127.0.0.1",
                                                         "port": 5432, "login": "postgres", "schema": "test",
                                                         "extra": {"dialect": "postgresql"}}))
    engine = sa.create_engine(SlowburnWarehouseHook("wh_pg").sqlalchemy_url())
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT current_database()").scalar() == "test"
    except sa.exc.OperationalError:
        pytest.skip("PostgreSQL is not reachable at 127.0.0.1:5432")
    finally:
        engine.dispose()


@pytest.mark.parametrize("vendor", ["hubspot", "salesforce", "mailchimp"])
def test_vendor_hooks_read_connections_of_the_new_type_and_old_http_ones_alike(vendor, monkeypatch):
    """What the new form stores (top-level extra keys) is what the clients read; http Connections still work."""
    from slowburn.airflow.connectors import HOOKS

    hook_class = HOOKS[vendor]
    fields = {"hubspot": {"client_id": "cid", "client_secret": "cs", "refresh_token": "rt", "max_requests": 50,
                          "per_seconds": None},  # a form field left empty
              "salesforce": {"auth": "token", "quota_reserve": 0.2, "login_url": "https://test.salesforce.com"},
              "mailchimp": {"auth": "api_key", "list_id": "abc123", "per_seconds": 2}}[vendor]
    conn = {"host": "http://127.0.0.1:9", "password": "secret-us1", "extra": fields}
    monkeypatch.setenv("AIRFLOW_CONN_V_NEW", json.dumps({"conn_type": hook_class.conn_type, **conn}))
    monkeypatch.setenv("AIRFLOW_CONN_V_OLD", json.dumps({"conn_type": "http", **conn}))
    new, old = hook_class("v_new"), hook_class("v_old")
    assert hook_class.conn_type == f"slowburn_{vendor}"
    assert new.credentials() == old.credentials()
    assert new.credentials().extra == fields and new.credentials().base_url == "http://127.0.0.1:9"
    client = new.get_conn()
    try:
        assert type(client).__name__.lower().startswith(vendor)
        if vendor == "hubspot":  # the form's rate limit reaches the client; the empty window keeps its default
            assert (client.limiter.max_requests, client.limiter.per_seconds) == (50, 10)
    finally:
        client.close()
    if vendor == "mailchimp":
        assert new.list_id() == "abc123"


# ---------------------------------------------------------------------------- Airflow discovers the package
DRIVER = """
import json, site, sys, warnings
site.addsitedir(sys.argv[1])
warnings.simplefilter("ignore")
from airflow import plugins_manager
from airflow.providers_manager import ProvidersManager
from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService

pm = ProvidersManager()
slowburn = pm.providers.get("slowburn")
meta = [m.model_dump(mode="json") for m in HookMetaService.hook_meta_data() if m.connection_type.startswith("slowburn")]
print(json.dumps({
    "provider": None if slowburn is None else {"version": slowburn.version, "name": slowburn.data["name"]},
    "hooks": {t: (h.hook_class_name if h else None) for t, h in pm.hooks.items() if t.startswith("slowburn")},
    "ui": {m["connection_type"]: m for m in meta},
    "plugins": [{"name": p["name"], "source": str(p["source"])} for p in plugins_manager.get_plugin_info()],
    "plugin_errors": plugins_manager.get_import_errors(),
}))
"""
RUN_CLI = """
import site, sys
site.addsitedir(sys.argv.pop(1))
sys.argv[0] = "airflow"
from airflow.__main__ import main
sys.exit(main())
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A wheel of this tree installed with --target, and a site-packages view without the venv's slowburn."""
    import importlib.util
    import shutil

    missing = [m for m in ("setuptools", "wheel") if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"building the wheel offline needs {' and '.join(missing)} in this venv "
                    "(pip install -r requirements.txt)")
    tmp = tmp_path_factory.mktemp("provider")
    src = tmp / "src"
    (src / "plugins").mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(PACKAGE, src / "plugins" / "slowburn", ignore=shutil.ignore_patterns("__pycache__"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", tmp / "dist", src],
                   check=True, capture_output=True, timeout=300)
    [wheel] = (tmp / "dist").glob("slowburn-*.whl")
    subprocess.run([*pip, "install", "--no-deps", "--target", tmp / "target", wheel],
                   check=True, capture_output=True, timeout=300)
    site_view = tmp / "site"
    site_view.mkdir()
    site_packages = Path(sysconfig.get_paths()["purelib"])
    for entry in site_packages.iterdir():
        if not (entry.name.startswith("slowburn-") or entry.name.startswith("__editable__.slowburn")):
            (site_view / entry.name).symlink_to(entry)
    (tmp / "driver.py").write_text(DRIVER)
    (tmp / "cli.py").write_text(RUN_CLI)
    return tmp


def _airflow(installed: Path, script: str, *args, pythonpath: list[Path], plugins_folder: Path):
    home = installed / f"home-{len(list(installed.glob('home-*')))}"
    home.mkdir()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "AIRFLOW_HOME": str(home),
           "PYTHONPATH": os.pathsep.join(map(str, pythonpath)), "AIRFLOW__CORE__PLUGINS_FOLDER": str(plugins_folder),
           "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "GX_ANALYTICS_ENABLED": "false"}
    out = subprocess.run([sys.executable, "-S", installed / script, installed / "site", *args], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return out


@pytest.mark.airflow
def test_installed_wheel_is_a_provider_with_four_connection_types(installed):
    entry_points = (next((installed / "target").glob("slowburn-*.dist-info")) / "entry_points.txt").read_text()
    assert "provider_info = slowburn.airflow.provider_info:get_provider_info" in entry_points
    out = _airflow(installed, "driver.py", pythonpath=[installed / "target"], plugins_folder=ROOT / "plugins")
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert found["provider"] == {"version": _pyproject_version(), "name": "slowburn"}
    assert sorted(found["hooks"]) == sorted(SLOWBURN_TYPES) and all(found["hooks"].values()), found["hooks"]
    assert "Inconsistency" not in out.stderr
    # What the UI's connection form receives: relabelled standard fields and the extra fields, secrets masked.
    hubspot = found["ui"]["slowburn_hubspot"]
    assert hubspot["standard_fields"]["password"]["title"] == "Private app token"
    assert hubspot["standard_fields"]["login"]["hidden"] is True
    assert hubspot["extra_fields"]["refresh_token"]["schema"]["format"] == "password"
    warehouse = found["ui"]["slowburn_warehouse"]
    assert warehouse["extra_fields"]["dialect"]["value"] == "postgresql"
    assert warehouse["extra_fields"]["dialect"]["schema"]["enum"] == ["postgresql", "sqlite"]
    assert set(found["ui"]) == set(SLOWBURN_TYPES)
    # Installed AND in the plugins folder (make demo after `make install`, the Docker image with ./plugins
    # mounted): the plugin comes once, from the entry point, with no "already registered" error.
    slowburn_plugins = [p for p in found["plugins"] if p["name"] == "slowburn"]
    assert len(slowburn_plugins) == 1 and "EntryPoint" in slowburn_plugins[0]["source"], found["plugins"]
    assert found["plugin_errors"] == {}


@pytest.mark.airflow
def test_airflow_cli_lists_the_provider_hooks(installed):
    out = _airflow(installed, "cli.py", "providers", "hooks", "-o", "json", pythonpath=[installed / "target"],
                   plugins_folder=ROOT / "plugins")
    hooks = {h["connection_type"]: h for h in json.loads(out.stdout[out.stdout.index("["):])}
    for conn_type in SLOWBURN_TYPES:
        assert hooks[conn_type]["package_name"] == "slowburn", hooks.get(conn_type)


@pytest.mark.airflow
def test_plugins_folder_alone_registers_the_plugin_once(installed, tmp_path):
    # A copy without the slowburn.egg-info that an editable install (make install) leaves in plugins/:
    # on the path, that metadata would make slowburn an installed distribution.
    folder = tmp_path / "plugins"
    shutil.copytree(ROOT / "plugins", folder, ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    out = _airflow(installed, "driver.py", pythonpath=[folder], plugins_folder=folder)
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert found["provider"] is None  # not installed: no provider, but the plugins folder still serves the view
    assert [p["source"] for p in found["plugins"] if p["name"] == "slowburn"] == ["$PLUGINS_FOLDER/slowburn_plugin.py"]
    assert found["plugin_errors"] == {}


@pytest.mark.airflow
def test_an_unguarded_plugins_folder_file_would_register_twice(installed, tmp_path):
    """The control for the two tests above: without the entry-point guard Airflow reports a clash."""
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "slowburn_plugin.py").write_text("from slowburn.airflow.plugin import SlowburnPlugin\n")
    out = _airflow(installed, "driver.py", pythonpath=[installed / "target"], plugins_folder=folder)
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert any("already registered" in e for e in found["plugin_errors"].values()), found["plugin_errors"]


MIGRATE = """
import site, sys
site.addsitedir(sys.argv[1])
import slowburn
from slowburn.warehouse import Warehouse
print(Warehouse(sys.argv[2]).upgrade_schema(), slowburn.__file__)
"""


def test_installed_wheel_carries_the_migrations(installed, tmp_path):
    """env.py, versions/ and the template are package data: a warehouse upgrades from the wheel alone."""
    from slowburn.migrations import head
    (tmp_path / "migrate.py").write_text(MIGRATE)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path),
           "PYTHONPATH": str(installed / "target")}
    out = subprocess.run([sys.executable, "-S", tmp_path / "migrate.py", installed / "site",
                          f"sqlite:///{tmp_path / 'wh.db'}"], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    revision, module = out.stdout.split()
    assert revision == head() and module.startswith(str(installed / "target"))
    assert (installed / "target" / "slowburn" / "migrations" / "script.py.mako").is_file()


# ------------------------------------------------------------------------------ dependencies are declared
def _declared() -> tuple[dict[str, Requirement], dict[str, Requirement]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = {canonicalize_name(r.name): r for r in map(Requirement, project["dependencies"])}
    airflow = {canonicalize_name(r.name): r for r in map(Requirement, project["optional-dependencies"]["airflow"])}
    return runtime, airflow


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[canonicalize_name(name.split("[")[0])] = version.strip()
    return pins


def _provides_modules(dist_name: str) -> bool:
    try:
        files = distribution(dist_name).files or []
    except PackageNotFoundError:
        return False
    return any(f.suffix == ".py" for f in files)


def _covered_by(dist_names: list[str], declared: dict[str, Requirement]) -> bool:
    """A module is covered when one of its distributions is declared, or is a requirement of a declared
    meta-distribution (one with no modules of its own, such as apache-airflow for `airflow`)."""
    names = {canonicalize_name(d) for d in dist_names}
    if names & set(declared):
        return True
    for declared_name in declared:
        if _provides_modules(declared_name):
            continue
        try:
            requires = distribution(declared_name).requires or []
        except PackageNotFoundError:
            continue
        if names & {canonicalize_name(Requirement(r).name) for r in requires if "extra ==" not in r}:
            return True
    return False


def _imports(tree: ast.AST):
    """(top-level module, line, inside a function?) for every absolute import in `tree`."""
    def walk(node, in_function):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                for alias in child.names:
                    yield alias.name.split(".")[0], child.lineno, in_function
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                yield child.module.split(".")[0], child.lineno, in_function
            yield from walk(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)))
    yield from walk(tree, False)


def _nodeps() -> set[str]:
    """Distributions installed with --no-deps (requirements-nodeps.txt): their metadata conflicts with our pins,
    so pyproject cannot declare them and slowburn may only import them lazily, for tests and benchmarks."""
    path = ROOT / "requirements-nodeps.txt"
    if not path.exists():
        return set()
    lines = (line.split("#")[0].strip() for line in path.read_text().splitlines())
    return {canonicalize_name(Requirement(line).name) for line in lines if line}


def undeclared_imports(package_dir: Path, airflow_dir: Path, pyproject_deps, pins: dict[str, str],
                       optional: set[str] = frozenset()) -> list[str]:
    """One line per third-party import under `package_dir` whose distribution pyproject does not declare.

    Modules under `airflow_dir` may rely on the `airflow` extra too; everything else only on the runtime
    dependencies, because `pip install slowburn` without the extra must import it. Distributions in
    `optional` may be imported, but only inside a function.
    """
    runtime, airflow_extra = pyproject_deps
    own = package_dir.name
    module_dists = packages_distributions()
    problems = []
    for path in sorted(package_dir.rglob("*.py")):
        in_airflow = airflow_dir in path.parents or path.parent == airflow_dir
        allowed = {**runtime, **airflow_extra} if in_airflow else runtime
        where = "the `airflow` extra ([project.optional-dependencies] airflow)" if in_airflow \
            else "[project.dependencies]"
        rel = path.relative_to(package_dir.parent)
        for top, line, lazy in _imports(ast.parse(path.read_text(), filename=str(path))):
            if top in sys.stdlib_module_names or top in ("__future__", own):
                continue
            dists = module_dists.get(top, [])
            if _covered_by(dists, allowed):
                continue
            if {canonicalize_name(d) for d in dists} & set(optional):
                if not lazy:
                    problems.append(f"{rel}:{line} imports {top!r} at module level, but it is a --no-deps extra "
                                    "(requirements-nodeps.txt) that pip install slowburn does not bring: import it "
                                    "inside the function that needs it")
                continue
            if not dists:
                problems.append(f"{rel}:{line} imports {top!r}, which no installed distribution provides: "
                                f"install it, pin it in requirements.txt and declare it in pyproject.toml {where}")
                continue
            dist = dists[0]
            pin = pins.get(canonicalize_name(dist))
            hint = f'"{dist.lower()}>={pin}"' if pin else f'"{dist.lower()}" (and pin it in requirements.txt)'
            if not in_airflow and _covered_by(dists, airflow_extra):
                problems.append(f"{rel}:{line} imports {top!r} ({dist}) outside slowburn/airflow/, but "
                                f"only the `airflow` extra declares it: move {hint} to [project.dependencies]")
            else:
                problems.append(f"{rel}:{line} imports {top!r} from distribution {dist}"
                                f"{f' (requirements.txt pins {pin})' if pin else ''}, which pyproject.toml "
                                f"does not declare: add {hint} to {where}")
    return problems


def test_every_import_under_plugins_slowburn_is_declared_in_pyproject():
    problems = undeclared_imports(PACKAGE, AIRFLOW_ONLY, _declared(), _pins(), _nodeps())
    assert not problems, "pip install slowburn[airflow] would miss these:\n" + "\n".join(problems)


def test_the_import_check_names_undeclared_and_misplaced_imports(tmp_path):
    """The control: a synthetic package importing what pyproject does not declare, or declares too narrowly."""
    pkg = tmp_path / "slowburn"
    (pkg / "airflow").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "scoring.py").write_text("import json\nimport tabulate\nfrom slowburn import scoring\n"
                                    "import pandas as pd\nfrom fastapi import FastAPI\n")
    (pkg / "airflow" / "web.py").write_text("import fastapi\nfrom airflow.sdk import BaseHook\n"
                                            "import surely_not_installed_xyz\n")
    problems = undeclared_imports(pkg, pkg / "airflow", _declared(), _pins())
    text = "\n".join(problems)
    assert len(problems) == 3, text
    assert "slowburn/scoring.py:2 imports 'tabulate' from distribution tabulate (requirements.txt pins " in text
    assert 'add "tabulate>=' in text and "to [project.dependencies]" in text
    assert "slowburn/scoring.py:5 imports 'fastapi' (fastapi) outside slowburn/airflow/, but only the `airflow` " \
           "extra declares it" in text
    assert "slowburn/airflow/web.py:3 imports 'surely_not_installed_xyz', which no installed distribution" in text
    # A --no-deps distribution may be imported lazily only.
    (pkg / "airflow" / "web.py").unlink()
    (pkg / "scoring.py").write_text("import tabulate\n\ndef table():\n    from tabulate import tabulate\n")
    problems = undeclared_imports(pkg, pkg / "airflow", _declared(), _pins(), optional={"tabulate"})
    assert len(problems) == 1 and problems[0].startswith("slowburn/scoring.py:1 imports 'tabulate' at module level"), \
        problems


def test_declared_versions_admit_the_pinned_ones():
    """pyproject's ranges and requirements.txt's pins must agree, or the Docker image and pip disagree."""
    runtime, airflow_extra = _declared()
    pins = _pins()
    clashes = [f"{req} excludes the pinned {name}=={pins[name]}"
               for name, req in {**runtime, **airflow_extra}.items()
               if name in pins and not req.specifier.contains(pins[name], prereleases=True)]
    unpinned = [str(req) for name, req in {**runtime, **airflow_extra}.items() if name not in pins]
    assert clashes == [] and unpinned == [], f"clashes: {clashes}; declared but not pinned: {unpinned}"
