//! How settings are declared and read: value parsers for the units flags use, `Default`
//! impls derived from the flag declarations, and the optional TOML configuration file.
//!
//! Every setting is declared once, as a field of a module's options struct with clap's
//! derive (`#[derive(clap::Args)]`): the doc comment is the help text, `default_value`
//! the default, `env` the environment variable (`POSBRIDGE_<FLAG>`). The structs'
//! `Default` impls call [`defaults`], which parses an empty command line, so a default
//! written on the flag is the default of the struct too.
//!
//! A configuration file (`--config <path>` or `POSBRIDGE_CONFIG`) is a flat TOML table
//! whose keys are the flags' long names (`rate-limit-per-sec = 100`). Its values become
//! the flags' defaults, so the precedence is: command line, then environment, then file,
//! then built-in default. Keys that name no setting are refused, and relative paths in
//! the file resolve against the file's directory.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use clap::builder::{TypedValueParser, ValueHint};
use clap::error::ErrorKind;
use clap::{Arg, Command};

/// The environment variable naming a configuration file when `--config` is not given.
pub const CONFIG_ENV: &str = "POSBRIDGE_CONFIG";

/// The value of `T`'s settings when nothing is given: an empty command line with the
/// environment ignored. `Default` impls of options structs call this, so the struct's
/// defaults and the flags' defaults are one declaration.
pub(crate) fn defaults<T: clap::Args + clap::FromArgMatches>() -> T {
    let cmd = without_env(T::augment_args(
        Command::new("defaults").no_binary_name(true),
    ));
    // No input reaches this: the declarations alone decide whether an empty command line
    // parses, and the unit test `every_options_struct_has_defaults` runs it for each.
    let matches = cmd
        .try_get_matches_from(std::iter::empty::<OsString>())
        .unwrap_or_else(|err| panic!("a setting has no usable default: {err}"));
    T::from_arg_matches(&matches)
        .unwrap_or_else(|err| panic!("a setting's default does not parse: {err}"))
}

/// `cmd` with no environment variable attached to any of its arguments (or those of its
/// subcommands): what the built-in defaults are, whatever the process's environment.
pub fn without_env(cmd: Command) -> Command {
    cmd.mut_args(|arg| arg.env(None::<&'static str>))
        .mut_subcommands(without_env)
}

/// `cmd` with each flag's placeholder named after its unit (`<MS>`, `<SECS>`, `<BYTES>`)
/// or, failing that, its long name, instead of the struct field behind it.
pub fn name_values(cmd: Command) -> Command {
    cmd.mut_args(|arg| {
        let Some(long) = arg.get_long() else {
            return arg;
        };
        let name = match long.rsplit('-').next() {
            Some("ms") => "MS".to_owned(),
            Some("secs") => "SECS".to_owned(),
            Some("bytes") => "BYTES".to_owned(),
            _ => long.to_uppercase().replace('-', "_"),
        };
        if arg.get_action().takes_values() {
            arg.value_name(name)
        } else {
            arg
        }
    })
    .mut_subcommands(name_values)
}

/// Whole numbers of milliseconds, at least `min`, as a [`Duration`].
pub(crate) fn millis(min: u64) -> DurationParser {
    DurationParser {
        min,
        unit: Unit::Millis,
    }
}

/// Whole numbers of seconds, at least `min`, as a [`Duration`].
pub(crate) fn secs(min: u64) -> DurationParser {
    DurationParser {
        min,
        unit: Unit::Secs,
    }
}

/// The unit a duration flag is written in (its long name says which: `-ms`, `-secs`).
#[derive(Debug, Clone, Copy)]
enum Unit {
    Millis,
    Secs,
}

/// Parses a duration flag; see [`millis`] and [`secs`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct DurationParser {
    min: u64,
    unit: Unit,
}

impl TypedValueParser for DurationParser {
    type Value = Duration;

    fn parse_ref(
        &self,
        cmd: &Command,
        arg: Option<&Arg>,
        value: &OsStr,
    ) -> Result<Duration, clap::Error> {
        let unit = match self.unit {
            Unit::Millis => "milliseconds",
            Unit::Secs => "seconds",
        };
        let n: u64 = parse_number(cmd, arg, value, self.min, unit)?;
        Ok(match self.unit {
            Unit::Millis => Duration::from_millis(n),
            Unit::Secs => Duration::from_secs(n),
        })
    }
}

/// A number of type `T`, at least `min` (counts, sizes, rates).
pub(crate) fn at_least<T>(min: T) -> AtLeast<T> {
    AtLeast(min)
}

/// Parses a number with a lower bound; see [`at_least`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct AtLeast<T>(T);

impl<T> TypedValueParser for AtLeast<T>
where
    T: FromStr + PartialOrd + Display + Copy + Send + Sync + 'static,
    T::Err: Display,
{
    type Value = T;

    fn parse_ref(&self, cmd: &Command, arg: Option<&Arg>, value: &OsStr) -> Result<T, clap::Error> {
        parse_number(cmd, arg, value, self.0, "")
    }
}

fn parse_number<T>(
    cmd: &Command,
    arg: Option<&Arg>,
    value: &OsStr,
    min: T,
    unit: &str,
) -> Result<T, clap::Error>
where
    T: FromStr + PartialOrd + Display,
    T::Err: Display,
{
    let text = value.to_string_lossy();
    let flag = arg
        .and_then(Arg::get_long)
        .map(|long| format!(" for '--{long}'"))
        .unwrap_or_default();
    let invalid = |why: String| {
        clap::Error::raw(
            ErrorKind::ValueValidation,
            format!("invalid value '{text}'{flag}: {why}\n"),
        )
        .with_cmd(cmd)
    };
    let n: T = text
        .trim()
        .parse()
        .map_err(|err: T::Err| invalid(err.to_string()))?;
    if n < min {
        let unit = if unit.is_empty() {
            String::new()
        } else {
            format!(" {unit}")
        };
        return Err(invalid(format!("the minimum is {min}{unit}")));
    }
    Ok(n)
}

/// Why a configuration file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    /// The file could not be read.
    #[error("reading config file {path}: {reason}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said (in the message, not a `source`, so it is printed once).
        reason: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("config file {path} is not valid TOML: {reason}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// Where and why parsing stopped.
        reason: toml::de::Error,
    },
    /// A `[section]`: settings are flat, named as their flags.
    #[error(
        "config file {path}: `[{key}]`: sections are not used; write every setting at the \
         top level, named as its flag (see posbridge.example.toml)"
    )]
    Section {
        /// The file.
        path: PathBuf,
        /// The section's name.
        key: String,
    },
    /// A key names no setting.
    #[error(
        "config file {path}: unknown key `{key}` (keys are the long names of posbridge's \
         flags, such as `rate-limit-per-sec`, at the top level; see posbridge.example.toml)"
    )]
    UnknownKey {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
    },
    /// A value is an array or a date where a setting takes one value.
    #[error("config file {path}: `{key}` must be a string, a number or a boolean")]
    NotAValue {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
    },
    /// The flag's parser refused the value (not a number, below its minimum, ...).
    #[error("config file {path}: `{key}`: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
        /// The parser's message.
        reason: String,
    },
}

/// A parsed configuration file: setting name (flag long name) to value, as text.
#[derive(Debug, Clone)]
pub struct ConfigFile {
    path: PathBuf,
    values: BTreeMap<String, String>,
}

impl ConfigFile {
    /// Reads and parses `path` (no check of the keys yet; see [`ConfigFile::apply`]).
    pub fn load(path: &Path) -> Result<ConfigFile, ConfigFileError> {
        let text = std::fs::read_to_string(path).map_err(|reason| ConfigFileError::Read {
            path: path.to_owned(),
            reason,
        })?;
        ConfigFile::parse(path, &text)
    }

    /// Parses `text` as if read from `path` (relative paths resolve against its directory).
    pub fn parse(path: &Path, text: &str) -> Result<ConfigFile, ConfigFileError> {
        let table: toml::Table = text.parse().map_err(|reason| ConfigFileError::Syntax {
            path: path.to_owned(),
            reason,
        })?;
        let mut values = BTreeMap::new();
        for (key, value) in table {
            let text = match value {
                toml::Value::String(s) => s,
                toml::Value::Integer(n) => n.to_string(),
                toml::Value::Float(n) => n.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                toml::Value::Table(_) => {
                    return Err(ConfigFileError::Section {
                        path: path.to_owned(),
                        key,
                    })
                }
                toml::Value::Datetime(_) | toml::Value::Array(_) => {
                    return Err(ConfigFileError::NotAValue {
                        path: path.to_owned(),
                        key,
                    })
                }
            };
            values.insert(key, text);
        }
        Ok(ConfigFile {
            path: path.to_owned(),
            values,
        })
    }

    /// The file this was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The setting names the file gives, in order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.values.keys().map(String::as_str)
    }

    /// Makes the file's values the defaults of `cmd`'s flags. The settings are the
    /// root's flags and those of the subcommands named in `sections` (`serve`): every
    /// command reads the same file and uses what concerns it. Each value is checked by
    /// its flag's parser here, so an error names the file and the key.
    pub fn apply(&self, mut cmd: Command, sections: &[&str]) -> Result<Command, ConfigFileError> {
        let dir = self
            .path
            .parent()
            .map(Path::to_owned)
            .unwrap_or_else(|| PathBuf::from("."));
        for (key, raw) in &self.values {
            let in_root = setting(&cmd, key).cloned();
            let in_sections: Vec<(&str, Arg)> = sections
                .iter()
                .filter_map(|name| {
                    let sub = cmd.find_subcommand(name)?;
                    setting(sub, key).map(|arg| (*name, arg.clone()))
                })
                .collect();
            let Some(arg) = in_root
                .clone()
                .or_else(|| in_sections.first().map(|(_, arg)| arg.clone()))
            else {
                return Err(ConfigFileError::UnknownKey {
                    path: self.path.clone(),
                    key: key.clone(),
                });
            };
            let value = resolve_path(&arg, key, raw, &dir);
            self.check(&arg, key, &value)?;
            let id = arg.get_id().as_str().to_owned();
            if in_root.is_some() {
                cmd = cmd.mut_arg(&id, |a| a.default_value(value.clone()));
            }
            for (name, arg) in in_sections {
                let id = arg.get_id().as_str().to_owned();
                let value = value.clone();
                cmd = cmd.mut_subcommand(name, |sub| sub.mut_arg(&id, |a| a.default_value(value)));
            }
        }
        Ok(cmd)
    }

    /// Runs `arg`'s parser on `value` alone, so a bad value is reported against the file
    /// even when a flag or the environment would override it.
    fn check(&self, arg: &Arg, key: &str, value: &str) -> Result<(), ConfigFileError> {
        let probe = arg
            .clone()
            .env(None::<&'static str>)
            .default_value(None::<&'static str>)
            .required(false)
            .global(false);
        let outcome = Command::new("posbridge")
            .no_binary_name(true)
            .disable_help_flag(true)
            .arg(probe)
            .try_get_matches_from([format!("--{key}={value}")]);
        outcome.map(drop).map_err(|err| {
            let message = err.to_string();
            let first = message.lines().next().unwrap_or_default();
            ConfigFileError::Invalid {
                path: self.path.clone(),
                key: key.to_owned(),
                reason: first.trim_start_matches("error: ").to_owned(),
            }
        })
    }
}

/// The flag of `cmd` that `key` names, if `key` is a setting: a flag with a long name
/// other than the ones that are not settings (help, version, the config file itself).
fn setting<'a>(cmd: &'a Command, key: &str) -> Option<&'a Arg> {
    if matches!(key, "help" | "version" | "config") {
        return None;
    }
    cmd.get_arguments()
        .find(|arg| arg.get_long() == Some(key) && !arg.is_positional())
}

/// A path-valued setting written relative in the file is relative to the file, not to
/// wherever the process happens to start.
fn resolve_path(arg: &Arg, key: &str, value: &str, dir: &Path) -> String {
    let is_path = matches!(
        arg.get_value_hint(),
        ValueHint::AnyPath | ValueHint::FilePath | ValueHint::DirPath
    );
    if key == "database-url" {
        return resolve_database_url(value, dir);
    }
    if is_path && !value.is_empty() && Path::new(value).is_relative() {
        return dir.join(value).display().to_string();
    }
    value.to_owned()
}

/// A database URL that names an SQLite file by a relative path (`posbridge.db`,
/// `sqlite://data/p.db`, `sqlite:p.db`) resolved against `dir`; server URLs and in-memory
/// databases unchanged.
pub(crate) fn resolve_database_url(url: &str, dir: &Path) -> String {
    let (prefix, rest) = if let Some(rest) = url.strip_prefix("sqlite://") {
        ("sqlite://", rest)
    } else if let Some(rest) = url.strip_prefix("sqlite:") {
        ("sqlite:", rest)
    } else if url.contains("://") {
        return url.to_owned();
    } else {
        ("", url)
    };
    let (file, query) = match rest.split_once('?') {
        Some((file, query)) => (file, Some(query)),
        None => (rest, None),
    };
    if file.is_empty() || file.contains(":memory:") || Path::new(file).is_absolute() {
        return url.to_owned();
    }
    let mut resolved = format!("{prefix}{}", dir.join(file).display());
    if let Some(query) = query {
        resolved.push('?');
        resolved.push_str(query);
    }
    resolved
}

/// The configuration file named on the command line (`--config <path>`,
/// `--config=<path>`, before any `--`) or else by `POSBRIDGE_CONFIG`. It must be known
/// before the command line is parsed, since its values become the flags' defaults.
pub fn config_path(args: &[OsString]) -> Option<PathBuf> {
    let mut iter = args.iter().skip(1);
    while let Some(arg) = iter.next() {
        let text = arg.to_string_lossy();
        if text == "--" {
            break;
        }
        if text == "--config" {
            return iter.next().map(PathBuf::from);
        }
        if let Some(path) = text.strip_prefix("--config=") {
            return Some(PathBuf::from(path));
        }
    }
    std::env::var_os(CONFIG_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Args, FromArgMatches};

    #[derive(Args, Debug, PartialEq)]
    struct Sample {
        /// A duration.
        #[arg(long, env = "POSBRIDGE_TEST_SAMPLE_MS", default_value = "250", value_parser = millis(10))]
        sample_ms: Duration,
        /// A count.
        #[arg(long, default_value = "3", value_parser = at_least(1u32))]
        count: u32,
        /// A directory.
        #[arg(long, value_hint = ValueHint::DirPath)]
        dir: Option<PathBuf>,
    }

    fn sample_cmd() -> Command {
        Sample::augment_args(Command::new("t").subcommand(Command::new("serve")))
    }

    #[test]
    fn defaults_come_from_the_declarations() {
        let sample: Sample = defaults();
        assert_eq!(
            sample,
            Sample {
                sample_ms: Duration::from_millis(250),
                count: 3,
                dir: None
            }
        );
    }

    #[test]
    fn every_options_struct_has_defaults() {
        let config = crate::config::ServeConfig::default();
        assert_eq!(config.bind, "127.0.0.1:9010");
        assert_eq!(config.idempotency_ttl, Duration::from_secs(48 * 3600));
        assert_eq!(config.rate_limit.per_second, 50);
        assert_eq!(config.hooks.retry_max, Duration::from_secs(300));
        assert_eq!(config.plugins.outbound.max_response_bytes, 16 << 20);
        assert!(config.plugins.install_bundled);
        assert!(config.plugins.guest_threads >= 1);
        assert_eq!(config.store, crate::store::StoreOptions::default());
        assert_eq!(config.hub, crate::events::HubOptions::default());
        assert_eq!(config.stream, crate::terminals::StreamOptions::default());
        assert_eq!(config.inbox, crate::providers::InboxOptions::default());
        assert_eq!(
            config.connections,
            crate::listener::ConnectionOptions::default()
        );
        assert_eq!(config.tls, crate::listener::TlsOptions::default());
    }

    #[test]
    fn values_below_the_minimum_are_refused_with_the_flag_and_minimum_named() {
        let err = sample_cmd()
            .try_get_matches_from(["t", "--sample-ms", "5"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--sample-ms") && err.contains("minimum is 10 milliseconds"),
            "{err}"
        );
        let err = sample_cmd()
            .try_get_matches_from(["t", "--count", "0"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("minimum is 1"), "{err}");
    }

    #[test]
    fn file_values_become_defaults_below_the_command_line() {
        let file = ConfigFile::parse(
            Path::new("/etc/posbridge/p.toml"),
            "sample-ms = 40\ncount = 7\ndir = \"cache\"\n",
        )
        .unwrap();
        let cmd = file.apply(sample_cmd(), &["serve"]).unwrap();
        let m = cmd.clone().try_get_matches_from(["t"]).unwrap();
        let s = Sample::from_arg_matches(&m).unwrap();
        assert_eq!(s.sample_ms, Duration::from_millis(40));
        assert_eq!(s.count, 7);
        assert_eq!(s.dir, Some(PathBuf::from("/etc/posbridge/cache")));
        let m = cmd.try_get_matches_from(["t", "--count", "9"]).unwrap();
        assert_eq!(Sample::from_arg_matches(&m).unwrap().count, 9);
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        let path = Path::new("p.toml");
        let err = ConfigFile::parse(path, "cuont = 1")
            .unwrap()
            .apply(sample_cmd(), &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown key `cuont`"), "{err}");
        let err = ConfigFile::parse(path, "count = 0")
            .unwrap()
            .apply(sample_cmd(), &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`count`") && err.contains("minimum is 1"),
            "{err}"
        );
        let err = ConfigFile::parse(path, "[section]\ncount = 1").unwrap_err();
        assert!(matches!(err, ConfigFileError::Section { .. }), "{err}");
        let err = ConfigFile::parse(path, "count = [1]").unwrap_err();
        assert!(matches!(err, ConfigFileError::NotAValue { .. }), "{err}");
    }

    #[test]
    fn relative_database_files_resolve_against_the_config_directory() {
        let dir = Path::new("/srv/pb");
        assert_eq!(
            resolve_database_url("posbridge.db", dir),
            "/srv/pb/posbridge.db"
        );
        assert_eq!(
            resolve_database_url("sqlite://data/p.db?cache=shared", dir),
            "sqlite:///srv/pb/data/p.db?cache=shared"
        );
        assert_eq!(
            resolve_database_url("sqlite:///abs.db", dir),
            "sqlite:///abs.db"
        );
        assert_eq!(
            resolve_database_url("sqlite::memory:", dir),
            "sqlite::memory:"
        );
        let pg = "postgres://u:p@db/x";
        assert_eq!(resolve_database_url(pg, dir), pg);
    }

    #[test]
    fn the_config_path_comes_from_the_command_line_first() {
        let args = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(
            config_path(&args(&["pb", "serve", "--config", "a.toml"])),
            Some(PathBuf::from("a.toml"))
        );
        assert_eq!(
            config_path(&args(&["pb", "--config=b.toml", "tenant", "list"])),
            Some(PathBuf::from("b.toml"))
        );
    }
}
