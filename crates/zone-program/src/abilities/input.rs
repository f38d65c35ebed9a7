//! Ability input: `request_data` is parsed once, with or without the `{"input": …}` envelope
//! (program-callbacks.md §5.3), into a JSON object and then into the ability's typed input
//! (`deny_unknown_fields`). Error reasons name fields and expected types, never values, so no
//! request content reaches a reply or a log line.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::error::{AppError, ErrorCode};

/// The request object, unwrapped from its envelope.
#[derive(Debug, Clone, PartialEq)]
pub struct InputObject {
    /// The object itself.
    pub object: Map<String, Value>,
    /// Whether it came inside `{"input": …}`.
    pub enveloped: bool,
}

/// Parses `data` (≤ `max_bytes`) into an object; empty `data` is `{}`.
pub fn object(data: &str, max_bytes: usize) -> Result<InputObject, AppError> {
    if data.len() > max_bytes {
        return Err(too_large(format!("request_data is larger than {max_bytes} bytes")));
    }
    if data.trim().is_empty() {
        return Ok(InputObject { object: Map::new(), enveloped: false });
    }
    let value: Value = serde_json::from_str(data).map_err(|e| AppError::invalid(syntax_reason(&e)))?;
    let Value::Object(mut object) = value else {
        return Err(AppError::invalid("request_data must be a JSON object"));
    };
    if object.len() == 1 && object.contains_key("input") {
        return match object.remove("input") {
            Some(Value::Object(inner)) => Ok(InputObject { object: inner, enveloped: true }),
            _ => Err(AppError::invalid("`input` must be a JSON object")),
        };
    }
    Ok(InputObject { object, enveloped: false })
}

/// Parses `data` into `T`, then checks `T`'s own bounds.
pub fn parse<T: DeserializeOwned + Validate>(data: &str, max_bytes: usize) -> Result<T, AppError> {
    let input = object(data, max_bytes)?;
    let typed: T = serde_json::from_value(Value::Object(input.object)).map_err(|e| AppError::invalid(reason(&e)))?;
    typed.validate()?;
    Ok(typed)
}

/// Bounds a typed input checks after parsing.
pub trait Validate {
    /// `Ok` when every field is within its limits.
    fn validate(&self) -> Result<(), AppError>;
}

/// An `InputTooLarge` error with a reason.
pub fn too_large(reason: impl Into<String>) -> AppError {
    AppError::Input { code: ErrorCode::InputTooLarge, reason: reason.into() }
}

/// Fails when `value` is longer than `max` bytes.
pub fn max_len(field: &str, value: &str, max: usize) -> Result<(), AppError> {
    if value.len() > max { Err(too_large(format!("`{field}` is longer than {max} bytes"))) } else { Ok(()) }
}

/// Fails when `value` is empty.
pub fn non_empty(field: &str, value: &str) -> Result<(), AppError> {
    if value.is_empty() { Err(AppError::invalid(format!("`{field}` must not be empty"))) } else { Ok(()) }
}

/// Fails when a list has more than `max` items.
pub fn max_items<T>(field: &str, list: &[T], max: usize) -> Result<(), AppError> {
    if list.len() > max { Err(too_large(format!("`{field}` has more than {max} items"))) } else { Ok(()) }
}

/// A reason for a JSON syntax error: where, not what.
fn syntax_reason(e: &serde_json::Error) -> String {
    format!("request_data is not valid JSON (line {}, column {})", e.line(), e.column())
}

/// A reason for a shape error, keeping serde's field names and expectations and dropping the
/// offending value (`invalid type: string "…"` → `wrong type: expected …`).
pub fn reason(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    let keep_name = |prefix: &str| -> Option<String> {
        let rest = msg.strip_prefix(prefix)?;
        let name: String = rest.split('`').next()?.chars().take(64).filter(|c| !c.is_control()).collect();
        Some(format!("{prefix}{name}`"))
    };
    // An unknown field's name is the caller's text (it could be anything, content included): the
    // reason names the fields the ability takes instead.
    if msg.starts_with("unknown field `") {
        return match msg.rsplit_once("`, expected ") {
            Some((_, expected)) => {
                format!("unknown field; expected {}", expected.chars().take(400).collect::<String>())
            }
            None => "unknown field; this ability takes no fields".to_owned(),
        };
    }
    if let Some(r) = keep_name("missing field `") {
        return r;
    }
    if let Some(r) = keep_name("duplicate field `") {
        return r;
    }
    let expected = msg.rsplit_once(", expected ").map(|(_, exp)| exp.to_owned());
    let kind = if msg.starts_with("invalid type") {
        "wrong type"
    } else if msg.starts_with("invalid length") {
        "wrong length"
    } else if msg.starts_with("unknown variant") || msg.starts_with("invalid value") {
        "invalid value"
    } else {
        return "request_data does not match the ability's input".to_owned();
    };
    match expected {
        // `expected` is serde's description of our own types, e.g. "u32" or "a string".
        Some(exp) => format!("{kind}: expected {}", exp.chars().take(120).collect::<String>()),
        None => kind.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Sample {
        name: String,
        #[serde(default)]
        limit: u32,
        #[serde(default)]
        kind: Option<Kind>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(rename_all = "snake_case")]
    enum Kind {
        Alpha,
    }

    impl Validate for Sample {
        fn validate(&self) -> Result<(), AppError> {
            max_len("name", &self.name, 8)
        }
    }

    fn cases() -> u32 {
        std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256)
    }

    #[test]
    fn input_is_accepted_with_and_without_the_envelope() {
        let bare: Sample = parse(r#"{"name":"a","limit":3}"#, 100).unwrap();
        let wrapped: Sample = parse(r#"{"input":{"name":"a","limit":3}}"#, 100).unwrap();
        assert_eq!(bare, wrapped);
        assert!(object(r#"{"input":{}}"#, 100).unwrap().enveloped);
        assert!(!object(r#"{"input":{},"x":1}"#, 100).unwrap().enveloped);
    }

    #[test]
    fn empty_request_data_is_an_empty_object() {
        assert_eq!(object("  ", 10).unwrap().object, Map::new());
    }

    #[test]
    fn an_unknown_field_lists_the_known_ones_and_a_missing_field_is_named() {
        let e = parse::<Sample>(r#"{"name":"a","nmae":1}"#, 100).unwrap_err();
        assert_eq!(
            (e.code(), e.to_string().as_str()),
            (ErrorCode::InvalidInput, "invalid input: unknown field; expected one of `name`, `limit`, `kind`")
        );
        let e = parse::<Sample>(r#"{"name":"a","SECRET-CONTENT":1}"#, 100).unwrap_err();
        assert!(!e.to_string().contains("SECRET"), "the caller's key is not echoed: {e}");
        let e = parse::<Sample>(r#"{"limit":1}"#, 100).unwrap_err();
        assert_eq!(e.to_string(), "invalid input: missing field `name`");
    }

    #[test]
    fn a_wrong_type_names_the_expectation_and_never_the_value() {
        let e = parse::<Sample>(r#"{"name":"a","limit":"SECRET-TOKEN"}"#, 100).unwrap_err();
        assert_eq!(e.to_string(), "invalid input: wrong type: expected u32");
        let e = parse::<Sample>(r#"{"name":"a","kind":"SECRET"}"#, 100).unwrap_err();
        assert!(!e.to_string().contains("SECRET"), "{e}");
        let e = parse::<Sample>(r#"{"name":"SECRET-LONG-VALUE"}"#, 100).unwrap_err();
        assert_eq!(
            (e.code(), e.to_string().as_str()),
            (ErrorCode::InputTooLarge, "input too large: `name` is longer than 8 bytes")
        );
    }

    #[test]
    fn oversize_non_json_and_non_object_inputs_have_their_codes() {
        assert_eq!(object(&"x".repeat(11), 10).unwrap_err().code(), ErrorCode::InputTooLarge);
        let e = object(r#"{"a": SECRET}"#, 100).unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidInput);
        assert!(!e.to_string().contains("SECRET"));
        assert_eq!(object("[1]", 100).unwrap_err().code(), ErrorCode::InvalidInput);
        assert_eq!(object(r#"{"input":[1]}"#, 100).unwrap_err().code(), ErrorCode::InvalidInput);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(cases()))]

        #[test]
        fn parsing_arbitrary_text_never_panics_and_never_echoes_a_string_value(
            value in "[A-Za-z0-9]{12,40}",
            junk in "\\PC{0,200}",
        ) {
            let _ = parse::<Sample>(&junk, 1000);
            for shape in [
                format!(r#"{{"name":1,"limit":"{value}"}}"#),
                format!(r#"{{"name":"a","kind":"{value}"}}"#),
                format!(r#"{{"input":{{"name":["{value}"]}}}}"#),
                format!(r#"{{"name":"a","limit":{{"{value}":1}}}}"#),
                format!(r#"["{value}"]"#),
                format!(r#"{{"name":"{value}"#),
                format!(r#"{{"name":"a","{value}":1}}"#),
            ] {
                if let Err(e) = parse::<Sample>(&shape, 1000) {
                    prop_assert!(!e.to_string().contains(&value), "{} leaks in {}", value, e);
                }
            }
        }

        #[test]
        fn an_object_parses_the_same_with_and_without_the_envelope(name in "[a-z]{0,8}", limit in any::<u32>()) {
            let bare = format!(r#"{{"name":"{name}","limit":{limit}}}"#);
            let wrapped = format!(r#"{{"input":{bare}}}"#);
            prop_assert_eq!(parse::<Sample>(&bare, 1000).unwrap(), parse::<Sample>(&wrapped, 1000).unwrap());
        }
    }
}
