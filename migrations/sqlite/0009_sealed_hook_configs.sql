-- A binding's configuration can hold secrets (a Slack webhook URL is a credential), so it is
-- sealed at rest like provider credentials: AES-256-GCM under the master key, bound to the
-- tenant and binding ids. Sealed rows keep `config` empty. Rows written before this
-- migration are sealed by the server when it starts (SQL cannot encrypt).
ALTER TABLE hook_bindings ADD COLUMN config_key_id TEXT;
ALTER TABLE hook_bindings ADD COLUMN config_sealed BLOB;
