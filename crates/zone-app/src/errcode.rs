//! What an `errcode` means: the codes the app sees from WeCom's API (the documented ones of
//! `protocol/` and WeCom's global codes, doc 90313), the program's own codes that come back inside
//! `response_data`, and the callback-crypto library codes (−40001…−40011).

use zone_crypto::errcode::ErrorCode;

/// Documented WeCom codes an app call can return, with their meaning.
pub const WECOM_CODES: &[(i64, &str)] = &[
    (-1, "system busy; retry later (at most 3 times)"),
    (0, "ok"),
    (40001, "invalid secret (check the app secret in the admin console)"),
    (40013, "invalid corp id"),
    (40014, "invalid access_token"),
    (40058, "invalid parameter (a field does not match the API's description)"),
    (41001, "missing access_token"),
    (41004, "missing secret"),
    (42001, "access_token expired"),
    (45009, "API call frequency over the limit"),
    (48002, "the app has no permission for this API (e.g. the 数据与智能专区 permission)"),
    (60020, "the calling IP is not in the app's trusted IP list"),
    (301052, "会话存档已过期: the chat archive has expired"),
    (710601, "a per-message model failure (meaning not documented)"),
    (710674, "\"connect fail\" (reported after an image/SDK mix-up; unconfirmed)"),
    (790014, "the program's output does not match the ability's output protocol"),
    (790016, "request_data does not match the ability's input protocol"),
    (790040, "model input too long after expansion (about 30,000 UTF-8 characters)"),
];

/// The callback-crypto library codes (app-side.md §4.8).
pub const CRYPTO_CODES: &[(i64, &str)] = &[
    (-40001, "signature check failed"),
    (-40002, "XML parse failed"),
    (-40003, "computing the signature failed"),
    (-40004, "illegal AESKey"),
    (-40005, "ReceiveId check failed"),
    (-40006, "AES encryption failed"),
    (-40007, "AES decryption failed"),
    (-40008, "illegal buffer"),
    (-40009, "Base64 encoding failed"),
    (-40010, "Base64 decoding failed"),
    (-40011, "generating the reply XML failed"),
];

/// The meaning of `code`: a WeCom code, a callback-crypto code or one of the program's own codes.
pub fn meaning(code: i64) -> Option<&'static str> {
    WECOM_CODES
        .iter()
        .chain(CRYPTO_CODES)
        .find(|(c, _)| *c == code)
        .map(|(_, m)| *m)
        .or_else(|| ErrorCode::ALL.iter().find(|c| c.code() == code).map(|c| c.message()))
}

/// `errcode N (meaning)`, with "undocumented" when the code is not known.
pub fn describe(code: i64) -> String {
    format!("errcode {code} ({})", meaning(code).unwrap_or("undocumented code"))
}

/// True for the codes after which a fresh access_token may succeed.
pub fn is_token_error(code: i64) -> bool {
    matches!(code, 40014 | 41001 | 42001)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_is_free_of_duplicates_and_covers_the_program_codes() {
        let mut codes: Vec<i64> = WECOM_CODES.iter().chain(CRYPTO_CODES).map(|(c, _)| *c).collect();
        codes.extend(ErrorCode::ALL.iter().map(|c| c.code()));
        let n = codes.len();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), n);
        for c in ErrorCode::ALL {
            assert_eq!(meaning(c.code()), Some(c.message()));
        }
    }

    #[test]
    fn the_protocol_codes_have_their_documented_meaning() {
        assert!(describe(790016).contains("input protocol"));
        assert!(describe(790014).contains("output protocol"));
        assert!(describe(-40005).contains("ReceiveId"));
        assert_eq!(describe(123), "errcode 123 (undocumented code)");
    }
}
