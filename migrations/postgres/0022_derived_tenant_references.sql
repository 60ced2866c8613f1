-- Three tenant references stop being foreign keys, the three written by every loyalty move,
-- gift-card move and event: on PostgreSQL each checked row took a KEY SHARE lock on the
-- tenant's row, the row whose `last_seq` every write batch of the tenant updates, so the
-- checks of concurrent batches queued there and piled up multixacts. Dropping them measured
-- +14% loyalty adds per second (docs/performance.md). What they guaranteed still holds:
--
-- events: a row is only ever inserted by the statement that bumps its tenant's `last_seq`
--   (`INSERT ... SELECT ... FROM bumped`), which finds and locks the tenant's row until the
--   commit, or inserts nothing and fails the batch. A tenant being deleted has its row
--   locked by the deletion first, so the batch either commits before it (and the deletion
--   removes its rows) or finds the row gone and rolls back.
-- loyalty_transactions, gift_card_transactions: a row references its customer or gift card
--   (still a foreign key), whose own tenant reference is one, so no ledger row can outlive
--   its tenant: a deletion that met one would be refused at the parent.
ALTER TABLE events DROP CONSTRAINT events_tenant_id_fkey;
ALTER TABLE loyalty_transactions DROP CONSTRAINT loyalty_transactions_tenant_id_fkey;
ALTER TABLE gift_card_transactions DROP CONSTRAINT gift_card_transactions_tenant_id_fkey;
