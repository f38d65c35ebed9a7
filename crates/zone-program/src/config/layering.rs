//! The layering of defaults, one TOML file and `ZONE_PROGRAM_*` environment overrides, and
//! deserialisation errors that name the key and never quote the value.

use std::path::Path;

use super::{ConfigError, ENV_PREFIX};

/// The file (if any) as a TOML table, with the `ZONE_PROGRAM_*` variables of `env` applied on top.
/// Sections of tools other than the program (e.g. the developer CLI's `[local_zone]` and `[app]`)
/// are taken out of it by their owners before [`Config::from_table`](super::Config::from_table).
pub fn layered_table(
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<toml::Table, ConfigError> {
    let mut table = match file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| ConfigError::new(path.display().to_string(), format!("cannot read: {e}")))?;
            toml::from_str::<toml::Table>(&text).map_err(|e| {
                let at = e.span().map(|s| line_column(&text, s.start)).unwrap_or_default();
                ConfigError::new(path.display().to_string(), format!("{at}{}", e.message().trim_end()))
            })?
        }
        None => toml::Table::new(),
    };
    let mut overrides: Vec<(String, String)> =
        env.into_iter().filter(|(k, _)| k.starts_with(ENV_PREFIX) && k.len() > ENV_PREFIX.len()).collect();
    overrides.sort();
    for (name, value) in overrides {
        apply_override(&mut table, &name, &value)?;
    }
    Ok(table)
}

/// Deserialises `table` as a `T`; an error names the key, prefixed with `prefix` (e.g. `"app."`),
/// and never quotes the value.
pub fn section<T: serde::de::DeserializeOwned>(table: toml::Table, prefix: &str) -> Result<T, ConfigError> {
    let text = toml::to_string(&table).map_err(|e| ConfigError::new("config", e.to_string()))?;
    let de = toml::Deserializer::parse(&text).map_err(|e| ConfigError::new("config", e.message().to_owned()))?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        let key = if key == "." {
            format!("{prefix}config").trim_end_matches('.').to_owned()
        } else {
            format!("{prefix}{key}")
        };
        ConfigError::new(key, without_value(e.into_inner().message()))
    })
}

/// `line L, column C: ` of byte `offset` in `text` (both from 1).
fn line_column(text: &str, offset: usize) -> String {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("line {line}, column {column}: ")
}

/// Adds, to an error at a key that a `ZONE_PROGRAM_*` variable of `env` set, the variable's name
/// and the form it takes.
pub fn with_env_hint(mut err: ConfigError, env: &[(String, String)]) -> ConfigError {
    // `sdk.local.keys[0].ver` was set by `ZONE_PROGRAM_SDK__LOCAL__KEYS` (or a deeper variable).
    let mut key = String::new();
    for part in err.key.split('.') {
        let part = part.split('[').next().unwrap_or(part);
        key = if key.is_empty() { part.to_owned() } else { format!("{key}.{part}") };
        let var = format!("{ENV_PREFIX}{}", key.replace('.', "__").to_ascii_uppercase());
        if env.iter().any(|(k, _)| *k == var) {
            err.reason = format!(
                "{} (set by the environment variable {var}; its value is read as TOML: a list is [\"a\", \"b\"], a \
                 table is {{k = 1}}, text may be bare or \"quoted\")",
                err.reason
            );
            break;
        }
    }
    err
}

/// A deserialisation message without the value it quotes: serde's `invalid type: string "…",
/// expected …` would print a mistyped secret (a token given where a list is expected) at start.
/// Rust type names are said in words (`u64` is "a whole number").
fn without_value(message: &str) -> String {
    let kinds = ["invalid type", "invalid value", "unknown variant", "invalid length"];
    match (kinds.iter().find(|k| message.starts_with(*k)), message.rsplit_once(", expected ")) {
        (Some(kind), Some((_, expected))) => format!("{kind}, expected {}", in_words(expected)),
        (Some(kind), None) => (*kind).to_owned(),
        _ => message.to_owned(),
    }
}

/// serde's name of an expected type, in the words of the configuration file.
fn in_words(expected: &str) -> String {
    match expected {
        "u8" | "u16" | "u32" | "u64" | "usize" => "a whole number (0 or more)".into(),
        "i8" | "i16" | "i32" | "i64" | "isize" => "a whole number".into(),
        "f32" | "f64" => "a number".into(),
        "a sequence" => "a list, e.g. [\"a\", \"b\"]".into(),
        "a map" => "a table".into(),
        e if e.starts_with("struct ") => "a table".into(),
        e => e.to_owned(),
    }
}

/// Sets `ZONE_PROGRAM_A__B__C=value` at `a.b.c`. The value is read as a TOML value when it parses as
/// one (numbers, booleans, arrays, inline tables, quoted strings), else taken as a plain string.
fn apply_override(table: &mut toml::Table, name: &str, raw: &str) -> Result<(), ConfigError> {
    let path: Vec<String> = name[ENV_PREFIX.len()..].split("__").map(str::to_ascii_lowercase).collect();
    let dotted = path.join(".");
    if path.iter().any(String::is_empty) {
        return Err(ConfigError::new(name, "malformed variable name"));
    }
    let value = match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
        Ok(mut t) => t.remove("v").expect("parsed key"),
        Err(_) => toml::Value::String(raw.to_owned()),
    };
    let (last, parents) = path.split_last().expect("non-empty path");
    let mut cur = table;
    for seg in parents {
        let entry = cur.entry(seg.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        cur = entry.as_table_mut().ok_or_else(|| ConfigError::new(&dotted, "is not a table"))?;
    }
    cur.insert(last.clone(), value);
    Ok(())
}
