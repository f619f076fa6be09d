"""Shared fixtures: small, hand-written sources whose every row has a known fate."""
from __future__ import annotations

import os
import tempfile
import textwrap
from pathlib import Path

import pandas as pd
import pytest

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
# Keep Airflow (imported by the DAG tests) away from ~/airflow.
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="slowburn-airflow-"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")

NOW = pd.Timestamp("2026-11-23T00:00:00Z")

LEADS_CSV = """\
Id,First,Last,Mail,Tel,Org,Title,Country,Owner,Status,Source,Created,Modified,OptOut
L1,Bill,Smith,B.Smith+webinar@gmail.com,(415) 555-0100,Acme Inc.,VP Sales,USA,O1,Open,Web,2026-11-01,2026-11-20,0
L2,William,Smith,bsmith@googlemail.com,+1 415 555 0100,ACME,VP Sales,United States,O2,Working,Web,2026-10-01,2026-11-21,0
L3,Ann,Lee,ann@globex.com,,Globex,Engineer,US,O9,Open,List,2026-01-01,2026-02-01,0
L4,Bob,Jones,bob@@acme,,Acme,CTO,US,O1,Open,Web,2026-11-10,2026-11-22,0
L5,Zed,NoContact,,,Initech,,US,O1,Open,Web,2026-11-10,2026-11-22,0
L6,Cy,Date,cy@initech.com,,Initech,,US,O1,Open,Web,yesterday,2026-11-22,0
L7,Dee,Status,dee@initech.com,,Initech,,US,O1,Bogus,Web,2026-11-10,2026-11-22,0
L8,Old,Copy,old@hooli.com,,Hooli,,US,O1,Open,Web,2026-11-10,2026-11-01,0
L8,New,Copy,new@hooli.com,,Hooli,CEO,US,O1,Open,Web,2026-11-10,2026-11-22,1
L9,Eve,Left,eve@umbrella.com,,Umbrella,Director,US,O3,Open,Web,2026-11-10,2026-11-22,0
"""
# Fates: L1+L2 merge (gmail canonical), L3 orphaned (unknown owner) and unclosed, L4 invalid email,
# L5 no contact, L6 bad date, L7 unknown status, L8 twice (older copy quarantined), L9 owner deactivated.
EXPECTED_QUARANTINE = {"L4": "invalid_email", "L5": "no_contact_point", "L6": "unparseable_created_at",
                       "L7": "unknown_status"}

TOUCHES_CSV = """\
sys,lead,type,channel,at,actor
salesforce,L1,demo_request,web,2026-11-21T10:00:00Z,marketing
salesforce,L1,pricing_page_view,web,2026-11-20T10:00:00Z,marketing
salesforce,L1,form_fill,web,2026-11-19T10:00:00Z,marketing
salesforce,L2,meeting,in_person,2026-11-22T10:00:00Z,O2
salesforce,L3,email_open,email,2026-03-01T10:00:00Z,marketing
salesforce,L1,teleport,web,2026-11-20T10:00:00Z,marketing
"""

OWNERS_CSV = """\
owner_id,name,email,active,deactivated_at,team,territory,daily_capacity
O1,Rita Rep,rita@corp.com,true,,East,NA-East,20
O2,Sam Rep,sam@corp.com,true,,West,NA-West,20
O3,Gone Rep,gone@corp.com,false,2026-06-01,West,NA-West,20
"""

SOURCES_YAML = """\
sources:
  - name: crm
    kind: file
    entity: leads
    path: leads.csv
    watermark: Modified
    constants: {source_system: salesforce}
    columns: {source_id: Id, first_name: First, last_name: Last, email: Mail, phone: Tel, company: Org,
              title: Title, country: Country, owner_id: Owner, status: Status, lead_source: Source,
              created_at: Created, updated_at: Modified, email_opt_out: OptOut}
    values:
      status: {Open: new, Working: working}
      lead_source: {Web: form_fill, List: purchased_list}
  - name: engagement
    kind: file
    entity: touches
    path: touches.csv
    columns: {source_system: sys, lead_source_id: lead, touch_type: type, channel: channel,
              occurred_at: at, actor: actor}
  - name: owners
    kind: file
    entity: owners
    path: owners.csv
    columns: {owner_id: owner_id, name: name, email: email, active: active, deactivated_at: deactivated_at,
              team: team, territory: territory, daily_capacity: daily_capacity}
"""


def write_tiny_sources(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "leads.csv").write_text(LEADS_CSV, encoding="utf-8")
    (folder / "touches.csv").write_text(TOUCHES_CSV, encoding="utf-8")
    (folder / "owners.csv").write_text(OWNERS_CSV, encoding="utf-8")
    (folder / "sources.yaml").write_text(SOURCES_YAML, encoding="utf-8")
    return folder / "sources.yaml"


@pytest.fixture
def tiny_sources(tmp_path) -> Path:
    return write_tiny_sources(tmp_path / "sources")


@pytest.fixture
def run_context(tmp_path, tiny_sources):
    from slowburn.pipeline import RunContext
    return RunContext(logical_date=NOW, sources_path=tiny_sources, home=tmp_path / "home")


def validated_sample(folder: Path, n_leads: int, seed: int) -> tuple[dict, pd.DataFrame]:
    """A generated sample's manifest and its valid leads after extract, normalise and validate."""
    from slowburn.pipeline import RunContext, run_step
    from slowburn.sample import generate

    manifest = generate(folder / "sample", n_leads=n_leads, seed=seed, now=NOW.to_pydatetime())
    ctx = RunContext(logical_date=NOW, sources_path=manifest["files"]["sources"], home=folder / "home")
    for step in ("extract", "normalise", "validate"):
        run_step(ctx, step)
    return manifest, ctx.read("valid_leads")


PG_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"


@pytest.fixture
def pg_urls():
    """Makes warehouse URLs on the PostgreSQL test server, each with a fresh schema as its search_path;
    the schemas are dropped afterwards."""
    import uuid

    import sqlalchemy as sa

    engine = sa.create_engine(PG_URL)
    schemas = []

    def make() -> str:
        schema = f"sb_{uuid.uuid4().hex[:8]}"
        try:
            with engine.begin() as conn:
                conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
        except sa.exc.OperationalError:
            pytest.skip("PostgreSQL is not reachable at 127.0.0.1:5432")
        schemas.append(schema)
        return f"{PG_URL}?options=-csearch_path%3D{schema}"

    yield make
    if schemas:
        with engine.begin() as conn:
            for schema in schemas:
                conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
    engine.dispose()


@pytest.fixture
def pg_url(pg_urls):
    """A warehouse URL on the PostgreSQL test server whose search_path is a fresh schema, dropped afterwards."""
    return pg_urls()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def new_url(request, tmp_path):
    """Makes URLs of empty warehouses, once per dialect: SQLite files, or fresh PostgreSQL schemas."""
    if request.param == "postgresql":
        return request.getfixturevalue("pg_urls")
    names = iter(range(1000))
    return lambda: f"sqlite:///{tmp_path / f'wh{next(names)}.db'}"


def dedent(text: str) -> str:
    return textwrap.dedent(text)


# ------------------------------------------------------------------------------------- object storage
# A real S3 protocol server (moto) on a free loopback port; credentials only through the environment.
MOTO_SECRET = f"moto-secret-{os.getpid()}-{os.urandom(6).hex()}"  # tests assert it never reaches a log


@pytest.fixture(scope="session")
def moto_endpoint():
    pytest.importorskip("s3fs")
    server_module = pytest.importorskip("moto.server")
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    import logging
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


class S3Bucket:
    """A fresh bucket on the moto server: its URL, the fsspec options and the environment a step needs."""

    def __init__(self, endpoint: str, name: str):
        import json

        self.endpoint, self.name = endpoint, name
        self.options = {"endpoint_url": endpoint}
        self.env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": MOTO_SECRET,
                    "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": os.devnull,
                    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
                    "SLOWBURN_ARTIFACTS_OPTIONS": json.dumps(self.options)}

    def url(self, prefix: str = "") -> str:
        return f"s3://{self.name}/{prefix}".rstrip("/")

    def location(self, prefix: str = ""):
        from slowburn import storage
        return storage.location(self.url(prefix), self.options)

    def fs(self):
        """The test's own view of the bucket: fresh (no listing cache), credentials given explicitly."""
        import s3fs
        return s3fs.S3FileSystem(endpoint_url=self.endpoint, key="testing", secret=MOTO_SECRET,
                                 skip_instance_cache=True)

    def keys(self, prefix: str = "") -> list[str]:
        """Every object under the prefix, as keys relative to the bucket."""
        return sorted(k.split("/", 1)[1] for k in self.fs().find(f"{self.name}/{prefix}".rstrip("/")))

    def read(self, key: str) -> bytes:
        return self.fs().cat_file(f"{self.name}/{key}")


@pytest.fixture
def s3(moto_endpoint, monkeypatch):
    import uuid

    bucket = S3Bucket(moto_endpoint, f"slowburn-{uuid.uuid4().hex[:12]}")
    for key, value in bucket.env.items():
        monkeypatch.setenv(key, value)
    bucket.fs().mkdir(bucket.name)
    return bucket
