//! The wire every part of the zone shares: the WeCom callback cipher ([`cipher`]), the local codec
//! between the program and the local zone ([`codec`]) and its messages ([`wire`]), the program's
//! error-code table ([`errcode`]), the public demo secrets ([`demo`]) and the one clock abstraction
//! ([`clock`]). No I/O, no logging.

/// The classic WeCom callback cipher (SHA1 signature, AES-256-CBC, 32-byte PKCS#7) and its XML.
pub mod cipher;
/// The clock every part reads the time from: [`clock::Clock`], the system clock and a manual one.
pub mod clock;
/// The local codec between the program and the local zone (not WeCom's wire format).
pub mod codec;
/// The public demo secrets of the local zone (offline use only).
pub mod demo;
/// The program's own error codes (the README's table).
pub mod errcode;
/// The decrypted messages of the local codec's channel.
pub mod wire;
