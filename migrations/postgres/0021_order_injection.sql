-- Order injection and status relay (issue 19): an online order that names a venue whose POS
-- takes orders carries its POS side on its own row, so the order and its POS state are
-- written in one transaction and can never disagree.
--
-- pos_state: NULL for an order that goes to no POS; else queued (waiting for its first or
-- next attempt), submitted (the POS has it, not yet accepted), accepted, rejected (refused
-- for good by the POS) or failed (attempts ran out; a dead letter of kind 'order' holds it).
-- pos_submitted_at: set before a submit is sent, so any later attempt (after a timeout, a
-- crash, an operator's retry) looks the order up in the POS before sending it again.
-- pos_claimed_by / pos_claimed_until: the lease of the host working on the row (submitting
-- it, or polling its status), so two hosts never submit the same order at once.
-- pos_version / pos_updated_at: the newest POS version (or change time, epoch ms) applied,
-- so older status reports are dropped.
ALTER TABLE orders ADD COLUMN venue TEXT;
ALTER TABLE orders ADD COLUMN pos_state TEXT;
ALTER TABLE orders ADD COLUMN pos_provider TEXT;
ALTER TABLE orders ADD COLUMN pos_integration_id TEXT;
ALTER TABLE orders ADD COLUMN pos_provider_order_id TEXT;
ALTER TABLE orders ADD COLUMN pos_provider_state TEXT;
ALTER TABLE orders ADD COLUMN pos_request TEXT;
ALTER TABLE orders ADD COLUMN pos_priced TEXT;
ALTER TABLE orders ADD COLUMN pos_attempts BIGINT NOT NULL DEFAULT 0;
ALTER TABLE orders ADD COLUMN pos_last_error TEXT;
ALTER TABLE orders ADD COLUMN pos_next_attempt_at BIGINT;
ALTER TABLE orders ADD COLUMN pos_submitted_at BIGINT;
ALTER TABLE orders ADD COLUMN pos_claimed_by TEXT;
ALTER TABLE orders ADD COLUMN pos_claimed_until BIGINT;
ALTER TABLE orders ADD COLUMN pos_version BIGINT;
ALTER TABLE orders ADD COLUMN pos_updated_at BIGINT;
ALTER TABLE orders ADD COLUMN pos_poll_at BIGINT;
CREATE INDEX orders_pos_due ON orders (pos_state, pos_next_attempt_at);
CREATE INDEX orders_pos_poll ON orders (pos_poll_at);
CREATE INDEX orders_by_pos_order ON orders (pos_integration_id, pos_provider_order_id);

-- Order-status reports from POS webhooks, written by the webhook inbox in the transaction
-- that records the delivery and applied (or dropped, for orders that are not ours) by the
-- status relay. `status` is the reported status as JSON, NULL for a thin webhook that only
-- names the order (the relay then reads the status from the POS).
CREATE TABLE pos_order_updates (
    id                 TEXT PRIMARY KEY,
    tenant_id          TEXT NOT NULL,
    integration_id     TEXT NOT NULL,
    provider_order_id  TEXT NOT NULL,
    version            BIGINT,
    status             TEXT,
    received_at        BIGINT NOT NULL
);
CREATE INDEX pos_order_updates_by_time ON pos_order_updates (received_at, id);

-- Dead letters gain the kind 'order': an order whose injection ran out of attempts.
-- order: source_id is the order id, item is ''.
ALTER TABLE dead_letters DROP CONSTRAINT dead_letters_kind_check;
ALTER TABLE dead_letters ADD CONSTRAINT dead_letters_kind_check
    CHECK (kind IN ('webhook', 'sync', 'hook', 'order'));
