//! Request parsing shared by every emulated API: a WeCom-style error ([`ApiError`]) and a typed view
//! of a JSON request object ([`Req`]) whose getters enforce the documented types and limits. Every
//! API handler parses its request through here, so one bad field gives one clear `errcode`/`errmsg`
//! naming the field (never its value) and nothing is applied.
//!
//! The generic codes are WeCom's global ones; the protocol pages list no per-API table:
//! 40058 (不合法的参数, invalid parameter) and 47001 (the body is not a JSON object).

use serde_json::{Map, Value, json};

/// WeCom global code: a parameter is missing, of the wrong type or out of its limits.
pub use zone_crypto::wire::INVALID_PARAMETER;
/// WeCom global code: the request body is not a JSON object.
pub const BAD_JSON: i64 = 47001;

/// A failed API call: the `errcode` and `errmsg` of the reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The reply's `errcode`.
    pub errcode: i64,
    /// The reply's `errmsg`.
    pub errmsg: String,
}

/// What an API handler returns: the reply object (without `errcode`/`errmsg`) or an error.
pub type ApiResult = Result<Value, ApiError>;

impl ApiError {
    /// An error with a code and message.
    pub fn new(errcode: i64, errmsg: impl Into<String>) -> Self {
        Self { errcode, errmsg: errmsg.into() }
    }

    /// 40058 naming the field and what is wrong with it.
    pub fn invalid(field: &str, why: &str) -> Self {
        Self::new(INVALID_PARAMETER, format!("invalid parameter `{field}`: {why}"))
    }

    /// The reply object.
    pub fn to_json(&self) -> Value {
        json!({ "errcode": self.errcode, "errmsg": self.errmsg })
    }
}

/// `{"errcode":0,"errmsg":"ok", …fields}` from a handler's object.
pub fn ok_reply(fields: Value) -> Value {
    let mut out = Map::new();
    out.insert("errcode".into(), json!(0));
    out.insert("errmsg".into(), json!("ok"));
    if let Value::Object(map) = fields {
        out.extend(map);
    }
    Value::Object(out)
}

/// The reply of a handler outcome.
pub fn reply_of(result: ApiResult) -> Value {
    match result {
        Ok(v) => ok_reply(v),
        Err(e) => e.to_json(),
    }
}

/// A parsed JSON request object. A nested one knows its path (`chat_info`, `doc_list`), so every
/// error names the field's full path (`chat_info.chat_type`, `doc_list.type`).
#[derive(Debug, Clone, Default)]
pub struct Req {
    map: Map<String, Value>,
    path: String,
}

impl Req {
    /// Parses request text that must be a JSON object (an empty text is `{}`).
    pub fn parse(text: &str) -> Result<Self, ApiError> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(map)) => Ok(Self { map, path: String::new() }),
            _ => Err(ApiError::new(BAD_JSON, "Warning: wrong json format. the request must be a JSON object")),
        }
    }

    /// A view of a JSON value that must be an object (nested structures); `field` is its full path.
    pub fn of(field: &str, value: &Value) -> Result<Self, ApiError> {
        let map = value.as_object().cloned().ok_or_else(|| ApiError::invalid(field, "must be an object"))?;
        Ok(Self { map, path: field.to_owned() })
    }

    /// The full path of `key` in the request (`key` at the top level, `outer.key` when nested).
    pub fn path(&self, key: &str) -> String {
        if self.path.is_empty() { key.to_owned() } else { format!("{}.{key}", self.path) }
    }

    /// 40058 naming `key` by its full path.
    pub fn invalid(&self, key: &str, why: &str) -> ApiError {
        ApiError::invalid(&self.path(key), why)
    }

    /// The raw value of a field that is present and not null.
    pub fn raw(&self, key: &str) -> Option<&Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    /// An optional string field.
    pub fn str_opt(&self, key: &str) -> Result<Option<&str>, ApiError> {
        match self.raw(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(self.invalid(key, "must be a string")),
        }
    }

    /// A required, non-empty string field of at most `max_bytes` bytes.
    pub fn str_req(&self, key: &str, max_bytes: usize) -> Result<&str, ApiError> {
        match self.str_opt(key)? {
            None | Some("") => Err(self.invalid(key, "is required")),
            Some(s) if s.len() > max_bytes => Err(self.invalid(key, &format!("must be at most {max_bytes} bytes"))),
            Some(s) => Ok(s),
        }
    }

    /// An optional string of at most `max_bytes` bytes; an empty string counts as absent.
    pub fn str_max(&self, key: &str, max_bytes: usize) -> Result<Option<&str>, ApiError> {
        match self.str_opt(key)? {
            None | Some("") => Ok(None),
            Some(s) if s.len() > max_bytes => Err(self.invalid(key, &format!("must be at most {max_bytes} bytes"))),
            Some(s) => Ok(Some(s)),
        }
    }

    /// A required string of `min..=max` UTF-8 characters.
    pub fn chars(&self, key: &str, min: usize, max: usize) -> Result<&str, ApiError> {
        let s = self.str_opt(key)?.ok_or_else(|| self.invalid(key, "is required"))?;
        check_chars(&self.path(key), s, min, max)?;
        Ok(s)
    }

    /// An optional integer field.
    pub fn int_opt(&self, key: &str) -> Result<Option<i64>, ApiError> {
        match self.raw(key) {
            None => Ok(None),
            Some(v) => v.as_i64().map(Some).ok_or_else(|| self.invalid(key, "must be an integer")),
        }
    }

    /// An optional integer in `min..=max`, or `default`.
    pub fn int_in(&self, key: &str, default: i64, min: i64, max: i64) -> Result<i64, ApiError> {
        let v = self.int_opt(key)?.unwrap_or(default);
        if !(min..=max).contains(&v) {
            return Err(self.invalid(key, &format!("must be {min} to {max}")));
        }
        Ok(v)
    }

    /// A paging `limit`: default `default`, 1..=`max`.
    pub fn limit(&self, default: i64, max: i64) -> Result<usize, ApiError> {
        Ok(self.int_in("limit", default, 1, max)? as usize)
    }

    /// An optional boolean field: `true` or `false` only (the documents type these fields bool; a
    /// 0/1 integer is refused as WeCom's typed parsing would).
    pub fn bool_opt(&self, key: &str) -> Result<Option<bool>, ApiError> {
        match self.raw(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(self.invalid(key, "must be a boolean (true or false)")),
        }
    }

    /// An optional array field.
    pub fn array_opt(&self, key: &str) -> Result<Option<&Vec<Value>>, ApiError> {
        match self.raw(key) {
            None => Ok(None),
            Some(Value::Array(a)) => Ok(Some(a)),
            Some(_) => Err(self.invalid(key, "must be an array")),
        }
    }

    /// A required array of `min..=max` entries.
    pub fn array_req(&self, key: &str, min: usize, max: usize) -> Result<&Vec<Value>, ApiError> {
        let a = self.array_opt(key)?.ok_or_else(|| self.invalid(key, "is required"))?;
        if a.len() < min || a.len() > max {
            return Err(self.invalid(key, &format!("must hold {min} to {max} entries")));
        }
        Ok(a)
    }

    /// An optional nested object.
    pub fn object_opt(&self, key: &str) -> Result<Option<Req>, ApiError> {
        self.raw(key).map(|v| Req::of(&self.path(key), v)).transpose()
    }
}

/// Checks that `s` has `min..=max` UTF-8 characters.
pub fn check_chars(field: &str, s: &str, min: usize, max: usize) -> Result<(), ApiError> {
    let n = s.chars().count();
    if n < min || n > max {
        return Err(ApiError::invalid(field, &format!("must be {min} to {max} characters")));
    }
    Ok(())
}

/// The strings of a JSON array field, each `1..=max_chars` characters.
pub fn strings(field: &str, items: &[Value], max_chars: usize) -> Result<Vec<String>, ApiError> {
    items
        .iter()
        .map(|v| {
            let s = v.as_str().ok_or_else(|| ApiError::invalid(field, "entries must be strings"))?;
            check_chars(field, s, 1, max_chars)?;
            Ok(s.to_owned())
        })
        .collect()
}

/// The integers of a JSON array field.
pub fn ints(field: &str, items: &[Value]) -> Result<Vec<i64>, ApiError> {
    items.iter().map(|v| v.as_i64().ok_or_else(|| ApiError::invalid(field, "entries must be integers"))).collect()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn a_non_object_body_is_47001_and_an_empty_body_is_an_empty_object() {
        assert_eq!(Req::parse("[1]").unwrap_err().errcode, BAD_JSON);
        assert_eq!(Req::parse("nope").unwrap_err().errcode, BAD_JSON);
        assert!(Req::parse("").unwrap().raw("x").is_none());
    }

    #[test]
    fn limits_and_types_are_enforced_with_the_field_named() {
        let r = Req::parse(r#"{"limit":1001,"cursor":5,"name":"abc","n":null}"#).unwrap();
        let e = r.limit(200, 1000).unwrap_err();
        assert_eq!(e.errcode, INVALID_PARAMETER);
        assert!(e.errmsg.contains("`limit`"));
        assert!(r.str_opt("cursor").unwrap_err().errmsg.contains("`cursor`"));
        assert_eq!(r.str_req("name", 2).unwrap_err().errcode, INVALID_PARAMETER);
        assert_eq!(r.str_opt("n").unwrap(), None);
        assert_eq!(Req::parse("{}").unwrap().limit(200, 1000).unwrap(), 200);
    }

    #[test]
    fn booleans_are_strict_and_nested_fields_are_named_by_their_full_path() {
        let r = Req::parse(r#"{"flag":1,"ok":true,"chat_info":{"chat_type":"x"},"doc_list":[{"type":"y"}]}"#).unwrap();
        assert!(r.bool_opt("flag").unwrap_err().errmsg.contains("`flag`"), "1 is not a boolean");
        assert_eq!(r.bool_opt("ok").unwrap(), Some(true));
        let info = r.object_opt("chat_info").unwrap().unwrap();
        assert!(info.int_opt("chat_type").unwrap_err().errmsg.contains("`chat_info.chat_type`"));
        let doc = Req::of("doc_list", &r.array_opt("doc_list").unwrap().unwrap()[0]).unwrap();
        assert!(doc.int_opt("type").unwrap_err().errmsg.contains("`doc_list.type`"));
    }

    #[test]
    fn character_counts_are_utf8_characters_not_bytes() {
        let r = Req::parse(r#"{"name":"客服知识库"}"#).unwrap();
        assert_eq!(r.chars("name", 1, 5).unwrap(), "客服知识库");
        assert!(r.chars("name", 1, 4).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(
            std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256)))]
        #[test]
        fn parsing_arbitrary_text_never_panics_and_only_objects_pass(text in ".{0,64}") {
            if let Ok(r) = Req::parse(&text) {
                let _ = r.limit(200, 1000);
                let _ = r.str_max("cursor", 128);
                let object_like = text.trim().is_empty() || text.trim_start().starts_with('{');
                prop_assert!(object_like);
            }
        }
    }
}
