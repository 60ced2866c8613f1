//! A hook binding's configuration: the JSON object a manager gave when binding the hook,
//! handed to `validate-config` and `on-event` as text.
//!
//! Parse it with [`parse`] in both: `validate-config` returns the problems (the host refuses
//! the binding with 422 naming each field), and `on-event` then sees only configurations that
//! passed. Declare the configuration as a `serde` struct with `#[serde(deny_unknown_fields)]`
//! so a misspelt key is a problem, not a silently ignored setting:
//!
//! ```
//! use posbridge_sdk::config;
//! use posbridge_sdk::hook::ConfigProblem;
//!
//! #[derive(serde::Deserialize, Default)]
//! #[serde(default, deny_unknown_fields)]
//! struct Config { threshold: i64 }
//!
//! fn validate_config(text: String) -> Result<(), Vec<ConfigProblem>> {
//!     let config: Config = config::parse(&text)?;
//!     config::require(config.threshold >= 0, "threshold", "must be >= 0")
//! }
//! assert!(validate_config(r#"{"threshold": 5}"#.into()).is_ok());
//! let problems = validate_config(r#"{"threshhold": 5}"#.into()).unwrap_err();
//! assert_eq!(problems[0].field, "threshhold");
//! ```

use serde::de::DeserializeOwned;

use crate::hook::ConfigProblem;

/// Parses binding configuration `text` into `T`: empty text or `null` is `T::default()`;
/// anything else must be a JSON object that deserializes into `T`. The error says why, for
/// the hook to wrap with what it expects.
pub fn parse_object<T: DeserializeOwned + Default>(text: &str) -> Result<T, String> {
    parse(text).map_err(|problems| {
        problems
            .into_iter()
            .map(|p| {
                if p.field.is_empty() {
                    p.message
                } else {
                    format!("{}: {}", p.field, p.message)
                }
            })
            .collect::<Vec<_>>()
            .join("; ")
    })
}

/// Parses binding configuration `text` into `T` like [`parse_object`], but reports a failure
/// as a [`ConfigProblem`] naming the field (`"alerts.0.url"`; `""` for the whole object), the
/// shape `validate-config` returns.
pub fn parse<T: DeserializeOwned + Default>(text: &str) -> Result<T, Vec<ConfigProblem>> {
    let text = text.trim();
    if text.is_empty() || text == "null" {
        return Ok(T::default());
    }
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| vec![ConfigProblem::new("", format!("not JSON: {e}"))])?;
    if !value.is_object() {
        return Err(vec![ConfigProblem::new("", "not a JSON object")]);
    }
    serde_path_to_error::deserialize(value).map_err(|err| {
        let path = path_text(err.path());
        let message = err.inner().to_string();
        vec![problem_at(path, message)]
    })
}

/// `Ok(())` if `ok`, else one problem with `field`: for checks serde cannot express
/// (ranges, formats), chained after [`parse`].
pub fn require(
    ok: bool,
    field: &str,
    message: impl Into<String>,
) -> Result<(), Vec<ConfigProblem>> {
    if ok {
        Ok(())
    } else {
        Err(vec![ConfigProblem::new(field, message)])
    }
}

/// The problems as one line, `field: message; field: message`: for an `on-event` that
/// meets a configuration stored before it was checked, and has only a string to say why.
pub fn describe(problems: &[ConfigProblem]) -> String {
    let each: Vec<String> = problems
        .iter()
        .map(|p| format!("{}: {}", p.field, p.message))
        .collect();
    each.join("; ")
}

/// The path serde_path_to_error tracked, dotted: `alerts.0.url`; `""` at the top.
fn path_text(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    path.iter()
        .filter_map(|segment| match segment {
            Segment::Seq { index } => Some(index.to_string()),
            Segment::Map { key } => Some(key.clone()),
            Segment::Enum { variant } => Some(variant.clone()),
            Segment::Unknown => None,
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// A problem at `path`. A missing field is reported on the object that lacks it, naming the
/// field only in the message (``missing field `url` ``): the field itself is the more useful
/// place, so it is appended. (An unknown field's path already ends with its key.)
fn problem_at(path: String, message: String) -> ConfigProblem {
    for prefix in ["unknown field `", "missing field `"] {
        let Some((field, _)) = message
            .strip_prefix(prefix)
            .and_then(|rest| rest.split_once('`'))
        else {
            continue;
        };
        let named = path == field || path.ends_with(&format!(".{field}"));
        let path = match (named, path.is_empty()) {
            (true, _) => path,
            (false, true) => field.to_owned(),
            (false, false) => format!("{path}.{field}"),
        };
        return ConfigProblem::new(path, message);
    }
    ConfigProblem::new(path, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, PartialEq, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Sample {
        #[serde(default)]
        n: i64,
        #[serde(default)]
        alerts: Vec<Alert>,
    }

    #[derive(Debug, Default, PartialEq, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Alert {
        url: String,
    }

    #[test]
    fn empty_and_null_are_defaults_and_only_objects_parse() {
        assert_eq!(parse_object::<Sample>("").unwrap(), Sample::default());
        assert_eq!(parse_object::<Sample>(" null ").unwrap(), Sample::default());
        assert_eq!(
            parse_object::<Sample>(r#"{"n": 3}"#).unwrap(),
            Sample {
                n: 3,
                ..Sample::default()
            }
        );
        assert_eq!(
            parse_object::<Sample>("[1]").unwrap_err(),
            "not a JSON object"
        );
        assert!(parse_object::<Sample>(r#"{"m": 1}"#).is_err());
        assert!(parse_object::<Sample>("{").is_err());
    }

    #[test]
    fn problems_name_the_field() {
        let field = |text: &str| parse::<Sample>(text).unwrap_err()[0].field.clone();
        assert_eq!(field(r#"{"nn": 1}"#), "nn");
        assert_eq!(field(r#"{"n": "x"}"#), "n");
        assert_eq!(
            field(r#"{"alerts": [{"url": "a"}, {"url": 1}]}"#),
            "alerts.1.url"
        );
        assert_eq!(field(r#"{"alerts": [{"ur": "a"}]}"#), "alerts.0.ur");
        assert_eq!(field(r#"{"alerts": [{}]}"#), "alerts.0.url");
        assert_eq!(field("[1]"), "");
        assert_eq!(field("{"), "");
        let unknown = &parse::<Sample>(r#"{"nn": 1}"#).unwrap_err()[0];
        assert!(unknown.message.contains("unknown field"), "{unknown:?}");
        assert_eq!(require(true, "n", "x"), Ok(()));
        assert_eq!(
            require(false, "n", "must be >= 0").unwrap_err(),
            vec![ConfigProblem::new("n", "must be >= 0")]
        );
    }
}
