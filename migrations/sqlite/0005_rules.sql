-- Spend rules: per-venue thresholds that unlock customer tiers and access levels, the tenant's
-- ordered tiers, the unlocks (once per customer and rule) and the venues' live performances.

CREATE TABLE tier_ladders (
    tenant_id     TEXT PRIMARY KEY REFERENCES tenants(id),
    tiers         TEXT NOT NULL,
    access_levels TEXT NOT NULL,
    updated_at    BIGINT NOT NULL
);

CREATE TABLE spend_rules (
    id                 TEXT PRIMARY KEY,
    tenant_id          TEXT NOT NULL REFERENCES tenants(id),
    venue              TEXT NOT NULL,
    name               TEXT NOT NULL,
    threshold          BIGINT NOT NULL CHECK (threshold >= 0),
    tier               TEXT NOT NULL,
    access_level       TEXT,
    priority           BIGINT NOT NULL,
    enabled            BIGINT NOT NULL CHECK (enabled IN (0, 1)),
    live_only          BIGINT NOT NULL CHECK (live_only IN (0, 1)),
    time_windows       TEXT NOT NULL,
    performer_id       TEXT,
    times_triggered    BIGINT NOT NULL DEFAULT 0,
    customers_unlocked BIGINT NOT NULL DEFAULT 0,
    last_triggered_at  BIGINT,
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL
);
CREATE INDEX spend_rules_by_venue ON spend_rules (tenant_id, venue, priority, threshold);

ALTER TABLE customers ADD COLUMN tier TEXT;
ALTER TABLE customers ADD COLUMN access_level TEXT;

-- rule_id carries no foreign key: the history outlives a deleted rule.
CREATE TABLE tier_unlocks (
    id             TEXT PRIMARY KEY,
    tenant_id      TEXT NOT NULL REFERENCES tenants(id),
    customer_id    TEXT NOT NULL REFERENCES customers(id),
    rule_id        TEXT NOT NULL,
    rule_name      TEXT NOT NULL,
    venue          TEXT NOT NULL,
    tier           TEXT NOT NULL,
    access_level   TEXT,
    transaction_id TEXT NOT NULL,
    lifetime_spend BIGINT NOT NULL,
    currency       TEXT NOT NULL,
    occurred_at    BIGINT NOT NULL,
    created_at     BIGINT NOT NULL,
    UNIQUE (customer_id, rule_id)
);
CREATE INDEX tier_unlocks_by_customer ON tier_unlocks (tenant_id, customer_id, occurred_at);

CREATE TABLE performances (
    id           TEXT PRIMARY KEY,
    tenant_id    TEXT NOT NULL REFERENCES tenants(id),
    venue        TEXT NOT NULL,
    performer_id TEXT NOT NULL,
    starts_at    BIGINT NOT NULL,
    ends_at      BIGINT NOT NULL CHECK (ends_at > starts_at),
    created_at   BIGINT NOT NULL
);
CREATE INDEX performances_by_venue ON performances (tenant_id, venue, starts_at);
