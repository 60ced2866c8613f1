-- The inbox worker takes the oldest claimable deliveries: pending, due, unclaimed, in
-- arrival order, a batch at a time. Indexed by (status, next_attempt_at) it had to visit
-- every due delivery and sort them all before taking a batch, so draining a backlog cost
-- time quadratic in its size (a 24,000-delivery burst took 23 s to record after the last
-- ack). In arrival order, with the filter columns in the index, it stops after one batch.
DROP INDEX webhook_inbox_pending;
CREATE INDEX webhook_inbox_queue ON webhook_inbox (status, received_at, next_attempt_at, claimed_until);
