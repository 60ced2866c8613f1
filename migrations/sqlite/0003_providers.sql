-- POS integrations: venues connected to a provider, their sales, and the webhook inbox.

CREATE TABLE integrations (
    id                   TEXT PRIMARY KEY,
    tenant_id            TEXT NOT NULL REFERENCES tenants(id),
    venue                TEXT NOT NULL,
    provider             TEXT NOT NULL,
    location_id          TEXT NOT NULL,
    environment          TEXT NOT NULL,
    base_url             TEXT,
    webhook_url          TEXT,
    status               TEXT NOT NULL CHECK (status IN ('connected', 'disconnected', 'error')),
    sync_interval_s      BIGINT NOT NULL,
    credentials_key_id   TEXT,
    credentials_sealed   BLOB,
    webhook_key_id       TEXT,
    webhook_key_sealed   BLOB,
    location             TEXT,
    timezone             TEXT NOT NULL,
    currency             TEXT NOT NULL,
    synced_until         BIGINT,
    last_sync_at         BIGINT,
    last_error           TEXT,
    consecutive_failures BIGINT NOT NULL DEFAULT 0,
    next_sync_at         BIGINT,
    lease_owner          TEXT,
    lease_until          BIGINT,
    created_at           BIGINT NOT NULL,
    updated_at           BIGINT NOT NULL,
    UNIQUE (tenant_id, venue)
);
CREATE INDEX integrations_due ON integrations (status, next_sync_at);

CREATE TABLE sync_runs (
    id             TEXT PRIMARY KEY,
    integration_id TEXT NOT NULL REFERENCES integrations(id),
    started_at     BIGINT NOT NULL,
    finished_at    BIGINT NOT NULL,
    trigger        TEXT NOT NULL,
    fetched        BIGINT NOT NULL,
    created        BIGINT NOT NULL,
    updated        BIGINT NOT NULL,
    duplicates     BIGINT NOT NULL,
    pages          BIGINT NOT NULL,
    error          TEXT
);
CREATE INDEX sync_runs_by_integration ON sync_runs (integration_id, started_at);

ALTER TABLE customers ADD COLUMN email TEXT;
CREATE INDEX customers_by_email ON customers (tenant_id, email);

CREATE TABLE customer_links (
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    kind        TEXT NOT NULL CHECK (kind IN ('card_fingerprint', 'provider_customer')),
    value       TEXT NOT NULL,
    customer_id TEXT NOT NULL REFERENCES customers(id),
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, kind, value)
);

CREATE TABLE pos_transactions (
    id                   TEXT PRIMARY KEY,
    tenant_id            TEXT NOT NULL REFERENCES tenants(id),
    integration_id       TEXT NOT NULL REFERENCES integrations(id),
    external_id          TEXT NOT NULL,
    order_id             TEXT,
    location_id          TEXT,
    occurred_at          BIGINT NOT NULL,
    upstream_updated_at  BIGINT,
    currency             TEXT NOT NULL,
    total                BIGINT NOT NULL,
    subtotal             BIGINT NOT NULL,
    tax                  BIGINT NOT NULL,
    tip                  BIGINT NOT NULL,
    discount             BIGINT NOT NULL,
    refunded             BIGINT NOT NULL,
    tender               TEXT NOT NULL,
    status               TEXT NOT NULL,
    card_brand           TEXT,
    card_last4           TEXT,
    card_fingerprint     TEXT,
    provider_customer_id TEXT,
    customer_phone       TEXT,
    customer_email       TEXT,
    customer_name        TEXT,
    customer_id          TEXT,
    content_hash         TEXT NOT NULL,
    source               TEXT NOT NULL,
    tags                 TEXT NOT NULL DEFAULT '[]',
    created_at           BIGINT NOT NULL,
    updated_at           BIGINT NOT NULL,
    UNIQUE (integration_id, external_id)
);
CREATE INDEX pos_transactions_by_time ON pos_transactions (integration_id, occurred_at, id);
CREATE INDEX pos_transactions_by_customer ON pos_transactions (tenant_id, customer_id, occurred_at);

CREATE TABLE webhook_inbox (
    id              TEXT PRIMARY KEY,
    integration_id  TEXT NOT NULL REFERENCES integrations(id),
    provider        TEXT NOT NULL,
    received_at     BIGINT NOT NULL,
    url             TEXT NOT NULL,
    headers         TEXT NOT NULL,
    body            BLOB NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'processed', 'failed')),
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    event_id        TEXT,
    error           TEXT,
    processed_at    BIGINT
);
CREATE INDEX webhook_inbox_pending ON webhook_inbox (status, next_attempt_at);

CREATE TABLE webhook_events_seen (
    integration_id TEXT NOT NULL,
    event_id       TEXT NOT NULL,
    seen_at        BIGINT NOT NULL,
    PRIMARY KEY (integration_id, event_id)
);
CREATE INDEX webhook_events_seen_by_age ON webhook_events_seen (seen_at);
