//! The message index: the metadata of every message the event-driven pulls listed (msgid, chat,
//! sender, receivers, send time, type, `service_encrypt_info`; listings carry no content), so that
//! the workflows read it instead of calling `sync_msg` without an event token, which WeCom limits
//! strictly (sdk-data-apis.md §1.4, §3.1). Rows live for WeCom's 5-day window and are purged after
//! it. Beside the rows, a per-corp *coverage* span `[from, until]` (Unix seconds) says for which
//! send times the index is known to hold every listed message: a workflow whose range lies inside
//! it needs no listing call at all.

use rusqlite::{OptionalExtension as _, params};
use serde_json::Value;

use super::{Store, StoreError};

/// The index's tables, applied at every start beside `schema.sql`.
pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS msg_index (
    corp_id    TEXT NOT NULL,
    msgid      TEXT NOT NULL,
    chatid     TEXT NOT NULL,
    send_time  INTEGER NOT NULL,
    item       TEXT NOT NULL,
    indexed_ms INTEGER NOT NULL,
    PRIMARY KEY (corp_id, msgid)
);
CREATE INDEX IF NOT EXISTS msg_index_by_time ON msg_index (corp_id, send_time);
CREATE TABLE IF NOT EXISTS msg_index_coverage (
    corp_id    TEXT PRIMARY KEY,
    from_time  INTEGER NOT NULL,
    until_time INTEGER NOT NULL
);
";

/// How long WeCom keeps messages listable, in seconds (sdk-data-apis.md §1.4).
pub const RETENTION_SECS: i64 = 5 * 24 * 3600;
/// Most rows one read returns.
const MAX_READ: i64 = 200_000;

/// The span of send times `[from, until]` (Unix seconds) for which the index holds every message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Coverage {
    /// The earliest covered send time.
    pub from: i64,
    /// The latest covered send time.
    pub until: i64,
}

impl Coverage {
    /// Whether `[start, end]` lies inside the span.
    pub fn covers(&self, start: i64, end: i64) -> bool {
        self.from <= start && end <= self.until
    }
}

impl Store {
    /// Records listing items (each a `msg_list` entry with `msgid` and `send_time`) for `corp_id`;
    /// items without them are skipped, known msgids are kept as they are. Rows older than the 5-day
    /// window are purged in the same transaction, and the coverage is cut to the window. Returns the
    /// number of new rows.
    pub async fn index_messages(&self, corp_id: &str, items: &[Value]) -> Result<usize, StoreError> {
        let rows: Vec<(String, String, i64, String)> = items
            .iter()
            .filter_map(|item| {
                let msgid = item.get("msgid")?.as_str().filter(|m| !m.is_empty())?;
                let send_time = item.get("send_time")?.as_i64()?;
                let chatid = item.get("chatid").and_then(Value::as_str).unwrap_or_default();
                Some((msgid.to_owned(), chatid.to_owned(), send_time, item.to_string()))
            })
            .collect();
        let corp_id = corp_id.to_owned();
        let now_ms = self.clock.now_ms();
        self.call(move |conn| {
            let tx = conn.transaction()?;
            let mut added = 0;
            {
                let mut insert = tx.prepare_cached(
                    "INSERT OR IGNORE INTO msg_index (corp_id, msgid, chatid, send_time, item, indexed_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?;
                for (msgid, chatid, send_time, item) in &rows {
                    added += insert.execute(params![corp_id, msgid, chatid, send_time, item, now_ms])?;
                }
            }
            let oldest = now_ms / 1000 - RETENTION_SECS;
            tx.execute("DELETE FROM msg_index WHERE corp_id = ?1 AND send_time < ?2", params![corp_id, oldest])?;
            tx.execute(
                "UPDATE msg_index_coverage SET from_time = MAX(from_time, ?2) WHERE corp_id = ?1",
                params![corp_id, oldest],
            )?;
            tx.commit()?;
            Ok(added)
        })
        .await
    }

    /// Records one page of the corp's event-driven `sync_msg` listing (which follows the stored
    /// cursor, so its pages are contiguous): indexes the items and widens the coverage. The span
    /// starts at the window's start when the listing started without a cursor (`fresh`), else where
    /// the coverage ended (or, with none, at the page's earliest item); it ends at the page's latest
    /// item while `has_more`, else now (everything archived so far was listed).
    pub async fn record_listing_page(
        &self,
        corp_id: &str,
        items: &[Value],
        fresh: bool,
        has_more: bool,
    ) -> Result<(), StoreError> {
        self.index_messages(corp_id, items).await?;
        let now = self.clock.now_ms() / 1000;
        let times = items.iter().filter_map(|m| m.get("send_time").and_then(Value::as_i64));
        let (earliest, latest) = times.fold((None, None), |(lo, hi): (Option<i64>, Option<i64>), t| {
            (Some(lo.map_or(t, |l| l.min(t))), Some(hi.map_or(t, |h| h.max(t))))
        });
        let old = self.index_coverage(corp_id).await?;
        let from = match (fresh, old, earliest) {
            (true, _, _) => now - RETENTION_SECS,
            (false, Some(old), _) => old.until,
            (false, None, Some(t)) => t,
            (false, None, None) => return Ok(()),
        };
        let until = if has_more { latest.unwrap_or(from) } else { now };
        self.extend_index_coverage(corp_id, Coverage { from, until: until.max(from) }).await?;
        Ok(())
    }

    /// The indexed items of `corp_id` sent in `[start, end]`, oldest first, at most 200 000.
    pub async fn indexed_messages(&self, corp_id: &str, start: i64, end: i64) -> Result<Vec<Value>, StoreError> {
        let corp_id = corp_id.to_owned();
        self.call(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT item FROM msg_index WHERE corp_id = ?1 AND send_time BETWEEN ?2 AND ?3
                 ORDER BY send_time, msgid LIMIT ?4",
            )?;
            let rows = stmt.query_map(params![corp_id, start, end, MAX_READ], |r| r.get::<_, String>(0))?;
            let mut out = Vec::new();
            for row in rows {
                out.push(serde_json::from_str(&row?).map_err(|_| StoreError::Corrupt("msg_index.item"))?);
            }
            Ok(out)
        })
        .await
    }

    /// The corp's coverage, if any.
    pub async fn index_coverage(&self, corp_id: &str) -> Result<Option<Coverage>, StoreError> {
        let corp_id = corp_id.to_owned();
        self.call(move |conn| {
            Ok(conn
                .query_row(
                    "SELECT from_time, until_time FROM msg_index_coverage WHERE corp_id = ?1",
                    params![corp_id],
                    |r| Ok(Coverage { from: r.get(0)?, until: r.get(1)? }),
                )
                .optional()?)
        })
        .await
    }

    /// Records that the index now holds every message of `corp_id` sent in `span` (after the items
    /// of that listing were indexed). A span that overlaps or touches the stored one widens it; a
    /// disjoint newer span replaces it (the index is read for recent ranges); an older one is ignored.
    pub async fn extend_index_coverage(&self, corp_id: &str, span: Coverage) -> Result<Coverage, StoreError> {
        let corp_id = corp_id.to_owned();
        self.call(move |conn| {
            let tx = conn.transaction()?;
            let old = tx
                .query_row(
                    "SELECT from_time, until_time FROM msg_index_coverage WHERE corp_id = ?1",
                    params![corp_id],
                    |r| Ok(Coverage { from: r.get(0)?, until: r.get(1)? }),
                )
                .optional()?;
            let new = merge(old, span);
            tx.execute(
                "INSERT INTO msg_index_coverage (corp_id, from_time, until_time) VALUES (?1, ?2, ?3)
                 ON CONFLICT (corp_id) DO UPDATE SET from_time = excluded.from_time, until_time = excluded.until_time",
                params![corp_id, new.from, new.until],
            )?;
            tx.commit()?;
            Ok(new)
        })
        .await
    }
}

/// The coverage after learning that `span` is complete.
fn merge(old: Option<Coverage>, span: Coverage) -> Coverage {
    match old {
        None => span,
        Some(old) if span.from <= old.until + 1 && span.until + 1 >= old.from => {
            Coverage { from: old.from.min(span.from), until: old.until.max(span.until) }
        }
        Some(old) if span.until > old.until => span,
        Some(old) => old,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use crate::clock::ManualClock;
    use crate::store::Limits;

    fn store(now_ms: i64) -> (tempfile::TempDir, Store, Arc<ManualClock>) {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(now_ms));
        let limits = Limits { notify_ttl_ms: 600_000, max_notify_entries: 10, max_notify_bytes: 1 << 20 };
        let store = Store::open_with(&dir.path().join("s.sqlite"), limits, clock.clone()).unwrap();
        (dir, store, clock)
    }

    #[tokio::test]
    async fn indexed_items_are_read_back_by_range_once_each_and_purged_after_five_days() {
        let now = 10 * RETENTION_SECS;
        let (_dir, store, clock) = store(now * 1000);
        let items = [
            json!({"msgid":"a","chatid":"wr1","send_time":now - 10,"service_encrypt_info":{"public_key_ver":1}}),
            json!({"msgid":"b","send_time":now - 5}),
            json!({"msgid":"","send_time":now}),
            json!({"send_time":now}),
        ];
        assert_eq!(store.index_messages("c1", &items).await.unwrap(), 2, "items without an id are skipped");
        assert_eq!(store.index_messages("c1", &items[..1]).await.unwrap(), 0, "a known msgid is kept once");
        let got = store.indexed_messages("c1", now - 10, now - 6).await.unwrap();
        assert_eq!(got, vec![items[0].clone()]);
        assert!(store.indexed_messages("c2", 0, now).await.unwrap().is_empty(), "per corp");
        store.extend_index_coverage("c1", Coverage { from: now - 100, until: now }).await.unwrap();
        clock.advance((RETENTION_SECS - 7) * 1000);
        store.index_messages("c1", &[]).await.unwrap();
        let left: Vec<Value> = store.indexed_messages("c1", 0, i64::MAX).await.unwrap();
        assert_eq!(left.len(), 1, "a is past the window, b is not: {left:?}");
        let cov = store.index_coverage("c1").await.unwrap().unwrap();
        assert_eq!(cov.from, now - 7, "coverage is cut to the window");
    }

    #[test]
    fn coverage_spans_merge_when_they_touch_and_newer_disjoint_ones_replace() {
        let c = |from, until| Coverage { from, until };
        assert_eq!(merge(None, c(5, 9)), c(5, 9));
        assert_eq!(merge(Some(c(5, 9)), c(10, 20)), c(5, 20));
        assert_eq!(merge(Some(c(5, 9)), c(0, 6)), c(0, 9));
        assert_eq!(merge(Some(c(5, 9)), c(30, 40)), c(30, 40));
        assert_eq!(merge(Some(c(30, 40)), c(5, 9)), c(30, 40));
        assert!(c(5, 9).covers(5, 9) && !c(5, 9).covers(4, 9) && !c(5, 9).covers(5, 10));
    }
}
