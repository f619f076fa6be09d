"""What Airflow's ProvidersManager learns about slowburn from the `apache_airflow_provider` entry point.

Plain data, no imports beyond slowburn's version: Airflow calls this in every process that lists
providers or connection types. The connection forms are declared here (`conn-fields`,
`ui-field-behaviour`), the Airflow >= 3.2 way, not through the hooks' deprecated
get_connection_form_widgets / get_ui_field_behaviour. Form fields are stored as top-level keys of the
Connection's extra, which is exactly where the hooks read them. The AirflowPlugin is registered by
the `airflow.plugins` entry point, not by a `plugins` entry here: Airflow loads both when
lazy_discover_providers is off and would then report the plugin as registered twice.
"""
from __future__ import annotations

from slowburn import __version__

PACKAGE_NAME = "slowburn"

WAREHOUSE = "slowburn warehouse"
HUBSPOT = "HubSpot"
SALESFORCE = "Salesforce"
MAILCHIMP = "Mailchimp"

def _field(label: str, kind: str = "string", description: str | None = None, **schema) -> dict:
    """One form field, stored under its key in the Connection's extra; empty is allowed (null)."""
    field = {"label": label, "schema": {"type": [kind, "null"], **schema}}
    if description:
        field["description"] = description
    return field


def _secret(label: str, description: str | None = None) -> dict:
    return _field(label, description=description, format="password")


def _connection_type(conn_type: str, hook_class: str, hook_name: str, *, hidden: list[str], relabel: dict,
                     placeholders: dict, fields: dict) -> dict:
    return {"connection-type": conn_type, "hook-class-name": hook_class, "hook-name": hook_name,
            "ui-field-behaviour": {"hidden-fields": hidden, "relabeling": relabel, "placeholders": placeholders},
            "conn-fields": fields}


_RATE_LIMIT_FIELDS = {
    "max_requests": _field("Rate limit: requests", "integer", "At most this many calls per window (default: the "
                           "vendor's published limit).", minimum=1),
    "per_seconds": _field("Rate limit: window (s)", "number", "The window of the rate limit, in seconds.",
                          exclusiveMinimum=0),
}


def _connection_types() -> list[dict]:
    return [
        _connection_type(
            "slowburn_warehouse", "slowburn.airflow.hooks.SlowburnWarehouseHook", "slowburn warehouse",
            hidden=[], relabel={"host": "Host (SQLite: database file path)", "schema": "Database"},
            placeholders={"host": "warehouse.internal or /data/slowburn/warehouse.db", "port": "5432",
                          "schema": "slowburn", "login": "slowburn"},
            fields={"dialect": _field("Dialect", description="The warehouse database.",
                                      enum=["postgresql", "sqlite"], default="postgresql"),
                    "sqlalchemy_url": _secret("SQLAlchemy URL", "Optional: a full URL; when set, every other "
                                                                "field is ignored.")}),
        _connection_type(
            "slowburn_hubspot", "slowburn.airflow.connectors.HubSpotHook", "slowburn HubSpot",
            hidden=["login", "port", "schema"], relabel={"host": "API base URL", "password": "Private app token"},
            placeholders={"host": "https://api.hubapi.com", "password": "pat-... (leave empty for OAuth)"},
            fields={"client_id": _field("OAuth client id"),
                    "client_secret": _secret("OAuth client secret"),
                    "refresh_token": _secret("OAuth refresh token", "With client id and secret: log in by OAuth "
                                                                    "instead of a token."),
                    **_RATE_LIMIT_FIELDS}),
        _connection_type(
            "slowburn_salesforce", "slowburn.airflow.connectors.SalesforceHook", "slowburn Salesforce",
            hidden=["port", "schema"],
            relabel={"host": "Instance URL", "login": "Username (JWT bearer flow)",
                     "password": "Access token, refresh token or PEM key (per flow)"},
            placeholders={"host": "https://my-domain.my.salesforce.com (empty for OAuth flows)"},
            fields={"auth": _field("Login flow", description="token: the password is an access token; "
                                   "refresh_token: the password is a refresh token; jwt: the password is the PEM key.",
                                   enum=["token", "refresh_token", "jwt"], default="token"),
                    "client_id": _field("Consumer key (client id)"),
                    "client_secret": _secret("Consumer secret"),
                    "login_url": _field("Login URL", description="https://login.salesforce.com, or "
                                        "https://test.salesforce.com for a sandbox.", format="url"),
                    "quota_reserve": _field("Daily API reserve", "number", "Stop once fewer than this share of the "
                                            "daily API allowance is left (default 0.1).", minimum=0, maximum=1),
                    **_RATE_LIMIT_FIELDS}),
        _connection_type(
            "slowburn_mailchimp", "slowburn.airflow.connectors.MailchimpHook", "slowburn Mailchimp",
            hidden=["login", "port", "schema"],
            relabel={"host": "API base URL (optional)", "password": "API key or OAuth access token"},
            placeholders={"host": "https://us6.api.mailchimp.com/3.0", "password": "...-us6"},
            fields={"auth": _field("Login", description="api_key (default) or oauth (the password is an OAuth "
                                   "access token; the data centre comes from oauth2/metadata).",
                                   enum=["api_key", "oauth"], default="api_key"),
                    "list_id": _field("Audience (list) id", description="The audience write-back tags."),
                    **_RATE_LIMIT_FIELDS}),
    ]


def get_provider_info() -> dict:
    return {
        "package-name": PACKAGE_NAME,
        "name": "slowburn",
        "description": "Lead hygiene for Apache Airflow: pull leads from CRM and marketing tools, dedupe, validate, "
                       "score ripeness, route and write back, and flag what is rotting.",
        "versions": [__version__],
        "integrations": [
            {"integration-name": WAREHOUSE, "tags": ["software"]},
            {"integration-name": HUBSPOT, "external-doc-url": "https://developers.hubspot.com/docs/api/crm",
             "tags": ["service"]},
            {"integration-name": SALESFORCE,
             "external-doc-url": "https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/",
             "tags": ["service"]},
            {"integration-name": MAILCHIMP, "external-doc-url": "https://mailchimp.com/developer/marketing/api/",
             "tags": ["service"]},
        ],
        "operators": [
            # SlowburnStepOperator runs the pipeline on the warehouse; SlowburnWritebackOperator writes to it all.
            {"integration-name": WAREHOUSE, "python-modules": ["slowburn.airflow.operators",
                                                               "slowburn.airflow.connectors"]},
        ],
        "hooks": [
            {"integration-name": WAREHOUSE, "python-modules": ["slowburn.airflow.hooks"]},
            *({"integration-name": name, "python-modules": ["slowburn.airflow.connectors"]}
              for name in (HUBSPOT, SALESFORCE, MAILCHIMP)),
        ],
        "connection-types": _connection_types(),
    }
