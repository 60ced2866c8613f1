//! The `posbridge` binary: `serve`, plus operator commands that work on the database
//! directly so a host can be bootstrapped without HTTP.

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::Context;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use serde::Serialize;

use posbridge::cli::ConfigFile;
use posbridge::cli::Role;
use posbridge::cli::TenantUpdate;
use posbridge::cli::{ApiKeys, NewKey};
use posbridge::cli::{NewTenant, Tenants};
use posbridge::cli::{ServeConfig, DEFAULT_DATABASE_URL};
use posbridge::cli::{Store, StoreOptions};

/// The process's allocator: jemalloc, not glibc's malloc. With glibc, `malloc`, `free` and
/// their helpers (`malloc_consolidate`, `unlink_chunk`) were a fifth of the server's CPU on
/// PostgreSQL balance reads (`perf record -p`); jemalloc cut CPU per 1,000 reads from
/// 0.035-0.037 to 0.024-0.025 s. mimalloc was as fast but took 12-16 KiB per idle socket
/// against glibc's 5; jemalloc takes 1-2 (4.0 against 6.7 at 5,000 sockets) for 10 MiB
/// more at start. The figures are in docs/performance.md.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

mod plugin_commands;
mod plugin_tools;
mod scaffold;

use plugin_commands::{run_plugin_command, PluginCommand};

/// The subcommands whose flags are settings a config file may give, besides the global
/// ones every command takes.
const SETTING_SECTIONS: &[&str] = &["serve"];

#[derive(Parser)]
#[command(
    name = "posbridge",
    version,
    about = "Multi-tenant POS integration hub"
)]
struct Cli {
    /// TOML file of settings, read by every command: keys are the flags' long names
    /// (`rate-limit-per-sec = 100`), paths in it are relative to the file. Flags and
    /// environment variables override it; see posbridge.example.toml.
    #[arg(
        long,
        env = posbridge::cli::CONFIG_ENV,
        global = true,
        value_hint = clap::ValueHint::FilePath
    )]
    config: Option<PathBuf>,

    /// Database: an SQLite file path or sqlite:// URL (embedded default), or postgres://…
    /// (`DATABASE_URL` is read too when `POSBRIDGE_DATABASE_URL` is unset).
    #[arg(
        long,
        env = "POSBRIDGE_DATABASE_URL",
        default_value = DEFAULT_DATABASE_URL,
        global = true
    )]
    database_url: String,

    /// Key file of the master keys that seal provider credentials, when
    /// `POSBRIDGE_MASTER_KEY` is not set. Default: `posbridge.keys` beside the SQLite file
    /// (in the working directory for PostgreSQL), created on first start with mode 0600.
    #[arg(
        long,
        env = "POSBRIDGE_MASTER_KEY_FILE",
        global = true,
        value_hint = clap::ValueHint::FilePath
    )]
    master_key_file: Option<PathBuf>,

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve(Box<ServeConfig>),
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
    /// Back up the database (SQLite: an online snapshot; PostgreSQL: the pg_dump command to
    /// run) together with the master key file, into a new or empty directory.
    Backup {
        /// Directory to write the backup into (must be empty or missing).
        dir: PathBuf,
    },
    /// Restore a backup: the SQLite file at --database-url and the key file at
    /// --master-key-file (or beside the database). Stop the servers first.
    Restore {
        /// Directory written by `posbridge backup`.
        dir: PathBuf,
        /// Overwrite an existing database file and key file.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand)]
enum VaultCommand {
    /// Re-seal every secret under a new active key (key file) or under the first key of
    /// POSBRIDGE_MASTER_KEY; older keys keep opening values until they are re-sealed.
    Rotate,
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
    /// Change a tenant's name, time zone and/or country.
    Update {
        /// Tenant slug.
        slug: String,
        /// New display name.
        #[arg(long)]
        name: Option<String>,
        /// New IANA time zone.
        #[arg(long, alias = "time-zone")]
        timezone: Option<String>,
        /// New ISO-3166 country for phone numbers.
        #[arg(long)]
        country: Option<String>,
    },
    /// Suspend a tenant: keys refused, sockets closed (4003), background work paused, data kept.
    Suspend {
        /// Tenant slug.
        slug: String,
    },
    /// Resume a suspended tenant.
    Resume {
        /// Tenant slug.
        slug: String,
    },
    /// Delete a suspended tenant and everything it owns (cannot be undone).
    Delete {
        /// Tenant slug.
        slug: String,
        /// Confirm the deletion; without it nothing is deleted.
        #[arg(long)]
        yes: bool,
    },
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

fn main() -> anyhow::Result<()> {
    let cli = match parse_cli(std::env::args_os().collect()) {
        Ok(cli) => cli,
        Err(err) => {
            // Like clap's own usage errors: a message and exit code 2, before any logging.
            eprintln!("error: {err:#}");
            std::process::exit(2);
        }
    };
    init_tracing(cli.log_format);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(run(cli))
}

/// The command line's declaration, as `--help` shows it.
fn command() -> clap::Command {
    posbridge::cli::name_values(Cli::command())
}

/// The command line, over the environment, over the config file, over the defaults.
fn parse_cli(args: Vec<OsString>) -> anyhow::Result<Cli> {
    let mut cmd = command();
    // DATABASE_URL is the name sqlx's tools and many hosts already set; it predates
    // POSBRIDGE_DATABASE_URL, which wins when both are set.
    if std::env::var_os("POSBRIDGE_DATABASE_URL").is_none()
        && std::env::var_os("DATABASE_URL").is_some()
    {
        cmd = cmd.mut_arg("database_url", |arg| arg.env("DATABASE_URL"));
    }
    if let Some(path) = posbridge::cli::config_path(&args) {
        cmd = ConfigFile::load(&path)?.apply(cmd, SETTING_SECTIONS)?;
    }
    let matches = cmd.get_matches_from(args);
    Cli::from_arg_matches(&matches).map_err(|err| err.exit())
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(config) => {
            let config = ServeConfig {
                database_url: cli.database_url,
                master_key_file: cli.master_key_file,
                master_key: master_key(),
                config_file: cli.config,
                ..*config
            };
            if let Err(err) = posbridge::cli::serve(config).await {
                if err.is_configuration() {
                    // A file the operator named cannot be used: a usage error (exit 2).
                    eprintln!("error: {err}");
                    std::process::exit(2);
                }
                return Err(err.into());
            }
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
                TenantCommand::Update {
                    slug,
                    name,
                    timezone,
                    country,
                } => {
                    let update = TenantUpdate {
                        name,
                        timezone,
                        country,
                    };
                    print_json(&Tenants::update(&store, &slug, update).await?)?;
                }
                TenantCommand::Suspend { slug } => {
                    print_json(&Tenants::suspend(&store, &slug).await?.tenant)?;
                }
                TenantCommand::Resume { slug } => {
                    print_json(&Tenants::resume(&store, &slug).await?)?;
                }
                TenantCommand::Delete { slug, yes } => {
                    if !yes {
                        anyhow::bail!(
                            "deleting tenant {slug:?} removes all of its data for good: \
                             run again with --yes to confirm"
                        );
                    }
                    print_json(&Tenants::delete(&store, &slug).await?)?;
                }
            }
            store.close().await;
        }
        Command::Plugin(cmd) => run_plugin_command(&cli.database_url, cmd).await?,
        Command::Vault(VaultCommand::Rotate) => {
            let store = open(&cli.database_url).await?;
            let key_file = key_file(&cli.database_url, cli.master_key_file);
            let report = posbridge::cli::rotate(&store, master_key().as_deref(), &key_file).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            store.close().await;
        }
        Command::Backup { dir } => {
            let store = open(&cli.database_url).await?;
            let key_file = key_file(&cli.database_url, cli.master_key_file);
            let env = master_key();
            let keys = posbridge::cli::KeySource {
                env_value: env.as_deref(),
                key_file: &key_file,
            };
            let manifest = posbridge::cli::backup(&store, &cli.database_url, keys, &dir).await;
            store.close().await;
            let manifest = manifest?;
            print_json(&manifest)?;
            if let Some(command) = &manifest.pg_dump {
                eprintln!(
                    "now dump the database (password from PGPASSWORD or ~/.pgpass):\n  {command}"
                );
            }
        }
        Command::Restore { dir, force } => {
            let key_file = key_file(&cli.database_url, cli.master_key_file);
            let restored = posbridge::cli::restore(&dir, &cli.database_url, &key_file, force)?;
            print_json(&restored)?;
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

fn master_key() -> Option<String> {
    std::env::var("POSBRIDGE_MASTER_KEY")
        .ok()
        .filter(|k| !k.trim().is_empty())
}

/// The server's database for an operator command: it must exist (only `serve` creates
/// one); stderr names it, so a command run against the wrong one is noticed.
async fn open(url: &str) -> anyhow::Result<Store> {
    let store = posbridge::cli::open_existing(url, &StoreOptions::default()).await?;
    eprintln!(
        "posbridge: using database {}",
        posbridge::cli::describe_database(url)
    );
    Ok(store)
}

/// A throwaway database of the command's own (plugin check and bench).
async fn open_scratch(url: &str) -> anyhow::Result<Store> {
    Store::open(url, &StoreOptions::default())
        .await
        .with_context(|| "opening a scratch database")
}

/// The key file: `--master-key-file`, or `posbridge.keys` beside the database.
fn key_file(database_url: &str, flag: Option<PathBuf>) -> PathBuf {
    flag.unwrap_or_else(|| posbridge::cli::default_key_file(database_url))
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use posbridge::cli::without_env;

    use super::*;

    /// Parses `args` with the process's environment ignored (tests must not see an
    /// operator's POSBRIDGE_* variables), applying `file` if given.
    fn parse(args: &[&str], file: Option<&ConfigFile>) -> Cli {
        let mut cmd = without_env(command());
        if let Some(file) = file {
            cmd = file
                .apply(cmd, SETTING_SECTIONS)
                .expect("applying the file");
        }
        let matches = cmd.try_get_matches_from(args).expect("parsing");
        Cli::from_arg_matches(&matches).expect("reading the matches")
    }

    fn serve(cli: Cli) -> ServeConfig {
        let Command::Serve(config) = cli.command else {
            panic!("not serve");
        };
        ServeConfig {
            database_url: cli.database_url,
            master_key_file: cli.master_key_file,
            ..*config
        }
    }

    /// The settings a config file may give: every flag of the root and of `serve`.
    fn settings() -> Vec<(String, Option<String>)> {
        let mut cmd = command();
        cmd.build();
        let serve = cmd.find_subcommand("serve").expect("serve").clone();
        serve
            .get_arguments()
            .filter_map(|arg| {
                let long = arg.get_long()?;
                (long != "help" && long != "config").then(|| {
                    let env = arg.get_env().map(|e| e.to_string_lossy().into_owned());
                    (long.to_owned(), env)
                })
            })
            .collect()
    }

    #[test]
    fn serve_with_no_flags_runs_with_the_structs_defaults() {
        assert_eq!(
            serve(parse(&["posbridge", "serve"], None)),
            ServeConfig::default()
        );
    }

    #[test]
    fn every_setting_reads_posbridge_flag_from_the_environment() {
        let settings = settings();
        assert!(settings.len() > 40, "{settings:?}");
        for (long, env) in settings {
            let expected = format!("POSBRIDGE_{}", long.to_uppercase().replace('-', "_"));
            assert_eq!(env.as_deref(), Some(expected.as_str()), "--{long}");
        }
    }

    #[test]
    fn the_example_config_lists_every_setting_at_its_default() {
        let text = include_str!("../../posbridge.example.toml");
        let file = ConfigFile::parse(Path::new("posbridge.example.toml"), text)
            .expect("the example parses");
        let cli = parse(&["posbridge", "serve"], Some(&file));
        assert_eq!(cli.log_format, LogFormat::Text);
        assert_eq!(serve(cli), ServeConfig::default());
        for (long, _) in settings() {
            let listed = text.lines().any(|line| {
                let line = line.strip_prefix("# ").unwrap_or(line);
                line.starts_with(&format!("{long} = "))
            });
            assert!(listed, "posbridge.example.toml does not list `{long}`");
        }
    }

    #[test]
    fn the_command_line_beats_the_file() {
        let file = ConfigFile::parse(
            Path::new("/srv/pb/posbridge.toml"),
            "rate-limit-per-sec = 7\ndatabase-url = \"data/pb.db\"\nmaster-key-file = \"k\"\n",
        )
        .expect("parses");
        let config = serve(parse(&["posbridge", "serve"], Some(&file)));
        assert_eq!(config.rate_limit.per_second, 7);
        assert_eq!(config.database_url, "/srv/pb/data/pb.db");
        assert_eq!(
            config.master_key_file.as_deref(),
            Some(Path::new("/srv/pb/k"))
        );
        let args = ["posbridge", "serve", "--rate-limit-per-sec", "9"];
        assert_eq!(serve(parse(&args, Some(&file))).rate_limit.per_second, 9);
        // Settings of `serve` in the file do not trouble the other commands.
        let cli = parse(&["posbridge", "tenant", "list"], Some(&file));
        assert_eq!(cli.database_url, "/srv/pb/data/pb.db");
    }
}
