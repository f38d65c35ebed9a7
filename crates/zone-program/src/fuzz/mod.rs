//! Fuzz runs of every decoder of untrusted input: the local codec, the WeCom callback cipher and
//! signature, ability inputs, event payloads, `program_notify` XML, and the configuration.
//!
//! Each property draws a seed per case and builds its input from it, structure-aware (valid inputs
//! mutated, JSON and XML shaped from the decoder's own field names, random bytes in between), so
//! that most cases reach deep into the decoder instead of failing its first check. Every property
//! asserts more than "no panic": what must be accepted is, what is tampered with is refused, and no
//! error message echoes a value of the input.
//!
//! Cases per property: `ZONE_FUZZ_CASES` (default 100 000, the CI run; e.g. `ZONE_FUZZ_CASES=5000000`
//! for a long run). A failing case is shrunk and kept in `proptest-regressions/`.

mod decoders;
mod parsers;

use proptest::test_runner::Config;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value};

/// A value the inputs carry in keys and strings: no error message may contain it.
pub(crate) const MARKER: &str = "QzxMarker7";

/// Cases per property.
pub(crate) fn cases() -> u32 {
    std::env::var("ZONE_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000)
}

/// The proptest configuration of every property here.
pub(crate) fn config() -> Config {
    Config { cases: cases(), max_shrink_iters: 2048, ..Config::default() }
}

/// The generator of one case.
pub(crate) fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// A short string: sometimes the marker, sometimes one of `names`, sometimes printable or any text.
pub(crate) fn text(rng: &mut StdRng, names: &[&str]) -> String {
    match rng.gen_range(0..8) {
        0 => MARKER.to_owned(),
        1 => format!("{MARKER}{}", "x".repeat(rng.gen_range(0..300))),
        2 if !names.is_empty() => names[rng.gen_range(0..names.len())].to_owned(),
        3 => String::new(),
        4 => (0..rng.gen_range(0..40)).map(|_| char::from(rng.gen_range(0x20u8..0x7f))).collect(),
        5 => (0..rng.gen_range(0..20)).map(|_| rng.r#gen::<char>()).collect(),
        _ => format!("{}{MARKER}", "v".repeat(rng.gen_range(0..80))),
    }
}

/// A JSON value of bounded depth whose keys come mostly from `names` and whose strings carry the marker.
pub(crate) fn json(rng: &mut StdRng, names: &[&str], depth: u32) -> Value {
    let kind = if depth == 0 { rng.gen_range(0..5) } else { rng.gen_range(0..8) };
    match kind {
        0 => Value::Null,
        1 => Value::Bool(rng.r#gen()),
        2 => match rng.gen_range(0..4) {
            0 => Value::from(rng.r#gen::<i64>()),
            1 => Value::from(rng.gen_range(-3i64..20_000)),
            2 => Value::from(rng.r#gen::<f64>() * 1e6),
            _ => Value::from(rng.r#gen::<u64>()),
        },
        3 | 4 => Value::String(text(rng, names)),
        5 => Value::Array((0..rng.gen_range(0..6)).map(|_| json(rng, names, depth - 1)).collect()),
        _ => Value::Object(object(rng, names, depth - 1)),
    }
}

/// A JSON object of bounded depth, keys mostly from `names`.
pub(crate) fn object(rng: &mut StdRng, names: &[&str], depth: u32) -> Map<String, Value> {
    (0..rng.gen_range(0..6))
        .map(|_| {
            let key = if !names.is_empty() && rng.gen_bool(0.8) {
                names[rng.gen_range(0..names.len())].to_owned()
            } else {
                text(rng, &[])
            };
            (key, json(rng, names, depth))
        })
        .collect()
}

/// `text` with a few random edits (truncation, insertion, deletion, byte flips that keep UTF-8).
pub(crate) fn mutate(rng: &mut StdRng, text: &str) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for _ in 0..rng.gen_range(1..4) {
        let at = if chars.is_empty() { 0 } else { rng.gen_range(0..chars.len()) };
        match rng.gen_range(0..5) {
            0 => chars.truncate(at),
            1 => chars.insert(at, ['{', '}', '[', ']', '"', ',', ':', '\\', '<', '>', '&', 'x'][rng.gen_range(0..12)]),
            2 if !chars.is_empty() => {
                chars.remove(at);
            }
            3 if !chars.is_empty() => chars[at] = rng.r#gen(),
            _ => chars.insert(at, '\u{0}'),
        }
    }
    chars.into_iter().collect()
}
