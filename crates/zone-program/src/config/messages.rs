//! `[messages]`: message access without hammering `sync_msg`.

use serde::Deserialize;

use super::{ConfigError, positive};

/// `[messages]`: how the program reaches messages without hammering `sync_msg` (WeCom limits calls
/// without an event token strictly: sdk-data-apis.md §1.4).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MessagesConfig {
    /// Calls without an event token (`sync_msg` / `get_msg_list_by_page_id` from `begin_time`) one
    /// corp may make per minute, refilled evenly. Default 6.
    pub tokenless_per_minute: u32,
    /// How many such calls may come at once after a quiet spell (the bucket's size). Default 3.
    pub tokenless_burst: u32,
    /// How far the index may lag behind now and still answer a range ending now, in seconds: newer
    /// messages come with their `conversation_new_message` event. Default 60.
    pub index_freshness_secs: i64,
    /// Listing pages (of up to 1000 messages) one event notification carries; more continue as the
    /// next part. Each page can be several hundred KiB of `get_callback_data` reply. Default 10.
    pub pages_per_notify: usize,
}

impl Default for MessagesConfig {
    fn default() -> Self {
        Self { tokenless_per_minute: 6, tokenless_burst: 3, index_freshness_secs: 60, pages_per_notify: 10 }
    }
}

impl MessagesConfig {
    /// Checks the section's values; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        positive("messages.tokenless_per_minute", u64::from(self.tokenless_per_minute))?;
        positive("messages.tokenless_burst", u64::from(self.tokenless_burst))?;
        if !(1..=100).contains(&self.pages_per_notify) {
            return Err(ConfigError::new("messages.pages_per_notify", "must be 1 to 100"));
        }
        if !(0..=3600).contains(&self.index_freshness_secs) {
            return Err(ConfigError::new("messages.index_freshness_secs", "must be 0 to 3600"));
        }
        Ok(())
    }
}
