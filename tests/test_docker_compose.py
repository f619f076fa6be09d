"""Static checks of docker-compose.yml, Dockerfile and .env.example (no Docker needed).

The compose file is parsed with PyYAML (anchors and ``<<`` merge keys resolved) and,
where a check needs real values, rendered with a small implementation of compose
variable interpolation (``${VAR}``, ``${VAR:-default}``, ``${VAR:?error}``, ``$$`` ...)
using obviously fake values for the required secrets.

Each ``check_*`` function takes a :class:`Compose` and raises ``AssertionError``; the
tests run them against the real file, and ``test_checks_catch_broken_compose`` runs
them against deliberately broken copies (a service removed, a dependency dropped, a
literal secret, ...) to prove the checks fail for real.

``docker compose config -q`` is run as well, but only where ``docker compose version``
works; otherwise that test is skipped.

Set SLOWBURN_COMPOSE_FILE to check another compose file (its Dockerfile,
requirements.txt and .env.example are looked up next to it).
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
from pathlib import Path, PurePosixPath
from typing import Any, Callable
from urllib.parse import urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = Path(os.environ.get("SLOWBURN_COMPOSE_FILE", ROOT / "docker-compose.yml")).resolve()

REQUIRED_SERVICES = (
    "postgres",
    "redis",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-worker",
    "airflow-triggerer",
    "airflow-init",
)
REQUIRED_AIRFLOW_SERVICES = tuple(s for s in REQUIRED_SERVICES if s.startswith("airflow-"))
EXPECTED_COMMANDS = {
    "airflow-apiserver": "api-server",
    "airflow-scheduler": "scheduler",
    "airflow-dag-processor": "dag-processor",
    "airflow-worker": "celery worker",
    "airflow-triggerer": "triggerer",
}
PROJECT_MOUNTS = {
    "dags": "/opt/airflow/dags",
    "plugins": "/opt/airflow/plugins",
    "include": "/opt/airflow/include",
}
# Settings every Airflow component must agree on.
SHARED_SETTINGS = (
    "AIRFLOW__CORE__EXECUTOR",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
    "AIRFLOW__API_AUTH__JWT_SECRET",
    "AIRFLOW__CORE__FERNET_KEY",
    "AIRFLOW__CELERY__BROKER_URL",
    "AIRFLOW__CELERY__RESULT_BACKEND",
    "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
    "AIRFLOW_CONN_SLOWBURN_WAREHOUSE",
    "SLOWBURN_SOURCES",
    "SLOWBURN_HOME",
)
# Settings that, when present anywhere, must be identical everywhere.
SHARED_IF_PRESENT = ("AIRFLOW__API__SECRET_KEY",)
# Environment keys that hold a secret by themselves.
SECRET_KEY_RE = re.compile(r"(PASSWORD|SECRET|FERNET|TOKEN|_KEY$)", re.I)
# Environment keys whose value is a URL / connection that may embed a password.
CREDENTIAL_URL_KEYS = (
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
    "AIRFLOW__CELERY__RESULT_BACKEND",
    "AIRFLOW__CELERY__BROKER_URL",
)
SENTINEL = "fake-test-value-"


# --------------------------------------------------------------------------------------
# compose variable interpolation
# --------------------------------------------------------------------------------------
class MissingVariable(Exception):
    def __init__(self, name: str, message: str):
        super().__init__(f"{name}: {message}")
        self.name = name


_TOKEN = re.compile(r"\$(?:(?P<escaped>\$)|\{(?P<braced>[^}]*)\}|(?P<named>[A-Za-z_][A-Za-z0-9_]*))")
_BRACED = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>.*))?$", re.S)


def interpolate_str(value: str, env: dict[str, str]) -> str:
    def repl(m: re.Match) -> str:
        if m.group("escaped"):
            return "$"
        if m.group("named"):
            return env.get(m.group("named"), "")
        braced = _BRACED.match(m.group("braced"))
        assert braced, f"unsupported interpolation {m.group(0)!r}"
        name, op, arg = braced.group("name", "op", "arg")
        is_set = name in env
        is_nonempty = bool(env.get(name))
        if op is None:
            return env.get(name, "")
        if op == ":-":
            return env[name] if is_nonempty else interpolate_str(arg, env)
        if op == "-":
            return env[name] if is_set else interpolate_str(arg, env)
        if op == ":?":
            if not is_nonempty:
                raise MissingVariable(name, arg)
            return env[name]
        if op == "?":
            if not is_set:
                raise MissingVariable(name, arg)
            return env[name]
        if op == ":+":
            return interpolate_str(arg, env) if is_nonempty else ""
        if op == "+":
            return interpolate_str(arg, env) if is_set else ""
        raise AssertionError(f"unsupported operator in {m.group(0)!r}")

    return _TOKEN.sub(repl, value)


def interpolate(obj: Any, env: dict[str, str]) -> Any:
    if isinstance(obj, str):
        return interpolate_str(obj, env)
    if isinstance(obj, dict):
        return {k: interpolate(v, env) for k, v in obj.items()}
    if isinstance(obj, list):
        return [interpolate(v, env) for v in obj]
    return obj


def iter_strings(obj: Any):
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from iter_strings(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from iter_strings(v)


def variable_refs(obj: Any) -> list[tuple[str, str | None, str]]:
    """Every ``${NAME<op><arg>}`` used anywhere in ``obj``: (name, op, arg)."""
    out = []
    for s in iter_strings(obj):
        for m in _TOKEN.finditer(s):
            if m.group("braced") is not None:
                b = _BRACED.match(m.group("braced"))
                if b:
                    out.append((b.group("name"), b.group("op"), b.group("arg") or ""))
            elif m.group("named"):
                out.append((m.group("named"), None, ""))
    return out


# --------------------------------------------------------------------------------------
# normalisation helpers
# --------------------------------------------------------------------------------------
def env_of(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        out = {}
        for item in env:
            key, _, value = str(item).partition("=")
            out[key] = value
        return out
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def depends_of(service: dict) -> dict[str, str]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return {d: "service_started" for d in deps}
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def mounts_of(service: dict) -> list[tuple[str, str]]:
    """(source, target) pairs; bind sources keep their ./ prefix."""
    out = []
    for vol in service.get("volumes") or []:
        if isinstance(vol, dict):
            out.append((str(vol.get("source", "")), str(vol["target"])))
            continue
        parts = str(vol).split(":")
        if len(parts) == 1:
            out.append(("", parts[0]))
        else:
            out.append((parts[0], parts[1]))
    return out


def healthcheck_text(service: dict) -> str:
    test = (service.get("healthcheck") or {}).get("test")
    if test is None or (service.get("healthcheck") or {}).get("disable"):
        return ""
    return " ".join(test) if isinstance(test, list) else str(test)


def command_text(service: dict) -> str:
    cmd = service.get("command")
    if cmd is None:
        return ""
    return " ".join(cmd) if isinstance(cmd, list) else str(cmd)


def container_ports(service: dict) -> set[int]:
    out = set()
    for port in service.get("ports") or []:
        if isinstance(port, dict):
            out.add(int(port["target"]))
        else:
            out.add(int(str(port).split(":")[-1].split("/")[0]))
    return out


def is_bind(source: str) -> bool:
    return source.startswith((".", "/", "~", "$"))


# --------------------------------------------------------------------------------------
# the compose model
# --------------------------------------------------------------------------------------
class Compose:
    def __init__(self, raw: dict, base_dir: Path):
        assert isinstance(raw, dict) and isinstance(raw.get("services"), dict), "no `services:` mapping"
        self.raw = raw
        self.base_dir = base_dir
        self.required_vars = sorted({n for n, op, _ in variable_refs(raw) if op in (":?", "?")})
        self.fake_env = {name: f"{SENTINEL}{name.lower().strip('_')}" for name in self.required_vars}
        self.rendered = interpolate(raw, self.fake_env)

    @classmethod
    def load(cls, path: Path = COMPOSE_FILE) -> "Compose":
        with path.open(encoding="utf-8") as fh:
            return cls(yaml.safe_load(fh), path.parent)

    @property
    def services(self) -> dict:
        return self.rendered["services"]

    @property
    def raw_services(self) -> dict:
        return self.raw["services"]

    def airflow_services(self) -> list[str]:
        """Required Airflow services plus any other service built from / running the Airflow image."""
        names = [s for s in REQUIRED_AIRFLOW_SERVICES if s in self.services]
        for name, svc in self.services.items():
            if name not in names and ("build" in svc or "airflow" in str(svc.get("image", ""))):
                names.append(name)
        return names

    def long_running_airflow_services(self) -> list[str]:
        """Airflow services started by a plain `docker compose up` (no profile), except airflow-init."""
        return [s for s in self.airflow_services()
                if s != "airflow-init" and not self.services[s].get("profiles")]

    def env(self, service: str, rendered: bool = True) -> dict[str, str]:
        return env_of((self.services if rendered else self.raw_services)[service])

    def path(self, relative: str) -> Path:
        return (self.base_dir / relative).resolve()

    def dockerfiles(self) -> list[Path]:
        out = []
        for name in self.airflow_services():
            build = self.services[name].get("build")
            if build is None:
                continue
            if isinstance(build, str):
                build = {"context": build}
            context = self.path(build.get("context", "."))
            out.append((context / build.get("dockerfile", "Dockerfile")).resolve())
        return sorted(set(out))


def read_dockerfile(path: Path) -> list[str]:
    """Dockerfile instructions with continuation lines joined and comments dropped."""
    text = path.read_text(encoding="utf-8")
    lines, current = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        lines.append(current + stripped)
        current = ""
    if current:
        lines.append(current)
    return lines


def airflow_pin(requirements: Path) -> str:
    for line in requirements.read_text(encoding="utf-8").splitlines():
        m = re.match(r"^apache-airflow==([\w.]+)\s*$", line.strip(), re.I)
        if m:
            return m.group(1)
    raise AssertionError(f"{requirements} does not pin apache-airflow==...")


# --------------------------------------------------------------------------------------
# checks
# --------------------------------------------------------------------------------------
def check_required_services(c: Compose) -> None:
    missing = [s for s in REQUIRED_SERVICES if s not in c.services]
    assert not missing, f"services missing from compose file: {missing}"


def check_commands(c: Compose) -> None:
    for name, expected in EXPECTED_COMMANDS.items():
        assert name in c.services, f"{name} missing"
        assert command_text(c.services[name]).strip() == expected, \
            f"{name} should run `{expected}`, runs {command_text(c.services[name])!r}"


def check_airflow_image(c: Compose) -> None:
    services = c.airflow_services()
    assert set(REQUIRED_AIRFLOW_SERVICES) <= set(services), "Airflow services missing"
    images = {name: (c.services[name].get("image"), json.dumps(c.services[name].get("build"), sort_keys=True))
              for name in services}
    assert len(set(images.values())) == 1, f"Airflow services do not share one image/build: {images}"
    pin = airflow_pin(c.path("requirements.txt"))
    assert pin.startswith("3.3."), f"requirements.txt pins apache-airflow=={pin}, expected 3.3.x"
    dockerfiles = c.dockerfiles()
    if not dockerfiles:
        for name in services:
            image = str(c.services[name].get("image", ""))
            assert re.search(r"apache/airflow:(slim-)?3\.3\.", image), f"{name}: image {image!r} is not Airflow 3.3"
        return
    for dockerfile in dockerfiles:
        assert dockerfile.is_file(), f"build refers to missing {dockerfile}"
        froms = [l for l in read_dockerfile(dockerfile) if l.upper().startswith("FROM ")]
        assert froms, f"{dockerfile} has no FROM"
        final = froms[-1].split()[1]
        m = re.match(r"^apache/airflow:(?:slim-)?(\d+\.\d+\.\d+)(?:-python3\.\d+)?$", final)
        assert m, f"{dockerfile}: final stage FROM {final!r} is not an apache/airflow image"
        assert m.group(1).startswith("3.3."), f"{dockerfile}: FROM {final} is not Airflow 3.3"
        assert m.group(1) == pin, f"{dockerfile}: FROM {final} differs from requirements.txt apache-airflow=={pin}"


def check_dockerfile_installs_requirements(c: Compose) -> None:
    dockerfiles = c.dockerfiles()
    assert dockerfiles, "Airflow services are not built from a Dockerfile"
    for dockerfile in dockerfiles:
        lines = read_dockerfile(dockerfile)
        copied = None
        for line in lines:
            parts = [p for p in line.split()[1:] if not p.startswith("--")]
            if line.upper().startswith(("COPY ", "ADD ")) and "requirements.txt" in parts[:-1]:
                dest = parts[-1]
                copied = str(PurePosixPath(dest) / "requirements.txt") if dest.endswith("/") else dest
        assert copied, f"{dockerfile} does not COPY requirements.txt"
        copied_name = PurePosixPath(copied).name
        installs = [l for l in lines if l.upper().startswith("RUN ") and "pip install" in l]
        assert any(re.search(r"-r\s+\S*" + re.escape(copied_name) + r"(\s|$)", l) for l in installs), \
            f"{dockerfile} never runs `pip install -r {copied}`"
        assert any("--no-deps" in l and "-r " not in l for l in installs), \
            f"{dockerfile} does not pip install the slowburn package with --no-deps"
        for line in lines:
            if line.upper().startswith(("ENV ", "ARG ")):
                assert not SECRET_KEY_RE.search(line.split(None, 1)[1].split("=")[0]), \
                    f"{dockerfile}: secret baked into the image: {line}"


def check_executor(c: Compose) -> None:
    for name in c.airflow_services():
        assert c.env(name).get("AIRFLOW__CORE__EXECUTOR") == "CeleryExecutor", f"{name}: executor is not CeleryExecutor"


def check_shared_settings(c: Compose) -> None:
    services = c.airflow_services()
    for key in SHARED_SETTINGS + SHARED_IF_PRESENT:
        values = {name: c.env(name, rendered=False).get(key) for name in services}
        if key in SHARED_IF_PRESENT and not any(values.values()):
            continue
        assert all(values.values()), f"{key} missing in {[n for n, v in values.items() if not v]}"
        assert len(set(values.values())) == 1, f"{key} differs between Airflow services: {values}"


def _postgres_creds(c: Compose, service: str) -> tuple[str, str, str]:
    env = c.env(service)
    user = env.get("POSTGRES_USER", "postgres")
    return user, env.get("POSTGRES_PASSWORD", ""), env.get("POSTGRES_DB", user)


def check_metadata_db(c: Compose) -> None:
    user, password, db = _postgres_creds(c, "postgres")
    for name in c.airflow_services():
        env = c.env(name)
        for key in ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__CELERY__RESULT_BACKEND"):
            url = urlsplit(env[key])
            assert url.scheme.startswith(("postgresql", "db+postgresql")), f"{name}: {key} is not postgresql"
            assert url.hostname == "postgres", f"{name}: {key} points at {url.hostname!r}, not the postgres service"
            assert (url.username, url.password, url.path.lstrip("/")) == (user, password, db), \
                f"{name}: {key} credentials/database do not match the postgres service"


def check_broker(c: Compose) -> None:
    assert "redis" in c.services, "redis service missing"
    assert "redis" in str(c.services["redis"].get("image", "")), "redis service does not run a redis image"
    for name in c.airflow_services():
        url = urlsplit(c.env(name).get("AIRFLOW__CELERY__BROKER_URL", ""))
        assert url.scheme == "redis", f"{name}: broker is not redis"
        assert url.hostname == "redis" and (url.port or 6379) == 6379, \
            f"{name}: broker {url.geturl()!r} does not point at the redis service"


def check_execution_api(c: Compose) -> None:
    for name in c.airflow_services():
        url = urlsplit(c.env(name).get("AIRFLOW__CORE__EXECUTION_API_SERVER_URL", ""))
        assert url.hostname == "airflow-apiserver" and url.port == 8080 and url.path.rstrip("/") == "/execution", \
            f"{name}: execution API URL {url.geturl()!r} is not http://airflow-apiserver:8080/execution/"


def check_mounts(c: Compose) -> None:
    declared = set((c.rendered.get("volumes") or {}).keys())
    home = None
    for name in c.airflow_services():
        mounts = mounts_of(c.services[name])
        by_target = {target: source for source, target in mounts}
        for folder, target in PROJECT_MOUNTS.items():
            source = by_target.get(target)
            assert source is not None, f"{name}: nothing mounted at {target}"
            assert is_bind(source) and c.path(source) == c.path(folder), \
                f"{name}: {target} is mounted from {source!r}, expected ./{folder}"
        assert "/opt/airflow/logs" in by_target, f"{name}: no logs volume at /opt/airflow/logs"
        env = c.env(name)
        home = env.get("SLOWBURN_HOME")
        assert home, f"{name}: SLOWBURN_HOME not set"
        assert home in by_target, f"{name}: SLOWBURN_HOME {home} is not a mounted volume"
        sources_file = PurePosixPath(env.get("SLOWBURN_SOURCES", ""))
        assert sources_file.is_absolute(), f"{name}: SLOWBURN_SOURCES must be an absolute container path"
        assert any(sources_file.is_relative_to(t) for t in by_target), \
            f"{name}: SLOWBURN_SOURCES {sources_file} is not inside a mounted folder"
        for source, target in mounts:
            if source and not is_bind(source):
                assert source in declared, f"{name}: named volume {source!r} is not declared under `volumes:`"


def check_depends_on(c: Compose) -> None:
    for name, svc in c.services.items():
        for dep, condition in depends_of(svc).items():
            assert dep in c.services, f"{name} depends on undefined service {dep!r}"
            if condition == "service_healthy":
                assert healthcheck_text(c.services[dep]), f"{name} waits for {dep} to be healthy, but {dep} has no healthcheck"
    init_deps = depends_of(c.services["airflow-init"])
    for dep in ("postgres", "redis"):
        assert init_deps.get(dep) == "service_healthy", f"airflow-init must wait for {dep} to be healthy"
    for name in c.long_running_airflow_services():
        deps = depends_of(c.services[name])
        assert deps.get("airflow-init") == "service_completed_successfully", \
            f"{name} must wait for airflow-init to complete successfully"
        for dep in ("postgres", "redis"):
            assert deps.get(dep) == "service_healthy", f"{name} must wait for {dep} to be healthy"
    # no cycles
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        if state.get(node) == 2:
            return
        assert state.get(node) != 1, f"depends_on cycle: {' -> '.join(trail + [node])}"
        state[node] = 1
        for dep in depends_of(c.services[node]):
            visit(dep, trail + [node])
        state[node] = 2

    for name in c.services:
        visit(name, [])


def check_healthchecks(c: Compose) -> None:
    assert "pg_isready" in healthcheck_text(c.services.get("postgres", {})), "postgres healthcheck must use pg_isready"
    redis = healthcheck_text(c.services.get("redis", {}))
    assert "redis-cli" in redis and "ping" in redis, "redis healthcheck must run redis-cli ping"
    api = c.services.get("airflow-apiserver", {})
    assert re.search(r"localhost:8080/api/v2/version", healthcheck_text(api)), \
        "airflow-apiserver healthcheck must query http://localhost:8080/api/v2/version"
    assert 8080 in container_ports(api), "airflow-apiserver must publish container port 8080"


def check_init(c: Compose) -> None:
    init = c.services["airflow-init"]
    env = c.env("airflow-init")
    assert env.get("_AIRFLOW_DB_MIGRATE") == "true", "airflow-init must migrate the DB (_AIRFLOW_DB_MIGRATE)"
    assert env.get("_AIRFLOW_WWW_USER_CREATE") == "true", "airflow-init must create the admin user"
    assert env.get("_AIRFLOW_WWW_USER_USERNAME"), "admin username not set"
    raw_password = c.env("airflow-init", rendered=False).get("_AIRFLOW_WWW_USER_PASSWORD", "")
    assert re.fullmatch(r"\$\{\w+:?\?[^}]*\}", raw_password), "admin password must be a required ${VAR:?} variable"
    assert "/entrypoint airflow" in command_text(init) or "db migrate" in command_text(init), \
        "airflow-init must run the Airflow entrypoint (db migrate / user creation)"
    assert str(init.get("restart", "no")) in ("no", "on-failure"), "airflow-init is one-shot; it must not restart always"


def check_warehouse_connection(c: Compose) -> None:
    for name in c.airflow_services():
        raw = c.env(name).get("AIRFLOW_CONN_SLOWBURN_WAREHOUSE")
        assert raw, f"{name}: AIRFLOW_CONN_SLOWBURN_WAREHOUSE not set"
        try:
            conn = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise AssertionError(f"{name}: AIRFLOW_CONN_SLOWBURN_WAREHOUSE is not JSON: {exc}") from exc
        assert conn.get("conn_type") == "postgres", f"{name}: slowburn_warehouse conn_type must be postgres"
        host = conn.get("host")
        assert host in c.services, f"{name}: slowburn_warehouse host {host!r} is not a compose service"
        assert "postgres" in str(c.services[host].get("image", "")), f"warehouse host {host} is not PostgreSQL"
        assert "pg_isready" in healthcheck_text(c.services[host]), f"warehouse service {host} needs a pg_isready healthcheck"
        assert int(conn.get("port", 5432)) == 5432
        user, password, db = _postgres_creds(c, host)
        assert conn.get("login") and conn.get("password") and conn.get("schema"), "warehouse login/password/schema missing"
        if db != conn["schema"] or user != conn["login"]:
            # second database in an existing server: it must be created by an init script
            targets = [t for _, t in mounts_of(c.services[host])]
            assert any(t.startswith("/docker-entrypoint-initdb.d") for t in targets), \
                f"warehouse database {conn['schema']!r} on {host} is not created by any init script"
        else:
            assert conn["password"] == password, "warehouse connection password differs from the server's"
        extra = conn.get("extra") or {}
        if isinstance(extra, str):
            extra = json.loads(extra)
        if extra.get("sqlalchemy_url"):
            url = urlsplit(extra["sqlalchemy_url"])
            assert url.scheme.startswith("postgresql"), "extra.sqlalchemy_url must use a postgresql dialect"
            assert (url.hostname, url.username, url.password, url.path.lstrip("/")) == \
                (host, conn["login"], conn["password"], conn["schema"]), \
                "extra.sqlalchemy_url and the connection fields disagree"
    assert depends_of(c.services["airflow-worker"]).get(host) == "service_healthy", \
        f"airflow-worker runs the tasks and must wait for {host} to be healthy"


def check_no_literal_secrets(c: Compose) -> None:
    # 1. secret-named variables never have a default value
    for name, op, arg in variable_refs(c.raw):
        if SECRET_KEY_RE.search(name):
            assert op in (":?", "?"), f"${{{name}}} must be required (${{{name}:?...}}), not {op or 'optional'}"
    for svc_name, svc in c.raw_services.items():
        rendered_env = c.env(svc_name)
        for key, value in env_of(svc).items():
            # 2. secret-named settings come entirely from a required variable
            if SECRET_KEY_RE.search(key):
                assert re.fullmatch(r"\$\{\w+:?\?[^}]*\}", value.strip()), \
                    f"{svc_name}: {key} is a literal or defaulted value; use ${{VAR:?...}}"
            # 3. passwords inside URLs / JSON connections come from required variables
            if key in CREDENTIAL_URL_KEYS:
                password = urlsplit(rendered_env[key]).password
                assert not password or password.startswith(SENTINEL), \
                    f"{svc_name}: {key} embeds a literal password"
            if key.startswith("AIRFLOW_CONN_"):
                text = rendered_env[key]
                if text.lstrip().startswith("{"):
                    conn = json.loads(text)
                    assert not conn.get("password") or conn["password"].startswith(SENTINEL), \
                        f"{svc_name}: {key} embeds a literal password"
                    text = json.dumps(conn.get("extra") or "")
                for url in re.findall(r"[a-z0-9+]+://[^\s\"']+", text):
                    password = urlsplit(url).password
                    assert not password or password.startswith(SENTINEL), \
                        f"{svc_name}: {key} embeds a literal password"


def check_env_example(c: Compose) -> None:
    example = c.path(".env.example")
    assert example.is_file(), ".env.example missing"
    values = {}
    for line in example.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f".env.example: malformed line {line!r}"
            values[key.strip()] = value.strip().strip("'\"")
    undocumented = [v for v in c.required_vars if v not in values]
    assert not undocumented, f"required variables not documented in .env.example: {undocumented}"
    for must in ("AIRFLOW_UID", "AIRFLOW__API_AUTH__JWT_SECRET", "_AIRFLOW_WWW_USER_PASSWORD"):
        assert must in values, f".env.example does not document {must}"
    assert any("FERNET" in k for k in values), ".env.example does not document the fernet key"
    for key, value in values.items():
        if SECRET_KEY_RE.search(key):
            assert value == "" or "CHANGE_ME" in value.upper(), \
                f".env.example: {key} holds something that is not an obvious placeholder"


ALL_CHECKS: list[Callable[[Compose], None]] = [
    check_required_services,
    check_commands,
    check_airflow_image,
    check_dockerfile_installs_requirements,
    check_executor,
    check_shared_settings,
    check_metadata_db,
    check_broker,
    check_execution_api,
    check_mounts,
    check_depends_on,
    check_healthchecks,
    check_init,
    check_warehouse_connection,
    check_no_literal_secrets,
    check_env_example,
]


# --------------------------------------------------------------------------------------
# tests on the real file
# --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def compose() -> Compose:
    assert COMPOSE_FILE.is_file(), f"{COMPOSE_FILE} missing"
    return Compose.load()


@pytest.mark.parametrize("check", ALL_CHECKS, ids=lambda f: f.__name__.removeprefix("check_"))
def test_compose(compose: Compose, check: Callable[[Compose], None]) -> None:
    check(compose)


def test_required_secrets_are_enforced(compose: Compose) -> None:
    """Rendering without the secrets fails, like `docker compose` would."""
    for name in ("AIRFLOW__API_AUTH__JWT_SECRET", "_AIRFLOW_WWW_USER_PASSWORD"):
        assert name in compose.required_vars
        env = {k: v for k, v in compose.fake_env.items() if k != name}
        with pytest.raises(MissingVariable):
            interpolate(compose.raw, env)
    assert any("FERNET" in v for v in compose.required_vars), "fernet key must be a required variable"


def test_env_file_not_tracked() -> None:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    tracked = subprocess.run(["git", "ls-files", "--", ".env"], cwd=COMPOSE_FILE.parent,
                             capture_output=True, text=True, timeout=30)
    assert tracked.stdout.strip() == "", ".env (real secrets) is tracked by git"


def _docker_compose_works() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    return probe.returncode == 0


def test_docker_compose_config(compose: Compose, tmp_path: Path) -> None:
    if not _docker_compose_works():
        pytest.skip("`docker compose version` does not work here")
    env_file = tmp_path / "ci.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in compose.fake_env.items()), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in compose.fake_env}
    cmd = ["docker", "compose", "--env-file", str(env_file), "-f", str(COMPOSE_FILE), "config", "-q"]
    result = subprocess.run(cmd, cwd=COMPOSE_FILE.parent, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    # and without the secrets compose must refuse
    env_file.write_text("", encoding="utf-8")
    result = subprocess.run(cmd, cwd=COMPOSE_FILE.parent, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0, "docker compose accepted the file without the required secrets"


# --------------------------------------------------------------------------------------
# the checks themselves catch broken files
# --------------------------------------------------------------------------------------
def _delete_service(name: str) -> Callable[[dict], None]:
    def mutate(raw: dict) -> None:
        del raw["services"][name]
    return mutate


def _set_env(service: str, key: str, value: str | None) -> Callable[[dict], None]:
    def mutate(raw: dict) -> None:
        svc = raw["services"][service]
        env = dict(env_of(svc))  # unshare the anchored mapping
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
        svc["environment"] = env
    return mutate


def _drop_dependency(service: str, dep: str) -> Callable[[dict], None]:
    def mutate(raw: dict) -> None:
        svc = raw["services"][service]
        deps = dict(svc.get("depends_on") or {})
        deps.pop(dep, None)
        svc["depends_on"] = deps
    return mutate


def _add_dependency(service: str, dep: str) -> Callable[[dict], None]:
    def mutate(raw: dict) -> None:
        svc = raw["services"][service]
        svc["depends_on"] = dict(svc.get("depends_on") or {}, **{dep: {"condition": "service_started"}})
    return mutate


def _drop_mount(service: str, target: str) -> Callable[[dict], None]:
    def mutate(raw: dict) -> None:
        svc = raw["services"][service]
        svc["volumes"] = [v for v in svc.get("volumes") or [] if target not in str(v)]
    return mutate


def _drop_healthcheck(service: str) -> Callable[[dict], None]:
    def mutate(raw: dict) -> None:
        raw["services"][service].pop("healthcheck", None)
    return mutate


def _use_image(image: str) -> Callable[[dict], None]:
    def mutate(raw: dict) -> None:
        for svc in raw["services"].values():
            if "build" in svc:
                svc.pop("build")
                svc["image"] = image
    return mutate


MUTATIONS: dict[str, tuple[Callable[[dict], None], Callable[[Compose], None]]] = {
    # name: (how to break the file, the check that must notice)
    **{f"delete-{s}": (_delete_service(s), check_required_services) for s in REQUIRED_SERVICES},
    "delete-warehouse": (_delete_service("warehouse"), check_warehouse_connection),
    "scheduler-skips-init": (_drop_dependency("airflow-scheduler", "airflow-init"), check_depends_on),
    "triggerer-skips-postgres": (_drop_dependency("airflow-triggerer", "postgres"), check_depends_on),
    "init-skips-redis": (_drop_dependency("airflow-init", "redis"), check_depends_on),
    "worker-skips-warehouse": (_drop_dependency("airflow-worker", "warehouse"), check_warehouse_connection),
    "depends-on-undefined": (_add_dependency("airflow-worker", "flower"), check_depends_on),
    "worker-local-executor": (_set_env("airflow-worker", "AIRFLOW__CORE__EXECUTOR", "LocalExecutor"),
                              check_executor),
    "triggerer-own-jwt": (_set_env("airflow-triggerer", "AIRFLOW__API_AUTH__JWT_SECRET", "${OTHER_JWT:?x}"),
                          check_shared_settings),
    "scheduler-other-db": (_set_env("airflow-scheduler", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
                                    "postgresql+psycopg2://a:${POSTGRES_PASSWORD:?x}@postgres/other"),
                           check_shared_settings),
    "broker-localhost": (_set_env("airflow-worker", "AIRFLOW__CELERY__BROKER_URL", "redis://:@localhost:6379/0"),
                         check_broker),
    "execution-api-localhost": (_set_env("airflow-worker", "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
                                         "http://localhost:8080/execution/"), check_execution_api),
    "literal-jwt": (_set_env("airflow-apiserver", "AIRFLOW__API_AUTH__JWT_SECRET", "s3cr3t-in-git"),
                    check_no_literal_secrets),
    "defaulted-admin-password": (_set_env("airflow-init", "_AIRFLOW_WWW_USER_PASSWORD",
                                          "${_AIRFLOW_WWW_USER_PASSWORD:-airflow}"), check_no_literal_secrets),
    "literal-db-password": (_set_env("airflow-worker", "AIRFLOW__CELERY__RESULT_BACKEND",
                                     "db+postgresql://airflow:airflow@postgres/airflow"), check_no_literal_secrets),
    "warehouse-conn-mysql": (_set_env("airflow-worker", "AIRFLOW_CONN_SLOWBURN_WAREHOUSE",
                                      '{"conn_type": "mysql", "host": "warehouse"}'), check_warehouse_connection),
    "no-warehouse-conn": (_set_env("airflow-worker", "AIRFLOW_CONN_SLOWBURN_WAREHOUSE", None),
                          check_warehouse_connection),
    "no-slowburn-home": (_set_env("airflow-dag-processor", "SLOWBURN_HOME", None), check_mounts),
    "dag-processor-no-include": (_drop_mount("airflow-dag-processor", "/opt/airflow/include"), check_mounts),
    "worker-no-dags": (_drop_mount("airflow-worker", "/opt/airflow/dags"), check_mounts),
    "postgres-no-healthcheck": (_drop_healthcheck("postgres"), check_healthchecks),
    "redis-no-healthcheck": (_drop_healthcheck("redis"), check_healthchecks),
    "apiserver-no-healthcheck": (_drop_healthcheck("airflow-apiserver"), check_healthchecks),
    "airflow-2-image": (_use_image("apache/airflow:2.10.5"), check_airflow_image),
}


def run_all_checks(c: Compose) -> None:
    for check in ALL_CHECKS:
        check(c)


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_checks_catch_broken_compose(compose: Compose, mutation: str) -> None:
    mutate, expected_check = MUTATIONS[mutation]
    raw = copy.deepcopy(compose.raw)
    mutate(raw)
    broken = Compose(raw, compose.base_dir)
    with pytest.raises(AssertionError):
        expected_check(broken)
    with pytest.raises(AssertionError):
        run_all_checks(broken)


def _copy_project_files(src: Path, dst: Path, **overrides: str) -> None:
    for name in ("Dockerfile", "requirements.txt", ".env.example"):
        text = overrides.get(name.lstrip(".").replace(".", "_"), None)
        if text is None:
            text = (src / name).read_text(encoding="utf-8")
        (dst / name).write_text(text, encoding="utf-8")


def test_checks_catch_dockerfile_without_requirements(compose: Compose, tmp_path: Path) -> None:
    dockerfile = (compose.base_dir / "Dockerfile").read_text(encoding="utf-8")
    broken = re.sub(r"pip install[^\n]*-r\s+\S+", "pip install --no-cache-dir pandas", dockerfile)
    assert broken != dockerfile
    _copy_project_files(compose.base_dir, tmp_path, Dockerfile=broken)
    with pytest.raises(AssertionError):
        check_dockerfile_installs_requirements(Compose(copy.deepcopy(compose.raw), tmp_path))


def test_checks_catch_wrong_base_image(compose: Compose, tmp_path: Path) -> None:
    dockerfile = (compose.base_dir / "Dockerfile").read_text(encoding="utf-8")
    broken = re.sub(r"(?m)^FROM .*$", "FROM apache/airflow:2.10.5-python3.11", dockerfile)
    _copy_project_files(compose.base_dir, tmp_path, Dockerfile=broken)
    with pytest.raises(AssertionError):
        check_airflow_image(Compose(copy.deepcopy(compose.raw), tmp_path))


def test_checks_catch_real_secret_in_env_example(compose: Compose, tmp_path: Path) -> None:
    example = (compose.base_dir / ".env.example").read_text(encoding="utf-8")
    broken = re.sub(r"(?m)^AIRFLOW__API_AUTH__JWT_SECRET=.*$", "AIRFLOW__API_AUTH__JWT_SECRET=9f8e7d6c5b4a", example)
    assert broken != example
    _copy_project_files(compose.base_dir, tmp_path, env_example=broken)
    with pytest.raises(AssertionError):
        check_env_example(Compose(copy.deepcopy(compose.raw), tmp_path))
