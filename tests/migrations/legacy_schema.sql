-- FROZEN COPY of include/sql/schema.sql as it was at migration revision 0001: tests build pre-migration
-- warehouses from it. The schema now lives in plugins/slowburn/schema.py and plugins/slowburn/migrations/.
-- slowburn warehouse schema. Table names are a public contract (see DESIGN.md).
-- {ts}, {bool} and {float} are replaced per dialect by slowburn.warehouse.
-- Every run-scoped table carries run_id: a run's load deletes and re-inserts its own rows in one
-- transaction, so re-running a logical date replaces its rows and never doubles them.

CREATE TABLE IF NOT EXISTS run_ledger (
    run_id TEXT PRIMARY KEY,
    logical_date {ts} NOT NULL,
    status TEXT NOT NULL,
    started_at {ts},
    finished_at {ts},
    landed_leads INTEGER NOT NULL,
    linked_leads INTEGER NOT NULL,
    quarantined_leads INTEGER NOT NULL,
    golden_leads INTEGER NOT NULL,
    landed_touches INTEGER NOT NULL,
    quarantined_touches INTEGER NOT NULL,
    sales_queue INTEGER NOT NULL,
    nurture_queue INTEGER NOT NULL,
    lead_flags INTEGER NOT NULL,
    invariant_ok {bool} NOT NULL,
    step_counts TEXT NOT NULL,
    -- The attempt that loaded the run (its folder runs/<run_id>/attempt-<n> and the token stamped on
    -- every step output), and the second proof: every golden lead scored once (scored_leads =
    -- golden_leads), and every golden lead queued once or not at all (queued_leads + not_queued_leads
    -- = golden_leads, no lead in both queues). invariant_ok holds only when both proofs hold.
    attempt INTEGER,
    attempt_token TEXT,
    scored_leads INTEGER,
    queued_leads INTEGER,
    not_queued_leads INTEGER
);

-- At most one run writes the warehouse at a time. The extract step takes the lock, every later step
-- renews it (heartbeat_at), and the load releases it in the transaction that commits the run. A newer
-- attempt of the same run takes it over; a lock without a heartbeat for SLOWBURN_LOCK_STALE_MINUTES
-- (default 120) is taken over by the next run, with a warning.
CREATE TABLE IF NOT EXISTS run_lock (
    lock_name TEXT PRIMARY KEY,
    run_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    token TEXT NOT NULL,
    holder TEXT NOT NULL,
    acquired_at {ts} NOT NULL,
    heartbeat_at {ts} NOT NULL
);

-- What each run's routing left in the queues, kept per run: the next run routes against the previous
-- run's rows here (owners kept, leads already queued), so a lost run folder cannot re-queue leads.
CREATE TABLE IF NOT EXISTS queue_history (
    run_id TEXT NOT NULL,
    queue TEXT NOT NULL,
    golden_id TEXT NOT NULL,
    owner_id TEXT,
    queued_at {ts},
    ripened_at {ts},
    respond_by {ts},
    pass_back {bool},
    pass_back_reason TEXT,
    score INTEGER,
    tier TEXT,
    sla_missed_at {ts},
    missed_owner_id TEXT,
    next_touch_at {ts},
    PRIMARY KEY (run_id, queue, golden_id)
);

CREATE TABLE IF NOT EXISTS source_watermarks (
    run_id TEXT NOT NULL,
    logical_date {ts} NOT NULL,
    source_name TEXT NOT NULL,
    high_watermark TEXT,
    rows_landed INTEGER NOT NULL,
    PRIMARY KEY (run_id, source_name)
);

CREATE TABLE IF NOT EXISTS landed_leads (
    run_id TEXT NOT NULL,
    row_key TEXT NOT NULL,
    source_name TEXT NOT NULL,
    row_number INTEGER NOT NULL,
    row_hash TEXT NOT NULL,
    source_system TEXT, source_id TEXT, first_name TEXT, last_name TEXT, email TEXT, phone TEXT,
    company TEXT, title TEXT, website TEXT, street TEXT, city TEXT, state TEXT, postcode TEXT,
    country TEXT, owner_id TEXT, status TEXT, stage TEXT, lead_source TEXT, created_at TEXT,
    updated_at TEXT, last_activity_at TEXT, email_opt_out TEXT, do_not_call TEXT, malformed_line TEXT,
    -- custom vendor fields as a JSON object of text, as landed (sources file `attributes:`)
    attributes TEXT,
    PRIMARY KEY (run_id, row_key)
);

-- The latest valid, normalised version of every source lead seen so far: what tonight's dedupe,
-- scoring and flags work on, so that a lead that never changes still gets scored and flagged.
CREATE TABLE IF NOT EXISTS current_leads (
    run_id TEXT NOT NULL,
    row_key TEXT NOT NULL,
    source_name TEXT,
    source_system TEXT NOT NULL,
    source_id TEXT NOT NULL,
    first_name TEXT, last_name TEXT, email TEXT, phone TEXT, company TEXT, title TEXT, website TEXT,
    street TEXT, city TEXT, state TEXT, postcode TEXT, country TEXT, owner_id TEXT, status TEXT,
    stage TEXT, lead_source TEXT,
    created_at {ts}, updated_at {ts}, last_activity_at {ts},
    email_opt_out {bool}, do_not_call {bool},
    email_canonical TEXT, email_tag TEXT, email_domain TEXT, phone_e164 TEXT, first_name_norm TEXT,
    last_name_norm TEXT, company_norm TEXT, country_code TEXT,
    attributes TEXT,
    PRIMARY KEY (source_system, source_id)
);

CREATE TABLE IF NOT EXISTS touches (
    run_id TEXT NOT NULL,
    row_key TEXT NOT NULL,
    source_system TEXT,
    lead_source_id TEXT,
    golden_id TEXT,
    touch_type TEXT,
    channel TEXT,
    campaign TEXT,
    occurred_at {ts},
    actor TEXT,
    -- a number the touch carries, e.g. seconds on the page
    value {float},
    PRIMARY KEY (run_id, row_key)
);

CREATE TABLE IF NOT EXISTS quarantine (
    run_id TEXT NOT NULL,
    entity TEXT NOT NULL,
    row_key TEXT NOT NULL,
    source_system TEXT,
    source_id TEXT,
    rule TEXT NOT NULL,
    column_name TEXT,
    value TEXT,
    reason TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS golden_leads (
    run_id TEXT NOT NULL,
    golden_id TEXT NOT NULL,
    first_name TEXT, last_name TEXT, email TEXT, email_canonical TEXT, phone_e164 TEXT, company TEXT,
    title TEXT, website TEXT, street TEXT, city TEXT, state TEXT, postcode TEXT, country_code TEXT,
    owner_id TEXT, status TEXT, stage TEXT, lead_source TEXT,
    created_at {ts}, updated_at {ts}, last_activity_at {ts},
    email_opt_out {bool}, do_not_call {bool},
    source_count INTEGER NOT NULL,
    source_keys TEXT NOT NULL,
    -- Lineage (slowburn.dedupe.survivorship): provenance is a JSON object naming, per field, the source
    -- row (source_system:source_id) its value came from; members lists a merged record's source rows
    -- (key, lead_source, owner_id, created_at); merged_from lists golden ids absorbed into this one by
    -- this run; review_reason says why a person should look at the record (e.g. the chaining guard).
    provenance TEXT,
    members TEXT,
    merged_from TEXT,
    review_reason TEXT,
    -- Custom attributes merged per key across the record's source rows, the most recent row winning.
    attributes TEXT,
    PRIMARY KEY (run_id, golden_id)
);

CREATE TABLE IF NOT EXISTS lead_links (
    run_id TEXT NOT NULL,
    row_key TEXT NOT NULL,
    source_system TEXT NOT NULL,
    source_id TEXT NOT NULL,
    golden_id TEXT NOT NULL,
    match_probability {float} NOT NULL,
    match_rule TEXT NOT NULL,
    -- match_model: Splink model fingerprint and whether it was trained or reused, or 'deterministic';
    -- previous_golden_id: the row's golden id before this run when it changed (merges, moves).
    match_model TEXT,
    previous_golden_id TEXT,
    review_reason TEXT,
    PRIMARY KEY (run_id, row_key)
);

CREATE TABLE IF NOT EXISTS lead_scores (
    run_id TEXT NOT NULL,
    golden_id TEXT NOT NULL,
    score INTEGER NOT NULL,
    tier TEXT NOT NULL,
    probability {float},
    reasons TEXT NOT NULL,
    model_version TEXT NOT NULL,
    touches INTEGER NOT NULL,
    rep_touches INTEGER NOT NULL,
    last_touch_at {ts},
    scored_at {ts} NOT NULL,
    scorer TEXT,
    fit INTEGER,
    engagement INTEGER,
    rules_score INTEGER,
    last_rep_touch_at {ts},
    last_marketing_touch_at {ts},
    interest TEXT,
    PRIMARY KEY (run_id, golden_id)
);

CREATE TABLE IF NOT EXISTS sales_queue (
    run_id TEXT NOT NULL,
    golden_id TEXT NOT NULL,
    owner_id TEXT,
    owner_kept {bool} NOT NULL,
    over_capacity {bool} NOT NULL,
    score INTEGER NOT NULL,
    tier TEXT NOT NULL,
    reasons TEXT NOT NULL,
    queued_at {ts} NOT NULL,
    respond_by {ts} NOT NULL,
    probability {float},
    model_version TEXT,
    ripened_at {ts},
    responded {bool},
    pass_back {bool},
    pass_back_reason TEXT,
    PRIMARY KEY (run_id, golden_id)
);

CREATE TABLE IF NOT EXISTS nurture_queue (
    run_id TEXT NOT NULL,
    golden_id TEXT NOT NULL,
    segment TEXT NOT NULL,
    cadence_days INTEGER NOT NULL,
    next_touch_at {ts} NOT NULL,
    touches_so_far INTEGER NOT NULL,
    score INTEGER NOT NULL,
    tier TEXT NOT NULL,
    email_opt_out {bool} NOT NULL,
    channel TEXT,
    buying_stage TEXT,
    interest TEXT,
    probability {float},
    sla_missed {bool},
    sla_missed_at {ts},
    missed_owner_id TEXT,
    PRIMARY KEY (run_id, golden_id)
);

CREATE TABLE IF NOT EXISTS lead_flags (
    run_id TEXT NOT NULL,
    golden_id TEXT NOT NULL,
    flag TEXT NOT NULL,
    severity TEXT NOT NULL,
    owner_id TEXT,
    evidence TEXT NOT NULL,
    reason TEXT NOT NULL,
    suggested_action TEXT NOT NULL,
    -- Lifecycle (slowburn.flags.track_flags): a flag stays open across runs until its cause is gone,
    -- then it is closed with a date. status: open or closed; opened_at: when it was first raised;
    -- closed_at: when a run no longer found it; first_run_id / last_seen_run_id: the runs that first
    -- and last found it. Each run's rows are its open flags plus the flags it closed.
    -- (Warehouses made before these columns existed get them from slowburn.pipeline.flag.)
    status TEXT,
    opened_at {ts},
    closed_at {ts},
    first_run_id TEXT,
    last_seen_run_id TEXT,
    PRIMARY KEY (run_id, golden_id, flag)
);

CREATE TABLE IF NOT EXISTS owners (
    run_id TEXT NOT NULL,
    owner_id TEXT NOT NULL,
    name TEXT, email TEXT, active {bool}, deactivated_at {ts}, team TEXT, territory TEXT,
    daily_capacity INTEGER,
    PRIMARY KEY (run_id, owner_id)
);

CREATE TABLE IF NOT EXISTS outcomes (
    run_id TEXT NOT NULL,
    source_system TEXT NOT NULL,
    source_id TEXT NOT NULL,
    outcome TEXT,
    closed_at {ts},
    amount {float}
);

-- What slowburn.writeback sent where: one row per record and payload hash. A re-run skips every record
-- whose `latest` row carries the hash it would send, so nothing already sent is sent again.
-- action: the write (update, task, member, tags); payload: the state sent, as JSON; status: sent or failed
-- (failed rows are retried next run); batch_id: the writeback_batches row that carried it.
-- (Warehouses made before these columns existed get them from slowburn.writeback.WritebackStore.ensure.)
CREATE TABLE IF NOT EXISTS writeback_log (
    target TEXT NOT NULL,
    record_key TEXT NOT NULL,
    payload_hash TEXT NOT NULL,
    run_id TEXT NOT NULL,
    sent_at {ts} NOT NULL,
    status TEXT NOT NULL,
    action TEXT,
    golden_id TEXT,
    payload TEXT,
    latest {bool},
    batch_id TEXT,
    error TEXT,
    PRIMARY KEY (target, record_key, payload_hash)
);

-- The resume ledger of write-back: a batch is 'sending' from just before it goes out until its
-- acknowledged records are logged ('done'); 'failed' when the vendor refused it as a whole.
CREATE TABLE IF NOT EXISTS writeback_batches (
    batch_id TEXT PRIMARY KEY,
    run_id TEXT NOT NULL,
    target TEXT NOT NULL,
    action TEXT NOT NULL,
    records INTEGER NOT NULL,
    status TEXT NOT NULL,
    started_at {ts} NOT NULL,
    finished_at {ts},
    sent INTEGER,
    failed INTEGER,
    error TEXT
);

CREATE INDEX IF NOT EXISTS ix_quarantine_run ON quarantine (run_id, rule);
CREATE INDEX IF NOT EXISTS ix_outcomes_run ON outcomes (run_id);
CREATE INDEX IF NOT EXISTS ix_watermarks_source ON source_watermarks (source_name, logical_date);
