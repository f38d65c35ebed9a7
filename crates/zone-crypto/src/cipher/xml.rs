//! The few XML shapes of WeCom callbacks (app-side.md §3–4): the encrypted envelope
//! `<xml><ToUserName/><AgentID/><Encrypt/></xml>` and flat event bodies such as `program_notify`.
//! Flat elements only; no attributes, namespaces or nesting are needed.

use super::CryptoError;

/// The text of the first `<tag>…</tag>` element, with a CDATA section unwrapped.
pub fn field(xml: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = start + xml[start..].find(&close)?;
    text_of(xml[start..end].trim())
}

/// Concatenates the CDATA sections and escaped text of an element's content.
fn text_of(inner: &str) -> Option<String> {
    let mut out = String::with_capacity(inner.len());
    let mut rest = inner;
    while let Some(i) = rest.find("<![CDATA[") {
        out.push_str(&unescape(&rest[..i]));
        let after = &rest[i + "<![CDATA[".len()..];
        let j = after.find("]]>")?;
        out.push_str(&after[..j]);
        rest = &after[j + 3..];
    }
    out.push_str(&unescape(rest));
    Some(out)
}

/// Like [`field`], failing with −40002 when the element is missing.
pub fn required_field(xml: &str, tag: &str) -> Result<String, CryptoError> {
    field(xml, tag).ok_or(CryptoError::ParseXml)
}

/// Wraps `text` in a CDATA section, splitting any `]]>` it contains.
pub fn cdata(text: &str) -> String {
    format!("<![CDATA[{}]]>", text.replace("]]>", "]]]]><![CDATA[>"))
}

/// The encrypted POST body WeCom sends to an app callback URL (app-side.md §4.6).
pub fn encrypted_envelope(to_user: &str, agent_id: &str, msg_encrypt: &str) -> String {
    format!(
        "<xml><ToUserName>{}</ToUserName><AgentID>{}</AgentID><Encrypt>{}</Encrypt></xml>",
        cdata(to_user),
        cdata(agent_id),
        cdata(msg_encrypt)
    )
}

fn unescape(text: &str) -> String {
    if !text.contains('&') {
        return text.to_owned();
    }
    text.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&apos;", "'").replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cdata_field_is_unwrapped_and_a_plain_one_unescaped() {
        let xml = "<xml><Event><![CDATA[program_notify]]></Event><NotifyScene>1</NotifyScene><A>x&amp;y</A></xml>";
        assert_eq!(field(xml, "Event").as_deref(), Some("program_notify"));
        assert_eq!(field(xml, "NotifyScene").as_deref(), Some("1"));
        assert_eq!(field(xml, "A").as_deref(), Some("x&y"));
        assert_eq!(field(xml, "Missing"), None);
        assert_eq!(required_field(xml, "Missing"), Err(CryptoError::ParseXml));
    }

    #[test]
    fn cdata_round_trips_text_containing_its_terminator() {
        let xml = format!("<xml><T>{}</T></xml>", cdata("a]]>b<c>"));
        assert_eq!(field(&xml, "T").as_deref(), Some("a]]>b<c>"));
    }
}
