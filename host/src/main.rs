//! The `posbridge` binary: `serve`, plus operator commands that work on the database
//! directly so a host can be bootstrapped without HTTP.

use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use serde::Serialize;

use posbridge::api_keys::{ApiKeys, NewKey};
use posbridge::auth::Role;
use posbridge::config::ServeConfig;
use posbridge::events::HubOptions;
use posbridge::hooks::HookOptions;
use posbridge::plugins::{PluginOptions, Plugins};
use posbridge::ratelimit::RateLimitOptions;
use posbridge::server::ConnectionOptions;
use posbridge::store::{SqliteSync, Store, StoreOptions};
use posbridge::tenancy::{NewTenant, Tenants};
use posbridge::terminals::StreamOptions;

mod scaffold;

#[derive(Parser)]
#[command(
    name = "posbridge",
    version,
    about = "Multi-tenant POS integration hub"
)]
struct Cli {
    /// Database: an SQLite file path or sqlite:// URL (embedded default), or postgres://…
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "posbridge.db",
        global = true
    )]
    database_url: String,

    /// Log format on stderr.
    #[arg(
        long,
        env = "POSBRIDGE_LOG_FORMAT",
        value_enum,
        default_value = "text",
        global = true
    )]
    log_format: LogFormat,

    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Manage tenants.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Manage tenant API keys.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Install, check and scaffold plugins.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Manage the master keys that seal provider credentials.
    #[command(subcommand)]
    Vault(VaultCommand),
}

#[derive(Subcommand)]
enum VaultCommand {
    /// Re-seal every secret under a new active key (key file) or under the first key of
    /// POSBRIDGE_MASTER_KEY; older keys keep opening values until they are re-sealed.
    Rotate,
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Install a component into the database and make it active; running hosts pick it up
    /// within seconds.
    Install {
        /// The .wasm component.
        file: std::path::PathBuf,
    },
    /// Load a component, print its manifest and run the conformance check (no database).
    Check {
        /// The .wasm component.
        file: std::path::PathBuf,
    },
    /// List installed plugins.
    List,
    /// Measure a provider component: compile, cached load, install, per-call cost.
    Bench {
        /// The .wasm component.
        file: std::path::PathBuf,
        /// Calls timed per figure.
        #[arg(long, default_value_t = 2000)]
        calls: usize,
    },
    /// Scaffold a new plugin crate.
    New {
        /// `provider` or `hook`.
        #[arg(value_enum)]
        kind: scaffold::Kind,
        /// Crate and plugin name (lowercase, digits, '-').
        name: String,
        /// Path to this repository's `plugins/sdk`, for the new crate's dependency.
        #[arg(long, default_value = "plugins/sdk")]
        sdk_path: std::path::PathBuf,
        /// Where to create the crate (default: ./<name>).
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
    },
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "POSBRIDGE_BIND", default_value = "127.0.0.1:9010")]
    bind: String,
    /// Operator token for /admin; generated and printed once on first start if absent.
    #[arg(long, env = "POSBRIDGE_OPERATOR_TOKEN", hide_env_values = true)]
    operator_token: Option<String>,
    /// Directory for precompiled plugin artifacts (default: beside the SQLite file, or
    /// ./posbridge-cache for PostgreSQL).
    #[arg(long, env = "POSBRIDGE_PLUGIN_CACHE_DIR")]
    plugin_cache_dir: Option<std::path::PathBuf>,
    /// Public base URL providers post webhooks to (default http://<bound address>).
    #[arg(long, env = "POSBRIDGE_PUBLIC_URL", default_value = "")]
    public_url: String,
    /// Milliseconds between WebSocket pings (a socket that misses one pong is closed).
    #[arg(long, default_value_t = 25_000)]
    ws_ping_interval_ms: u64,
    /// Events a terminal may fall behind before it is closed as a slow consumer.
    #[arg(long, default_value_t = 1024)]
    ws_queue: usize,
    /// Milliseconds a terminal may take none of the frames waiting for it before it is
    /// closed as a slow consumer (4000).
    #[arg(long, default_value_t = 10_000)]
    ws_send_timeout_ms: u64,
    /// Frames per second a terminal may send, sustained; faster is closed with 1008.
    #[arg(long, default_value_t = 10)]
    ws_inbound_rate: u32,
    /// Frames a terminal may send at once above `--ws-inbound-rate`.
    #[arg(long, default_value_t = 100)]
    ws_inbound_burst: u32,
    /// Events kept per tenant for resume (`?since=`).
    #[arg(long, default_value_t = 100_000)]
    event_history: i64,
    /// SQLite durability: normal (WAL; survives process crashes) or full (fsync per commit;
    /// survives power loss, ~270 writes/s on a typical VM disk).
    #[arg(long, value_enum, default_value = "normal")]
    sqlite_synchronous: SqliteSync,
    /// Database connections (SQLite readers; PostgreSQL total).
    #[arg(long, default_value_t = 8)]
    db_connections: u32,
    /// Seconds shutdown waits for in-flight work.
    #[arg(long, default_value_t = 10)]
    shutdown_grace_secs: u64,
    /// Hook bindings delivered at once (each slow hook holds one slot).
    #[arg(long, default_value_t = 16)]
    hook_concurrency: usize,
    /// Attempts at one hook event before it is judged: a dead letter if the next events go
    /// through, else the binding is quarantined (binding-wide failure).
    #[arg(long, default_value_t = 8)]
    hook_quarantine_after: u32,
    /// Milliseconds before a failed hook delivery's first retry (doubles per failure).
    #[arg(long, default_value_t = 1000)]
    hook_retry_base_ms: u64,
    /// Longest wait between hook delivery retries, milliseconds.
    #[arg(long, default_value_t = 300_000)]
    hook_retry_max_ms: u64,
    /// Milliseconds between hook dispatcher polls when nothing wakes it (other hosts'
    /// events without LISTEN/NOTIFY, retries falling due).
    #[arg(long, default_value_t = 1000)]
    hook_poll_interval_ms: u64,
    // ----- connection limits, database outage handling, rate limits -----
    /// Milliseconds a client has to send a complete request head (from its first byte).
    #[arg(
        long,
        env = "POSBRIDGE_HEADER_READ_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    header_read_timeout_ms: u64,
    /// Milliseconds a client has to send a whole request body after its head (→ 408).
    #[arg(long, env = "POSBRIDGE_BODY_TIMEOUT_MS", default_value_t = 30_000)]
    body_timeout_ms: u64,
    /// Milliseconds a keep-alive connection may sit idle between requests.
    #[arg(long, env = "POSBRIDGE_IDLE_TIMEOUT_MS", default_value_t = 60_000)]
    idle_timeout_ms: u64,
    /// Open HTTP connections served normally (upgraded WebSockets not counted).
    #[arg(long, env = "POSBRIDGE_MAX_CONNECTIONS", default_value_t = 4096)]
    max_connections: usize,
    /// Connections beyond --max-connections that may reach only /healthz, /readyz,
    /// /metrics and /admin; beyond both, new connections get 503 too_many_connections.
    #[arg(long, env = "POSBRIDGE_RESERVED_CONNECTIONS", default_value_t = 32)]
    reserved_connections: usize,
    /// PostgreSQL: milliseconds a request waits for a database connection before it is
    /// answered 503 database_unavailable.
    #[arg(long, env = "POSBRIDGE_DB_ACQUIRE_TIMEOUT_MS", default_value_t = 2000)]
    db_acquire_timeout_ms: u64,
    /// Sustained requests per second per API key (0: no limit).
    #[arg(long, env = "POSBRIDGE_RATE_LIMIT_PER_SEC", default_value_t = 50)]
    rate_limit_per_sec: u32,
    /// Requests an API key may send in a burst before the sustained rate applies.
    #[arg(long, env = "POSBRIDGE_RATE_LIMIT_BURST", default_value_t = 200)]
    rate_limit_burst: u32,
    /// Threads that run plugin (guest) code, at a lower OS priority than the API's [default:
    /// half the cores, at least one]. Fewer threads than cores means spinning plugins can
    /// never take every core from terminal requests.
    #[arg(long, env = "POSBRIDGE_PLUGIN_THREADS")]
    plugin_threads: Option<usize>,
    /// Processing attempts at a webhook delivery before it is set aside as a dead letter
    /// (failures of the database itself do not count).
    #[arg(long, default_value_t = 8)]
    webhook_max_attempts: u32,
    /// Milliseconds before a failed webhook delivery's first retry (doubles per failure,
    /// at most ten minutes).
    #[arg(long, default_value_t = 2000)]
    webhook_retry_base_ms: u64,
}

#[derive(Subcommand)]
enum TenantCommand {
    /// Create a tenant.
    Create {
        /// URL slug (a-z, 0-9, '-').
        #[arg(long)]
        slug: String,
        /// Display name.
        #[arg(long)]
        name: String,
        /// ISO-4217 currency.
        #[arg(long)]
        currency: String,
        /// IANA time zone.
        #[arg(long)]
        timezone: String,
        /// ISO-3166 country for phone numbers (default US).
        #[arg(long)]
        country: Option<String>,
    },
    /// List tenants.
    List,
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Create an API key; the key is printed once.
    Create {
        /// Tenant slug.
        #[arg(long)]
        tenant: String,
        /// Role.
        #[arg(long, value_enum)]
        role: Role,
        /// Label.
        #[arg(long, default_value = "")]
        label: String,
    },
    /// List a tenant's keys (never the secrets).
    List {
        /// Tenant slug.
        #[arg(long)]
        tenant: String,
    },
    /// Revoke a key.
    Revoke {
        /// Tenant slug.
        #[arg(long)]
        tenant: String,
        /// Key id.
        #[arg(long)]
        id: String,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    match cli.command {
        Command::Serve(args) => {
            let config = ServeConfig {
                bind: args.bind,
                database_url: cli.database_url,
                operator_token: args.operator_token,
                public_url: args.public_url,
                master_key: master_key(),
                store: StoreOptions {
                    max_connections: args.db_connections.max(1),
                    sqlite_synchronous: args.sqlite_synchronous,
                    acquire_timeout: Duration::from_millis(args.db_acquire_timeout_ms.max(1)),
                    ..StoreOptions::default()
                },
                hub: HubOptions {
                    queue: args.ws_queue.max(1),
                    history: args.event_history.max(1),
                },
                stream: StreamOptions {
                    ping_interval: Duration::from_millis(args.ws_ping_interval_ms.max(10)),
                    send_timeout: Duration::from_millis(args.ws_send_timeout_ms.max(10)),
                    inbound_rate: args.ws_inbound_rate.max(1),
                    inbound_burst: args.ws_inbound_burst.max(1),
                    ..StreamOptions::default()
                },
                shutdown_grace: Duration::from_secs(args.shutdown_grace_secs),
                plugins: PluginOptions {
                    cache_dir: args.plugin_cache_dir,
                    guest_threads: args
                        .plugin_threads
                        .unwrap_or_else(posbridge::plugins::default_guest_threads)
                        .max(1),
                    ..PluginOptions::default()
                },
                hooks: HookOptions {
                    concurrency: args.hook_concurrency.max(1),
                    quarantine_after: args.hook_quarantine_after.max(1),
                    retry_base: Duration::from_millis(args.hook_retry_base_ms.max(1)),
                    retry_max: Duration::from_millis(args.hook_retry_max_ms.max(1)),
                    poll_interval: Duration::from_millis(args.hook_poll_interval_ms.max(10)),
                },
                connections: ConnectionOptions {
                    header_read_timeout: Duration::from_millis(args.header_read_timeout_ms.max(1)),
                    body_timeout: Duration::from_millis(args.body_timeout_ms.max(1)),
                    idle_timeout: Duration::from_millis(args.idle_timeout_ms.max(1)),
                    max_connections: args.max_connections.max(1),
                    reserved_connections: args.reserved_connections,
                },
                rate_limit: RateLimitOptions {
                    per_second: args.rate_limit_per_sec,
                    burst: args.rate_limit_burst.max(1),
                },
                inbox: posbridge::providers::InboxOptions {
                    max_attempts: i64::from(args.webhook_max_attempts.max(1)),
                    retry_base: Duration::from_millis(args.webhook_retry_base_ms.max(1)),
                },
                ..ServeConfig::default()
            };
            posbridge::server::serve(config).await?;
        }
        Command::Tenant(cmd) => {
            let store = open(&cli.database_url).await?;
            match cmd {
                TenantCommand::Create {
                    slug,
                    name,
                    currency,
                    timezone,
                    country,
                } => {
                    let tenant = Tenants::create(
                        &store,
                        NewTenant {
                            slug,
                            name,
                            currency,
                            timezone,
                            country,
                        },
                    )
                    .await?;
                    print_json(&tenant)?;
                }
                TenantCommand::List => print_json(&Tenants::list(&store).await?)?,
            }
            store.close().await;
        }
        Command::Plugin(cmd) => run_plugin_command(&cli.database_url, cmd).await?,
        Command::Vault(VaultCommand::Rotate) => {
            let store = open(&cli.database_url).await?;
            let key_file = posbridge::server::default_key_file(&cli.database_url);
            let report =
                posbridge::rotation::rotate(&store, master_key().as_deref(), &key_file).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            store.close().await;
        }
        Command::Key(cmd) => {
            let store = open(&cli.database_url).await?;
            match cmd {
                KeyCommand::Create {
                    tenant,
                    role,
                    label,
                } => {
                    print_json(&ApiKeys::create(&store, &tenant, NewKey { role, label }).await?)?;
                }
                KeyCommand::List { tenant } => print_json(&ApiKeys::list(&store, &tenant).await?)?,
                KeyCommand::Revoke { tenant, id } => {
                    ApiKeys::revoke(&store, &tenant, &id).await?;
                    println!("revoked {id}");
                }
            }
            store.close().await;
        }
    }
    Ok(())
}

async fn run_plugin_command(database_url: &str, cmd: PluginCommand) -> anyhow::Result<()> {
    let options = PluginOptions {
        install_bundled: false,
        max_concurrent_calls: 4,
        ..PluginOptions::default()
    };
    match cmd {
        PluginCommand::Install { file } => {
            let wasm =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let store = open(database_url).await?;
            let options = PluginOptions {
                cache_dir: Some(posbridge::server::default_cache_dir(database_url)),
                ..options
            };
            let plugins = Plugins::start(store.clone(), options).await?;
            let status = plugins.install(wasm, "cli").await?;
            print_json(&status)?;
            store.close().await;
        }
        PluginCommand::Check { file } => {
            let wasm =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let scratch =
                std::env::temp_dir().join(format!("posbridge-check-{}.db", std::process::id()));
            let store = open(&scratch.display().to_string()).await?;
            let plugins = Plugins::start(store.clone(), options).await?;
            let outcome = plugins.conformance(&wasm).await;
            store.close().await;
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", scratch.display()));
            }
            let (manifest, results) = outcome?;
            print_json(&manifest)?;
            let mut failed = 0;
            for (function, result) in &results {
                match result {
                    Ok(detail) => println!("PASS {function}: {detail}"),
                    Err(why) => {
                        failed += 1;
                        println!("FAIL {function}: {why}");
                    }
                }
            }
            println!("{} passed, {failed} failed", results.len() - failed);
            if failed > 0 {
                anyhow::bail!("conformance check failed");
            }
        }
        PluginCommand::Bench { file, calls } => {
            let wasm =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let scratch =
                std::env::temp_dir().join(format!("posbridge-bench-{}.db", std::process::id()));
            let store = open(&scratch.display().to_string()).await?;
            let plugins = Plugins::start(store.clone(), options).await?;
            let outcome = plugins.bench(wasm, calls).await;
            store.close().await;
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", scratch.display()));
            }
            print_json(&outcome?)?;
        }
        PluginCommand::List => {
            let store = open(database_url).await?;
            let plugins = Plugins::start(store.clone(), options).await?;
            print_json(&plugins.list())?;
            store.close().await;
        }
        PluginCommand::New {
            kind,
            name,
            sdk_path,
            dir,
        } => {
            let dir = dir.unwrap_or_else(|| std::path::PathBuf::from(&name));
            scaffold::create(kind, &name, &sdk_path, &dir)?;
            println!("created {} — build it with: cargo build --release --target wasm32-wasip2 --manifest-path {}/Cargo.toml", dir.display(), dir.display());
        }
    }
    Ok(())
}

fn master_key() -> Option<String> {
    std::env::var("POSBRIDGE_MASTER_KEY")
        .ok()
        .filter(|k| !k.trim().is_empty())
}

async fn open(url: &str) -> anyhow::Result<Store> {
    Store::open(url, &StoreOptions::default())
        .await
        .with_context(|| "opening the database")
}

fn print_json(value: &impl Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
