//! `posbridge plugin …`: install a component into the server's database, check or bench one
//! against a scratch database of its own, list installed plugins, scaffold a new crate.

use anyhow::Context;
use clap::Subcommand;

use posbridge::cli::{PluginOptions, Plugins};

use crate::{open, open_scratch, plugin_tools, print_json, scaffold};

#[derive(Subcommand)]
pub(crate) enum PluginCommand {
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
    /// Scaffold a new plugin crate that builds anywhere (the SDK is vendored beside it).
    New {
        /// `provider` or `hook`.
        #[arg(value_enum)]
        kind: scaffold::Kind,
        /// Crate and plugin name (lowercase letters, digits, '-'; starting with a letter).
        name: String,
        /// Where to create the crate (default: ./<name>).
        dir: Option<std::path::PathBuf>,
        /// Point the crate at this SDK checkout (`plugins/sdk`) instead of a vendored copy:
        /// for work on the SDK itself.
        #[arg(long)]
        sdk_path: Option<std::path::PathBuf>,
    },
    /// Write a new ed25519 key pair for signing plugins: PREFIX.key (secret, mode 0600)
    /// and PREFIX.pub (what operators trust with PUT /admin/plugin-signers).
    Keygen(plugin_tools::Keygen),
    /// Sign a component with a key from `plugin keygen`: the signature goes into the file
    /// (a custom section), replacing any earlier one.
    Sign(plugin_tools::Sign),
    /// Run a component locally, without a server or database: a provider syncs every page
    /// of the fixtures' window (or, with --webhook, parses a delivery) against recorded HTTP
    /// fixtures, a hook handles one --event; prints what it produced as JSON.
    Test(plugin_tools::Test),
}

/// Runs one `plugin` subcommand; `database_url` is the server's (install, list).
pub(crate) async fn run_plugin_command(
    database_url: &str,
    cmd: PluginCommand,
) -> anyhow::Result<()> {
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
                cache_dir: Some(posbridge::cli::default_cache_dir(database_url)),
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
            let store = open_scratch(&scratch.display().to_string()).await?;
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
            let store = open_scratch(&scratch.display().to_string()).await?;
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
            dir,
            sdk_path,
        } => {
            let dir = dir.unwrap_or_else(|| std::path::PathBuf::from(&name));
            let created = scaffold::create(kind, &name, &dir, sdk_path.as_deref())?;
            let dir = created.dir.display();
            println!("created {dir}");
            println!("build:   cd {dir} && cargo build --release --target wasm32-wasip2");
            println!("check:   posbridge plugin check {dir}/{}", created.artifact);
            println!(
                "install: posbridge plugin install {dir}/{}",
                created.artifact
            );
        }
        PluginCommand::Keygen(args) => plugin_tools::keygen(args)?,
        PluginCommand::Sign(args) => plugin_tools::sign(args)?,
        PluginCommand::Test(args) => plugin_tools::test(args, options).await?,
    }
    Ok(())
}
