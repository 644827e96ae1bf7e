-- Writer org store, SQLite dialect. Forward-only: never edit an applied migration.
-- Timestamps are Unix epoch milliseconds (UTC); booleans are 0/1 integers, so
-- both backends decode the same way through sqlx's Any driver.

CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    email         TEXT    NOT NULL,
    email_key     TEXT    NOT NULL UNIQUE,      -- lower-cased email: uniqueness ignores case
    okta_id       TEXT    UNIQUE,               -- set once the user is managed
    first_name    TEXT    NOT NULL DEFAULT '',
    last_name     TEXT    NOT NULL DEFAULT '',
    display_name  TEXT    NOT NULL DEFAULT '',
    active        INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1)),
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);

CREATE TABLE teams (
    id             INTEGER PRIMARY KEY,
    name           TEXT    NOT NULL UNIQUE,
    okta_group_id  TEXT    UNIQUE,              -- set once the team is linked
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL
);

CREATE TABLE memberships (
    team_id     INTEGER NOT NULL REFERENCES teams(id) ON DELETE CASCADE,
    user_id     INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role        TEXT    NOT NULL CHECK (role IN ('admin', 'member')),
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (team_id, user_id)
);
CREATE INDEX memberships_by_user ON memberships (user_id);

CREATE TABLE sync_runs (
    id           INTEGER PRIMARY KEY,
    started_at   INTEGER NOT NULL,
    finished_at  INTEGER,
    run_trigger  TEXT    NOT NULL,              -- once, schedule, start, signal, forced
    status       TEXT    NOT NULL,              -- running, ok, failed, blocked
    counts       TEXT,                          -- JSON object of the report counts
    error        TEXT,
    holder       TEXT    NOT NULL               -- host:pid of the process that ran it
);

CREATE TABLE audit_log (
    id       INTEGER PRIMARY KEY,
    run_id   INTEGER REFERENCES sync_runs(id),  -- NULL for `store load`
    at       INTEGER NOT NULL,
    action   TEXT    NOT NULL,
    target   TEXT    NOT NULL,
    before   TEXT,                              -- JSON, NULL for creations
    after    TEXT                               -- JSON, NULL for removals
);
CREATE INDEX audit_log_by_run ON audit_log (run_id);

CREATE TABLE sync_state (
    key         TEXT    PRIMARY KEY,
    value       TEXT    NOT NULL,
    updated_at  INTEGER NOT NULL
);

-- The cross-process sync lock for SQLite (PostgreSQL uses an advisory lock).
-- A lease: the holder renews expires_at while it runs; a crashed holder's
-- lease runs out and the next runner takes over.
CREATE TABLE sync_lock (
    name         TEXT    PRIMARY KEY,
    holder       TEXT    NOT NULL,
    acquired_at  INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL
);
