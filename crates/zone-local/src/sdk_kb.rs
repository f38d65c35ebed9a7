//! Knowledge sets (sdk-data-apis.md §6) and conversation exports (§7).
//!
//! Knowledge sets: ≤ 1000 per corp, ≤ 1000 documents per set, names 1–20 characters, documents with
//! a type (2 pdf, 4 xlsx, 5 doc, 6 docx, 101 web link), a name ≤ 200 bytes carrying the type's
//! extension, a `file_media_id` (≤ 1024 bytes) or, for links, an http(s) `web_url` (≤ 1024 bytes).
//!
//! Exports: a `code` from the display component (single use, 5 minutes; the local zone issues them
//! at `POST /local/export_code`) and a template `media_id` create a job (status 1 waiting); it is
//! running (2) once polled, and done (3) when `local_zone.export_finish_after_ms` has passed or when
//! `/local/events` raises `chat_archive_export_finished`; either way the event reaches the program.
//! A jobid is valid 24 hours; a `result_id` is issued only for `result_errcode` 0.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::Shared;
use super::events::finish_export;
use super::model::{Doc, ExportJob, KnowledgeBase};
use super::program;
use super::req::{ApiError, ApiResult, Req, check_chars};
use zone_crypto::wire::InvokeMessage;

/// Most knowledge sets per corp and documents per set.
const MAX_SETS: usize = 1000;
/// Validity of an export code.
const CODE_SECS: i64 = 300;
/// Validity of an export jobid.
const JOB_SECS: i64 = 86_400;

/// `knowledge_base_list` (and its former name `document_list`).
pub fn knowledge_base_list(shared: &Arc<Shared>, _msg: &InvokeMessage, _req: &Req) -> ApiResult {
    let data = shared.data();
    let list: Vec<Value> = data.kbs.values().map(|k| json!({"kb_id": k.kb_id, "kb_name": k.kb_name})).collect();
    Ok(json!({ "kb_info_list": list }))
}

/// Parses a `doc_list` of 1–1000 documents, numbering them from `first_id`.
fn parse_docs(req: &Req, first_id: u64) -> Result<Vec<Doc>, ApiError> {
    let list = req.array_req("doc_list", 1, MAX_SETS)?;
    let mut docs = Vec::with_capacity(list.len());
    for (i, v) in list.iter().enumerate() {
        let d = Req::of("doc_list", v)?;
        let name = d.str_req("doc_name", 200)?;
        let kind = d.int_opt("type")?.ok_or_else(|| ApiError::invalid("doc_list.type", "is required"))?;
        let ext = match kind {
            2 => Some(".pdf"),
            4 => Some(".xlsx"),
            5 => Some(".doc"),
            6 => Some(".docx"),
            101 => None,
            _ => return Err(ApiError::invalid("doc_list.type", "must be 2, 4, 5, 6 or 101")),
        };
        let text = match ext {
            Some(ext) => {
                if !name.to_ascii_lowercase().ends_with(ext) {
                    return Err(ApiError::invalid("doc_list.doc_name", "needs the extension of its type"));
                }
                d.str_req("file_media_id", 1024)?;
                format!("{name}（上传文件，本地模拟无正文）")
            }
            None => {
                let url = d.str_req("web_url", 1024)?;
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(ApiError::invalid("doc_list.web_url", "must be an http or https URL"));
                }
                format!("{name}（网页链接）")
            }
        };
        docs.push(Doc { docid: first_id + i as u64, doc_name: name.to_owned(), kind: kind as u32, text });
    }
    Ok(docs)
}

fn next_docid(kbs: &std::collections::BTreeMap<String, KnowledgeBase>) -> u64 {
    kbs.values().flat_map(|k| k.docs.iter().map(|d| d.docid)).max().unwrap_or(0) + 1
}

fn doc_ids(docs: &[Doc]) -> Vec<Value> {
    docs.iter().map(|d| json!({"docid": d.docid, "doc_name": d.doc_name})).collect()
}

/// `knowledge_base_create`: `kb_name` + `doc_list`.
pub fn knowledge_base_create(shared: &Arc<Shared>, _msg: &InvokeMessage, req: &Req) -> ApiResult {
    let kb_name = req.chars("kb_name", 1, 20)?.to_owned();
    let mut data = shared.data();
    if data.kbs.len() >= MAX_SETS {
        return Err(ApiError::invalid("kb_name", "the corp already has 1000 knowledge sets"));
    }
    let docs = parse_docs(req, next_docid(&data.kbs))?;
    let kb_id = data.mint("kb");
    let reply = json!({ "kb_id": kb_id, "doc_list": doc_ids(&docs) });
    data.kbs.insert(kb_id.clone(), KnowledgeBase { kb_id, kb_name, docs });
    Ok(reply)
}

fn kb_id(req: &Req) -> Result<&str, ApiError> {
    req.str_req("kb_id", 64)
}

fn unknown_kb() -> ApiError {
    ApiError::invalid("kb_id", "no such knowledge set")
}

/// `knowledge_base_detail`.
pub fn knowledge_base_detail(shared: &Arc<Shared>, _msg: &InvokeMessage, req: &Req) -> ApiResult {
    let data = shared.data();
    let kb = data.kbs.get(kb_id(req)?).ok_or_else(unknown_kb)?;
    let docs: Vec<Value> =
        kb.docs.iter().map(|d| json!({"docid": d.docid, "doc_name": d.doc_name, "type": d.kind})).collect();
    Ok(json!({ "kb_id": kb.kb_id, "kb_name": kb.kb_name, "doc_list": docs }))
}

/// `knowledge_base_add_doc`: at most 1000 documents per set in total.
pub fn knowledge_base_add_doc(shared: &Arc<Shared>, _msg: &InvokeMessage, req: &Req) -> ApiResult {
    let mut data = shared.data();
    let first = next_docid(&data.kbs);
    let kb = data.kbs.get_mut(kb_id(req)?).ok_or_else(unknown_kb)?;
    let docs = parse_docs(req, first)?;
    if kb.docs.len() + docs.len() > MAX_SETS {
        return Err(ApiError::invalid("doc_list", "a knowledge set holds at most 1000 documents"));
    }
    let reply = json!({ "doc_list": doc_ids(&docs) });
    kb.docs.extend(docs);
    Ok(reply)
}

/// `knowledge_base_remove_doc`: `docid_list` of 1–1000 ids of the set; all or nothing.
pub fn knowledge_base_remove_doc(shared: &Arc<Shared>, _msg: &InvokeMessage, req: &Req) -> ApiResult {
    let ids = req.array_req("docid_list", 1, MAX_SETS)?;
    let ids: Vec<u64> = ids
        .iter()
        .map(|v| v.as_u64().ok_or_else(|| ApiError::invalid("docid_list", "entries must be unsigned integers")))
        .collect::<Result<_, _>>()?;
    let mut data = shared.data();
    let kb = data.kbs.get_mut(kb_id(req)?).ok_or_else(unknown_kb)?;
    if ids.iter().any(|id| !kb.docs.iter().any(|d| d.docid == *id)) {
        return Err(ApiError::invalid("docid_list", "a docid is not in this knowledge set"));
    }
    kb.docs.retain(|d| !ids.contains(&d.docid));
    Ok(json!({}))
}

/// `knowledge_base_modify_name`.
pub fn knowledge_base_modify_name(shared: &Arc<Shared>, _msg: &InvokeMessage, req: &Req) -> ApiResult {
    let name = req.chars("kb_name", 1, 20)?.to_owned();
    let mut data = shared.data();
    data.kbs.get_mut(kb_id(req)?).ok_or_else(unknown_kb)?.kb_name = name;
    Ok(json!({}))
}

/// `knowledge_base_delete`.
pub fn knowledge_base_delete(shared: &Arc<Shared>, _msg: &InvokeMessage, req: &Req) -> ApiResult {
    let mut data = shared.data();
    data.kbs.remove(kb_id(req)?).ok_or_else(unknown_kb)?;
    Ok(json!({}))
}

/// Issues a single-use export code valid 5 minutes (what the display component's export button yields).
pub fn issue_export_code(shared: &Shared) -> String {
    let now = shared.clock.now();
    let mut data = shared.data();
    data.export_codes.retain(|_, exp| *exp > now);
    let code = data.mint("CODE");
    data.export_codes.insert(code.clone(), now + CODE_SECS);
    code
}

/// `create_chatdata_export_job` (§7.3).
pub fn create_chatdata_export_job(shared: &Arc<Shared>, _msg: &InvokeMessage, req: &Req) -> ApiResult {
    let code = req.str_req("code", 128)?;
    req.str_req("media_id", 1024)?;
    let now = shared.clock.now();
    let mut data = shared.data();
    match data.export_codes.get(code) {
        Some(exp) if *exp > now => {}
        _ => return Err(ApiError::invalid("code", "unknown, used or expired (a code is single use, 5 minutes)")),
    }
    data.export_codes.remove(code);
    let jobid = data.mint("EXPJOB");
    check_chars("jobid", &jobid, 1, 64)?;
    data.exports.insert(jobid.clone(), ExportJob { jobid: jobid.clone(), created: now, status: 1, result: None });
    drop(data);
    let delay = shared.cfg.export_finish_after_ms;
    if delay > 0 {
        let (shared, jobid) = (shared.clone(), jobid.clone());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(delay)).await;
            finish_and_announce(&shared, &jobid).await;
        });
    }
    Ok(json!({ "jobid": jobid }))
}

/// Finishes an export successfully (if not already done) and raises `chat_archive_export_finished`.
async fn finish_and_announce(shared: &Shared, jobid: &str) {
    {
        let mut data = shared.data();
        let result_id = data.mint("RID");
        match data.exports.get_mut(jobid) {
            Some(job) if job.status != 3 => finish_export(job, 0, result_id),
            _ => return,
        }
    }
    let _ = program::raise_event(
        shared,
        "chat_archive_export_finished",
        "chat_archive_export_finished",
        json!({"jobid": jobid}),
    )
    .await;
}

/// `get_chatdata_export_job_status` (§7.4).
pub fn get_chatdata_export_job_status(shared: &Arc<Shared>, _msg: &InvokeMessage, req: &Req) -> ApiResult {
    let jobid = req.str_req("jobid", 64)?;
    let now = shared.clock.now();
    let mut data = shared.data();
    let job = data
        .exports
        .get_mut(jobid)
        .filter(|j| j.created + JOB_SECS > now)
        .ok_or_else(|| ApiError::invalid("jobid", "unknown or expired (a jobid is valid 24 hours)"))?;
    if job.status == 1 {
        job.status = 2;
        return Ok(json!({ "status": 1 }));
    }
    match &job.result {
        Some((code, msg, rid)) if *code == 0 => {
            Ok(json!({"status": 3, "result_errcode": 0, "result_errmsg": msg, "result_id": rid}))
        }
        Some((code, msg, _)) => Ok(json!({"status": 3, "result_errcode": code, "result_errmsg": msg})),
        None => Ok(json!({ "status": job.status })),
    }
}
