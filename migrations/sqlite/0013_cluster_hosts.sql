-- The cluster view: every running host registers itself here and renews `last_seen` with a
-- heartbeat (every ~2 s); a host whose `last_seen` is older than three heartbeats is dead
-- and its rows are removed by the next live host's heartbeat. `GET /admin/cluster` lists
-- the live ones. Times are microseconds since the Unix epoch, written by each host's clock.
-- The same schema on SQLite and PostgreSQL.

CREATE TABLE cluster_hosts (
    -- The host's process id (also its lease owner and its events' NOTIFY origin).
    id          TEXT PRIMARY KEY,
    -- The URL the host answers on (`--public-url`, or its listening address).
    address     TEXT NOT NULL,
    version     TEXT NOT NULL,
    started_at  BIGINT NOT NULL,
    last_seen   BIGINT NOT NULL,
    -- Terminal sockets open on the host at its last heartbeat.
    terminals   BIGINT NOT NULL DEFAULT 0
);

CREATE INDEX cluster_hosts_last_seen ON cluster_hosts (last_seen);

-- Terminal sockets open on each host, so `/pos-status` on any host lists a tenant's
-- terminals on every host. Written by the host that holds the socket (on connect and
-- disconnect, `last_seq` with its heartbeat), only when several hosts can share the
-- database (PostgreSQL); removed with their host.
CREATE TABLE cluster_terminals (
    host_id       TEXT NOT NULL,
    -- The socket's id within its host.
    session_id    BIGINT NOT NULL,
    tenant_id     TEXT NOT NULL,
    key_id        TEXT NOT NULL,
    label         TEXT NOT NULL,
    role          TEXT NOT NULL,
    connected_at  BIGINT NOT NULL,
    last_seq      BIGINT NOT NULL,
    remote_addr   TEXT,
    PRIMARY KEY (host_id, session_id)
);

CREATE INDEX cluster_terminals_tenant ON cluster_terminals (tenant_id);
