"""Stoplight Prism serving the vendors' specs (patched for the known errata, see specs.py) in validating mock
mode: every request slowburn's clients make is checked against the spec, and answered with a response
generated from the spec's schemas (dynamic mode, seeded), so the clients are also fed spec-shaped answers
they have never seen. One Prism per vendor for the whole session, on a free loopback port.

Prism comes from npm (tests/contract/package.json, pinned; `npm ci --prefix tests/contract`, which .ci/run
does). Without node or that install the tests skip, saying so.
"""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from contract import specs

HERE = Path(__file__).resolve().parent

PRISM = Path(os.environ.get("SLOWBURN_PRISM", HERE / "node_modules" / ".bin" / "prism"))
VIOLATION = re.compile(r"Violation|\[VALIDATOR\]\s+(✖|⚠)")
REQUEST = re.compile(r"\[HTTP SERVER\]\s+(?P<method>[a-z]+)\s+(?P<path>\S+)")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Prism:
    """One `prism mock --errors --dynamic` process; its log is read continuously by a thread."""

    def __init__(self, spec: Path, name: str):
        self.name = name
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.lines: list[str] = []
        self._lock = threading.Lock()
        env = {**os.environ, "NO_COLOR": "1", "FORCE_COLOR": "0", "DO_NOT_TRACK": "1", "SCARF_ANALYTICS": "false"}
        self.proc = subprocess.Popen(
            [str(PRISM), "mock", "--errors", "--dynamic", "--seed", "slowburn", "--host", "127.0.0.1",
             "--port", str(self.port), str(spec)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, encoding="utf-8", errors="replace", env=env)
        self._reader = threading.Thread(target=self._read, name=f"prism-{name}", daemon=True)
        self._reader.start()
        deadline = time.monotonic() + 120
        while not any("Prism is listening" in line for line in self.snapshot()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"prism ({name}) did not start:\n" + "\n".join(self.snapshot()[-30:]))
            time.sleep(0.1)

    def _read(self):
        for line in self.proc.stdout:
            with self._lock:
                self.lines.append(line.rstrip("\n"))

    def snapshot(self) -> list[str]:
        with self._lock:
            return list(self.lines)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    @contextmanager
    def checked(self):
        """Run client calls; on exit, fail on any violation Prism logged for them. Yields the list of
        (METHOD, path) requests Prism received, filled in on exit."""
        start = len(self.snapshot())
        seen: list[tuple[str, str]] = []
        yield seen
        time.sleep(0.3)  # Prism logs asynchronously; let the last lines arrive
        new = self.snapshot()[start:]
        seen.extend((m["method"].upper(), m["path"].split("?")[0]) for m in map(REQUEST.search, new) if m)
        violations = [line for line in new if VIOLATION.search(line)]
        assert not violations, f"prism ({self.name}) found contract violations:\n" + "\n".join(violations)


def _require_prism():
    if shutil.which("node") is None:
        pytest.skip("contract tests need node (Stoplight Prism runs on it); install nodejs")
    if not PRISM.exists():
        pytest.skip(f"contract tests need Stoplight Prism: run `npm ci --prefix {HERE}` (pinned in package.json)")


@pytest.fixture(scope="session")
def served_specs(tmp_path_factory):
    _require_prism()
    missing = [n for n in (*specs.HUBSPOT_FILES, specs.MAILCHIMP_FILE) if not (specs.spec_dir() / n).exists()]
    assert not missing, f"vendor specs {missing} not found in {specs.spec_dir()}; set SLOWBURN_SPECS to their folder"
    return specs.write_served_copies(tmp_path_factory.mktemp("specs"))


@pytest.fixture(scope="session")
def prism_hubspot(served_specs):
    server = Prism(served_specs["hubspot"], "hubspot")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def prism_mailchimp(served_specs):
    server = Prism(served_specs["mailchimp"], "mailchimp")
    yield server
    server.stop()
