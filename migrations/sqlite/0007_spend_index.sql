-- Rule evaluation sums a customer's spend at one integration for every batch of sales it
-- evaluates. Covering the sum's columns lets that be an index-only range scan instead of a
-- table lookup per past sale.
CREATE INDEX pos_transactions_spend ON pos_transactions (tenant_id, customer_id, integration_id, status, total, refunded);
