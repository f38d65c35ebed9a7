//! Routes a decoded callback: call_type 1 to an ability, call_type 2 to an event handler. Always
//! yields the reply text; failures become `{errcode, errmsg}` here and nowhere else.

use serde_json::{Value, json};

use crate::app::AppState;
use crate::config::OutputEnvelope;
use crate::error::{AppError, ErrorCode};
use crate::sdk::{CallType, Callback};
use crate::telemetry::Metrics;

/// Handles one decoded callback and returns the plaintext to encode as the reply.
pub async fn handle(state: &AppState, callback: Callback) -> String {
    let outcome = match callback.call_type {
        CallType::AppCall => call_ability(state, &callback).await,
        CallType::Event => Ok(json!({ "errcode": 0, "errmsg": "ok" })),
    };
    let value = match outcome {
        Ok(v) => v,
        Err(e) => {
            Metrics::inc(&state.metrics.error_replies);
            tracing::info!(errcode = e.code().code(), error = %e, "ability failed");
            e.to_reply_json()
        }
    };
    wrap_output(state.config.abilities.output_envelope, value).to_string()
}

async fn call_ability(_state: &AppState, _callback: &Callback) -> Result<Value, AppError> {
    Err(AppError::Code(ErrorCode::UnknownAbility))
}

/// Applies the configured output envelope.
pub fn wrap_output(envelope: OutputEnvelope, value: Value) -> Value {
    match envelope {
        OutputEnvelope::Bare => value,
        OutputEnvelope::Output => json!({ "output": value }),
    }
}
