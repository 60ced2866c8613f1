-- Dead letters: a webhook delivery, a synced sale, a sync page or a hook event that could not
-- be processed within its bounded attempts, set aside with the reason so that it holds back
-- nothing else. Operators list, retry and discard them (`/admin/dead-letters`). The same
-- schema on SQLite and PostgreSQL.

CREATE TABLE dead_letters (
    id             TEXT PRIMARY KEY,
    kind           TEXT NOT NULL CHECK (kind IN ('webhook', 'sync', 'hook')),
    tenant_id      TEXT NOT NULL,
    -- The integration of a webhook or sync dead letter; NULL for hook events.
    integration_id TEXT,
    -- webhook: the inbox delivery id; sync: the integration id; hook: the binding id.
    source_id      TEXT NOT NULL,
    -- webhook: ''; sync: the sale's external id, or '' for a page that cannot be fetched;
    -- hook: the event seq.
    item           TEXT NOT NULL,
    -- 'dead' until an operator retries it; 'retrying' while a re-queued webhook delivery
    -- waits for the inbox worker (it returns to 'dead' if it fails again).
    status         TEXT NOT NULL CHECK (status IN ('dead', 'retrying')),
    reason         TEXT NOT NULL,
    -- Attempts made in all, operator retries included.
    attempts       BIGINT NOT NULL,
    -- Operator retries so far.
    retries        BIGINT NOT NULL DEFAULT 0,
    -- What a retry needs that is not kept elsewhere: a sync sale as canonical JSON, a hook
    -- event (seq, kind, at, data), a sync page's window. Webhook bodies stay in the inbox.
    payload        TEXT,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL,
    UNIQUE (kind, source_id, item)
);
CREATE INDEX dead_letters_by_time ON dead_letters (created_at, id);
CREATE INDEX dead_letters_by_tenant ON dead_letters (tenant_id, created_at, id);
