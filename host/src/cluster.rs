//! The cluster view: every host registers itself in the database and renews the row with a
//! heartbeat, so any host can say which hosts are live (`GET /admin/cluster`) and which
//! terminals are connected to each (`pos-status`).
//!
//! A host is live while its `last_seen` is within [`LIVE_WINDOW`] (three heartbeats). The
//! heartbeat of any live host removes the rows of dead ones, so a host killed with
//! `kill -9` disappears from both views within seconds; a graceful shutdown removes its
//! rows itself. Hosts compare `last_seen` with their own clock, which assumes clocks kept
//! within a few seconds of each other (NTP), as leases already do.
//!
//! Terminal sockets are written to `cluster_terminals` by the host that holds them, only on
//! PostgreSQL (on SQLite one process owns the database, and `pos-status` needs nothing but
//! its own registry). The heartbeat task reconciles the table with the host's registry:
//! promptly after a socket opens or closes (the registry wakes it; bursts coalesce into one
//! pass), and `last_seq` with each heartbeat. This module knows neither the registry nor
//! HTTP: the registry hands it [`LocalTerminal`] snapshots through [`TerminalSource`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::store::{now_micros, rfc3339, Backend, Params, Store, StoreError};

/// How often a host renews its row (and writes its terminals' `last_seq`).
pub(crate) const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(2);

/// A host whose last heartbeat is older than this is dead: three missed heartbeats.
pub(crate) const LIVE_WINDOW: Duration = Duration::from_secs(6);

/// How long a stopping host may spend removing its rows before it gives up (its rows then
/// expire like a dead host's).
const DEREGISTER_TIMEOUT: Duration = Duration::from_secs(2);

/// Terminal rows per multi-row statement (9 columns: 1,800 parameters, far below either
/// database's bound).
const TERMINAL_ROWS_PER_STATEMENT: usize = 200;

/// Who this host is, as it registers itself.
#[derive(Debug, Clone)]
pub(crate) struct HostInfo {
    /// The process id (also the lease owner and NOTIFY origin of its events).
    pub id: String,
    /// The URL the host answers on.
    pub address: String,
    /// posbridge version.
    pub version: String,
    /// When the process started (µs).
    pub started_at: i64,
}

/// A live host as `GET /admin/cluster` lists it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub(crate) struct LiveHost {
    /// The host's id.
    pub id: String,
    /// The URL it answers on.
    pub address: String,
    /// Its posbridge version.
    pub version: String,
    /// When it started (RFC 3339).
    pub started_at: String,
    /// Its last heartbeat (RFC 3339).
    pub last_seen: String,
    /// Terminal sockets open on it at its last heartbeat.
    pub terminals: i64,
}

/// One terminal socket of this host, as the registry describes it to the heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LocalTerminal {
    /// The socket's id within this host.
    pub session_id: u64,
    /// Its tenant.
    pub tenant_id: String,
    /// The key it authenticated with.
    pub key_id: String,
    /// The key's label.
    pub label: String,
    /// The key's role (`terminal` or `manager`).
    pub role: &'static str,
    /// When it connected (µs).
    pub connected_at: i64,
    /// Last event seq sent to it.
    pub last_seq: i64,
    /// Peer address.
    pub remote_addr: Option<String>,
}

/// A terminal socket held by another live host.
#[derive(Debug, Clone)]
pub(crate) struct RemoteTerminal {
    /// The host holding the socket.
    pub host_id: String,
    /// The key it authenticated with.
    pub key_id: String,
    /// The key's label.
    pub label: String,
    /// The key's role as stored (`terminal` or `manager`).
    pub role: String,
    /// When it connected (µs).
    pub connected_at: i64,
    /// Last event seq sent to it, as of its host's last heartbeat.
    pub last_seq: i64,
    /// Peer address.
    pub remote_addr: Option<String>,
}

/// What the heartbeat needs from the terminal registry.
pub(crate) trait TerminalSource: Send + Sync + 'static {
    /// The sockets open now.
    fn snapshot(&self) -> Vec<LocalTerminal>;
    /// Signalled (one stored permit) whenever a socket opens or closes.
    fn changed(&self) -> Arc<Notify>;
}

/// The hosts whose last heartbeat is within [`LIVE_WINDOW`], oldest first.
pub(crate) async fn live_hosts(store: &Store) -> Result<Vec<LiveHost>, StoreError> {
    let rows: Vec<(String, String, String, i64, i64, i64)> = sqlx::query_as(
        "SELECT id, address, version, started_at, last_seen, terminals FROM cluster_hosts
         WHERE last_seen >= $1 ORDER BY started_at, id",
    )
    .bind(live_since())
    .fetch_all(store.reader())
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(id, address, version, started_at, last_seen, terminals)| LiveHost {
                id,
                address,
                version,
                started_at: rfc3339(started_at),
                last_seen: rfc3339(last_seen),
                terminals,
            },
        )
        .collect())
}

/// The tenant's terminals held by live hosts other than `this_host`. Empty on SQLite,
/// where no other host shares the database.
pub(crate) async fn remote_terminals(
    store: &Store,
    tenant_id: &str,
    this_host: &str,
) -> Result<Vec<RemoteTerminal>, StoreError> {
    if store.backend() != Backend::Postgres {
        return Ok(Vec::new());
    }
    type Row = (String, String, String, String, i64, i64, Option<String>);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT t.host_id, t.key_id, t.label, t.role, t.connected_at, t.last_seq, t.remote_addr
         FROM cluster_terminals t JOIN cluster_hosts h ON h.id = t.host_id
         WHERE t.tenant_id = $1 AND t.host_id <> $2 AND h.last_seen >= $3",
    )
    .bind(tenant_id)
    .bind(this_host)
    .bind(live_since())
    .fetch_all(store.reader())
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(host_id, key_id, label, role, connected_at, last_seq, remote_addr)| RemoteTerminal {
                host_id,
                key_id,
                label,
                role,
                connected_at,
                last_seq,
                remote_addr,
            },
        )
        .collect())
}

fn live_since() -> i64 {
    now_micros() - LIVE_WINDOW.as_micros() as i64
}

/// Registers the host and keeps its row (and on PostgreSQL its terminals) current until
/// `shutdown`, then removes them. Tracked by `tasks`, so a graceful shutdown waits for the
/// removal before the store closes.
pub(crate) fn spawn_heartbeat(
    store: Store,
    host: HostInfo,
    terminals: impl TerminalSource,
    shutdown: CancellationToken,
    tasks: &TaskTracker,
) {
    tasks.spawn(async move {
        let mut beat = Heartbeat {
            store,
            host,
            written: HashMap::new(),
            registered: false,
        };
        let share_terminals = beat.store.backend() == Backend::Postgres;
        let changed = terminals.changed();
        let mut tick = tokio::time::interval(HEARTBEAT_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => {
                    let snapshot = terminals.snapshot();
                    if let Err(err) = beat.beat(snapshot.len()).await {
                        tracing::warn!(error = %err, "cluster heartbeat failed");
                        continue;
                    }
                    if share_terminals {
                        beat.sync_terminals(snapshot, true).await;
                    }
                }
                _ = changed.notified(), if share_terminals => {
                    beat.sync_terminals(terminals.snapshot(), false).await;
                }
            }
        }
        match tokio::time::timeout(DEREGISTER_TIMEOUT, beat.deregister()).await {
            Ok(Ok(())) => tracing::info!(host = %beat.host.id, "host left the cluster"),
            Ok(Err(err)) => tracing::warn!(error = %err, "could not remove this host's rows"),
            Err(_) => tracing::warn!("removing this host's rows timed out"),
        }
    });
}

/// The heartbeat's state: what it last wrote of this host's terminals.
struct Heartbeat {
    store: Store,
    host: HostInfo,
    /// Session id → `last_seq` as written to `cluster_terminals`.
    written: HashMap<u64, i64>,
    /// Whether the host row is known to exist.
    registered: bool,
}

impl Heartbeat {
    /// Renews (or writes again) the host row and removes the rows of dead hosts.
    async fn beat(&mut self, terminals: usize) -> Result<(), StoreError> {
        let now = now_micros();
        let renewed =
            sqlx::query("UPDATE cluster_hosts SET last_seen = $1, terminals = $2 WHERE id = $3")
                .bind(now)
                .bind(terminals as i64)
                .bind(&self.host.id)
                .execute(self.store.writer())
                .await?
                .rows_affected();
        if renewed == 0 {
            if self.registered {
                // This host stalled past the live window and another pruned it: its
                // terminal rows went with it, so write them all again.
                tracing::warn!(host = %self.host.id, "this host was taken for dead; registering again");
                self.written.clear();
            }
            sqlx::query(
                "INSERT INTO cluster_hosts (id, address, version, started_at, last_seen, terminals)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (id) DO UPDATE SET last_seen = excluded.last_seen,
                     terminals = excluded.terminals",
            )
            .bind(&self.host.id)
            .bind(&self.host.address)
            .bind(&self.host.version)
            .bind(self.host.started_at)
            .bind(now)
            .bind(terminals as i64)
            .execute(self.store.writer())
            .await?;
            if !self.registered {
                tracing::info!(host = %self.host.id, address = %self.host.address, "host joined the cluster");
            }
            self.registered = true;
        }
        self.prune_dead().await
    }

    async fn prune_dead(&self) -> Result<(), StoreError> {
        // Deleting the row first decides it: a host that renews meanwhile keeps its row
        // (the condition is checked again on the updated row), and one that finds its row
        // gone registers again and rewrites its terminals.
        let dead: Vec<String> =
            sqlx::query_scalar("DELETE FROM cluster_hosts WHERE last_seen < $1 RETURNING id")
                .bind(live_since())
                .fetch_all(self.store.writer())
                .await?;
        for id in &dead {
            sqlx::query("DELETE FROM cluster_terminals WHERE host_id = $1")
                .bind(id)
                .execute(self.store.writer())
                .await?;
            tracing::info!(host = %id, "a dead host was removed from the cluster");
        }
        if self.store.backend() == Backend::Postgres {
            // Rows of hosts whose own row is gone (removed while their last write was in
            // flight).
            sqlx::query(
                "DELETE FROM cluster_terminals
                 WHERE host_id NOT IN (SELECT id FROM cluster_hosts)",
            )
            .execute(self.store.writer())
            .await?;
        }
        Ok(())
    }

    /// Brings `cluster_terminals` in line with `snapshot`: deletes closed sockets, inserts
    /// new ones, and (when `with_seq`) writes changed `last_seq`s. A failure is logged and
    /// the next pass tries again from what was written.
    async fn sync_terminals(&mut self, snapshot: Vec<LocalTerminal>, with_seq: bool) {
        if !self.registered {
            return;
        }
        if let Err(err) = self.try_sync_terminals(snapshot, with_seq).await {
            tracing::warn!(error = %err, "could not publish this host's terminals");
        }
    }

    async fn try_sync_terminals(
        &mut self,
        snapshot: Vec<LocalTerminal>,
        with_seq: bool,
    ) -> Result<(), StoreError> {
        if with_seq {
            // Once a heartbeat, check that the table still holds what this host wrote (a
            // pruning race may have removed rows); if not, write everything again.
            let stored: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM cluster_terminals WHERE host_id = $1")
                    .bind(&self.host.id)
                    .fetch_one(self.store.reader())
                    .await?;
            if stored != self.written.len() as i64 {
                tracing::debug!(
                    stored,
                    written = self.written.len(),
                    "rewriting this host's terminals"
                );
                sqlx::query("DELETE FROM cluster_terminals WHERE host_id = $1")
                    .bind(&self.host.id)
                    .execute(self.store.writer())
                    .await?;
                self.written.clear();
            }
        }
        let open: HashMap<u64, &LocalTerminal> =
            snapshot.iter().map(|t| (t.session_id, t)).collect();
        let closed: Vec<u64> = self
            .written
            .keys()
            .filter(|id| !open.contains_key(id))
            .copied()
            .collect();
        for chunk in closed.chunks(TERMINAL_ROWS_PER_STATEMENT) {
            let mut params = Params::new(self.store.backend());
            let sql = format!(
                "DELETE FROM cluster_terminals WHERE host_id = {} AND session_id IN ({})",
                params.one(),
                params.list(chunk.len())
            );
            let mut query = sqlx::query(&sql).bind(&self.host.id);
            for id in chunk {
                query = query.bind(*id as i64);
            }
            query.execute(self.store.writer()).await?;
            for id in chunk {
                self.written.remove(id);
            }
        }
        let upserts: Vec<&LocalTerminal> = snapshot
            .iter()
            .filter(|t| match self.written.get(&t.session_id) {
                None => true,
                Some(&seq) => with_seq && seq != t.last_seq,
            })
            .collect();
        for chunk in upserts.chunks(TERMINAL_ROWS_PER_STATEMENT) {
            let mut params = Params::new(self.store.backend());
            let sql = format!(
                "INSERT INTO cluster_terminals (host_id, session_id, tenant_id, key_id, label,
                     role, connected_at, last_seq, remote_addr)
                 VALUES {}
                 ON CONFLICT (host_id, session_id) DO UPDATE SET last_seq = excluded.last_seq",
                params.rows(chunk.len(), 9)
            );
            let mut query = sqlx::query(&sql);
            for t in chunk {
                query = query
                    .bind(&self.host.id)
                    .bind(t.session_id as i64)
                    .bind(&t.tenant_id)
                    .bind(&t.key_id)
                    .bind(&t.label)
                    .bind(t.role)
                    .bind(t.connected_at)
                    .bind(t.last_seq)
                    .bind(t.remote_addr.as_deref());
            }
            query.execute(self.store.writer()).await?;
            for t in chunk {
                self.written.insert(t.session_id, t.last_seq);
            }
        }
        Ok(())
    }

    /// Removes this host's rows (graceful shutdown).
    async fn deregister(&self) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM cluster_terminals WHERE host_id = $1")
            .bind(&self.host.id)
            .execute(self.store.writer())
            .await?;
        sqlx::query("DELETE FROM cluster_hosts WHERE id = $1")
            .bind(&self.host.id)
            .execute(self.store.writer())
            .await?;
        Ok(())
    }
}
