//! The call_type 1 abilities this deployment offers. Each declares its id, its typed input (parsed
//! once, unknown fields rejected, sizes bounded, with or without the `{"input":…}` envelope) and
//! its output, an object with `errcode` and `errmsg`. The [`Registry`] finds an ability by id,
//! checks an input without running it (so an async call with bad input is refused before anything
//! is stored), runs it, and wraps the output as `abilities.output_envelope` says.

pub mod catalog;
pub mod chat_digest;
pub mod customer_profile;
pub mod get_callback_data;
pub mod input;
pub mod invoke;
pub mod keys;
pub mod keyword_report;
pub mod list_abilities;
pub mod messages;
pub mod model;
pub mod reply_suggestions;
pub mod tokenless;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::config::OutputEnvelope;
use crate::error::{AppError, ErrorCode};

pub use crate::context::AbilityCx;
pub use input::Validate;

/// What an ability returns on success.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// A JSON object built by the ability.
    Json(Value),
    /// JSON object text passed through unchanged (an SDK response, stored notify data).
    Raw(RawJson),
}

/// The text of a JSON object, kept byte for byte, with its `errcode` read once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawJson {
    text: String,
    errcode: i64,
}

impl RawJson {
    /// `text` if it is a JSON object; its `errcode` (0 when absent or not an integer) is read in
    /// the same pass, without building a tree.
    pub fn parse(text: String) -> Option<Self> {
        #[derive(serde::Deserialize)]
        struct Probe {
            #[serde(default)]
            errcode: Option<Value>,
        }
        // A struct also deserialises from a JSON array: only an object will do.
        if !text.trim_start().starts_with('{') {
            return None;
        }
        let probe: Probe = serde_json::from_str(&text).ok()?;
        let errcode = probe.errcode.as_ref().and_then(Value::as_i64).unwrap_or(0);
        Some(Self { text, errcode })
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Its `errcode`.
    pub fn errcode(&self) -> i64 {
        self.errcode
    }
}

/// How an ability presents itself in `list_abilities`.
#[derive(Debug, Clone, PartialEq)]
pub struct AbilityInfo {
    /// Its id (`ability_id`).
    pub id: String,
    /// One sentence on what it does.
    pub description: String,
    /// Whether it may take long enough that callers should use `async_program_task`.
    pub long_running: bool,
    /// Every accepted input field with a value of its type: the input protocol to configure.
    pub input_example: Value,
    /// Every field of a successful output (without envelope).
    pub output_example: Value,
}

/// An ability as the registry sees it.
#[async_trait]
pub trait Ability: Send + Sync + 'static {
    /// Its id and examples.
    fn info(&self) -> AbilityInfo;
    /// Parses and bounds-checks `data` without running anything.
    fn check(&self, data: &str, max_input_bytes: usize) -> Result<(), AppError>;
    /// Parses `data` and runs.
    async fn call(&self, cx: &AbilityCx, data: &str, max_input_bytes: usize) -> Result<Output, AppError>;
}

/// An ability with a typed input; [`Typed`] turns it into an [`Ability`].
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    /// The input, `deny_unknown_fields`, with its bounds in [`Validate`].
    type Input: DeserializeOwned + Validate + Send + 'static;
    /// Its id and examples.
    fn info(&self) -> AbilityInfo;
    /// Runs with a parsed input.
    async fn run(&self, cx: &AbilityCx, input: Self::Input) -> Result<Output, AppError>;
}

/// Adapts a [`Handler`] to [`Ability`].
pub struct Typed<H>(pub H);

#[async_trait]
impl<H: Handler> Ability for Typed<H> {
    fn info(&self) -> AbilityInfo {
        self.0.info()
    }

    fn check(&self, data: &str, max_input_bytes: usize) -> Result<(), AppError> {
        input::parse::<H::Input>(data, max_input_bytes).map(|_| ())
    }

    async fn call(&self, cx: &AbilityCx, data: &str, max_input_bytes: usize) -> Result<Output, AppError> {
        let parsed = input::parse::<H::Input>(data, max_input_bytes)?;
        self.0.run(cx, parsed).await
    }
}

/// The abilities of this deployment by id.
pub struct Registry {
    abilities: BTreeMap<String, Arc<dyn Ability>>,
    max_input_bytes: usize,
    envelope: OutputEnvelope,
}

impl Registry {
    /// The registry of `list` (a later ability with an id already listed replaces the earlier),
    /// plus `list_abilities` describing all of them.
    pub fn from_abilities(list: Vec<Arc<dyn Ability>>, max_input_bytes: usize, envelope: OutputEnvelope) -> Self {
        let mut abilities: BTreeMap<String, Arc<dyn Ability>> = list.into_iter().map(|a| (a.info().id, a)).collect();
        let mut infos: Vec<AbilityInfo> = abilities.values().map(|a| a.info()).collect();
        infos.push(list_abilities::ListAbilities::own_info());
        infos.sort_by(|a, b| a.id.cmp(&b.id));
        let list_abilities: Arc<dyn Ability> = Arc::new(Typed(list_abilities::ListAbilities::new(infos, envelope)));
        abilities.insert(list_abilities.info().id, list_abilities);
        Self { abilities, max_input_bytes, envelope }
    }

    /// The stock registry (tests).
    #[cfg(test)]
    pub(crate) fn new(max_input_bytes: usize, envelope: OutputEnvelope) -> Self {
        let mut config = crate::config::Config::default();
        config.abilities.max_input_bytes = max_input_bytes;
        config.abilities.output_envelope = envelope;
        crate::program::Program::stock(config).into_registry()
    }

    /// The ability called `id`.
    pub fn get(&self, id: &str) -> Result<&Arc<dyn Ability>, AppError> {
        self.abilities.get(id).ok_or(AppError::Code(ErrorCode::UnknownAbility))
    }

    /// Every ability id, sorted.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.abilities.keys().map(String::as_str)
    }

    /// Checks that `id` exists and `data` is a valid input for it.
    pub fn check(&self, id: &str, data: &str) -> Result<(), AppError> {
        self.get(id)?.check(data, self.max_input_bytes)
    }

    /// Runs ability `id`.
    pub async fn call(&self, cx: &AbilityCx, id: &str, data: &str) -> Result<Output, AppError> {
        self.get(id)?.call(cx, data, self.max_input_bytes).await
    }

    /// The reply text of an outcome, wrapped as configured, and its `errcode`.
    pub fn reply(&self, outcome: Result<Output, AppError>) -> (i64, String) {
        match outcome {
            Ok(output) => (output_errcode(&output), wrap(self.envelope, output)),
            Err(e) => (e.code().code(), wrap(self.envelope, Output::Json(e.to_reply_json()))),
        }
    }
}

/// The `errcode` an output carries (0 when absent).
fn output_errcode(output: &Output) -> i64 {
    match output {
        Output::Json(v) => v.get("errcode").and_then(Value::as_i64).unwrap_or(0),
        Output::Raw(raw) => raw.errcode,
    }
}

/// Applies the output envelope; raw text is embedded byte for byte.
pub fn wrap(envelope: OutputEnvelope, output: Output) -> String {
    match (envelope, output) {
        (OutputEnvelope::Bare, Output::Json(v)) => v.to_string(),
        (OutputEnvelope::Bare, Output::Raw(raw)) => raw.text,
        (OutputEnvelope::Output, Output::Json(v)) => json!({ "output": v }).to_string(),
        (OutputEnvelope::Output, Output::Raw(raw)) => format!("{{\"output\":{}}}", raw.text),
    }
}

/// `{"errcode":0,"errmsg":"ok"}` merged with `fields`.
pub fn ok_with(fields: Value) -> Value {
    let mut out = json!({ "errcode": 0, "errmsg": "ok" });
    if let (Some(out), Value::Object(fields)) = (out.as_object_mut(), fields) {
        out.extend(fields);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_output_is_embedded_unchanged_in_both_envelopes() {
        let raw = r#"{"z":1,"errcode":0,"a":1.50}"#;
        let parsed = || Output::Raw(RawJson::parse(raw.into()).unwrap());
        assert_eq!(wrap(OutputEnvelope::Bare, parsed()), raw);
        assert_eq!(wrap(OutputEnvelope::Output, parsed()), format!(r#"{{"output":{raw}}}"#));
        let v: Value = serde_json::from_str(&wrap(OutputEnvelope::Output, Output::Json(json!({"a":1})))).unwrap();
        assert_eq!(v, json!({"output":{"a":1}}));
    }

    #[test]
    fn raw_json_reads_the_errcode_of_an_object_and_refuses_anything_else() {
        assert_eq!(RawJson::parse(r#"{"a":[1,{"errcode":5}],"errcode":40058}"#.into()).unwrap().errcode(), 40058);
        assert_eq!(RawJson::parse(r#"{"errcode":"x"}"#.into()).unwrap().errcode(), 0);
        assert_eq!(RawJson::parse("{}".into()).unwrap().errcode(), 0);
        for bad in ["[]", "1", "\"s\"", "{", "{} x"] {
            assert!(RawJson::parse(bad.into()).is_none(), "{bad}");
        }
    }

    fn cases() -> u32 {
        std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256)
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(cases()))]

        #[test]
        fn raw_json_agrees_with_a_full_parse(text in "\\PC{0,200}", code in proptest::prelude::any::<i64>()) {
            for candidate in [text.clone(), format!(r#"{{"errcode":{code},"x":{}}}"#, serde_json::json!(text))] {
                let full = serde_json::from_str::<Value>(&candidate).ok().filter(Value::is_object);
                let raw = RawJson::parse(candidate.clone());
                proptest::prop_assert_eq!(raw.is_some(), full.is_some());
                if let (Some(raw), Some(full)) = (raw, full) {
                    proptest::prop_assert_eq!(raw.errcode(), full["errcode"].as_i64().unwrap_or(0));
                    proptest::prop_assert_eq!(raw.as_str(), candidate.as_str());
                }
            }
        }
    }

    #[test]
    fn an_error_reply_carries_its_code_inside_the_envelope() {
        let r = Registry::new(1024, OutputEnvelope::Output);
        let (code, text) = r.reply(Err(AppError::Code(ErrorCode::StoreFull)));
        assert_eq!(code, 900_008);
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["output"]["errcode"], 900_008);
    }
}
