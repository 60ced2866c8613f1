//! Delivery of live events to a tenant's sockets. Each event is taken from the hub once
//! per shard (a task with a share of the tenant's sockets), its frame encoded once, and
//! offered to every socket of the shard: a non-blocking write each (see
//! [`Socket::offer`]).
//!
//! Compared with a task per socket woken for every event, this costs a wake-up per
//! shard instead of per socket, which was about a quarter of the host's CPU when one
//! event goes to 1,000 terminals. Shards let a tenant with many terminals use every core:
//! a new shard opens once each existing one has [`SOCKETS_PER_SHARD`] sockets, up to
//! one per core.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast::error::RecvError;
use tokio::sync::broadcast::Receiver;
use tokio_util::sync::CancellationToken;

use super::socket::{text_frame, Socket};
use crate::events::{Event, EventHub};
use crate::locks::lock;
use crate::store::now_micros;

/// Microseconds from `at` (a wall-clock append time) to now; 0 if the clock stepped back.
fn micros_since(at: i64) -> i64 {
    (now_micros() - at).max(0)
}

/// Sockets a shard takes before the tenant gets another shard. Writing to 64 sockets
/// takes ~0.5 ms on loopback, short enough that a second task (and its wake-up per
/// event) would not pay off below it.
const SOCKETS_PER_SHARD: usize = 64;

/// Sockets attached per tenant, in shards, each with its delivery task.
#[derive(Debug)]
pub(super) struct Fanout {
    tenants: Mutex<HashMap<String, Vec<Shard>>>,
    /// Most shards per tenant: the cores available.
    max_shards: usize,
}

impl Default for Fanout {
    fn default() -> Self {
        Fanout {
            tenants: Mutex::default(),
            max_shards: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

#[derive(Debug)]
struct Shard {
    /// Copied on attach and detach (rare), read once per event without holding the lock.
    sockets: Arc<Mutex<Arc<Vec<Arc<Socket>>>>>,
    /// Ends the delivery task when the shard's last socket detaches.
    stop: CancellationToken,
}

impl Shard {
    fn len(&self) -> usize {
        lock(&self.sockets).len()
    }

    fn update(&self, change: impl FnOnce(&mut Vec<Arc<Socket>>)) -> usize {
        let mut sockets = lock(&self.sockets);
        let mut list = Vec::clone(&sockets);
        change(&mut list);
        let len = list.len();
        *sockets = Arc::new(list);
        len
    }
}

impl Fanout {
    /// Starts delivering the tenant's events to `socket`. Events published from now on
    /// reach it (held until the session goes live), so attach *before* reading the log.
    pub(super) fn attach(&self, hub: &EventHub, tenant_id: &str, socket: Arc<Socket>) {
        let mut tenants = lock(&self.tenants);
        let shards = tenants.entry(tenant_id.to_owned()).or_default();
        let smallest = shards
            .iter()
            .map(|s| (s.len(), s))
            .min_by_key(|(len, _)| *len);
        match smallest {
            Some((len, shard)) if len < SOCKETS_PER_SHARD || shards.len() >= self.max_shards => {
                shard.update(|list| list.push(socket));
            }
            _ => {
                let sockets = Arc::new(Mutex::new(Arc::new(vec![socket])));
                let stop = CancellationToken::new();
                tokio::spawn(deliver(
                    hub.subscribe(tenant_id),
                    sockets.clone(),
                    stop.clone(),
                ));
                shards.push(Shard { sockets, stop });
            }
        }
    }

    /// Stops delivering to `socket`; a shard's task ends with its last socket.
    pub(super) fn detach(&self, tenant_id: &str, socket: &Arc<Socket>) {
        let mut tenants = lock(&self.tenants);
        let Some(shards) = tenants.get_mut(tenant_id) else {
            return;
        };
        shards.retain(|shard| {
            let left = shard.update(|list| list.retain(|s| !Arc::ptr_eq(s, socket)));
            if left == 0 {
                shard.stop.cancel();
            }
            left > 0
        });
        if shards.is_empty() {
            tenants.remove(tenant_id);
        }
    }
}

/// A shard's delivery task.
async fn deliver(
    mut live: Receiver<Arc<Event>>,
    sockets: Arc<Mutex<Arc<Vec<Arc<Socket>>>>>,
    stop: CancellationToken,
) {
    let stopped = stop.cancelled();
    tokio::pin!(stopped);
    loop {
        let received = tokio::select! {
            biased;
            received = live.recv() => received,
            _ = &mut stopped => return,
        };
        let current = lock(&sockets).clone();
        match received {
            Ok(event) => {
                let wire = text_frame(event.frame.as_bytes());
                for socket in current.iter() {
                    socket.offer(&event, &wire);
                }
                metrics::histogram!("posbridge_event_fanout_seconds")
                    .record(micros_since(event.at) as f64 / 1e6);
            }
            // The hub's queue overflowed: every socket of the shard re-reads the log.
            Err(RecvError::Lagged(_)) => current.iter().for_each(|s| s.lagged()),
            Err(RecvError::Closed) => return,
        }
    }
}
