-- The System Log cursor of the incremental sync (SPEC §7). Forward-only.
-- One row per event source: where the next poll starts, and what the last
-- successful full reconcile saw that plans over a part of Okta need.
CREATE TABLE event_cursor (
    name               TEXT    PRIMARY KEY,     -- 'system_log'
    next_url           TEXT,                    -- Okta's rel="next" after the last processed poll; NULL: start at since_ms
    since_ms           INTEGER  NOT NULL,         -- start of the last successful full reconcile's observe
    last_published_ms  INTEGER,                   -- published of the newest event processed
    seen               TEXT    NOT NULL,        -- JSON array of the uuids of the last processed poll
    baseline           TEXT    NOT NULL,        -- JSON: pushed groups and email skips of that full reconcile
    pending_full       TEXT,                    -- set when a poll handed over to a full reconcile: why
    updated_at         INTEGER  NOT NULL
);
