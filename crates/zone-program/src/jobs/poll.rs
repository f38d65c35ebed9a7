//! Model tasks: create one, then poll its result with exponential backoff until it is done, failed
//! or past its deadline (sdk-model-apis.md §1.2). Polling sleeps between calls; it never spins.
//! Both go through the typed SDK client ([`Sdk::call`]): the create request is the API's typed
//! request (its documented limits are checked before the call), the reply a [`TaskCreated`], each
//! result a [`TaskResult`].
//!
//! "Finished" is read robustly, because the protocol leaves it partly open:
//! - WeCom-built models answer `status` 0 (not finished), 1 (finished) or 2 (failed);
//! - the own-model and own-program results have no `status`: a reply carrying `response_errcode`
//!   is finished; one without it is not finished yet. A non-zero `errcode` there may also mean
//!   "not finished" (undocumented), so it counts as pending a few times before it is a failure;
//! - transient SDK failures (busy, timeout, invoke errors) are retried until the deadline; an
//!   `Invoke` return no retry can change (−10001, −10002, −10003: [`SdkError::is_permanent`]) ends
//!   the wait at once with that error.

use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use crate::error::{AppError, ErrorCode};
use crate::sdk::SdkError;
use crate::sdk::api::{JobIdRequest, Sdk, SdkRequest, TaskCreated, TaskResult};

/// Longest interval between two polls.
pub const MAX_POLL_INTERVAL: Duration = Duration::from_secs(5);
/// Consecutive non-zero `errcode` polls of a status-less result before it counts as failed.
const STATUSLESS_ERRCODE_POLLS: u32 = 3;
/// `errcode` of a model task whose expanded input is too long (sdk-model-apis.md §1.3).
pub const ERR_INPUT_TOO_LONG: i64 = 790_040;

/// A model API pair: the task creator and its result reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelApi {
    /// `create_*`.
    pub create: &'static str,
    /// `get_*`.
    pub result: &'static str,
    /// Whether the result carries `status` (false for the own model and own program).
    pub has_status: bool,
}

/// Sentiment analysis (sdk-model-apis.md §2).
pub const SENTIMENT: ModelApi =
    ModelApi { create: "create_sentiment_task", result: "get_sentiment_result", has_status: true };
/// Conversation summary (§3).
pub const SUMMARY: ModelApi =
    ModelApi { create: "create_summary_task", result: "get_summary_result", has_status: true };
/// Customer tags (§4).
pub const CUSTOMER_TAG: ModelApi =
    ModelApi { create: "create_customer_tag_task", result: "get_customer_tag_result", has_status: true };
/// Reply recommendation (§5).
pub const RECOMMEND_DIALOG: ModelApi =
    ModelApi { create: "create_recommend_dialog_task", result: "get_recommend_dialog_result", has_status: true };
/// Own uploaded model (§7).
pub const OWN_MODEL: ModelApi =
    ModelApi { create: "create_model_task", result: "get_model_task_result", has_status: false };
/// Own uploaded program (§8).
pub const OWN_PROGRAM: ModelApi =
    ModelApi { create: "create_program_task", result: "get_program_task_result", has_status: false };

/// How to poll.
#[derive(Debug, Clone, Copy)]
pub struct PollPolicy {
    /// The first wait (doubled after every poll, up to [`MAX_POLL_INTERVAL`]).
    pub first_interval: Duration,
    /// When to stop.
    pub deadline: Instant,
}

/// How a task ended.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskOutcome {
    /// Finished; the full result reply.
    Done(TaskResult),
    /// Failed with this errcode (the task's, or [`ErrorCode::ModelTaskFailed`]); the last reply.
    Failed {
        /// The errcode that explains the failure.
        errcode: i64,
        /// The last reply, if it had `errcode` 0 (a `status` 2 or a non-zero `response_errcode`).
        response: Option<TaskResult>,
    },
    /// Not finished by the deadline.
    TimedOut,
}

/// What one result reply says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Not finished.
    Pending,
    /// Finished.
    Done,
    /// Failed with this errcode.
    Failed(i64),
    /// A non-zero `errcode` from a status-less result: maybe "not finished", maybe a failure.
    Unclear(i64),
}

/// Classifies one result reply of `api` that had `errcode` 0. A result without `status` (the own
/// model and program) is read by `response_errcode` only: whatever `status` it carries is ignored
/// (docs/protocol.md "Results without `status`").
pub fn classify(api: ModelApi, reply: &TaskResult) -> Progress {
    if api.has_status {
        return match reply.status {
            Some(1) => Progress::Done,
            Some(2) => Progress::Failed(failure_code(reply)),
            // 0, an undocumented value, or no status at all: keep waiting until the deadline.
            _ => Progress::Pending,
        };
    }
    match reply.fields.get("response_errcode").and_then(Value::as_i64) {
        Some(0) => Progress::Done,
        Some(code) => Progress::Failed(code),
        None => Progress::Pending,
    }
}

/// Classifies a result reply of `api` with a non-zero `errcode`: a failure of a WeCom-built model;
/// for a status-less result, maybe "not finished", maybe a failure.
pub fn classify_errcode(api: ModelApi, errcode: i64) -> Progress {
    if api.has_status { Progress::Failed(errcode) } else { Progress::Unclear(errcode) }
}

/// The errcode to report for a failed (`status` 2) result.
fn failure_code(reply: &TaskResult) -> i64 {
    ["response_errcode", "result_errcode"]
        .iter()
        .filter_map(|k| reply.fields.get(*k).and_then(Value::as_i64))
        .find(|c| *c != 0)
        .unwrap_or(ErrorCode::ModelTaskFailed.code())
}

/// Creates a task with `api.create`: `request` is its typed request (e.g. a
/// [`MsgListTaskRequest`](crate::sdk::api::MsgListTaskRequest)), checked against its limits first.
pub async fn create<R: SdkRequest>(sdk: &Sdk, api: ModelApi, request: &R) -> Result<TaskCreated, AppError> {
    let created: TaskCreated = sdk.call(api.create, request).await?;
    if created.jobid.is_empty() {
        return Err(SdkError::BadResponse.into());
    }
    Ok(created)
}

/// Polls `jobid` until it is done, failed or past the deadline.
pub async fn wait(sdk: &Sdk, api: ModelApi, jobid: &str, policy: PollPolicy) -> Result<TaskOutcome, AppError> {
    let request = JobIdRequest { jobid: jobid.to_owned() };
    let mut interval = policy.first_interval;
    let mut unclear = 0u32;
    loop {
        match sdk.call::<_, TaskResult>(api.result, &request).await {
            Ok(reply) => match classify(api, &reply) {
                Progress::Done => return Ok(TaskOutcome::Done(reply)),
                Progress::Failed(errcode) => return Ok(TaskOutcome::Failed { errcode, response: Some(reply) }),
                Progress::Pending | Progress::Unclear(_) => unclear = 0,
            },
            Err(SdkError::Errcode { errcode, .. }) => match classify_errcode(api, errcode) {
                Progress::Unclear(errcode) => {
                    unclear += 1;
                    if unclear >= STATUSLESS_ERRCODE_POLLS {
                        return Ok(TaskOutcome::Failed { errcode, response: None });
                    }
                }
                _ => return Ok(TaskOutcome::Failed { errcode, response: None }),
            },
            Err(e) if e.is_permanent() => {
                tracing::warn!(error = %e, api = api.result, "polling stopped: the SDK failure is permanent");
                return Err(e.into());
            }
            Err(e @ (SdkError::Busy | SdkError::Timeout | SdkError::Invoke { .. })) => {
                tracing::debug!(error = %e, api = api.result, "polling failed; will poll again");
            }
            Err(e) => return Err(e.into()),
        }
        let now = Instant::now();
        if now >= policy.deadline {
            return Ok(TaskOutcome::TimedOut);
        }
        tokio::time::sleep(interval.min(policy.deadline - now)).await;
        interval = (interval * 2).min(MAX_POLL_INTERVAL);
    }
}

/// Creates a task and waits for it.
pub async fn run<R: SdkRequest>(
    sdk: &Sdk,
    api: ModelApi,
    request: &R,
    policy: PollPolicy,
) -> Result<(TaskCreated, TaskOutcome), AppError> {
    let created = create(sdk, api, request).await?;
    let outcome = wait(sdk, api, &created.jobid, policy).await?;
    Ok((created, outcome))
}

impl TaskOutcome {
    /// The result reply of a finished task, or the error that explains why there is none.
    pub fn into_done(self) -> Result<TaskResult, AppError> {
        match self {
            Self::Done(v) => Ok(v),
            Self::Failed { .. } => Err(AppError::Code(ErrorCode::ModelTaskFailed)),
            Self::TimedOut => Err(AppError::Code(ErrorCode::ModelTaskTimeout)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use async_trait::async_trait;
    use serde_json::json;

    use super::*;
    use crate::sdk::api::Empty;
    use crate::sdk::{CallContext, DecodeError, Decoded, ZoneSdk};

    /// Answers each `get_*` call with the next scripted reply (the last one repeats) and records calls.
    struct Scripted {
        replies: Mutex<Vec<Result<Value, SdkError>>>,
        calls: Mutex<Vec<(String, String, Instant)>>,
    }

    impl Scripted {
        fn new(replies: Vec<Result<Value, SdkError>>) -> Arc<Self> {
            Arc::new(Self { replies: Mutex::new(replies), calls: Mutex::new(Vec::new()) })
        }

        fn polls(&self) -> Vec<Instant> {
            self.calls.lock().unwrap().iter().filter(|(api, ..)| api.starts_with("get_")).map(|(.., t)| *t).collect()
        }

        /// The typed client's handle on this backend.
        fn sdk(self: &Arc<Self>) -> Sdk {
            Sdk::new(self.clone(), CallContext::default())
        }
    }

    /// A result reply as the typed client reads it.
    fn result(reply: Value) -> TaskResult {
        serde_json::from_value(reply).unwrap()
    }

    #[async_trait]
    impl ZoneSdk for Scripted {
        fn decode(&self, _: &str, _: &[(String, String)], _: &[u8]) -> Result<Decoded, DecodeError> {
            Err(DecodeError { code: -1, reply: None })
        }
        async fn invoke(&self, _: &CallContext, api: &str, request: &str) -> Result<String, SdkError> {
            self.calls.lock().unwrap().push((api.to_owned(), request.to_owned(), Instant::now()));
            if api.starts_with("create_") {
                return Ok(json!({"errcode":0,"errmsg":"ok","jobid":"J1","fail_list":[]}).to_string());
            }
            let mut replies = self.replies.lock().unwrap();
            let next = if replies.len() > 1 { replies.remove(0) } else { replies[0].clone() };
            next.map(|v| v.to_string())
        }
    }

    fn policy(secs: u64) -> PollPolicy {
        PollPolicy { first_interval: Duration::from_millis(200), deadline: Instant::now() + Duration::from_secs(secs) }
    }

    fn pending() -> Result<Value, SdkError> {
        Ok(json!({"errcode":0,"errmsg":"ok","status":0}))
    }

    #[tokio::test(start_paused = true)]
    async fn a_task_is_polled_with_doubling_intervals_until_it_is_done() {
        let done = json!({"errcode":0,"errmsg":"ok","status":1,"response_data":"S"});
        let sdk = Scripted::new(vec![pending(), pending(), pending(), Ok(done.clone())]);
        let (created, outcome) = run(&sdk.sdk(), SUMMARY, &Empty {}, policy(60)).await.unwrap();
        assert_eq!(created.jobid, "J1");
        assert_eq!(outcome, TaskOutcome::Done(result(done)));
        let calls = sdk.calls.lock().unwrap().clone();
        assert_eq!((calls[1].0.as_str(), calls[1].1.as_str()), ("get_summary_result", r#"{"jobid":"J1"}"#));
        let polls = sdk.polls();
        let gaps: Vec<u128> = polls.windows(2).map(|w| (w[1] - w[0]).as_millis()).collect();
        assert_eq!(gaps, vec![200, 400, 800]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_task_that_never_finishes_times_out_at_the_deadline_without_spinning() {
        let sdk = Scripted::new(vec![pending()]);
        let start = Instant::now();
        let outcome = run(&sdk.sdk(), SENTIMENT, &Empty {}, policy(30)).await.unwrap();
        assert_eq!(outcome.1, TaskOutcome::TimedOut);
        assert_eq!(Instant::now() - start, Duration::from_secs(30));
        // 200+400+800+1600+3200 ms, then every 5 s: a handful of polls, not a busy loop.
        assert!(sdk.polls().len() <= 12, "{}", sdk.polls().len());
    }

    #[tokio::test(start_paused = true)]
    async fn status_two_is_a_failure_with_the_tasks_code() {
        let failed = json!({"errcode":0,"status":2,"response_errcode":790040});
        let sdk = Scripted::new(vec![Ok(failed)]);
        let (_, outcome) = run(&sdk.sdk(), SUMMARY, &Empty {}, policy(10)).await.unwrap();
        assert!(matches!(outcome, TaskOutcome::Failed { errcode: 790_040, .. }), "{outcome:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn transient_sdk_failures_are_polled_through() {
        let done = json!({"errcode":0,"status":1});
        let sdk = Scripted::new(vec![Err(SdkError::Busy), Err(SdkError::Timeout), Ok(done.clone())]);
        let (_, outcome) = run(&sdk.sdk(), SENTIMENT, &Empty {}, policy(10)).await.unwrap();
        assert_eq!(outcome, TaskOutcome::Done(result(done)));
    }

    #[tokio::test(start_paused = true)]
    async fn an_own_model_result_without_response_errcode_is_pending_and_with_it_is_done() {
        let done = json!({"errcode":0,"fail_list":[],"response_errcode":0,"response_data":"{}"});
        let sdk = Scripted::new(vec![Ok(json!({"errcode":0,"fail_list":[]})), Ok(done.clone())]);
        let (_, outcome) = run(&sdk.sdk(), OWN_MODEL, &Empty {}, policy(10)).await.unwrap();
        assert_eq!(outcome, TaskOutcome::Done(result(done)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_repeated_errcode_from_a_statusless_result_becomes_a_failure() {
        let sdk = Scripted::new(vec![Ok(json!({"errcode":12345,"errmsg":"x"}))]);
        let (_, outcome) = run(&sdk.sdk(), OWN_PROGRAM, &Empty {}, policy(60)).await.unwrap();
        assert!(matches!(outcome, TaskOutcome::Failed { errcode: 12345, .. }));
        assert_eq!(sdk.polls().len(), STATUSLESS_ERRCODE_POLLS as usize);
    }

    #[tokio::test(start_paused = true)]
    async fn a_permanent_invoke_return_stops_polling_at_once() {
        for ret in [-10001, -10003] {
            let sdk = Scripted::new(vec![pending(), Err(SdkError::Invoke { api: "get_summary_result".into(), ret })]);
            let start = Instant::now();
            let err = run(&sdk.sdk(), SUMMARY, &Empty {}, policy(60)).await.unwrap_err();
            assert!(matches!(err, AppError::Sdk(SdkError::Invoke { ret: r, .. }) if r == ret), "{ret}: {err:?}");
            assert_eq!(sdk.polls().len(), 2, "{ret}: no poll after the permanent failure");
            assert!(Instant::now() - start < Duration::from_secs(1), "{ret}: not waited out to the deadline");
        }
        // A transient one (-10006) is polled through.
        let done = json!({"errcode":0,"status":1});
        let transient = Err(SdkError::Invoke { api: "get_summary_result".into(), ret: -10006 });
        let sdk = Scripted::new(vec![transient, Ok(done.clone())]);
        let (_, outcome) = run(&sdk.sdk(), SUMMARY, &Empty {}, policy(10)).await.unwrap();
        assert_eq!(outcome, TaskOutcome::Done(result(done)));
    }

    #[test]
    fn own_model_and_program_results_are_read_without_status() {
        // These results have no `status` field (sdk-model-apis.md §7, §8): whatever one says is ignored.
        for api in [OWN_MODEL, OWN_PROGRAM] {
            assert_eq!(classify(api, &result(json!({"errcode":0,"status":1}))), Progress::Pending);
            assert_eq!(classify(api, &result(json!({"errcode":0,"status":0,"response_errcode":0}))), Progress::Done);
            assert_eq!(classify(api, &result(json!({"errcode":0,"status":2,"response_errcode":0}))), Progress::Done);
        }
    }

    #[test]
    fn classify_reads_status_and_response_errcode() {
        assert_eq!(classify(SUMMARY, &result(json!({"errcode":0,"status":0}))), Progress::Pending);
        assert_eq!(classify(SUMMARY, &result(json!({"errcode":0,"status":7}))), Progress::Pending);
        assert_eq!(classify(SUMMARY, &result(json!({"errcode":0,"status":1}))), Progress::Done);
        assert_eq!(classify(SUMMARY, &result(json!({"errcode":0,"status":2}))), Progress::Failed(900_201));
        assert_eq!(classify_errcode(SUMMARY, 301), Progress::Failed(301));
        assert_eq!(classify(OWN_MODEL, &result(json!({"errcode":0,"response_errcode":5}))), Progress::Failed(5));
        assert_eq!(classify_errcode(OWN_MODEL, 9), Progress::Unclear(9));
    }
}
