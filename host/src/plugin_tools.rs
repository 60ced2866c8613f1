//! `posbridge plugin keygen | sign | test`: the plugin author's tools that need neither a
//! server nor a database — signing keys, signatures, and a local run against fixtures.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use ed25519_dalek::SigningKey;

use posbridge::cli::runner::{self, Fixtures, TestInput};
use posbridge::cli::{signing, PluginOptions};
use posbridge::cli::{HookEvent, Webhook};

use crate::print_json;

/// `plugin keygen`.
#[derive(clap::Args)]
pub(crate) struct Keygen {
    /// Path prefix of the two files written: PREFIX.key and PREFIX.pub.
    #[arg(long, default_value = "posbridge-signing")]
    out: PathBuf,
}

/// `plugin sign`.
#[derive(clap::Args)]
pub(crate) struct Sign {
    /// The .wasm component.
    file: PathBuf,
    /// The secret key file (`plugin keygen`'s PREFIX.key).
    #[arg(long)]
    key: PathBuf,
    /// Where to write the signed component (default: over FILE).
    #[arg(long)]
    out: Option<PathBuf>,
}

/// `plugin test`.
#[derive(clap::Args)]
pub(crate) struct Test {
    /// The .wasm component.
    file: PathBuf,
    /// Recorded HTTP exchanges and the connection (JSON, or TOML if the name ends in
    /// .toml); see plugins/README.md, "Testing a plugin locally".
    #[arg(long)]
    fixtures: Option<PathBuf>,
    /// Provider: parse this file as a webhook delivery's body.
    #[arg(long, value_name = "BODY_FILE", conflicts_with = "event")]
    webhook: Option<PathBuf>,
    /// A header of the webhook delivery, `Name: value` (repeatable).
    #[arg(long = "webhook-header", value_name = "HEADER", requires = "webhook")]
    webhook_headers: Vec<String>,
    /// The URL the webhook was delivered to (some providers sign it).
    #[arg(
        long,
        default_value = "https://posbridge.invalid/webhooks/test",
        requires = "webhook"
    )]
    webhook_url: String,
    /// Check the delivery's signature with this webhook signing key before parsing.
    #[arg(long, requires = "webhook")]
    webhook_key: Option<String>,
    /// Hook: a JSON file with the event, `{"kind": "new_order", "data": {...}}` (`tenant`,
    /// `seq` and `at` optional).
    #[arg(long, value_name = "EVENT_FILE")]
    event: Option<PathBuf>,
    /// Hook: the binding's configuration, a JSON file (default `{}`). Not `--config`: that
    /// is the global settings file.
    #[arg(long, value_name = "CONFIG_FILE", requires = "event")]
    hook_config: Option<PathBuf>,
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

fn with_suffix(prefix: &Path, suffix: &str) -> PathBuf {
    let mut name = prefix.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Writes `text` to a new file (never over an existing one), private if `secret`.
fn create(path: &Path, text: &str, secret: bool) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut file = options.open(path).with_context(|| {
        format!(
            "creating {} (an existing key is never overwritten)",
            path.display()
        )
    })?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

pub(crate) fn keygen(args: Keygen) -> anyhow::Result<()> {
    let mut seed = [0u8; 32];
    rand::Rng::fill(&mut rand::rng(), &mut seed);
    let key = SigningKey::from_bytes(&seed);
    let public = key.verifying_key().to_bytes();
    let (secret_path, public_path) = (
        with_suffix(&args.out, ".key"),
        with_suffix(&args.out, ".pub"),
    );
    if public_path.exists() {
        anyhow::bail!(
            "{} already exists; choose another --out",
            public_path.display()
        );
    }
    create(
        &secret_path,
        &format!(
            "# posbridge plugin signing key (ed25519 secret, base64). Keep it private.\n{}\n",
            signing::encode_key(&seed)
        ),
        true,
    )?;
    create(
        &public_path,
        &format!("{}\n", signing::encode_key(&public)),
        false,
    )?;
    println!(
        "wrote {} (secret) and {} (public)\nkey id: {}\npublic key: {}\ntrust it on a host: PUT /admin/plugin-signers {{\"name\": \"…\", \"public_key\": \"{}\"}}",
        secret_path.display(),
        public_path.display(),
        signing::key_id(&public),
        signing::encode_key(&public),
        signing::encode_key(&public),
    );
    Ok(())
}

pub(crate) fn sign(args: Sign) -> anyhow::Result<()> {
    let wasm = read(&args.file)?;
    if wasm.len() < 8 || &wasm[..4] != b"\0asm" {
        anyhow::bail!("{} is not a WebAssembly file", args.file.display());
    }
    let text = std::fs::read_to_string(&args.key)
        .with_context(|| format!("reading {}", args.key.display()))?;
    let key = signing::parse_secret_key(&text)
        .with_context(|| format!("key file {}", args.key.display()))?;
    let signed = signing::sign(&wasm, &key);
    let out = args.out.unwrap_or(args.file);
    std::fs::write(&out, &signed).with_context(|| format!("writing {}", out.display()))?;
    println!(
        "signed {} with key {}",
        out.display(),
        signing::key_id(&key.verifying_key().to_bytes())
    );
    Ok(())
}

/// The event file of `plugin test --event`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct EventFile {
    kind: String,
    #[serde(default)]
    data: serde_json::Value,
    #[serde(default = "test_tenant")]
    tenant: String,
    #[serde(default = "first")]
    seq: i64,
    /// Epoch ms; default now.
    at: Option<i64>,
}

fn test_tenant() -> String {
    "test".into()
}

fn first() -> i64 {
    1
}

pub(crate) async fn test(args: Test, options: PluginOptions) -> anyhow::Result<()> {
    let wasm = read(&args.file)?;
    let fixtures = match &args.fixtures {
        Some(path) => Fixtures::load(path)?,
        None => Fixtures::default(),
    };
    let input = if let Some(body_file) = &args.webhook {
        let headers = args
            .webhook_headers
            .iter()
            .map(|h| {
                h.split_once(':')
                    .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
                    .with_context(|| format!("--webhook-header {h:?} is not `Name: value`"))
            })
            .collect::<anyhow::Result<_>>()?;
        TestInput::Webhook {
            webhook: Webhook {
                url: args.webhook_url.clone(),
                headers,
                body: read(body_file)?,
            },
            key: args.webhook_key.clone(),
        }
    } else if let Some(event_file) = &args.event {
        let event: EventFile = serde_json::from_slice(&read(event_file)?)
            .with_context(|| format!("event file {}", event_file.display()))?;
        let config = match &args.hook_config {
            Some(path) => {
                let text = String::from_utf8(read(path)?)
                    .with_context(|| format!("{} is not UTF-8", path.display()))?;
                serde_json::from_str::<serde_json::Value>(&text)
                    .with_context(|| format!("config file {} is not JSON", path.display()))?;
                text
            }
            None => "{}".into(),
        };
        TestInput::Event {
            event: HookEvent {
                tenant: event.tenant,
                seq: event.seq,
                kind: event.kind,
                at_ms: event
                    .at
                    .unwrap_or_else(|| jiff::Timestamp::now().as_millisecond()),
                data: event.data.to_string(),
            },
            config,
        }
    } else {
        TestInput::Sync
    };
    let run = runner::run(&wasm, &fixtures, input, &options).await?;
    let mut out = serde_json::json!({
        "plugin": run.manifest.id,
        "version": run.manifest.version,
        "kind": run.manifest.kind,
    });
    if let (Some(out), serde_json::Value::Object(fields)) = (out.as_object_mut(), run.output) {
        out.extend(fields);
    }
    out["logs"] = serde_json::to_value(&run.logs)?;
    print_json(&out)
}
