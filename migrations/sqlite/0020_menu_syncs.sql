-- Where a venue's catalog sync from its POS stands: the provider's sync token after the last
-- complete fetch (a Square `begin_time`, a Toast menu `lastUpdated`), so the next sync asks
-- only for what changed. Tied to the integration it came from: a venue reconnected to
-- another integration starts again from a full fetch.
CREATE TABLE menu_syncs (
    tenant_id       TEXT NOT NULL REFERENCES tenants(id),
    venue           TEXT NOT NULL,
    integration_id  TEXT NOT NULL,
    sync_token      TEXT,
    synced_at       BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, venue)
);
