//! The public demo secrets of the local zone: the defaults of the program's `[sdk.local]`, the local
//! zone and the app side, so that `serve --local` and the app commands work together with no
//! configuration. They are published in this repository and are only good offline: the program
//! refuses them on anything but the local backend's defaults.

/// `sdk.local.token`: the local codec's token.
pub const LOCAL_TOKEN: &str = "LocalZoneDemoToken";
/// `sdk.local.keys[0].encoding_aes_key` (version 1): the local codec's key.
pub const LOCAL_KEY: &str = "LocalZoneDemoKey0123456789abcdefghijklmnopq";
/// `local_zone.corp_secret` / `app.corp_secret`: the demo corp's app secret.
pub const CORP_SECRET: &str = "LocalZoneDemoCorpSecret";
/// `local_zone.app_token` / `app.callback.token`: the token of the app's callback URL.
pub const APP_TOKEN: &str = "LocalAppToken";
/// `local_zone.app_encoding_aes_key` / `app.callback.encoding_aes_key`.
pub const APP_KEY: &str = "LocalAppDemoKey0123456789abcdefghijklmnopqr";
/// The demo corp of the local zone.
pub const CORP_ID: &str = "wwlocal0000000001";
/// The demo program id.
pub const PROGRAM_ID: &str = "zp_local_demo";
