//! `notify_id`: the key of notify data. The program generates its own (32 lowercase hex
//! characters, within the 64 bytes `spec_notify_app` accepts); an id arriving from the app is
//! accepted when it is 1–128 bytes of visible ASCII (`program_notify`'s `NotifyId` is ≤ 128 bytes).

use rand::RngCore as _;

/// Longest notify_id accepted from a caller (app-side.md §3.1).
pub const MAX_NOTIFY_ID_BYTES: usize = 128;
/// Longest notify_id passed to `spec_notify_app` (sdk-data-apis.md §2.2).
pub const MAX_OWN_NOTIFY_ID_BYTES: usize = 64;

/// A well-formed notify_id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NotifyId(String);

/// Why a notify_id was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NotifyIdError {
    /// Empty.
    #[error("notify_id is empty")]
    Empty,
    /// Longer than 128 bytes.
    #[error("notify_id is longer than 128 bytes")]
    TooLong,
    /// Contains a byte outside visible ASCII.
    #[error("notify_id has a character outside visible ASCII")]
    BadCharacter,
}

impl NotifyId {
    /// Parses an id received from the app.
    pub fn parse(s: &str) -> Result<Self, NotifyIdError> {
        if s.is_empty() {
            return Err(NotifyIdError::Empty);
        }
        if s.len() > MAX_NOTIFY_ID_BYTES {
            return Err(NotifyIdError::TooLong);
        }
        if !s.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(NotifyIdError::BadCharacter);
        }
        Ok(Self(s.to_owned()))
    }

    /// A fresh random id (128 bits from the OS RNG, 32 hex characters).
    pub fn generate() -> Self {
        let mut bytes = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Self(hex::encode(bytes))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for NotifyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn cases() -> u32 {
        std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256)
    }

    #[test]
    fn a_generated_id_is_32_hex_characters_and_parses() {
        let id = NotifyId::generate();
        assert_eq!(id.as_str().len(), 32);
        assert!(id.as_str().len() <= MAX_OWN_NOTIFY_ID_BYTES);
        assert_eq!(NotifyId::parse(id.as_str()), Ok(id.clone()));
        assert_ne!(NotifyId::generate(), id);
    }

    #[test]
    fn empty_long_and_non_ascii_ids_are_refused() {
        assert_eq!(NotifyId::parse(""), Err(NotifyIdError::Empty));
        assert_eq!(NotifyId::parse(&"a".repeat(129)), Err(NotifyIdError::TooLong));
        assert!(NotifyId::parse(&"a".repeat(128)).is_ok());
        assert_eq!(NotifyId::parse("a b"), Err(NotifyIdError::BadCharacter));
        assert_eq!(NotifyId::parse("通知"), Err(NotifyIdError::BadCharacter));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(cases()))]

        #[test]
        fn parse_accepts_exactly_the_visible_ascii_strings_up_to_128_bytes(s in "\\PC{0,140}") {
            let ok = !s.is_empty() && s.len() <= MAX_NOTIFY_ID_BYTES && s.bytes().all(|b| b.is_ascii_graphic());
            prop_assert_eq!(NotifyId::parse(&s).is_ok(), ok);
            if let Ok(id) = NotifyId::parse(&s) {
                prop_assert_eq!(id.as_str(), s.as_str());
            }
        }
    }
}
