-- Signed plugins (PostgreSQL): the ed25519 public keys operators trust to sign plugins, and who signed
-- each installed version (recorded at install, so removing a key later does not rewrite
-- history). `signer_name` is NULL for a valid signature by a key nobody trusted then.
CREATE TABLE plugin_signers (
    name       TEXT PRIMARY KEY,
    key_id     TEXT NOT NULL UNIQUE,
    public_key TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

ALTER TABLE plugin_versions ADD COLUMN signer_key_id TEXT;
ALTER TABLE plugin_versions ADD COLUMN signer_name TEXT;
