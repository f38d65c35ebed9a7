//! The program's own error codes (the README's table) and [`AppError`], the one error type that
//! abilities, events and jobs return. It becomes a reply in one place, [`AppError::to_reply_json`];
//! nothing here knows HTTP.

use serde_json::json;

pub use zone_crypto::errcode::ErrorCode;

use crate::sdk::SdkError;

/// An error that ends a request or job. Its `Display` is safe for replies: it never carries
/// request data, keys or tokens.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Bad input, with a short reason naming the field (never its value).
    #[error("{code_msg}: {reason}", code_msg = .code.message())]
    Input {
        /// `InvalidInput`, `InputTooLarge` or `MissingNotifyId`.
        code: ErrorCode,
        /// What is wrong, e.g. "missing field `chatid`".
        reason: String,
    },
    /// A failure with a code and no further detail.
    #[error("{}", .0.message())]
    Code(ErrorCode),
    /// The SDK failed.
    #[error(transparent)]
    Sdk(#[from] SdkError),
    /// An internal failure; the detail is logged, not replied.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
    /// The corp's budget of calls without an event token is spent; one is free again after
    /// `retry_after_ms` (in the reply).
    #[error("{}", ErrorCode::TokenlessBudgetSpent.message())]
    BudgetSpent {
        /// Milliseconds until the next call is allowed.
        retry_after_ms: u64,
    },
}

impl AppError {
    /// An `InvalidInput` error with a reason.
    pub fn invalid(reason: impl Into<String>) -> Self {
        Self::Input { code: ErrorCode::InvalidInput, reason: reason.into() }
    }

    /// The code of this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Input { code, .. } => *code,
            Self::Code(code) => *code,
            Self::Sdk(e) => e.error_code(),
            Self::Internal(_) => ErrorCode::Internal,
            Self::BudgetSpent { .. } => ErrorCode::TokenlessBudgetSpent,
        }
    }

    /// The reply object `{errcode, errmsg, …}`; SDK failures add `sdk_ret` or `sdk_errcode`.
    pub fn to_reply_json(&self) -> serde_json::Value {
        let mut v = json!({ "errcode": self.code().code(), "errmsg": self.to_string() });
        if let Self::BudgetSpent { retry_after_ms } = self {
            v["retry_after_ms"] = json!(retry_after_ms);
        }
        if let Self::Sdk(e) = self {
            match e {
                SdkError::Invoke { ret, .. } => v["sdk_ret"] = json!(ret),
                SdkError::Errcode { errcode, .. } => v["sdk_errcode"] = json!(errcode),
                _ => {}
            }
        }
        v
    }
}

impl SdkError {
    /// The program error code an SDK failure becomes in a reply: the one place that maps them.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            Self::Invoke { .. } | Self::Unavailable(_) => ErrorCode::SdkInvokeFailed,
            Self::Errcode { .. } => ErrorCode::SdkErrcode,
            Self::Timeout => ErrorCode::SdkTimeout,
            Self::Busy => ErrorCode::SdkBusy,
            Self::BadResponse => ErrorCode::SdkBadResponse,
            // A typed request over a documented limit carries the caller's values.
            Self::Limit { .. } => ErrorCode::InvalidInput,
        }
    }
}

/// Whether `code` describes the caller's request rather than the program's state (logged at
/// `debug` rather than `warn`).
pub fn is_callers_fault(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::InvalidInput
            | ErrorCode::InputTooLarge
            | ErrorCode::UnknownAbility
            | ErrorCode::NotifyDataNotFound
            | ErrorCode::NotifyDataExpired
            | ErrorCode::NotifyDataTaken
            | ErrorCode::MissingNotifyId
    )
}

impl From<crate::store::StoreError> for AppError {
    fn from(e: crate::store::StoreError) -> Self {
        use crate::store::StoreError;
        match e {
            StoreError::Full => Self::Code(ErrorCode::StoreFull),
            StoreError::QueueFull => Self::Code(ErrorCode::JobQueueFull),
            other => Self::Internal(anyhow::Error::new(other)),
        }
    }
}

impl From<ErrorCode> for AppError {
    fn from(code: ErrorCode) -> Self {
        Self::Code(code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_distinct_and_in_the_program_range() {
        let mut codes: Vec<i64> = ErrorCode::ALL.iter().map(|c| c.code()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), ErrorCode::ALL.len());
        assert!(codes.iter().all(|c| (900_000..1_000_000).contains(c)));
    }

    #[test]
    fn the_readme_table_lists_every_code_with_its_message_and_nothing_else() {
        let readme = include_str!("../../../README.md");
        let start = readme.find("## Error codes").expect("an error-code section");
        let section = &readme[start..];
        let end = section[3..].find("\n## ").map_or(section.len(), |i| i + 3);
        let rows: Vec<(i64, String)> = section[..end]
            .lines()
            .filter_map(|l| {
                let cells: Vec<&str> = l.split('|').map(str::trim).collect();
                Some((cells.get(1)?.parse().ok()?, (*cells.get(2)?).to_owned()))
            })
            .collect();
        let codes: Vec<(i64, String)> = ErrorCode::ALL.iter().map(|c| (c.code(), c.message().to_owned())).collect();
        assert_eq!(rows, codes);
    }

    #[test]
    fn an_sdk_failure_reply_carries_the_invoke_return_code() {
        let e = AppError::from(SdkError::Invoke { api: "sync_msg".into(), ret: -10006 });
        let v = e.to_reply_json();
        assert_eq!(v["errcode"], 900_101);
        assert_eq!(v["sdk_ret"], -10006);
    }
}
