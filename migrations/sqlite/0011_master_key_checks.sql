-- Master key check values: for every master key id a host has used with this database, a
-- value derived from the key (HMAC-SHA256 of a fixed label under the key, hex), never the
-- key itself. A host whose key for a recorded id gives another value refuses to start, so
-- hosts with diverging key files are caught at start instead of failing to open sealed
-- credentials later. The same schema on SQLite and PostgreSQL.

CREATE TABLE master_key_checks (
    key_id      TEXT PRIMARY KEY,
    check_value TEXT NOT NULL,
    -- Microseconds since the epoch when a host first recorded the key.
    recorded_at BIGINT NOT NULL
);
