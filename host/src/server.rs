//! The `serve` lifecycle: open storage, bind, serve, and shut down gracefully on SIGTERM or
//! SIGINT (stop accepting, close sockets with "going away", finish in-flight requests).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRef;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::{KeyCache, OperatorCredential};
use crate::config::ServeConfig;
use crate::events::{EventHub, GroupCommitOptions, Writes};
use crate::plugins::{Plugins, StartError};
use crate::state::{AppState, Services};
use crate::store::{Store, StoreError};
use crate::terminals::Terminals;
use crate::vault::VaultError;
use crate::{api, idempotency, metrics};

mod startup;

use crate::listener::{self, Tls, TlsError};

/// Why the server could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Storage could not be opened or migrated.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The plugin runtime could not start.
    #[error("plugin runtime: {0}")]
    Plugins(#[from] StartError),
    /// The master keys could not be loaded.
    #[error(transparent)]
    Vault(#[from] VaultError),
    /// The master keys differ from those the database recorded, or are missing.
    #[error(transparent)]
    KeyCheck(#[from] crate::key_checks::KeyCheckError),
    /// Hook configurations stored in plaintext could not be sealed.
    #[error(transparent)]
    HookConfigs(#[from] crate::hooks::ConfigSealError),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The TLS certificate or key cannot be used.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// Serving failed.
    #[error("server error: {0}")]
    Io(#[from] std::io::Error),
}

/// How often expired idempotency keys are deleted.
const PRUNE_INTERVAL: Duration = Duration::from_secs(3600);

/// Runs the host until a shutdown signal.
pub async fn serve(config: ServeConfig) -> Result<(), ServeError> {
    let started_at = crate::store::now_micros();
    // A certificate that cannot be used refuses the start before anything else is done.
    let tls = Tls::load(&config.tls)?;
    raise_fd_limit();
    metrics::install();
    // The phone-number tables load on first use (~0.5 s); load them now rather than in the
    // middle of a terminal's first loyalty request.
    tokio::task::spawn_blocking(|| crate::customers::normalize_phone("US", "+15550100199"))
        .await
        .ok();
    let store = Store::open(&config.database_url, &config.store).await?;
    let (operator, generated) =
        OperatorCredential::ensure(&store, config.operator_token.as_deref()).await?;
    if let Some(token) = generated {
        // Printed once, on stdout rather than the log, so it does not end up in log storage.
        println!("operator token (shown once, only its hash is stored): {token}");
    }
    let key_file = config
        .master_key_file
        .clone()
        .unwrap_or_else(|| default_key_file(&config.database_url));
    // Before the plugins compile: a host with the wrong keys stops at once.
    let vault =
        crate::key_checks::load_checked(&store, config.master_key.as_deref(), &key_file).await?;
    let mut plugin_options = config.plugins.clone();
    if plugin_options.cache_dir.is_none() {
        plugin_options.cache_dir = Some(default_cache_dir(&config.database_url));
    }
    let in_use = startup::InUse::new(&config, &vault, plugin_options.cache_dir.as_deref());
    let plugins = Plugins::start(store.clone(), plugin_options).await?;
    crate::hooks::seal_plaintext_configs(&store, &vault).await?;
    let listener = TcpListener::bind(&config.bind)
        .await
        .map_err(|source| ServeError::Bind {
            addr: config.bind.clone(),
            source,
        })?;
    let addr = listener.local_addr()?;
    let mut config = config;
    let scheme = if tls.is_some() { "https" } else { "http" };
    if config.public_url.is_empty() {
        config.public_url = format!("{scheme}://{addr}");
    }
    let shutdown = CancellationToken::new();
    let hub = EventHub::new(config.hub.clone());
    let writes = Writes::start(
        store.clone(),
        hub.clone(),
        GroupCommitOptions::for_store(&store),
    );
    let state = AppState::new(Services {
        hub,
        writes: writes.clone(),
        terminals: Terminals::default(),
        plugins: plugins.clone(),
        vault: Arc::new(vault),
        sync_wakeup: Default::default(),
        inbox_wakeup: Default::default(),
        catalog_syncs: Default::default(),
        webhook_acks: Arc::default(),
        hooks_wakeup: Default::default(),
        injection_wakeup: Default::default(),
        keys: KeyCache::default(),
        menu_cache: crate::menus::MenuCache::default(),
        rate_limits: crate::ratelimit::RateLimits::new(config.rate_limit),
        operator: Arc::new(operator),
        config: Arc::new(config.clone()),
        shutdown: shutdown.clone(),
        tasks: TaskTracker::new(),
        store: store.clone(),
    });
    state
        .hub
        .spawn_cross_node_listener(store.clone(), shutdown.clone());
    plugins.spawn_watcher(shutdown.clone(), state.hub.catalog_changes());
    crate::cluster::spawn_heartbeat(
        store.clone(),
        crate::cluster::HostInfo {
            id: state.hub.node_id().to_owned(),
            address: config.public_url.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            started_at,
        },
        state.terminals.clone(),
        shutdown.clone(),
        &state.tasks,
    );
    // Keys revoked by the CLI or another host close their sockets here too.
    crate::terminals::spawn_revocation_watcher(FromRef::from_ref(&state));
    crate::providers::spawn_scheduler(FromRef::from_ref(&state));
    crate::providers::spawn_inbox_worker(FromRef::from_ref(&state));
    crate::hooks::spawn_dispatcher(FromRef::from_ref(&state));
    crate::orders::spawn_injection_worker(crate::orders::Injector {
        app: FromRef::from_ref(&state),
        options: config.injection.clone(),
        wakeup: state.injection_wakeup.clone(),
        tasks: state.tasks.clone(),
    });
    spawn_idempotency_pruner(store.clone(), config.idempotency_ttl, shutdown.clone());
    state.rate_limits.spawn_pruner(shutdown.clone());

    in_use.announce();
    if let Some(tls) = &tls {
        tls.spawn_reloader(shutdown.clone());
    }
    tracing::info!(%addr, scheme, backend = ?store.backend(), "posbridge listening");
    println!("posbridge listening on {scheme}://{addr}");

    tokio::spawn(cancel_on_signal(shutdown.clone()));
    let app = api::router(state.clone());
    let server = listener::serve(listener, app, config.connections, tls, shutdown.clone());
    let grace = config.shutdown_grace;
    let server = async move {
        server.await;
        // WebSockets are detached from HTTP connections once upgraded; wait for their sessions
        // to send the close frame.
        state.tasks.close();
        state.tasks.wait().await;
        Ok::<_, std::io::Error>(())
    };
    tokio::select! {
        result = server => result?,
        _ = async { shutdown.cancelled().await; tokio::time::sleep(grace).await } => {
            tracing::warn!(grace_secs = grace.as_secs(), "shutdown grace period over; exiting with work in flight");
        }
    }
    // Writes already queued (a webhook batch, a hook's actions) commit before the pool
    // closes; the grace period bounds the wait like everything else here.
    let _ = tokio::time::timeout(grace, writes.drain()).await;
    store.close().await;
    tracing::info!("posbridge stopped");
    Ok(())
}

async fn cancel_on_signal(shutdown: CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM received; shutting down"),
                    _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received; shutting down"),
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot watch SIGTERM; only SIGINT stops the server");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    shutdown.cancel();
}

fn spawn_idempotency_pruner(store: Store, ttl: Duration, shutdown: CancellationToken) {
    let ttl_micros = i64::try_from(ttl.as_micros()).unwrap_or(i64::MAX);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(PRUNE_INTERVAL);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => match idempotency::prune(&store, ttl_micros).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(deleted = n, "expired idempotency keys pruned"),
                    Err(err) => tracing::warn!(error = %err, "idempotency pruning failed"),
                },
            }
        }
    });
}

/// Every socket is a file descriptor; the common soft limit of 1,024 would cap terminals.
fn raise_fd_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::debug!(limit, "file descriptor limit"),
        Err(err) => tracing::warn!(error = %err, "could not raise the file descriptor limit"),
    }
}

/// The key file of the embedded default: `posbridge.keys` beside the SQLite file.
pub fn default_key_file(database_url: &str) -> std::path::PathBuf {
    default_cache_dir(database_url).with_file_name("posbridge.keys")
}

/// Precompiled plugin artifacts live beside the SQLite file (or in `./posbridge-cache` for
/// PostgreSQL), so a restart finds them.
pub fn default_cache_dir(database_url: &str) -> std::path::PathBuf {
    let path = database_url
        .strip_prefix("sqlite://")
        .or_else(|| database_url.strip_prefix("sqlite:"))
        .unwrap_or(database_url);
    let is_file = !database_url.contains("://") || database_url.starts_with("sqlite:");
    let file = path.split('?').next().unwrap_or(path);
    match std::path::Path::new(file).parent() {
        Some(dir) if is_file && !file.contains(":memory:") => {
            let dir = if dir.as_os_str().is_empty() {
                std::path::Path::new(".")
            } else {
                dir
            };
            dir.join("posbridge-cache")
        }
        _ => std::path::PathBuf::from("posbridge-cache"),
    }
}

impl ServeError {
    /// Whether the error is the operator's configuration (a file named by a flag cannot
    /// be used), which exits with the usage-error status 2 rather than 1.
    pub fn is_configuration(&self) -> bool {
        matches!(self, ServeError::Tls(_))
    }
}
