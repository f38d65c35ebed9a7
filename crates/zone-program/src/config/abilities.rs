//! `[abilities]`: ability input and output handling.

use serde::Deserialize;

use super::{ConfigError, ServerConfig, positive};

/// `[abilities]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AbilitiesConfig {
    /// `bare` (output as is, like the Java demo) or `output` (wrapped in `{"output":…}`). Default `bare`.
    pub output_envelope: OutputEnvelope,
    /// Largest accepted `data` of an app call, in bytes. Default 1 MiB.
    pub max_input_bytes: usize,
    /// The program's own APIs to offer the app as `invoke_<api>` anyway:
    /// `program_async_job_call_back` (an app could set its own async result) and `spec_notify_app`
    /// (an app could send a notification with an id of its choice). Default none.
    pub expose_program_apis: Vec<String>,
    /// Largest reply text of a sync call, in bytes; a larger output is answered 900011 instead.
    /// The size limit of a `sync_call_program` response is undocumented. Default 8 MiB.
    pub max_reply_bytes: usize,
    /// Abilities run as async jobs even when the decoded request says `is_async` false (which
    /// `call_type`/`is_async` SDK-routed `create_program_task` / `create_model_task` calls carry is
    /// undocumented). A request without `job_info` has nothing to report to and still runs sync.
    /// Default none.
    pub always_async: Vec<String>,
}

impl Default for AbilitiesConfig {
    fn default() -> Self {
        Self {
            output_envelope: OutputEnvelope::Bare,
            max_input_bytes: 1024 * 1024,
            max_reply_bytes: 8 * 1024 * 1024,
            always_async: Vec::new(),
            expose_program_apis: Vec::new(),
        }
    }
}

/// How ability output is wrapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputEnvelope {
    /// The output object itself.
    Bare,
    /// `{"output": <object>}`.
    Output,
}

impl AbilitiesConfig {
    /// Checks the section's values, and that an input fits in a request body of `server`; the
    /// error names the key.
    pub fn validate(&self, server: &ServerConfig) -> Result<(), ConfigError> {
        positive("abilities.max_input_bytes", self.max_input_bytes as u64)?;
        if self.max_reply_bytes < 1024 {
            return Err(ConfigError::new("abilities.max_reply_bytes", "must be at least 1024"));
        }
        for (i, name) in self.expose_program_apis.iter().enumerate() {
            if !crate::abilities::catalog::PROGRAM_APIS.contains(&name.as_str()) {
                return Err(ConfigError::new(
                    format!("abilities.expose_program_apis[{i}]"),
                    format!("must be one of {:?}", crate::abilities::catalog::PROGRAM_APIS),
                ));
            }
        }
        if self.max_input_bytes > server.body_limit_bytes {
            return Err(ConfigError::new("abilities.max_input_bytes", "must not exceed server.body_limit_bytes"));
        }
        Ok(())
    }
}
