//! `list_abilities`: what this deployment offers, each with the input and output protocol a
//! provider pastes into the ability configuration (program-callbacks.md §8.1). Outputs are shown
//! in the configured envelope and include the error fields (`errcode`, `errmsg`, `sdk_ret`,
//! `sdk_errcode`, `retry_after_ms`), because WeCom checks every output against the output protocol (790014).

use std::collections::HashMap;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{AbilityCx, AbilityInfo, Handler, Output, RawJson, Validate, ok_with};
use crate::config::OutputEnvelope;
use crate::error::AppError;

/// The ability id.
pub const ID: &str = "list_abilities";

/// The ability, holding the description of every ability.
pub struct ListAbilities {
    /// The whole output, serialised once.
    output: RawJson,
    /// The output for each ability alone (`{"ability_id": ...}`), serialised once.
    one: HashMap<String, RawJson>,
}

/// Its input: `{}` (or an empty `ability_id`) for every ability, or `{"ability_id": "..."}` for one
/// (the protocols a provider pastes into that ability's configuration).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// Only this ability.
    #[serde(default)]
    ability_id: Option<String>,
}

impl Validate for Input {
    fn validate(&self) -> Result<(), AppError> {
        match &self.ability_id {
            Some(id) if id.len() > MAX_ID_LEN => {
                Err(AppError::invalid(format!("`ability_id` must be at most {MAX_ID_LEN} characters")))
            }
            _ => Ok(()),
        }
    }
}

/// Longest ability id accepted as a filter (the registry's ids are far shorter).
const MAX_ID_LEN: usize = 128;

impl ListAbilities {
    /// Describes `infos` for a deployment with `envelope`.
    pub fn new(infos: Vec<AbilityInfo>, envelope: OutputEnvelope) -> Self {
        let abilities: Vec<Value> = infos
            .into_iter()
            .map(|info| {
                let output = with_error_fields(info.output_example);
                let output = match envelope {
                    OutputEnvelope::Bare => output,
                    OutputEnvelope::Output => json!({ "output": output }),
                };
                json!({
                    "ability_id": info.id,
                    "description": info.description,
                    "async_recommended": info.long_running,
                    "input_protocol": info.input_example.to_string(),
                    "output_protocol": output.to_string(),
                })
            })
            .collect();
        let envelope = match envelope {
            OutputEnvelope::Bare => "bare",
            OutputEnvelope::Output => "output",
        };
        let listing = |abilities: &[Value]| {
            let text = ok_with(json!({ "output_envelope": envelope, "abilities": abilities })).to_string();
            RawJson::parse(text).expect("an object")
        };
        let one = abilities
            .iter()
            .map(|a| (a["ability_id"].as_str().unwrap_or_default().to_owned(), listing(std::slice::from_ref(a))))
            .collect();
        Self { output: listing(&abilities), one }
    }

    /// The description of `list_abilities` itself.
    pub fn own_info() -> AbilityInfo {
        AbilityInfo {
            id: ID.into(),
            description: "Lists the abilities of this deployment with their input and output protocols.".into(),
            long_running: false,
            input_example: json!({ "ability_id": "" }),
            output_example: json!({
                "output_envelope": "bare",
                "abilities": [{"ability_id": "", "description": "", "async_recommended": false,
                               "input_protocol": "{}", "output_protocol": "{}"}],
            }),
        }
    }
}

/// Adds the fields every output may carry.
fn with_error_fields(example: Value) -> Value {
    let mut out = ok_with(example);
    for key in ["sdk_ret", "sdk_errcode", "retry_after_ms"] {
        out.as_object_mut().expect("an object").entry(key).or_insert(json!(0));
    }
    out
}

#[async_trait]
impl Handler for ListAbilities {
    type Input = Input;

    fn info(&self) -> AbilityInfo {
        Self::own_info()
    }

    async fn run(&self, _cx: &AbilityCx, input: Input) -> Result<Output, AppError> {
        match input.ability_id.filter(|id| !id.is_empty()) {
            None => Ok(Output::Raw(self.output.clone())),
            Some(id) => match self.one.get(&id) {
                Some(one) => Ok(Output::Raw(one.clone())),
                None => Err(AppError::invalid("`ability_id` names no ability of this deployment")),
            },
        }
    }
}
