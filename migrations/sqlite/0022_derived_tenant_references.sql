-- The tenant references of events, loyalty_transactions and gift_card_transactions stop
-- being foreign keys, as on PostgreSQL (migrations/postgres/0022, which says why and what
-- still guarantees them), so the two trees keep one schema. SQLite cannot drop a
-- constraint: each table is rebuilt with the same columns, keys and indexes. None of the
-- three is referenced by another table.
CREATE TABLE events_rebuilt (
    tenant_id TEXT NOT NULL,
    seq       BIGINT NOT NULL,
    kind      TEXT NOT NULL,
    at        BIGINT NOT NULL,
    data      TEXT NOT NULL,
    PRIMARY KEY (tenant_id, seq)
);
INSERT INTO events_rebuilt (tenant_id, seq, kind, at, data)
    SELECT tenant_id, seq, kind, at, data FROM events;
DROP TABLE events;
ALTER TABLE events_rebuilt RENAME TO events;

CREATE TABLE loyalty_transactions_rebuilt (
    id            TEXT PRIMARY KEY,
    tenant_id     TEXT NOT NULL,
    customer_id   TEXT NOT NULL REFERENCES customers(id),
    kind          TEXT NOT NULL CHECK (kind IN ('add', 'redeem')),
    points        BIGINT NOT NULL,
    balance_after BIGINT NOT NULL,
    order_id      TEXT,
    reason        TEXT,
    api_key_id    TEXT,
    created_at    BIGINT NOT NULL
);
INSERT INTO loyalty_transactions_rebuilt
    (id, tenant_id, customer_id, kind, points, balance_after, order_id, reason, api_key_id, created_at)
    SELECT id, tenant_id, customer_id, kind, points, balance_after, order_id, reason, api_key_id, created_at
    FROM loyalty_transactions;
DROP TABLE loyalty_transactions;
ALTER TABLE loyalty_transactions_rebuilt RENAME TO loyalty_transactions;
CREATE INDEX loyalty_transactions_by_customer ON loyalty_transactions (tenant_id, customer_id, created_at);

CREATE TABLE gift_card_transactions_rebuilt (
    id            TEXT PRIMARY KEY,
    tenant_id     TEXT NOT NULL,
    gift_card_id  TEXT NOT NULL REFERENCES gift_cards(id),
    kind          TEXT NOT NULL CHECK (kind IN ('purchase', 'redeem')),
    amount        BIGINT NOT NULL,
    balance_after BIGINT NOT NULL,
    order_id      TEXT,
    api_key_id    TEXT,
    created_at    BIGINT NOT NULL
);
INSERT INTO gift_card_transactions_rebuilt
    (id, tenant_id, gift_card_id, kind, amount, balance_after, order_id, api_key_id, created_at)
    SELECT id, tenant_id, gift_card_id, kind, amount, balance_after, order_id, api_key_id, created_at
    FROM gift_card_transactions;
DROP TABLE gift_card_transactions;
ALTER TABLE gift_card_transactions_rebuilt RENAME TO gift_card_transactions;
CREATE INDEX gift_card_transactions_by_card ON gift_card_transactions (tenant_id, gift_card_id, created_at);
