//! `invoke_<api>`: the pass-through of one whitelisted SDK API (program-callbacks.md §6.1). The
//! request object (unwrapped from `{"input":…}` if enveloped, else the text exactly as received)
//! is the SDK request; the SDK's response text is the output, unchanged, including a non-zero
//! `errcode` of its own. Only `Invoke` failures become the program's codes.

use async_trait::async_trait;
use serde_json::Value;

use super::catalog::SdkApi;
use super::{Ability, AbilityCx, AbilityInfo, Output, RawJson, input};
use crate::error::AppError;
use crate::sdk::SdkError;

/// The prefix of pass-through ability ids.
pub const PREFIX: &str = "invoke_";

/// The pass-through of one API.
pub struct Invoke {
    api: &'static SdkApi,
}

impl Invoke {
    /// The pass-through of `api`.
    pub fn new(api: &'static SdkApi) -> Self {
        Self { api }
    }
}

#[async_trait]
impl Ability for Invoke {
    fn info(&self) -> AbilityInfo {
        AbilityInfo {
            id: format!("{PREFIX}{}", self.api.name),
            description: format!(
                "Calls the SDK API `{}` ({}) and returns its response unchanged.",
                self.api.name, self.api.doc
            ),
            long_running: false,
            input_example: serde_json::from_str(self.api.request).expect("catalog examples are JSON"),
            output_example: serde_json::from_str(self.api.response).expect("catalog examples are JSON"),
        }
    }

    fn check(&self, data: &str, max_input_bytes: usize) -> Result<(), AppError> {
        input::object(data, max_input_bytes).map(|_| ())
    }

    async fn call(&self, cx: &AbilityCx, data: &str, max_input_bytes: usize) -> Result<Output, AppError> {
        let parsed = input::object(data, max_input_bytes)?;
        let request = if parsed.enveloped || data.trim().is_empty() {
            Value::Object(parsed.object).to_string()
        } else {
            data.to_owned()
        };
        let response = cx.sdk.invoke(&cx.ctx, self.api.name, &request).await?;
        RawJson::parse(response).map(Output::Raw).ok_or_else(|| SdkError::BadResponse.into())
    }
}
