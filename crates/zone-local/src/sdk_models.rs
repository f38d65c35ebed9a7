//! Model and analysis tasks (sdk-model-apis.md). Every `create_*` validates its request (`msg_list`
//! ≤ 1000 entries of `{msgid, encrypt_info.secret_key}`; duplicates after the first go to the create
//! reply's `fail_list` with 710601) and returns a `jobid`.
//!
//! WeCom-built models (sentiment, summary, customer tags, reply recommendation, general model, spam)
//! compute their result at creation, deterministically from the message content ([`analysis`]), and
//! reveal it on a later poll: `status` 0 for the first `local_zone.ready_after_polls` polls, then 1
//! (done) or 2 (failed with 790040 when the expanded input passes 30,000 characters). Messages that
//! are unknown, outside the window or scope, of a non-text type, or sent with the wrong `secret_key`
//! are listed per message in the result's `fail_list` with 710601.
//!
//! The own model (`create_model_task`, alias `create_private_task`) and own programs
//! (`create_program_task`) are played by the program: the zone substitutes the documented
//! placeholders into the ability's input protocol (from `[[local_zone.abilities]]`, or a default
//! template), sends it as an async call (`is_async`, a fresh `job_info`; the program must answer
//! within 5 s), and `get_*_task_result` returns what the program reports through
//! `program_async_job_call_back`.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::analysis::{self, Usable};
use super::app_api::{job_outcome, spawn_job_delivery};
use super::model::{JobKind, KnowledgeBase, ModelTask, ProgramJob, TagGroup};
use super::program::ProgramCall;
use super::req::{ApiError, ApiResult, Req};
use super::{Shared, analysis::chat_lines};
use zone_crypto::wire::InvokeMessage;

/// Per-message failure code of the model APIs.
pub const MSG_FAILED: i64 = 710_601;
/// Input over the model limit after expansion.
pub const INPUT_TOO_LONG: i64 = 790_040;
/// The model limit, in UTF-8 characters.
const MODEL_LIMIT: usize = 30_000;
/// How long an own model or program has to answer the task's HTTP request.
const OWN_TASK_DEADLINE: Duration = Duration::from_secs(5);

/// A parsed `msg_list`: the first occurrence of each msgid, and the duplicates' fail items.
struct MsgList {
    kept: Vec<(String, String)>,
    duplicates: Vec<Value>,
}

fn parse_msg_list(req: &Req, required: bool) -> Result<MsgList, ApiError> {
    let items = match req.array_opt("msg_list")? {
        Some(items) if items.len() > 1000 => return Err(ApiError::invalid("msg_list", "at most 1000 entries")),
        Some(items) if !items.is_empty() || !required => items.clone(),
        None if !required => Vec::new(),
        _ => return Err(ApiError::invalid("msg_list", "is required")),
    };
    let mut list = MsgList { kept: Vec::new(), duplicates: Vec::new() };
    for item in &items {
        let r = Req::of("msg_list", item)?;
        let msgid = r.str_req("msgid", 256)?.to_owned();
        let info =
            r.object_opt("encrypt_info")?.ok_or_else(|| ApiError::invalid("msg_list.encrypt_info", "is required"))?;
        let key = info.str_req("secret_key", 1024)?.to_owned();
        if list.kept.iter().any(|(m, _)| *m == msgid) {
            list.duplicates.push(json!({"errcode": MSG_FAILED, "errmsg": "duplicate msgid", "msgid": msgid,
                                        "encrypt_info": {"secret_key": key}}));
        } else {
            list.kept.push((msgid, key));
        }
    }
    Ok(list)
}

/// Resolves each kept message, in order: usable, or its fail item.
fn resolve(shared: &Shared, kept: &[(String, String)]) -> Vec<Result<Usable, Value>> {
    let now = shared.clock.now();
    let data = shared.data();
    kept.iter()
        .map(|(msgid, key)| {
            let fail = |why: &str| json!({"errcode": MSG_FAILED, "errmsg": why, "msgid": msgid});
            let m = data.message(msgid).filter(|m| data.visible(m, now)).ok_or_else(|| fail("msgid not found"))?;
            if !zone_crypto::cipher::ct_eq(m.secret_key.as_bytes(), key.as_bytes()) {
                return Err(fail("secret_key does not match the message"));
            }
            if !m.is_analysable() {
                return Err(fail("not a text or voice message"));
            }
            Ok(Usable {
                msgid: m.msgid.clone(),
                content: m.content.clone(),
                sender: data.name_of(&m.sender),
                staff: m.sender.kind == 1,
            })
        })
        .collect()
}

fn split(resolved: Vec<Result<Usable, Value>>) -> (Vec<Usable>, Vec<Value>) {
    let (mut ok, mut failed) = (Vec::new(), Vec::new());
    for r in resolved {
        match r {
            Ok(u) => ok.push(u),
            Err(f) => failed.push(f),
        }
    }
    (ok, failed)
}

/// Stores a WeCom-built model task and answers the create call.
fn create(
    shared: &Shared,
    family: &'static str,
    outcome: Result<Value, (i64, String)>,
    fails: Vec<Value>,
    list: MsgList,
    extra: Value,
) -> ApiResult {
    let mut data = shared.data();
    let jobid = data.mint("JOB");
    data.model_tasks
        .insert(jobid.clone(), ModelTask { family: family.to_owned(), polls: 0, outcome, fail_list: fails });
    let mut reply = json!({ "jobid": jobid, "fail_list": list.duplicates });
    if let Value::Object(extra) = extra {
        reply.as_object_mut().expect("an object").extend(extra);
    }
    Ok(reply)
}

fn too_long(chars: usize) -> Option<(i64, String)> {
    (chars > MODEL_LIMIT).then(|| (INPUT_TOO_LONG, "input exceeds the model limit of 30000 characters".to_owned()))
}

/// Per-message results (sentiment, spam): failed items carry no result field.
fn per_message(shared: &Arc<Shared>, req: &Req, family: &'static str, field: &str, f: fn(&str) -> i64) -> ApiResult {
    let list = parse_msg_list(req, true)?;
    let resolved = resolve(shared, &list.kept);
    let results: Vec<Value> = resolved
        .iter()
        .map(|r| match r {
            Ok(u) => json!({"errcode": 0, "errmsg": "ok", "msgid": u.msgid, field: f(&u.content)}),
            Err(fail) => fail.clone(),
        })
        .collect();
    let fails = resolved.into_iter().filter_map(Result::err).collect();
    create(shared, family, Ok(json!({ "analyze_result_list": results })), fails, list, json!({}))
}

/// `create_sentiment_task` (§2).
pub fn create_sentiment_task(shared: &Arc<Shared>, _msg: &InvokeMessage, req: &Req) -> ApiResult {
    per_message(shared, req, "sentiment", "sentiment_result", analysis::sentiment)
}

/// `create_spam_task` (§9).
pub fn create_spam_task(shared: &Arc<Shared>, _msg: &InvokeMessage, req: &Req) -> ApiResult {
    per_message(shared, req, "spam", "spam_result", analysis::spam)
}

/// `create_summary_task` (§3): one summary of the batch; text beyond 30,000 characters is ignored.
pub fn create_summary_task(shared: &Arc<Shared>, _msg: &InvokeMessage, req: &Req) -> ApiResult {
    let list = parse_msg_list(req, true)?;
    let (usable, fails) = split(resolve(shared, &list.kept));
    let summary = analysis::summary(&usable, MODEL_LIMIT);
    create(shared, "summary", Ok(json!({ "response_data": summary })), fails, list, json!({}))
}

/// The tag groups named by `tag_group_list` (each `{group_id}`), and the unknown ids.
fn tag_groups<'a>(
    data: &'a [TagGroup],
    req: &Req,
    required: bool,
) -> Result<(Vec<&'a TagGroup>, Vec<String>), ApiError> {
    let items = match req.array_opt("tag_group_list")? {
        Some(items) if !items.is_empty() => items,
        _ if required => return Err(ApiError::invalid("tag_group_list", "is required")),
        _ => return Ok((vec![], vec![])),
    };
    let (mut known, mut unknown) = (Vec::new(), Vec::new());
    for item in items {
        let id = Req::of("tag_group_list", item)?.str_req("group_id", 128)?.to_owned();
        match data.iter().find(|g| g.group_id == id) {
            Some(g) => known.push(g),
            None => unknown.push(id),
        }
    }
    Ok((known, unknown))
}

/// `create_customer_tag_task` (§4): unknown group ids come back in `fail_tag_group_id_list`.
pub fn create_customer_tag_task(shared: &Arc<Shared>, _msg: &InvokeMessage, req: &Req) -> ApiResult {
    req.str_max("model_id", 128)?;
    let list = parse_msg_list(req, true)?;
    let (usable, fails) = split(resolve(shared, &list.kept));
    let all_groups = shared.data().tag_groups.clone();
    let (groups, unknown) = tag_groups(&all_groups, req, true)?;
    let size = chat_lines(&usable, true).chars().count() + analysis::tag_json(&groups).chars().count();
    let outcome = match too_long(size) {
        Some(e) => Err(e),
        None => {
            let tags: Vec<Value> = analysis::tags(&groups, &usable)
                .into_iter()
                .map(|(g, t)| json!({"group_id": g, "tag_id": t}))
                .collect();
            Ok(json!({ "tag_result_list": tags }))
        }
    };
    create(shared, "customer_tag", outcome, fails, list, json!({ "fail_tag_group_id_list": unknown }))
}

fn knowledge_base(shared: &Shared, req: &Req, required: bool) -> Result<Option<KnowledgeBase>, ApiError> {
    let id = if required { Some(req.str_req("kb_id", 64)?) } else { req.str_max("kb_id", 64)? };
    id.map(|id| shared.data().kbs.get(id).cloned().ok_or_else(|| ApiError::invalid("kb_id", "no such knowledge set")))
        .transpose()
}

/// `create_recommend_dialog_task` (§5): `kb_id` is required.
pub fn create_recommend_dialog_task(shared: &Arc<Shared>, _msg: &InvokeMessage, req: &Req) -> ApiResult {
    let kb = knowledge_base(shared, req, true)?.expect("required");
    let list = parse_msg_list(req, true)?;
    let (usable, fails) = split(resolve(shared, &list.kept));
    let size = chat_lines(&usable, true).chars().count() + analysis::knowledge(Some(&kb)).chars().count();
    let outcome = too_long(size).map_or_else(|| Ok(json!({ "response_data": analysis::recommend(&kb, &usable) })), Err);
    create(shared, "recommend_dialog", outcome, fails, list, json!({}))
}

/// `create_ww_model_task` (§6): `ability_id` required; `var_args` ≤ 50.
pub fn create_ww_model_task(shared: &Arc<Shared>, _msg: &InvokeMessage, req: &Req) -> ApiResult {
    let ability_id = req.str_req("ability_id", 128)?.to_owned();
    let kb = knowledge_base(shared, req, false)?;
    let retrieval = req.str_max("kb_retrieval_words", 1024)?.unwrap_or_default().to_owned();
    req.str_max("model_id", 128)?;
    req.bool_opt("need_think_result")?;
    let mut var_args = Vec::new();
    if let Some(items) = req.array_opt("var_args")? {
        if items.len() > 50 {
            return Err(ApiError::invalid("var_args", "at most 50 entries"));
        }
        for item in items {
            let r = Req::of("var_args", item)?;
            var_args.push((r.str_req("name", 128)?.to_owned(), r.str_opt("value")?.unwrap_or_default().to_owned()));
        }
    }
    let list = parse_msg_list(req, false)?;
    let (usable, fails) = split(resolve(shared, &list.kept));
    let all_groups = shared.data().tag_groups.clone();
    let (groups, _) = tag_groups(&all_groups, req, false)?;
    let size = chat_lines(&usable, true).chars().count()
        + analysis::knowledge(kb.as_ref()).chars().count()
        + analysis::tag_json(&groups).chars().count()
        + var_args.iter().map(|(_, v)| v.chars().count()).sum::<usize>();
    let outcome = too_long(size).map_or_else(
        || Ok(json!({ "response_data": analysis::general(&ability_id, kb.as_ref(), &retrieval, &var_args, &usable) })),
        Err,
    );
    create(shared, "ww_model", outcome, fails, list, json!({}))
}

/// `get_<family>_result` of the WeCom-built models.
pub fn get_result(shared: &Arc<Shared>, msg: &InvokeMessage, req: &Req) -> ApiResult {
    let family = msg.api.strip_prefix("get_").and_then(|s| s.strip_suffix("_result")).unwrap_or_default();
    let jobid = req.str_req("jobid", 128)?;
    let ready_after = shared.cfg.ready_after_polls;
    let mut data = shared.data();
    let task = data
        .model_tasks
        .get_mut(jobid)
        .filter(|t| t.family == family)
        .ok_or_else(|| ApiError::invalid("jobid", "no such job"))?;
    if task.polls < ready_after {
        task.polls += 1;
        return Ok(json!({ "status": 0, "fail_list": [] }));
    }
    let mut reply = match &task.outcome {
        Ok(payload) => {
            let mut r = json!({ "status": 1 });
            r.as_object_mut().expect("an object").extend(payload.as_object().cloned().unwrap_or_default());
            r
        }
        Err((code, why)) => json!({ "errcode": code, "errmsg": why, "status": 2 }),
    };
    reply["fail_list"] = Value::Array(task.fail_list.clone());
    Ok(reply)
}

/// `create_model_task` / `create_private_task` (§7): the own model, played by the program.
pub fn create_model_task(shared: &Arc<Shared>, _msg: &InvokeMessage, req: &Req) -> ApiResult {
    let model_id = req.str_req("model_id", 128)?;
    if model_id != shared.cfg.own_model_id {
        return Err(ApiError::invalid("model_id", "no such own model"));
    }
    req.str_max("service_kb_id", 64)?;
    let kb = knowledge_base(shared, req, false)?;
    let all_groups = shared.data().tag_groups.clone();
    let (groups, _) = tag_groups(&all_groups, req, false)?;
    let default = r#"{"chat":"{chat}","chatcontent":"{chatcontent}","knowledge":"{knowledge}","tagjson":"{tagjson}"}"#;
    own_task(shared, req, JobKind::OwnModel, default, |usable| {
        vec![
            ("chat", chat_lines(usable, false)),
            ("chatcontent", analysis::chat_content(usable)),
            ("knowledge", analysis::knowledge(kb.as_ref())),
            ("tagjson", analysis::tag_json(&groups)),
        ]
    })
}

/// `create_program_task` (§8): an own program (this program) with `{chat}` and `{chatcontent}` only.
pub fn create_program_task(shared: &Arc<Shared>, _msg: &InvokeMessage, req: &Req) -> ApiResult {
    if req.str_req("program_id", 64)? != shared.cfg.program_id {
        return Err(ApiError::invalid("program_id", "no such program linked to the app"));
    }
    own_task(shared, req, JobKind::OwnProgram, r#"{"chat":"{chat}","chatcontent":"{chatcontent}"}"#, |usable| {
        vec![("chat", chat_lines(usable, false)), ("chatcontent", analysis::chat_content(usable))]
    })
}

fn own_task(
    shared: &Arc<Shared>,
    req: &Req,
    kind: JobKind,
    default_template: &str,
    values: impl FnOnce(&[Usable]) -> Vec<(&'static str, String)>,
) -> ApiResult {
    let ability_id = req.str_req("ability_id", 128)?.to_owned();
    if let Some(debug) = req.object_opt("debug_info")? {
        debug.str_opt("chat")?.ok_or_else(|| ApiError::invalid("debug_info.chat", "is required"))?;
        debug.str_opt("chat_content")?.ok_or_else(|| ApiError::invalid("debug_info.chat_content", "is required"))?;
    }
    let escape_type = req.int_in("escape_type", 0, 0, 1)?;
    let list = parse_msg_list(req, true)?;
    let (usable, fails) = split(resolve(shared, &list.kept));
    let template = shared
        .cfg
        .abilities
        .iter()
        .find(|a| a.id == ability_id)
        .and_then(|a| a.input_protocol.clone())
        .unwrap_or_else(|| default_template.to_owned());
    let input = analysis::substitute(&template, &values(&usable), escape_type);
    let now = shared.clock.now();
    let (jobid, job_info) = {
        let mut data = shared.data();
        let (jobid, job_info) = (data.mint("JOB"), data.mint("JI"));
        data.add_program_job(ProgramJob {
            kind,
            jobid: jobid.clone(),
            job_info: job_info.clone(),
            ability_id: ability_id.clone(),
            created: now,
            report: None,
            delivery_error: None,
            ack_errcode: None,
            pending_delivery: None,
            protocol_mismatch: false,
            fail_list: fails,
        });
        (jobid, job_info)
    };
    let call = ProgramCall {
        ability_id,
        is_async: shared.cfg.task_calls_async,
        job_info,
        data: input,
        origin: "program_task",
        title: if kind == JobKind::OwnProgram { "create_program_task" } else { "create_model_task" }.to_owned(),
        jobid: jobid.clone(),
        ..ProgramCall::default()
    };
    spawn_job_delivery(shared.clone(), jobid.clone(), call, OWN_TASK_DEADLINE);
    Ok(json!({ "jobid": jobid, "fail_list": list.duplicates }))
}

/// `get_model_task_result` / `get_private_task_result` / `get_program_task_result`: no `status`
/// (sdk-model-apis.md §7, §8); `fail_list` always, `response_errcode` / `response_data` once the
/// program has reported (while it has not: neither, see the README).
pub fn get_task_result(shared: &Arc<Shared>, msg: &InvokeMessage, req: &Req) -> ApiResult {
    let kind = if msg.api == "get_program_task_result" { JobKind::OwnProgram } else { JobKind::OwnModel };
    let jobid = req.str_req("jobid", 128)?;
    let data = shared.data();
    let job = data
        .program_jobs
        .get(jobid)
        .filter(|j| j.kind == kind)
        .ok_or_else(|| ApiError::invalid("jobid", "no such job"))?;
    let mut reply = job_outcome(job)?;
    reply["fail_list"] = Value::Array(job.fail_list.clone());
    Ok(reply)
}
