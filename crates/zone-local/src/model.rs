//! The local zone's world: one corp's staff, customers, chats, messages (with their content, which
//! never leaves the zone in clear), consent, keyword rules and hits, knowledge sets, tag groups,
//! and the lifecycle records of tokens, notify ids, jobs and tasks. Everything lives in one
//! [`ZoneData`] behind a mutex that is never held across an `await`.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, Ordering};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use zone_crypto::clock::{Clock, SystemClock};

/// Retention of pullable messages: the last 5 days (sdk-data-apis.md §1.4).
pub const RETENTION_SECS: i64 = 5 * 86_400;
/// Validity of event tokens and notify ids: 10 minutes.
pub const TEN_MINUTES: i64 = 600;

/// The zone's logical clock: the system clock plus an offset that `/local/clock/advance` moves, so
/// expiry windows can be tested without waiting. It is a [`Clock`] like every other clock of the
/// project.
#[derive(Debug, Default)]
pub struct ZoneClock {
    offset: AtomicI64,
}

impl ZoneClock {
    /// A clock moved `offset` seconds ahead of the system clock (a restarted zone's).
    pub fn with_offset(offset: i64) -> Self {
        Self { offset: AtomicI64::new(offset) }
    }

    /// How far the clock was moved ahead of the system clock, in seconds.
    pub fn offset(&self) -> i64 {
        self.offset.load(Ordering::SeqCst)
    }

    /// Unix seconds now, on the zone's clock: [`Clock::now_secs`], without importing the trait.
    pub fn now(&self) -> i64 {
        self.now_secs()
    }

    /// Moves the clock forward by `secs`.
    pub fn advance(&self, secs: i64) {
        self.offset.fetch_add(secs, Ordering::SeqCst);
    }
}

impl Clock for ZoneClock {
    fn now_ms(&self) -> i64 {
        SystemClock.now_ms().saturating_add(self.offset().saturating_mul(1000))
    }

    fn now_secs(&self) -> i64 {
        SystemClock.now_secs().saturating_add(self.offset())
    }
}

/// A party of a message: `{type, id}` (1 staff, 2 external contact, 3 robot).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Party {
    /// 1 staff, 2 external, 3 robot.
    pub kind: u8,
    /// userid, external_userid or robot id.
    pub id: String,
}

impl Party {
    /// The `{type, id}` JSON.
    pub fn to_json(&self) -> Value {
        json!({ "type": self.kind, "id": self.id })
    }
}

/// A staff member.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Staff {
    /// Open userid (`wo…`).
    pub userid: String,
    /// Display name (searchable).
    pub name: String,
    /// Pinyin of the name (searchable).
    pub pinyin: String,
    /// Department id.
    pub department: u32,
    /// Inside the conversation-content authorisation scope?
    pub in_scope: bool,
}

/// An external contact.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Customer {
    /// External userid (`wm…`).
    pub external_userid: String,
    /// Nickname (searchable).
    pub name: String,
    /// Pinyin of the nickname.
    pub pinyin: String,
    /// The staff member who follows the customer.
    pub follower: String,
}

/// A group chat member.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Member {
    /// The member.
    pub party: Party,
    /// Unix seconds of joining.
    pub jointime: i64,
}

/// A group chat.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Chat {
    /// `wr…`.
    pub chatid: String,
    /// Current name; empty for an unnamed group.
    pub name: String,
    /// Creator's userid.
    pub creator: String,
    /// Unix seconds.
    pub create_time: i64,
    /// Members.
    pub members: Vec<Member>,
    /// Whether its archive has expired (`get_group_chat` answers 301052).
    pub archive_expired: bool,
    /// Internal or inter-corp group (the only kinds `get_group_chat` serves).
    pub internal: bool,
}

/// One archived message. `content` and `secret_key` stay inside the zone.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Message {
    /// Position in the archive (1-based, increasing).
    pub seq: u64,
    /// Message id.
    pub msgid: String,
    /// Sender.
    pub sender: Party,
    /// Receivers.
    pub receivers: Vec<Party>,
    /// Group chat id, empty for 1:1.
    pub chatid: String,
    /// Unix seconds.
    pub send_time: i64,
    /// Type code (1 text, 4 link, 5 mini-program, 8 file, 18 online doc, 20 mixed, 23 微盘 file, 2 voice).
    pub msgtype: u32,
    /// The content (text, link title, file name …). Never sent out of the zone.
    pub content: String,
    /// The per-message key; only its RSA-wrapped form leaves the zone.
    pub secret_key: String,
}

impl Message {
    /// Whether a model can read it (text, voice).
    pub fn is_analysable(&self) -> bool {
        matches!(self.msgtype, 1 | 2)
    }

    /// Whether the sender or a receiver is external (a customer conversation).
    pub fn involves_customer(&self) -> bool {
        self.sender.kind == 2 || self.receivers.iter().any(|p| p.kind == 2)
    }
}

/// 1:1 consent of a customer towards a staff member.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Consent {
    /// Staff userid.
    pub userid: String,
    /// Customer.
    pub external_userid: String,
    /// `Agree` or `Disagree`.
    pub agree: bool,
    /// Unix seconds of the last change.
    pub change_time: i64,
}

/// A keyword rule (sdk-data-apis.md §5).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Rule {
    /// Id.
    pub rule_id: String,
    /// 1–20 characters.
    pub name: String,
    /// Unix seconds.
    pub create_time: i64,
    /// Keywords (1–32 chars each, ≤ 20).
    pub words: Vec<String>,
    /// 0/1.
    pub is_case_sensitive: i64,
    /// 0 contains, 1 exact.
    pub match_rule: i64,
    /// 0/1; only for exact match.
    pub is_trim_msg: i64,
    /// Key behaviours: 1 red packet, 2 phone number, 3 email address.
    pub semantics: Vec<i64>,
    /// The applicable range as given.
    pub applicable_range: Value,
}

/// One rule's hit on a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleHit {
    /// The rule.
    pub rule_id: String,
    /// A keyword matched.
    pub has_hit_keyword: bool,
    /// The behaviours that matched.
    pub semantics: Vec<i64>,
}

/// A record of `get_hit_msg_list`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Hit {
    /// Position in the hit log (1-based).
    pub seq: u64,
    /// The message's seq.
    pub msg_seq: u64,
    /// Rules that matched.
    pub rules: Vec<RuleHit>,
}

/// A knowledge-set document.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Doc {
    /// uint64 id.
    pub docid: u64,
    /// ≤ 200 bytes.
    pub doc_name: String,
    /// 2 pdf, 4 xlsx, 5 doc, 6 docx, 101 web link.
    pub kind: u32,
    /// Text the emulated models retrieve from.
    pub text: String,
}

/// A knowledge set.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KnowledgeBase {
    /// `kb…`.
    pub kb_id: String,
    /// 1–20 characters.
    pub kb_name: String,
    /// Documents.
    pub docs: Vec<Doc>,
}

/// A customer tag group for `create_customer_tag_task`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TagGroup {
    /// Group id.
    pub group_id: String,
    /// Group name.
    pub name: String,
    /// (tag_id, tag name, trigger words).
    pub tags: Vec<(String, String, Vec<String>)>,
}

/// Kinds of 10-minute tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TokenKind {
    /// From `conversation_new_message`, for `sync_msg`.
    NewMessage,
    /// From `hit_keyword`, for `get_hit_msg_list`.
    HitKeyword,
}

/// An export job (sdk-data-apis.md §7).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExportJob {
    /// ≤ 64 characters; valid 24 h.
    pub jobid: String,
    /// Unix seconds.
    pub created: i64,
    /// 1 waiting, 2 running, 3 done.
    pub status: u8,
    /// When done: (result_errcode, result_errmsg, result_id).
    pub result: Option<(i64, String, String)>,
}

/// Who created a [`ProgramJob`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobKind {
    /// The app's `async_program_task`.
    App,
    /// SDK `create_model_task` (the own model).
    OwnModel,
    /// SDK `create_program_task` (an own program).
    OwnProgram,
}

/// An app `async_program_task` job (or an SDK-routed own model / own program task).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProgramJob {
    /// Who created it.
    pub kind: JobKind,
    /// The jobid the caller holds.
    pub jobid: String,
    /// The opaque context sent to the program.
    pub job_info: String,
    /// The ability called.
    pub ability_id: String,
    /// Unix seconds.
    pub created: i64,
    /// What the program reported: (errcode, result).
    pub report: Option<(i64, String)>,
    /// Set when the request could not be delivered to the program (the job failed).
    pub delivery_error: Option<i64>,
    /// The `errcode` of the program's acknowledgement, once it answered (non-zero: it refused the
    /// call there, and the result comes only with its `program_async_job_call_back`).
    pub ack_errcode: Option<i64>,
    /// The request while it is being delivered (kept, so a zone restarted mid-delivery delivers it
    /// again: the program recognises a redelivery).
    #[serde(default)]
    pub pending_delivery: Option<super::program::ProgramCall>,
    /// Set when the program's result broke the ability's output protocol (790014).
    pub protocol_mismatch: bool,
    /// Messages of an SDK-routed task that could not be used.
    pub fail_list: Vec<Value>,
}

/// A WeCom-built model task (sentiment, summary, tags, recommendation, general, spam).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelTask {
    /// The API family, e.g. `sentiment` (`get_<family>_result` reads it).
    pub family: String,
    /// Polls answered so far.
    pub polls: u32,
    /// The finished result payload (status 1) or failure (status 2 with errcode).
    pub outcome: Result<Value, (i64, String)>,
    /// Per-message failures of the result.
    pub fail_list: Vec<Value>,
}

/// Everything the zone knows.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ZoneData {
    /// Staff.
    pub staff: Vec<Staff>,
    /// Customers.
    pub customers: Vec<Customer>,
    /// Group chats by id.
    pub chats: BTreeMap<String, Chat>,
    /// The archive, in seq order.
    pub messages: Vec<Message>,
    /// 1:1 consent.
    pub consent: Vec<Consent>,
    /// Group consent: (chatid, external_userid) → (agree, change_time).
    #[serde(with = "pairs")]
    pub room_consent: BTreeMap<(String, String), (bool, i64)>,
    /// Hide-sensitive-info config by userid: (mobile, idcard, bankno).
    pub hide_config: HashMap<String, (bool, bool, bool)>,
    /// Keyword rules by id.
    pub rules: BTreeMap<String, Rule>,
    /// Hit log, in seq order.
    pub hits: Vec<Hit>,
    /// Knowledge sets by id.
    pub kbs: BTreeMap<String, KnowledgeBase>,
    /// Customer tag groups.
    pub tag_groups: Vec<TagGroup>,
    /// Event tokens → (kind, expires).
    pub tokens: HashMap<String, (TokenKind, i64)>,
    /// Notify ids → (scene, expires).
    pub notify_ids: HashMap<String, (Option<u8>, i64)>,
    /// Access tokens → expires.
    pub access_tokens: HashMap<String, i64>,
    /// Export codes → expires (single use).
    pub export_codes: HashMap<String, i64>,
    /// Export jobs by id.
    pub exports: BTreeMap<String, ExportJob>,
    /// Program jobs by jobid (insert with [`ZoneData::add_program_job`]).
    pub program_jobs: BTreeMap<String, ProgramJob>,
    /// Program jobs' `job_info` → jobid, so a report finds its job without a scan.
    pub program_job_by_info: HashMap<String, String>,
    /// Model tasks by jobid.
    pub model_tasks: BTreeMap<String, ModelTask>,
    /// Pages of `sync_msg` mode 1/2: page_id → message seqs.
    pub pages: HashMap<String, Vec<u64>>,
    /// The program that receives events (`set_receive_callback`).
    pub receive_program: String,
    /// Log level by program id (1 ERR, 2 INFO, 3 DBG).
    pub log_levels: HashMap<String, i64>,
    /// Notifications sent (or kept when no app callback URL is configured).
    pub outbox: Vec<Value>,
    /// A counter for ids minted at run time.
    pub next_id: u64,
    /// The least seq a new message or hit gets. A restored zone sets it well past what it kept,
    /// so a cursor that ran ahead onto messages lost with the previous run never skips new ones.
    #[serde(default)]
    pub seq_floor: u64,
    /// Times (zone seconds) of the listing calls without an event token in the last minute.
    #[serde(default)]
    pub tokenless_recent: std::collections::VecDeque<i64>,
    /// Listing calls without an event token ever answered (refused ones included), for tests.
    #[serde(default)]
    pub tokenless_calls: u64,
}

impl ZoneData {
    /// Counts one listing call without an event token at `now` and says whether it is within
    /// `per_minute` (0: no limit) calls of the last 60 s; over it, the call is refused with WeCom's
    /// global 45009 (API call frequency over the limit) and not counted against the window.
    pub fn tokenless_allowed(&mut self, now: i64, per_minute: u32) -> bool {
        self.tokenless_calls += 1;
        while self.tokenless_recent.front().is_some_and(|t| *t <= now - 60) {
            self.tokenless_recent.pop_front();
        }
        if per_minute > 0 && self.tokenless_recent.len() >= per_minute as usize {
            return false;
        }
        self.tokenless_recent.push_back(now);
        true
    }
}

impl ZoneData {
    /// Records a program job, findable by jobid and by `job_info`.
    pub fn add_program_job(&mut self, job: ProgramJob) {
        self.program_job_by_info.insert(job.job_info.clone(), job.jobid.clone());
        self.program_jobs.insert(job.jobid.clone(), job);
    }

    /// The program job whose invoke context carries `job_info`.
    pub fn program_job_by_info(&mut self, job_info: &str) -> Option<&mut ProgramJob> {
        let jobid = self.program_job_by_info.get(job_info)?;
        self.program_jobs.get_mut(jobid)
    }

    /// A fresh id with a prefix: `prefix` + 16 hex digits.
    pub fn mint(&mut self, prefix: &str) -> String {
        self.next_id = self.next_id.wrapping_add(1);
        let mixed = crate::seed::splitmix(self.next_id ^ 0x05ee_d1d5);
        format!("{prefix}{mixed:016x}")
    }

    /// Whether a message is visible: inside the retention window and with a party in scope.
    pub fn visible(&self, m: &Message, now: i64) -> bool {
        m.send_time > now - RETENTION_SECS && m.send_time <= now && self.in_scope(m)
    }

    /// Whether the sender or a receiver is a staff member inside the authorisation scope.
    pub fn in_scope(&self, m: &Message) -> bool {
        let staff_in = |id: &str| self.staff.iter().any(|s| s.userid == id && s.in_scope);
        std::iter::once(&m.sender).chain(&m.receivers).any(|p| p.kind == 1 && staff_in(&p.id))
    }

    /// The message with this id.
    pub fn message(&self, msgid: &str) -> Option<&Message> {
        self.messages.iter().find(|m| m.msgid == msgid)
    }

    /// The index of the first message with `seq >= seq`.
    pub fn index_from_seq(&self, seq: u64) -> usize {
        self.messages.partition_point(|m| m.seq < seq)
    }

    /// Checks a 10-minute event token of the given kind.
    pub fn token_valid(&self, token: &str, kind: TokenKind, now: i64) -> bool {
        matches!(self.tokens.get(token), Some((k, exp)) if *k == kind && *exp > now)
    }

    /// Mints a 10-minute event token.
    pub fn mint_token(&mut self, kind: TokenKind, now: i64) -> String {
        let token = self.mint(match kind {
            TokenKind::NewMessage => "ENC",
            TokenKind::HitKeyword => "HIT",
        });
        self.tokens.retain(|_, (_, exp)| *exp > now);
        self.tokens.insert(token.clone(), (kind, now + TEN_MINUTES));
        token
    }

    /// A staff member's display name.
    pub fn staff_name(&self, userid: &str) -> Option<&str> {
        self.staff.iter().find(|s| s.userid == userid).map(|s| s.name.as_str())
    }

    /// A party's display name (staff or customer), or its id.
    pub fn name_of(&self, party: &Party) -> String {
        let name = match party.kind {
            1 => self.staff_name(&party.id),
            2 => self.customers.iter().find(|c| c.external_userid == party.id).map(|c| c.name.as_str()),
            _ => None,
        };
        name.unwrap_or(&party.id).to_owned()
    }
}

/// A map with non-string keys as a JSON list of `[key, value]` pairs.
mod pairs {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<K: Serialize, V: Serialize, S: Serializer>(map: &BTreeMap<K, V>, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(map.iter())
    }

    pub fn deserialize<'de, K, V, D>(d: D) -> Result<BTreeMap<K, V>, D::Error>
    where
        K: Deserialize<'de> + Ord,
        V: Deserialize<'de>,
        D: Deserializer<'de>,
    {
        Ok(Vec::<(K, V)>::deserialize(d)?.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_zone_clock_is_the_system_clock_plus_its_offset_in_both_units() {
        let clock = ZoneClock::with_offset(3600);
        let before = SystemClock.now_secs();
        let (secs, ms) = (clock.now(), clock.now_ms());
        let after = SystemClock.now_secs();
        assert!((before + 3600..=after + 3600).contains(&secs), "{before} {secs} {after}");
        assert!(((before + 3600) * 1000..(after + 3601) * 1000).contains(&ms), "{ms}");
        clock.advance(60);
        assert_eq!(clock.offset(), 3660);
        assert!(clock.now_secs() >= secs + 60);
    }
}
