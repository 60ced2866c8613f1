-- Suspended tenants: while `suspended_at` is set, every key of the tenant is refused, its
-- sockets are closed, and its syncs, hook deliveries and webhook processing wait; its data is
-- kept. Resuming clears it. A tenant must be suspended before it can be deleted.
ALTER TABLE tenants ADD COLUMN suspended_at BIGINT;
