-- The deactivation grace (SPEC §8, safety.deactivate_after). Forward-only.
-- One row per Okta user whose managed Writer user is out of scope and
-- waiting out the grace: since when a run first saw it missing. Written
-- with the changes of the run that saw it; removed when the user is back,
-- deactivated or relinked.
CREATE TABLE missing_since (
    okta_id  TEXT    PRIMARY KEY,
    since    BIGINT  NOT NULL                   -- epoch milliseconds
);
