-- Host foundation (PostgreSQL): tenancy, keys, the durable event log, ledgers, orders, reports, idempotency.
-- Timestamps are integer microseconds since the Unix epoch (UTC); money is integer minor units.

CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE tenants (
    id         TEXT PRIMARY KEY,
    slug       TEXT NOT NULL UNIQUE,
    name       TEXT NOT NULL,
    currency   TEXT NOT NULL,
    timezone   TEXT NOT NULL,
    country    TEXT NOT NULL,
    -- Last event sequence number handed out; bumped in the same transaction as the event.
    last_seq   BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL
);

CREATE TABLE api_keys (
    id         TEXT PRIMARY KEY,
    tenant_id  TEXT NOT NULL REFERENCES tenants(id),
    role       TEXT NOT NULL CHECK (role IN ('terminal', 'manager')),
    label      TEXT NOT NULL,
    key_hash   TEXT NOT NULL UNIQUE,
    key_prefix TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX api_keys_by_tenant ON api_keys (tenant_id, created_at);

CREATE TABLE events (
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    seq       BIGINT NOT NULL,
    kind      TEXT NOT NULL,
    at        BIGINT NOT NULL,
    data      TEXT NOT NULL,
    PRIMARY KEY (tenant_id, seq)
);

CREATE TABLE customers (
    id              TEXT PRIMARY KEY,
    tenant_id       TEXT NOT NULL REFERENCES tenants(id),
    phone           TEXT NOT NULL,
    points          BIGINT NOT NULL DEFAULT 0 CHECK (points >= 0),
    lifetime_points BIGINT NOT NULL DEFAULT 0 CHECK (lifetime_points >= 0),
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    UNIQUE (tenant_id, phone)
);

CREATE TABLE loyalty_transactions (
    id            TEXT PRIMARY KEY,
    tenant_id     TEXT NOT NULL REFERENCES tenants(id),
    customer_id   TEXT NOT NULL REFERENCES customers(id),
    kind          TEXT NOT NULL CHECK (kind IN ('add', 'redeem')),
    points        BIGINT NOT NULL,
    balance_after BIGINT NOT NULL,
    order_id      TEXT,
    reason        TEXT,
    api_key_id    TEXT,
    created_at    BIGINT NOT NULL
);
CREATE INDEX loyalty_transactions_by_customer ON loyalty_transactions (tenant_id, customer_id, created_at);

CREATE TABLE gift_cards (
    id             TEXT PRIMARY KEY,
    tenant_id      TEXT NOT NULL REFERENCES tenants(id),
    code           TEXT NOT NULL,
    currency       TEXT NOT NULL,
    balance        BIGINT NOT NULL CHECK (balance >= 0),
    initial_amount BIGINT NOT NULL CHECK (initial_amount > 0),
    status         TEXT NOT NULL CHECK (status IN ('active', 'disabled')),
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL,
    UNIQUE (tenant_id, code)
);

CREATE TABLE gift_card_transactions (
    id            TEXT PRIMARY KEY,
    tenant_id     TEXT NOT NULL REFERENCES tenants(id),
    gift_card_id  TEXT NOT NULL REFERENCES gift_cards(id),
    kind          TEXT NOT NULL CHECK (kind IN ('purchase', 'redeem')),
    amount        BIGINT NOT NULL,
    balance_after BIGINT NOT NULL,
    order_id      TEXT,
    api_key_id    TEXT,
    created_at    BIGINT NOT NULL
);
CREATE INDEX gift_card_transactions_by_card ON gift_card_transactions (tenant_id, gift_card_id, created_at);

CREATE TABLE orders (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    external_id TEXT,
    source      TEXT NOT NULL,
    status      TEXT NOT NULL,
    currency    TEXT NOT NULL,
    subtotal    BIGINT NOT NULL,
    tax         BIGINT NOT NULL,
    tip         BIGINT NOT NULL,
    discount    BIGINT NOT NULL,
    total       BIGINT NOT NULL,
    items       TEXT NOT NULL,
    customer    TEXT,
    notes       TEXT,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE UNIQUE INDEX orders_by_external_id ON orders (tenant_id, external_id);
CREATE INDEX orders_open ON orders (tenant_id, source, status, created_at);

CREATE TABLE daily_reports (
    tenant_id       TEXT NOT NULL REFERENCES tenants(id),
    report_date     TEXT NOT NULL,
    currency        TEXT NOT NULL,
    total_sales     BIGINT NOT NULL,
    total_orders    BIGINT NOT NULL,
    cash_sales      BIGINT NOT NULL,
    card_sales      BIGINT NOT NULL,
    gift_card_sales BIGINT NOT NULL,
    online_sales    BIGINT NOT NULL,
    discounts       BIGINT NOT NULL,
    refunds         BIGINT NOT NULL,
    net_sales       BIGINT NOT NULL,
    top_items       TEXT NOT NULL,
    busy_hours      TEXT NOT NULL,
    staff_shifts    TEXT NOT NULL,
    notes           TEXT,
    revision        BIGINT NOT NULL,
    uploaded_at     BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, report_date)
);

CREATE TABLE idempotency_keys (
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    key         TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    -- 0 while the first request is still in flight inside its transaction.
    status      BIGINT NOT NULL,
    body        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, key)
);
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);
