//! Keyword rules (sdk-data-apis.md §5): matching of messages against rules, which the seed and
//! `/local/messages` use to fill the hit log that `get_hit_msg_list` serves.

use serde_json::Value;

use super::model::{Message, Rule, RuleHit};

/// The rules that `m` hits. Rules apply to customer conversations; `applicable_range.target_type`
/// (1 staff, 2 customer: who sent it) and `chat_type` (1 single, 2 group) narrow them.
pub fn match_rules<'a>(rules: impl IntoIterator<Item = &'a Rule>, m: &Message) -> Vec<RuleHit> {
    if !m.involves_customer() {
        return Vec::new();
    }
    rules.into_iter().filter_map(|r| match_rule(r, m)).collect()
}

fn match_rule(rule: &Rule, m: &Message) -> Option<RuleHit> {
    let listed = |key: &str, v: i64| {
        rule.applicable_range
            .get(key)
            .and_then(|o| o.get("type_list"))
            .and_then(Value::as_array)
            .is_none_or(|l| l.is_empty() || l.iter().any(|x| x.as_i64() == Some(v)))
    };
    let chat_type = if m.chatid.is_empty() { 1 } else { 2 };
    if !listed("target_type", i64::from(m.sender.kind)) || !listed("chat_type", chat_type) {
        return None;
    }
    let has_hit_keyword = rule.words.iter().any(|w| keyword_hit(rule, w, &m.content));
    let semantics: Vec<i64> = rule.semantics.iter().copied().filter(|s| semantic_hit(*s, m)).collect();
    (has_hit_keyword || !semantics.is_empty()).then(|| RuleHit {
        rule_id: rule.rule_id.clone(),
        has_hit_keyword,
        semantics,
    })
}

fn keyword_hit(rule: &Rule, word: &str, content: &str) -> bool {
    let fold = |s: &str| if rule.is_case_sensitive == 1 { s.to_owned() } else { s.to_lowercase() };
    let (word, text) = (fold(word), fold(content));
    match rule.match_rule {
        1 if rule.is_trim_msg == 1 => text.trim() == word,
        1 => text == word,
        _ => text.contains(&word),
    }
}

fn semantic_hit(kind: i64, m: &Message) -> bool {
    let text = &m.content;
    match kind {
        1 => text.contains("红包"),
        2 => has_phone_number(text),
        3 => text.split_whitespace().any(|w| w.split_once('@').is_some_and(|(u, d)| !u.is_empty() && d.contains('.'))),
        _ => false,
    }
}

/// An 11-digit run starting with 1 (a mainland mobile number).
fn has_phone_number(text: &str) -> bool {
    let digits: Vec<char> = text.chars().collect();
    digits.split(|c| !c.is_ascii_digit()).any(|run| run.len() == 11 && run[0] == '1')
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::local_zone::model::Party;

    fn msg(content: &str, sender_kind: u8) -> Message {
        Message {
            seq: 1,
            msgid: "m".into(),
            sender: Party { kind: sender_kind, id: "a".into() },
            receivers: vec![Party { kind: 3 - sender_kind, id: "b".into() }],
            chatid: String::new(),
            send_time: 0,
            msgtype: 1,
            content: content.into(),
            secret_key: "k".into(),
        }
    }

    fn rule(words: &[&str], semantics: &[i64], range: Value) -> Rule {
        Rule {
            rule_id: "r".into(),
            name: "n".into(),
            create_time: 0,
            words: words.iter().map(|w| w.to_string()).collect(),
            is_case_sensitive: 0,
            match_rule: 0,
            is_trim_msg: 0,
            semantics: semantics.to_vec(),
            applicable_range: range,
        }
    }

    #[test]
    fn keywords_and_behaviours_hit_within_the_applicable_range() {
        let r = rule(&["退款", "VIP"], &[2, 3], json!({"target_type": {"type_list": [2]}}));
        let hit = match_rules([&r], &msg("我要退款，电话13800138000", 2));
        assert_eq!(hit, vec![RuleHit { rule_id: "r".into(), has_hit_keyword: true, semantics: vec![2] }]);
        assert!(match_rules([&r], &msg("我要退款", 1)).is_empty(), "staff senders are outside target_type");
        assert!(!match_rules([&r], &msg("vip客户", 2)).is_empty(), "case-insensitive by default");
        assert_eq!(match_rules([&r], &msg("邮箱 a@b.com", 2))[0].semantics, vec![3]);
        assert!(match_rules([&r], &msg("号码1380013800", 2)).is_empty(), "ten digits are no phone number");
    }
}
