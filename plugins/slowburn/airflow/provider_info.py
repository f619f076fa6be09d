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

_RATE_LIMIT_FIELDS = {
    "max_requests": {"label": "Rate limit: requests", "description": "At most this many calls per window "
                     "(default: the vendor's published limit).", "schema": {"type": ["integer", "null"],
                                                                              "minimum": 1}},
    "per_seconds": {"label": "Rate limit: window (s)", "description": "The window of the rate limit, in seconds.",
                    "schema": {"type": ["number", "null"], "exclusiveMinimum": 0}},
}


def _connection_types() -> list[dict]:
    return [
        {
            "connection-type": "slowburn_warehouse",
            "hook-class-name": "slowburn.airflow.hooks.SlowburnWarehouseHook",
            "hook-name": "slowburn warehouse",
            "ui-field-behaviour": {
                "hidden-fields": [],
                "relabeling": {"host": "Host (SQLite: database file path)", "schema": "Database"},
                "placeholders": {"host": "warehouse.internal or /data/slowburn/warehouse.db", "port": "5432",
                                 "schema": "slowburn", "login": "slowburn"},
            },
            "conn-fields": {
                "dialect": {"label": "Dialect", "description": "The warehouse database.",
                            "schema": {"type": ["string", "null"], "enum": ["postgresql", "sqlite"],
                                       "default": "postgresql"}},
                "sqlalchemy_url": {"label": "SQLAlchemy URL",
                                   "description": "Optional: a full URL; when set, every other field is ignored.",
                                   "schema": {"type": ["string", "null"], "format": "password"}},
            },
        },
        {
            "connection-type": "slowburn_hubspot",
            "hook-class-name": "slowburn.airflow.connectors.HubSpotHook",
            "hook-name": "slowburn HubSpot",
            "ui-field-behaviour": {
                "hidden-fields": ["login", "port", "schema"],
                "relabeling": {"host": "API base URL", "password": "Private app token"},
                "placeholders": {"host": "https://api.hubapi.com",
                                 "password": "pat-... (leave empty for OAuth)"},
            },
            "conn-fields": {
                "client_id": {"label": "OAuth client id", "schema": {"type": ["string", "null"]}},
                "client_secret": {"label": "OAuth client secret",
                                  "schema": {"type": ["string", "null"], "format": "password"}},
                "refresh_token": {"label": "OAuth refresh token",
                                  "description": "With client id and secret: log in by OAuth instead of a token.",
                                  "schema": {"type": ["string", "null"], "format": "password"}},
                **_RATE_LIMIT_FIELDS,
            },
        },
        {
            "connection-type": "slowburn_salesforce",
            "hook-class-name": "slowburn.airflow.connectors.SalesforceHook",
            "hook-name": "slowburn Salesforce",
            "ui-field-behaviour": {
                "hidden-fields": ["port", "schema"],
                "relabeling": {"host": "Instance URL", "login": "Username (JWT bearer flow)",
                               "password": "Access token, refresh token or PEM key (per flow)"},
                "placeholders": {"host": "https://my-domain.my.salesforce.com (empty for OAuth flows)"},
            },
            "conn-fields": {
                "auth": {"label": "Login flow", "description": "token: the password is an access token; "
                         "refresh_token: the password is a refresh token; jwt: the password is the PEM key.",
                         "schema": {"type": ["string", "null"], "enum": ["token", "refresh_token", "jwt"],
                                    "default": "token"}},
                "client_id": {"label": "Consumer key (client id)", "schema": {"type": ["string", "null"]}},
                "client_secret": {"label": "Consumer secret",
                                  "schema": {"type": ["string", "null"], "format": "password"}},
                "login_url": {"label": "Login URL", "description": "https://login.salesforce.com, or "
                              "https://test.salesforce.com for a sandbox.",
                              "schema": {"type": ["string", "null"], "format": "url"}},
                "quota_reserve": {"label": "Daily API reserve", "description": "Stop once fewer than this share "
                                  "of the daily API allowance is left (default 0.1).",
                                  "schema": {"type": ["number", "null"], "minimum": 0, "maximum": 1}},
                **_RATE_LIMIT_FIELDS,
            },
        },
        {
            "connection-type": "slowburn_mailchimp",
            "hook-class-name": "slowburn.airflow.connectors.MailchimpHook",
            "hook-name": "slowburn Mailchimp",
            "ui-field-behaviour": {
                "hidden-fields": ["login", "port", "schema"],
                "relabeling": {"host": "API base URL (optional)", "password": "API key or OAuth access token"},
                "placeholders": {"host": "https://us6.api.mailchimp.com/3.0", "password": "...-us6"},
            },
            "conn-fields": {
                "auth": {"label": "Login", "description": "api_key (default) or oauth (the password is an "
                         "OAuth access token; the data centre comes from oauth2/metadata).",
                         "schema": {"type": ["string", "null"], "enum": ["api_key", "oauth"], "default": "api_key"}},
                "list_id": {"label": "Audience (list) id", "description": "The audience write-back tags.",
                            "schema": {"type": ["string", "null"]}},
                **_RATE_LIMIT_FIELDS,
            },
        },
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
