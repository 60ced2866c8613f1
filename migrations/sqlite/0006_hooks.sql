-- Hook bindings: a tenant's subscription of a hook plugin to some of its event types, with the
-- delivery cursor that survives restarts, the retry/quarantine state and the lease that keeps
-- several hosts on one database from delivering the same binding at once.

CREATE TABLE hook_bindings (
    id                TEXT PRIMARY KEY,
    tenant_id         TEXT NOT NULL REFERENCES tenants(id),
    plugin_id         TEXT NOT NULL,
    -- The binding's configuration handed to the hook, JSON object text.
    config            TEXT NOT NULL,
    -- Event types delivered, JSON array of strings.
    events            TEXT NOT NULL,
    status            TEXT NOT NULL CHECK (status IN ('active', 'quarantined', 'disabled')),
    -- Last event seq of the tenant this binding is done with (delivered or not subscribed).
    cursor_seq        BIGINT NOT NULL,
    delivered         BIGINT NOT NULL DEFAULT 0,
    -- Consecutive failed attempts at the event after the cursor.
    failures          BIGINT NOT NULL DEFAULT 0,
    last_error        TEXT,
    last_delivered_at BIGINT,
    next_attempt_at   BIGINT NOT NULL DEFAULT 0,
    lease_owner       TEXT,
    lease_until       BIGINT,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL
);
CREATE INDEX hook_bindings_by_tenant ON hook_bindings (tenant_id, created_at);
CREATE INDEX hook_bindings_due ON hook_bindings (status, next_attempt_at);

-- Tags hooks put on customers (transactions already have a `tags` column).
ALTER TABLE customers ADD COLUMN tags TEXT NOT NULL DEFAULT '[]';
