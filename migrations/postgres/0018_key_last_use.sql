-- When each API key was last used (microseconds since the epoch, NULL until first use).
-- Written at most once a minute per key by each host (see auth::KeyCache::record_use), so
-- it is "last use, to the minute", not a per-request audit trail.
ALTER TABLE api_keys ADD COLUMN last_used_at BIGINT;
