-- Plugin registry (PostgreSQL): installed components, their versions, and plugin-scoped state.

CREATE TABLE plugins (
    id             TEXT PRIMARY KEY,
    kind           TEXT NOT NULL CHECK (kind IN ('provider', 'hook')),
    active_version TEXT,
    state          TEXT NOT NULL CHECK (state IN ('active', 'disabled', 'quarantined')),
    state_reason   TEXT,
    approved_hosts TEXT NOT NULL DEFAULT '[]',
    cpu_ms         BIGINT NOT NULL DEFAULT 1000,
    memory_bytes   BIGINT NOT NULL DEFAULT 67108864,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL
);

CREATE TABLE plugin_versions (
    plugin_id    TEXT NOT NULL REFERENCES plugins(id),
    version      TEXT NOT NULL,
    contract     TEXT NOT NULL,
    sha256       TEXT NOT NULL,
    manifest     TEXT NOT NULL,
    wasm         BYTEA NOT NULL,
    source       TEXT NOT NULL,
    installed_at BIGINT NOT NULL,
    PRIMARY KEY (plugin_id, version)
);

CREATE TABLE plugin_state (
    plugin_id      TEXT NOT NULL,
    tenant_id      TEXT NOT NULL,
    integration_id TEXT NOT NULL,
    key            TEXT NOT NULL,
    value          BYTEA NOT NULL,
    updated_at     BIGINT NOT NULL,
    PRIMARY KEY (plugin_id, tenant_id, integration_id, key)
);
