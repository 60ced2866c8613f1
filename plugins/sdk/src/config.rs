//! A hook binding's configuration: the JSON object a manager gave when binding the hook,
//! handed to `on-event` as text.

use serde::de::DeserializeOwned;

/// Parses binding configuration `text` into `T`: empty text or `null` is `T::default()`;
/// anything else must be a JSON object that deserializes into `T`. The error says why, for
/// the hook to wrap with what it expects.
pub fn parse_object<T: DeserializeOwned + Default>(text: &str) -> Result<T, String> {
    let text = text.trim();
    if text.is_empty() || text == "null" {
        return Ok(T::default());
    }
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    if !value.is_object() {
        return Err("not a JSON object".into());
    }
    serde_json::from_value(value).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, PartialEq, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Sample {
        #[serde(default)]
        n: i64,
    }

    #[test]
    fn empty_and_null_are_defaults_and_only_objects_parse() {
        assert_eq!(parse_object::<Sample>("").unwrap(), Sample::default());
        assert_eq!(parse_object::<Sample>(" null ").unwrap(), Sample::default());
        assert_eq!(
            parse_object::<Sample>(r#"{"n": 3}"#).unwrap(),
            Sample { n: 3 }
        );
        assert_eq!(
            parse_object::<Sample>("[1]").unwrap_err(),
            "not a JSON object"
        );
        assert!(parse_object::<Sample>(r#"{"m": 1}"#).is_err());
        assert!(parse_object::<Sample>("{").is_err());
    }
}
