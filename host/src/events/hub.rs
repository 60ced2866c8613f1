//! In-process fan-out of committed events to the sockets of one tenant, plus (on
//! PostgreSQL) the LISTEN/NOTIFY bridge that carries events between hosts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{broadcast, Notify};
use tokio_util::sync::CancellationToken;

use super::{read_after, Event};
use crate::locks::lock;
use crate::plugins::CATALOG_CHANNEL;
use crate::store::{Backend, Store};

/// PostgreSQL channel carrying `<node> <tenant_id> <seq>` for every committed event.
pub(super) const NOTIFY_CHANNEL: &str = "posbridge_events";

/// PostgreSQL channel carrying the id of every revoked API key, sent by the revoking
/// transaction itself (so the CLI's revocations reach running hosts too).
pub(crate) const REVOCATION_CHANNEL: &str = "posbridge_revocations";

/// Revocations received from other processes that the watcher may not have taken yet.
/// They are rare; should the watcher fall this far behind, its periodic check of the
/// database still finds them.
const REVOCATION_QUEUE: usize = 64;

/// Fan-out tuning (`--ws-queue`, `--event-history`; see [`crate::options`]).
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct HubOptions {
    /// Events a subscriber may fall behind: a terminal socket with more frames waiting is
    /// closed as a slow consumer, and a tenant's fan-out that falls further behind the hub
    /// has its sockets re-read the log. Default 1024: seconds of a busy tenant, while
    /// capping memory per socket and per tenant. At least 1.
    #[arg(
        long = "ws-queue",
        env = "POSBRIDGE_WS_QUEUE",
        default_value = "1024",
        value_parser = crate::options::at_least(1usize)
    )]
    pub queue: usize,
    /// Events kept per tenant for resume (`?since=`); older ones are pruned and a terminal
    /// asking for them is told to reload (`reset`). Default 100000: days of traffic for a
    /// busy restaurant. At least 1.
    #[arg(
        long = "event-history",
        env = "POSBRIDGE_EVENT_HISTORY",
        default_value = "100000",
        value_parser = crate::options::at_least(1i64)
    )]
    pub history: i64,
}

impl Default for HubOptions {
    fn default() -> Self {
        crate::options::defaults()
    }
}

/// Routes committed events to the live subscribers of their tenant. Cheap to clone.
#[derive(Clone, Debug)]
pub struct EventHub {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    channels: Mutex<HashMap<String, broadcast::Sender<Arc<Event>>>>,
    options: HubOptions,
    /// Identifies this process in NOTIFY payloads so it ignores its own events.
    node_id: String,
    /// Signalled after events commit here or arrive from another host: wakes the hook
    /// dispatcher within milliseconds instead of a polling interval.
    appended: Notify,
    /// Ids of keys revoked anywhere, as the PostgreSQL listener hears of them.
    revocations: broadcast::Sender<String>,
    /// Signalled when another process announces a plugin catalog change.
    catalog: Arc<Notify>,
}

impl EventHub {
    /// A hub with the given tuning.
    pub fn new(options: HubOptions) -> Self {
        EventHub {
            inner: Arc::new(Inner {
                channels: Mutex::new(HashMap::new()),
                options,
                node_id: uuid::Uuid::now_v7().simple().to_string(),
                appended: Notify::new(),
                revocations: broadcast::channel(REVOCATION_QUEUE).0,
                catalog: Arc::default(),
            }),
        }
    }

    /// Events retained per tenant.
    pub(crate) fn history(&self) -> i64 {
        self.inner.options.history
    }

    /// Subscribes to the tenant's live events. Subscribe *before* reading history, so no
    /// event can fall between the two (duplicates are filtered by seq).
    pub(crate) fn subscribe(&self, tenant_id: &str) -> broadcast::Receiver<Arc<Event>> {
        let mut channels = lock(&self.inner.channels);
        if let Some(tx) = channels.get(tenant_id) {
            return tx.subscribe();
        }
        let (tx, rx) = broadcast::channel(self.inner.options.queue);
        channels.insert(tenant_id.to_owned(), tx);
        rx
    }

    /// Hands a committed event to the tenant's subscribers, if any.
    pub fn publish(&self, event: Arc<Event>) {
        let mut channels = lock(&self.inner.channels);
        if let Some(tx) = channels.get(&event.tenant_id) {
            if tx.send(event.clone()).is_err() {
                // Nobody listens any more: free the channel.
                channels.remove(&event.tenant_id);
            }
        }
    }

    /// Records that events were appended (one stored permit wakes the single waiter).
    pub(crate) fn signal_appended(&self) {
        self.inner.appended.notify_one();
    }

    /// Completes after the next [`EventHub::signal_appended`] (or at once if one is pending).
    pub(crate) async fn appended(&self) {
        self.inner.appended.notified().await;
    }

    /// Ids of API keys revoked by any process sharing the PostgreSQL database (this one
    /// included), as they are announced. Never fed on SQLite; see
    /// `terminals::revocations` for the periodic check that covers both.
    pub(crate) fn revocations(&self) -> broadcast::Receiver<String> {
        self.inner.revocations.subscribe()
    }

    /// Signalled (one stored permit) when any process sharing the PostgreSQL database
    /// announces a plugin catalog change, so the plugin watcher reloads at once instead of
    /// at its next poll. Never signalled on SQLite.
    pub(crate) fn catalog_changes(&self) -> Arc<Notify> {
        self.inner.catalog.clone()
    }

    /// This process's id (in NOTIFY payloads and sync leases).
    pub(crate) fn node_id(&self) -> &str {
        &self.inner.node_id
    }

    /// The NOTIFY payload announcing the tenant's events `first..=last`: this prefix, a
    /// space, `first`, a space, `last` (the statement that writes the events appends the
    /// numbers it hands out).
    pub(super) fn notification_prefix(&self, tenant_id: &str) -> String {
        format!("{} {tenant_id}", self.inner.node_id)
    }

    /// On PostgreSQL, listens for other hosts' events and publishes them locally until
    /// `shutdown`. A no-op on SQLite, where one process owns the database.
    pub(crate) fn spawn_cross_node_listener(&self, store: Store, shutdown: CancellationToken) {
        if store.backend() != Backend::Postgres {
            return;
        }
        let hub = self.clone();
        tokio::spawn(async move {
            loop {
                match hub.listen(&store, &shutdown).await {
                    Ok(()) => return,
                    Err(err) => {
                        tracing::warn!(error = %err, "event listener failed; reconnecting");
                        tokio::select! {
                            _ = shutdown.cancelled() => return,
                            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        }
                    }
                }
            }
        });
    }

    async fn listen(&self, store: &Store, shutdown: &CancellationToken) -> Result<(), sqlx::Error> {
        let mut listener = sqlx::postgres::PgListener::connect(store.url()).await?;
        listener
            .listen_all([NOTIFY_CHANNEL, REVOCATION_CHANNEL, CATALOG_CHANNEL])
            .await?;
        loop {
            let notification = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                n = listener.recv() => n?,
            };
            if notification.channel() == CATALOG_CHANNEL {
                self.inner.catalog.notify_one();
                continue;
            }
            if notification.channel() == REVOCATION_CHANNEL {
                // No receiver (no watcher running) is fine: nothing to close.
                let _ = self
                    .inner
                    .revocations
                    .send(notification.payload().to_owned());
                continue;
            }
            let mut parts = notification.payload().split(' ');
            let (Some(node), Some(tenant_id), Some(seq)) =
                (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            if node == self.inner.node_id {
                continue;
            }
            // Another host's event: hooks bound to any tenant may have work.
            self.signal_appended();
            let Ok(first) = seq.parse::<i64>() else {
                continue;
            };
            let last = parts
                .next()
                .and_then(|s| s.parse::<i64>().ok())
                .filter(|&last| last >= first)
                .unwrap_or(first);
            let subscribed = lock(&self.inner.channels).contains_key(tenant_id);
            if !subscribed {
                continue;
            }
            match read_after(store, tenant_id, first - 1, last - first + 1).await {
                Ok(events) => events.into_iter().for_each(|e| self.publish(e)),
                Err(err) => tracing::warn!(error = %err, "could not load a remote event"),
            }
        }
    }
}
