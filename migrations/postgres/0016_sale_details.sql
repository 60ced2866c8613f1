-- Sale details that plugin contract 0.2 added to the canonical transaction: who served the
-- sale, its line items and the refunds behind `refunded` (each linked to this sale by being
-- stored on it). Line items and refunds are JSON arrays as text, NULL when the provider sent
-- none (every sale from a 0.1 plugin).
ALTER TABLE pos_transactions ADD COLUMN staff_id TEXT;
ALTER TABLE pos_transactions ADD COLUMN staff_name TEXT;
ALTER TABLE pos_transactions ADD COLUMN line_items TEXT;
ALTER TABLE pos_transactions ADD COLUMN refunds TEXT;
