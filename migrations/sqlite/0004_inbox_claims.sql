-- Webhook inbox claims carry their owner, so a restarted host can release the claims a
-- crashed process left behind instead of waiting for them to expire.
ALTER TABLE webhook_inbox ADD COLUMN claimed_by TEXT;
ALTER TABLE webhook_inbox ADD COLUMN claimed_until BIGINT;
