//! The program's own error codes, as they appear in `errcode` of an output (the README's table). Shared
//! by the program, which answers with them, and the app side, which explains them.

/// The program's error codes, as they appear in `errcode` of an output. 0 is success.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// The input is not valid JSON, has a wrong type, an unknown field or a missing field.
    InvalidInput,
    /// The input (or one of its strings or lists) is larger than allowed.
    InputTooLarge,
    /// The ability id is not offered by this deployment.
    UnknownAbility,
    /// No notify data is stored under this notify_id (never stored, or purged).
    NotifyDataNotFound,
    /// The notify data under this notify_id has expired.
    NotifyDataExpired,
    /// The notify data under this notify_id was already taken.
    NotifyDataTaken,
    /// The request needs a notify_id and has none (or it is malformed).
    MissingNotifyId,
    /// The store is full; retry later.
    StoreFull,
    /// A sync call did not finish within the request deadline (`server.request_timeout_ms`).
    RequestTimeout,
    /// The decoded `call_type` is neither 1 (app call) nor 2 (event).
    UnsupportedCallType,
    /// The output is larger than `abilities.max_reply_bytes` (the size a reply may have).
    ReplyTooLarge,
    /// The SDK's `Invoke` returned a non-zero code (in `sdk_ret`).
    SdkInvokeFailed,
    /// The SDK answered with a non-zero `errcode` (in `sdk_errcode`).
    SdkErrcode,
    /// The SDK call did not finish in time.
    SdkTimeout,
    /// Too many SDK calls are in flight; retry later.
    SdkBusy,
    /// The SDK answered with something that is not the documented JSON.
    SdkBadResponse,
    /// The corp's budget of calls without an event token (`[rate_limit]`) is spent for now.
    TokenlessBudgetSpent,
    /// A model task failed.
    ModelTaskFailed,
    /// A model task did not finish before its deadline.
    ModelTaskTimeout,
    /// No private key for the message's `public_key_ver`.
    KeyUnavailable,
    /// A message's `encrypted_secret_key` did not unwrap with the configured key.
    KeyUnwrapFailed,
    /// The job queue is full; retry later.
    JobQueueFull,
    /// An unexpected internal failure (logged with the request id).
    Internal,
}

impl ErrorCode {
    /// Every code, in table order.
    pub const ALL: [ErrorCode; 23] = [
        Self::InvalidInput,
        Self::InputTooLarge,
        Self::UnknownAbility,
        Self::NotifyDataNotFound,
        Self::NotifyDataExpired,
        Self::NotifyDataTaken,
        Self::MissingNotifyId,
        Self::StoreFull,
        Self::RequestTimeout,
        Self::UnsupportedCallType,
        Self::ReplyTooLarge,
        Self::SdkInvokeFailed,
        Self::SdkErrcode,
        Self::SdkTimeout,
        Self::SdkBusy,
        Self::SdkBadResponse,
        Self::TokenlessBudgetSpent,
        Self::ModelTaskFailed,
        Self::ModelTaskTimeout,
        Self::KeyUnavailable,
        Self::KeyUnwrapFailed,
        Self::JobQueueFull,
        Self::Internal,
    ];

    /// The number in `errcode`.
    pub fn code(self) -> i64 {
        match self {
            Self::InvalidInput => 900_001,
            Self::InputTooLarge => 900_002,
            Self::UnknownAbility => 900_003,
            Self::NotifyDataNotFound => 900_004,
            Self::NotifyDataExpired => 900_005,
            Self::NotifyDataTaken => 900_006,
            Self::MissingNotifyId => 900_007,
            Self::StoreFull => 900_008,
            Self::RequestTimeout => 900_009,
            Self::UnsupportedCallType => 900_010,
            Self::ReplyTooLarge => 900_011,
            Self::SdkInvokeFailed => 900_101,
            Self::SdkErrcode => 900_102,
            Self::SdkTimeout => 900_103,
            Self::SdkBusy => 900_104,
            Self::SdkBadResponse => 900_105,
            Self::TokenlessBudgetSpent => 900_106,
            Self::ModelTaskFailed => 900_201,
            Self::ModelTaskTimeout => 900_202,
            Self::KeyUnavailable => 900_203,
            Self::KeyUnwrapFailed => 900_204,
            Self::JobQueueFull => 900_301,
            Self::Internal => 900_999,
        }
    }

    /// The short `errmsg` stem.
    pub fn message(self) -> &'static str {
        match self {
            Self::InvalidInput => "invalid input",
            Self::InputTooLarge => "input too large",
            Self::UnknownAbility => "unknown ability",
            Self::NotifyDataNotFound => "notify data not found",
            Self::NotifyDataExpired => "notify data expired",
            Self::NotifyDataTaken => "notify data already taken",
            Self::MissingNotifyId => "missing notify_id",
            Self::StoreFull => "store full",
            Self::RequestTimeout => "request timed out",
            Self::UnsupportedCallType => "unsupported call_type",
            Self::ReplyTooLarge => "reply too large",
            Self::SdkInvokeFailed => "sdk invoke failed",
            Self::SdkErrcode => "sdk returned an error",
            Self::SdkTimeout => "sdk timeout",
            Self::SdkBusy => "busy",
            Self::SdkBadResponse => "sdk bad response",
            Self::TokenlessBudgetSpent => "message access budget spent",
            Self::ModelTaskFailed => "model task failed",
            Self::ModelTaskTimeout => "model task timed out",
            Self::KeyUnavailable => "key unavailable",
            Self::KeyUnwrapFailed => "key unwrap failed",
            Self::JobQueueFull => "job queue full",
            Self::Internal => "internal error",
        }
    }
}
