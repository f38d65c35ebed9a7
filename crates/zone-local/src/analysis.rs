//! The emulated models. **These are not WeCom's models**: they are small deterministic functions of
//! the message content so that tests and demos get stable, plausible results:
//! - sentiment: a lexicon count (positive words minus negative words → 1 positive, 2 negative, 0 none);
//! - spam: marker phrases (政治敏感 → 1, 色情 → 2, else 0);
//! - summary: extractive (the first line, then the most "informative" lines, in conversation order);
//! - customer tags: per group, the tag whose trigger words occur most;
//! - reply recommendation and the general model: a template around the best-matching knowledge text;
//! - input expansion for own models and programs: the documented placeholders (`{chat}`,
//!   `{chatcontent}`, `{knowledge}`, `{tagjson}`) substituted into the ability's input protocol with
//!   the caller's `escape_type`.

use serde_json::{Value, json};

use super::model::{KnowledgeBase, TagGroup};

/// A message a model may read: resolved, key checked, text or voice.
#[derive(Debug, Clone)]
pub struct Usable {
    /// Message id.
    pub msgid: String,
    /// Its content.
    pub content: String,
    /// The sender's display name.
    pub sender: String,
    /// Whether the sender is staff (员工) rather than a customer (客户).
    pub staff: bool,
}

const POSITIVE: [&str; 8] = ["谢谢", "感谢", "满意", "不错", "喜欢", "推荐", "很好", "辛苦"];
const NEGATIVE: [&str; 8] = ["投诉", "失望", "太慢", "质量问题", "生气", "差评", "怎么回事", "不便"];

/// 0 none, 1 positive, 2 negative.
pub fn sentiment(text: &str) -> i64 {
    let count = |words: &[&str]| words.iter().filter(|w| text.contains(*w)).count();
    match count(&POSITIVE).cmp(&count(&NEGATIVE)) {
        std::cmp::Ordering::Greater => 1,
        std::cmp::Ordering::Less => 2,
        std::cmp::Ordering::Equal => 0,
    }
}

/// 0 clean, 1 politically sensitive, 2 pornographic.
pub fn spam(text: &str) -> i64 {
    if text.contains("政治敏感") {
        1
    } else if text.contains("色情") {
        2
    } else {
        0
    }
}

/// An extractive summary of at most three lines, within `max_chars` characters of input.
pub fn summary(msgs: &[Usable], max_chars: usize) -> String {
    let mut budget = max_chars;
    let mut lines: Vec<(usize, String)> = Vec::new();
    for (i, m) in msgs.iter().enumerate() {
        if budget == 0 {
            break;
        }
        let text: String = m.content.chars().take(budget).collect();
        budget -= text.chars().count();
        lines.push((i, format!("{}：{}", if m.staff { "员工" } else { "客户" }, text)));
    }
    if lines.is_empty() {
        return "【本地模拟摘要】无可分析的消息。".into();
    }
    let first = lines.remove(0);
    lines.sort_by_key(|(i, l)| (std::cmp::Reverse(l.chars().count()), *i));
    let mut chosen = vec![first];
    for line in lines {
        if chosen.len() == 3 {
            break;
        }
        if !chosen.iter().any(|(_, l)| *l == line.1) {
            chosen.push(line);
        }
    }
    chosen.sort_by_key(|(i, _)| *i);
    let body: Vec<String> = chosen.into_iter().map(|(_, l)| l).collect();
    format!("【本地模拟摘要】{}", body.join("；"))
}

/// `(group_id, tag_id)` for each group with a matching tag.
pub fn tags(groups: &[&TagGroup], msgs: &[Usable]) -> Vec<(String, String)> {
    let text: String = msgs.iter().map(|m| m.content.as_str()).collect();
    groups
        .iter()
        .filter_map(|g| {
            let scored =
                g.tags.iter().map(|(id, _, words)| (words.iter().filter(|w| text.contains(w.as_str())).count(), id));
            let (score, id) = scored.fold((0, None), |best, (n, id)| if n > best.0 { (n, Some(id)) } else { best });
            (score > 0).then(|| (g.group_id.clone(), id.expect("a positive score has a tag").clone()))
        })
        .collect()
}

/// The knowledge text sharing the most characters with `query` (the first document on a tie).
pub fn best_knowledge<'a>(kb: &'a KnowledgeBase, query: &str) -> Option<&'a str> {
    let score = |t: &str| t.chars().filter(|c| !c.is_ascii_punctuation() && query.contains(*c)).count();
    kb.docs.iter().map(|d| d.text.as_str()).fold(None, |best: Option<&str>, t| match best {
        Some(b) if score(b) >= score(t) => Some(b),
        _ => Some(t),
    })
}

/// A reply suggestion for the last customer message, grounded in the knowledge set.
pub fn recommend(kb: &KnowledgeBase, msgs: &[Usable]) -> String {
    let last = msgs.iter().rev().find(|m| !m.staff).or(msgs.last()).map_or("", |m| m.content.as_str());
    match best_knowledge(kb, last) {
        Some(text) => format!("【本地模拟话术推荐】您好，{text}"),
        None => "【本地模拟话术推荐】您好，请问有什么可以帮您？".into(),
    }
}

/// The general model's answer: a deterministic report of what it was given.
pub fn general(
    ability_id: &str,
    kb: Option<&KnowledgeBase>,
    retrieval: &str,
    var_args: &[(String, String)],
    msgs: &[Usable],
) -> String {
    let mut out = format!("【本地模拟通用模型】能力 {ability_id}；消息 {} 条", msgs.len());
    let (pos, neg) = msgs.iter().fold((0, 0), |(p, n), m| match sentiment(&m.content) {
        1 => (p + 1, n),
        2 => (p, n + 1),
        _ => (p, n),
    });
    out.push_str(&format!("；正面 {pos} 条，负面 {neg} 条"));
    if !msgs.is_empty() {
        out.push_str(&format!("\n{}", summary(msgs, 30_000)));
    }
    if let Some(text) = kb.and_then(|kb| best_knowledge(kb, retrieval)) {
        out.push_str(&format!("\n知识：{text}"));
    }
    for (name, value) in var_args {
        out.push_str(&format!("\n{name}={value}"));
    }
    out
}

/// `{chat}`: one line per message, `A(员工)说:…` (with roles) or `A说:…`.
pub fn chat_lines(msgs: &[Usable], with_role: bool) -> String {
    let line = |m: &Usable| {
        let role = if !with_role {
            ""
        } else if m.staff {
            "(员工)"
        } else {
            "(客户)"
        };
        format!("{}{role}说:{}", m.sender, m.content)
    };
    msgs.iter().map(line).collect::<Vec<_>>().join("\n")
}

/// `{chatcontent}`: the texts only.
pub fn chat_content(msgs: &[Usable]) -> String {
    msgs.iter().map(|m| m.content.as_str()).collect::<Vec<_>>().join("\n")
}

/// `{knowledge}`: `文档N:片段` lines.
pub fn knowledge(kb: Option<&KnowledgeBase>) -> String {
    kb.map(|kb| {
        kb.docs.iter().enumerate().map(|(i, d)| format!("文档{}:{}", i + 1, d.text)).collect::<Vec<_>>().join("\n")
    })
    .unwrap_or_default()
}

/// `{tagjson}`: `{"tag_group":[{"group_id","group_name","tag_list":[{"tag_id","tag_name"}]}]}`.
pub fn tag_json(groups: &[&TagGroup]) -> String {
    let groups: Vec<Value> = groups
        .iter()
        .map(|g| json!({"group_id": g.group_id, "group_name": g.name,
                        "tag_list": g.tags.iter().map(|(id, name, _)| json!({"tag_id": id, "tag_name": name})).collect::<Vec<_>>()}))
        .collect();
    json!({ "tag_group": groups }).to_string()
}

/// Escapes inserted text: `escape_type` 0 turns `"` `\` `/` and the control characters
/// `\b \f \n \r \t` into spaces; 1 JSON-escapes them.
pub fn escape(text: &str, escape_type: i64) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let esc = match c {
            '"' => "\\\"",
            '\\' => "\\\\",
            '/' => "\\/",
            '\u{8}' => "\\b",
            '\u{c}' => "\\f",
            '\n' => "\\n",
            '\r' => "\\r",
            '\t' => "\\t",
            _ => {
                out.push(c);
                continue;
            }
        };
        if escape_type == 1 { out.push_str(esc) } else { out.push(' ') }
    }
    out
}

/// Substitutes `{name}` placeholders of `template` with escaped values.
pub fn substitute(template: &str, values: &[(&str, String)], escape_type: i64) -> String {
    values.iter().fold(template.to_owned(), |t, (name, v)| t.replace(&format!("{{{name}}}"), &escape(v, escape_type)))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn usable(content: &str, staff: bool) -> Usable {
        Usable { msgid: "m".into(), content: content.into(), sender: if staff { "A" } else { "B" }.into(), staff }
    }

    #[test]
    fn the_lexicon_decides_sentiment_and_markers_decide_spam() {
        assert_eq!(sentiment("收到货了，质量不错，谢谢！"), 1);
        assert_eq!(sentiment("我要投诉，商品有质量问题"), 2);
        assert_eq!(sentiment("请问什么时候发货？"), 0);
        assert_eq!(spam("【示例违规内容：政治敏感】"), 1);
        assert_eq!(spam("【示例违规内容：色情】"), 2);
        assert_eq!(spam("你好"), 0);
    }

    #[test]
    fn a_summary_extracts_lines_of_the_conversation_in_order() {
        let msgs = [usable("你好", false), usable("这款产品目前优惠价是299元", true), usable("好", false)];
        let s = summary(&msgs, 30_000);
        assert!(s.starts_with("【本地模拟摘要】客户：你好；员工：这款产品"), "{s}");
        let repeated = [usable("在吗", false), usable("我要退款", false), usable("我要退款", false)];
        assert_eq!(summary(&repeated, 30_000), "【本地模拟摘要】客户：在吗；客户：我要退款", "no line twice");
        assert_eq!(s, summary(&msgs, 30_000), "deterministic");
    }

    #[test]
    fn placeholders_are_substituted_with_the_chosen_escaping() {
        let t = r#"{"msg":"{chat}"}"#;
        let v = [("chat", "A说:\"hi\"\nB说:ok".to_owned())];
        assert_eq!(substitute(t, &v, 0), r#"{"msg":"A说: hi  B说:ok"}"#);
        let escaped = substitute(t, &v, 1);
        let parsed: Value = serde_json::from_str(&escaped).unwrap();
        assert_eq!(parsed["msg"], "A说:\"hi\"\nB说:ok");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(
            std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256)))]
        #[test]
        fn json_escaped_text_always_yields_valid_json_with_the_text_inside(text in any::<String>()) {
            let doc = substitute(r#"{"x":"{chatcontent}"}"#, &[("chatcontent", text.clone())], 1);
            let control_free = !text.chars().any(|c| c.is_control() && !matches!(c, '\u{8}' | '\u{c}' | '\n' | '\r' | '\t'));
            if control_free {
                let parsed: Value = serde_json::from_str(&doc).unwrap();
                prop_assert_eq!(parsed["x"].as_str().unwrap(), text.as_str());
            }
        }
    }
}
