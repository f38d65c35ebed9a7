//! What a job row keeps of its request: one typed payload per job kind, written and read by the
//! same type (the JSON text in the `payload` column is its serde form, unchanged from the earlier
//! hand-written shapes, so rows recorded before an upgrade still run).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::store::JobKind;

/// An async ability call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AbilityJob {
    /// The app's `request_data`.
    pub data: String,
    /// The notify_id the app passed, or empty.
    pub notify_id: String,
}

/// One part of an event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventJob {
    /// The event object as received.
    pub event: Map<String, Value>,
    /// 0, then 1, 2, … for continuations.
    #[serde(default)]
    pub part: u32,
}

/// A job's payload, by kind.
#[derive(Debug, Clone, PartialEq)]
pub enum JobPayload {
    /// [`JobKind::Ability`].
    Ability(AbilityJob),
    /// [`JobKind::Event`].
    Event(EventJob),
}

impl JobPayload {
    /// The kind of job this payload belongs to.
    pub fn kind(&self) -> JobKind {
        match self {
            Self::Ability(_) => JobKind::Ability,
            Self::Event(_) => JobKind::Event,
        }
    }

    /// The text stored in the job row.
    pub fn to_text(&self) -> String {
        match self {
            Self::Ability(p) => serde_json::to_string(p),
            Self::Event(p) => serde_json::to_string(p),
        }
        .expect("strings and JSON values serialise")
    }

    /// Reads the stored text of a job of `kind`; `None` when it does not parse.
    pub fn parse(kind: JobKind, text: &str) -> Option<Self> {
        match kind {
            JobKind::Ability => serde_json::from_str(text).ok().map(Self::Ability),
            JobKind::Event => serde_json::from_str(text).ok().map(Self::Event),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn payloads_round_trip_and_read_the_earlier_shapes() {
        let ability = JobPayload::Ability(AbilityJob { data: "{}".into(), notify_id: "n".into() });
        assert_eq!(JobPayload::parse(JobKind::Ability, &ability.to_text()), Some(ability));
        let event = json!({"event_type": "hit_keyword"}).as_object().cloned().unwrap();
        let payload = JobPayload::Event(EventJob { event: event.clone(), part: 2 });
        assert_eq!(JobPayload::parse(JobKind::Event, &payload.to_text()), Some(payload));
        // As written by json!({"event": raw, "part": part}) and the earlier AbilityPayload.
        let old_event = json!({"event": event, "part": 0}).to_string();
        assert!(matches!(JobPayload::parse(JobKind::Event, &old_event), Some(JobPayload::Event(e)) if e.part == 0));
        let old_ability = r#"{"data":"{}","notify_id":""}"#;
        assert!(matches!(JobPayload::parse(JobKind::Ability, old_ability), Some(JobPayload::Ability(_))));
        assert_eq!(JobPayload::parse(JobKind::Event, old_ability), None);
    }
}
