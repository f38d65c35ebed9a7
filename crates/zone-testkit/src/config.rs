//! The developer configuration: one TOML file (and `ZONE_PROGRAM_*` overrides) for every part the
//! developer CLI runs: the program's sections, `[local_zone]` (the emulator) and `[app]` (the app
//! side). The image's binary reads only the program's sections and refuses the others.

use std::path::Path;

use zone_app::config::AppConfig;
use zone_local::config::LocalZoneConfig;
use zone_program::config::{self, Config};

/// Every part's configuration, loaded from one file.
#[derive(Debug, Default)]
pub struct DevConfig {
    /// The program's sections (`[server]`, `[sdk]`, `[store]`, …).
    pub program: Config,
    /// `[local_zone]`: the emulator (`serve --local`, `local-zone`).
    pub local_zone: LocalZoneConfig,
    /// `[app]`: the app side, outside the zone (`zone-program app …`).
    pub app: AppConfig,
}

impl DevConfig {
    /// Defaults, then `file` (if any), then `ZONE_PROGRAM_*` variables from `env`; every part validated.
    pub fn load(file: Option<&Path>, env: impl IntoIterator<Item = (String, String)>) -> anyhow::Result<Self> {
        let mut table = config::layered_table(file, env)?;
        let local_zone: LocalZoneConfig = config::section(take_section(&mut table, "local_zone")?, "local_zone.")?;
        local_zone.validate()?;
        let app: AppConfig = config::section(take_section(&mut table, "app")?, "app.")?;
        app.validate()?;
        Ok(Self { program: Config::from_table(table)?, local_zone, app })
    }
}

/// Removes `[name]` from `table` (an empty table when absent).
fn take_section(table: &mut toml::Table, name: &str) -> Result<toml::Table, config::ConfigError> {
    match table.remove(name) {
        None => Ok(toml::Table::new()),
        Some(toml::Value::Table(t)) => Ok(t),
        Some(_) => Err(config::ConfigError::new(name, "must be a table")),
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret as _;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn the_app_defaults_talk_to_the_local_zone_defaults() {
        let c = DevConfig::load(None, env(&[])).unwrap();
        let (app, lz) = (&c.app, &c.local_zone);
        assert_eq!(app.base_url, format!("http://{}", lz.listen));
        assert_eq!((app.corp_id.as_str(), app.program_id.as_str()), (lz.corp_id.as_str(), lz.program_id.as_str()));
        assert_eq!(app.corp_secret.expose_secret(), lz.corp_secret.expose_secret());
        assert_eq!(app.callback.token.expose_secret(), lz.app_token.expose_secret());
        assert_eq!(app.callback.encoding_aes_key.expose_secret(), lz.app_encoding_aes_key.expose_secret());
    }

    #[test]
    fn a_bad_app_callback_key_is_an_error_that_names_it() {
        let err = DevConfig::load(None, env(&[("ZONE_PROGRAM_APP__CALLBACK__ENCODING_AES_KEY", "short")])).unwrap_err();
        assert!(err.to_string().contains("app.callback.encoding_aes_key"), "{err}");
        let err = DevConfig::load(None, env(&[("ZONE_PROGRAM_APP__BASE_URL", "qyapi.weixin.qq.com")])).unwrap_err();
        assert!(err.to_string().contains("app.base_url"), "{err}");
    }

    #[test]
    fn the_example_file_parses_and_validates() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config.example.toml");
        DevConfig::load(Some(&path), env(&[])).unwrap();
    }
}
