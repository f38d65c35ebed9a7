//! Faults on demand: `/local/faults` arms, per API name (an SDK API such as `sync_msg`, or an app
//! endpoint such as `sync_call_program`), a fault for its next N calls. Kinds: a given `errcode`
//! reply, a given `Invoke` return code (−10001…−10007, carried in `ww-invoke-ret`), a slow answer, an
//! oversized answer, an HTTP status, a connection dropped mid-response, or a reply lost on its way
//! back (the call is handled, then the connection drops).

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::req::{ApiError, Req};

/// What an armed fault does to one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// Reply `{"errcode":N,"errmsg":"fault injected"}` and change nothing.
    Errcode(i64),
    /// SDK only: reply with `ww-invoke-ret: N` and an empty message.
    InvokeRet(i32),
    /// Answer normally after D milliseconds.
    Slow(u64),
    /// Answer normally, padded with a `padding` field of N bytes.
    Oversized(usize),
    /// Answer with this HTTP status and a short plain body.
    HttpStatus(u16),
    /// Send the status line and headers, then drop the connection.
    Drop,
    /// Handle the call as usual (a program call reaches the program), then drop the connection
    /// instead of answering: the reply is lost on its way back.
    LoseReply,
}

impl FaultKind {
    /// Parses the control request
    /// `{"errcode"|"invoke_ret"|"delay_ms"|"oversized_bytes"|"http_status"|"drop"|"lose_reply"}`.
    pub fn parse(req: &Req) -> Result<Self, ApiError> {
        let kinds = ["errcode", "invoke_ret", "delay_ms", "oversized_bytes", "http_status", "drop", "lose_reply"];
        let given: Vec<&str> = kinds.iter().copied().filter(|k| req.raw(k).is_some()).collect();
        if given.len() != 1 {
            return Err(ApiError::invalid(
                "fault",
                "give exactly one of errcode, invoke_ret, delay_ms, oversized_bytes, http_status, drop, lose_reply",
            ));
        }
        Ok(match given[0] {
            "errcode" => Self::Errcode(req.int_opt("errcode")?.unwrap_or_default()),
            "invoke_ret" => Self::InvokeRet(req.int_in("invoke_ret", -10006, -10007, -10001)? as i32),
            "delay_ms" => Self::Slow(req.int_in("delay_ms", 0, 0, 120_000)? as u64),
            "oversized_bytes" => Self::Oversized(req.int_in("oversized_bytes", 0, 1, 256 * 1024 * 1024)? as usize),
            "http_status" => Self::HttpStatus(req.int_in("http_status", 500, 400, 599)? as u16),
            "lose_reply" => Self::LoseReply,
            _ => Self::Drop,
        })
    }
}

/// Armed faults by API name, consumed in order.
#[derive(Debug, Default)]
pub struct Faults(HashMap<String, VecDeque<(FaultKind, u32)>>);

impl Faults {
    /// Arms `kind` for the next `count` calls of `api`.
    pub fn arm(&mut self, api: &str, kind: FaultKind, count: u32) {
        if count > 0 {
            self.0.entry(api.to_owned()).or_default().push_back((kind, count));
        }
    }

    /// Consumes one call's fault for `api`, if any is armed.
    pub fn take(&mut self, api: &str) -> Option<FaultKind> {
        let queue = self.0.get_mut(api)?;
        let (kind, left) = queue.front_mut()?;
        let kind = *kind;
        *left -= 1;
        if *left == 0 {
            queue.pop_front();
        }
        Some(kind)
    }

    /// Disarms everything.
    pub fn clear(&mut self) {
        self.0.clear();
    }

    /// Calls still armed, by API.
    pub fn pending(&self) -> Value {
        let map: serde_json::Map<String, Value> = self
            .0
            .iter()
            .filter(|(_, q)| !q.is_empty())
            .map(|(api, q)| (api.clone(), Value::from(q.iter().map(|(_, n)| u64::from(*n)).sum::<u64>())))
            .collect();
        Value::Object(map)
    }
}

/// How a fault changes the answer of a call, once the handler has (or has not) run.
pub enum Applied {
    /// No fault; or a slow/oversized/lost-reply one whose effect is applied by the caller.
    Proceed {
        /// Bytes of padding to add to the reply.
        pad: usize,
        /// Handle the call, then answer with [`dropped`] instead of the reply.
        lose_reply: bool,
    },
    /// Answer with this reply object instead of running the handler.
    Reply(Value),
    /// Answer with this raw HTTP response.
    Raw(Response),
    /// SDK only: answer with this `Invoke` return code.
    InvokeRet(i32),
}

/// Applies the armed fault of `api` (waiting if it is a slow one).
pub async fn apply(fault: Option<FaultKind>) -> Applied {
    match fault {
        None => Applied::Proceed { pad: 0, lose_reply: false },
        Some(FaultKind::Slow(ms)) => {
            super::timer::sleep(Duration::from_millis(ms)).await;
            Applied::Proceed { pad: 0, lose_reply: false }
        }
        Some(FaultKind::Oversized(n)) => Applied::Proceed { pad: n, lose_reply: false },
        Some(FaultKind::LoseReply) => Applied::Proceed { pad: 0, lose_reply: true },
        Some(FaultKind::Errcode(code)) => Applied::Reply(ApiError::new(code, "fault injected").to_json()),
        Some(FaultKind::InvokeRet(ret)) => Applied::InvokeRet(ret),
        Some(FaultKind::HttpStatus(status)) => Applied::Raw(
            (
                StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                [("content-type", "application/json")],
                r#"{"error":"fault injected"}"#,
            )
                .into_response(),
        ),
        Some(FaultKind::Drop) => Applied::Raw(dropped()),
    }
}

/// Adds a `padding` string of `pad` bytes to a reply object.
pub fn pad_reply(mut reply: Value, pad: usize) -> Value {
    if pad > 0 {
        reply["padding"] = Value::String("x".repeat(pad));
    }
    reply
}

/// A 200 whose body fails after the headers, so the peer sees the connection drop.
pub fn dropped() -> Response {
    let stream = futures_util::stream::once(async {
        Err::<Bytes, std::io::Error>(std::io::Error::other("fault injected: connection dropped"))
    });
    Response::new(Body::from_stream(stream))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fault_applies_to_exactly_the_next_n_calls_in_arming_order() {
        let mut f = Faults::default();
        f.arm("sync_msg", FaultKind::Errcode(45009), 2);
        f.arm("sync_msg", FaultKind::Drop, 1);
        assert_eq!(f.take("sync_msg"), Some(FaultKind::Errcode(45009)));
        assert_eq!(f.take("other"), None);
        assert_eq!(f.take("sync_msg"), Some(FaultKind::Errcode(45009)));
        assert_eq!(f.take("sync_msg"), Some(FaultKind::Drop));
        assert_eq!(f.take("sync_msg"), None);
    }

    #[test]
    fn a_fault_request_names_exactly_one_kind_with_its_range() {
        let parse = |s: &str| FaultKind::parse(&Req::parse(s).unwrap());
        assert_eq!(parse(r#"{"invoke_ret":-10001}"#).unwrap(), FaultKind::InvokeRet(-10001));
        assert!(parse(r#"{"invoke_ret":-5}"#).is_err());
        assert!(parse(r#"{"errcode":1,"drop":true}"#).is_err());
        assert!(parse("{}").is_err());
        assert_eq!(parse(r#"{"drop":true}"#).unwrap(), FaultKind::Drop);
        assert_eq!(parse(r#"{"lose_reply":true}"#).unwrap(), FaultKind::LoseReply);
    }
}
