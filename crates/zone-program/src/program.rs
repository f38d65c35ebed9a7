//! Building a program from its parts. [`Program::builder`] takes the configuration; abilities and
//! event handlers are added with [`Program::ability`] and [`Program::event_handler`]; [`Program::build`]
//! creates the SDK backend, opens the store, loads the keyring and binds the listener, giving an
//! [`App`] to run. The stock program is the same builder with the stock parts
//! ([`Program::with_stock_parts`]), registered through these very methods:
//!
//! ```no_run
//! # async fn demo(config: zone_program::config::Config) -> anyhow::Result<()> {
//! use zone_program::Program;
//! # struct RiskAlert; struct OnHit;
//! # #[async_trait::async_trait] impl zone_program::Handler for RiskAlert {
//! #   type Input = zone_program::abilities::get_callback_data::Input;
//! #   fn info(&self) -> zone_program::AbilityInfo { unimplemented!() }
//! #   async fn run(&self, _: &zone_program::AbilityCx, _: Self::Input) -> Result<zone_program::Output, zone_program::AppError> { unimplemented!() }
//! # }
//! # #[async_trait::async_trait] impl zone_program::EventHandler for OnHit {
//! #   async fn handle(&self, _: &zone_program::EventCx, _: &zone_program::Event) -> zone_program::EventStep { unimplemented!() }
//! # }
//! let app = Program::builder(config)
//!     .with_stock_parts()
//!     .ability(RiskAlert)
//!     .event_handler("hit_keyword", OnHit)
//!     .build()
//!     .await?;
//! app.run_until_stopped(zone_program::app::shutdown_signal()).await
//! # }
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context as _;

use crate::abilities::{self, Ability, Handler, Typed};
use crate::app::App;
use crate::config::Config;
use crate::events::{self, EventHandler, EventType};
use crate::sdk::{self, ZoneSdk};

/// A program being assembled: configuration, abilities, event handlers, and optionally the SDK
/// backend (by default the one `sdk.backend` names).
pub struct Program {
    config: Config,
    sdk: Option<Arc<dyn ZoneSdk>>,
    abilities: Vec<Arc<dyn Ability>>,
    event_handlers: BTreeMap<String, Arc<dyn EventHandler>>,
    default_event_handler: Option<Arc<dyn EventHandler>>,
}

impl Program {
    /// A program with no ability and no event handler (`list_abilities` is always there: it
    /// describes whatever is registered).
    pub fn builder(config: Config) -> Self {
        Self { config, sdk: None, abilities: Vec::new(), event_handlers: BTreeMap::new(), default_event_handler: None }
    }

    /// The stock program: [`Program::builder`] with [`Program::with_stock_parts`].
    pub fn stock(config: Config) -> Self {
        Self::builder(config).with_stock_parts()
    }

    /// Adds the stock abilities (`invoke_<api>` for every catalogued SDK API, `get_callback_data`,
    /// `chat_digest`, `keyword_report`, `customer_profile`, `reply_suggestions`) and the stock event
    /// handler for every documented event type and for any other type (store the event with its
    /// follow-up, notify the app: the README's scene table). The program's own APIs
    /// ([`abilities::catalog::PROGRAM_APIS`]) are offered only when `abilities.expose_program_apis`
    /// names them.
    pub fn with_stock_parts(mut self) -> Self {
        for api in abilities::catalog::SDK_APIS {
            let own = abilities::catalog::PROGRAM_APIS.contains(&api.name);
            if own && !self.config.abilities.expose_program_apis.iter().any(|name| name == api.name) {
                continue;
            }
            self = self.raw_ability(abilities::invoke::Invoke::new(api));
        }
        self = self
            .ability(abilities::get_callback_data::GetCallbackData)
            .ability(abilities::chat_digest::ChatDigest)
            .ability(abilities::keyword_report::KeywordReport)
            .ability(abilities::customer_profile::CustomerProfile)
            .ability(abilities::reply_suggestions::ReplySuggestions);
        for kind in EventType::ALL {
            if kind != EventType::Other {
                self = self.event_handler(kind.name(), events::StockEvent);
            }
        }
        self.default_event_handler(events::StockEvent)
    }

    /// Adds an ability with a typed input. A later ability with the same id replaces an earlier one.
    pub fn ability(self, handler: impl Handler) -> Self {
        self.raw_ability(Typed(handler))
    }

    /// Adds an ability that parses its own input (as `invoke_<api>` does).
    pub fn raw_ability(mut self, ability: impl Ability) -> Self {
        self.abilities.push(Arc::new(ability));
        self
    }

    /// Handles events of `event_type` (e.g. `"hit_keyword"`) with `handler`, replacing the handler
    /// registered before for that type (the stock one, say).
    pub fn event_handler(mut self, event_type: &str, handler: impl EventHandler) -> Self {
        self.event_handlers.insert(event_type.to_owned(), Arc::new(handler));
        self
    }

    /// Handles events of every type without a handler of its own. Without one, such events are
    /// acknowledged and dropped.
    pub fn default_event_handler(mut self, handler: impl EventHandler) -> Self {
        self.default_event_handler = Some(Arc::new(handler));
        self
    }

    /// Uses `sdk` instead of building the backend `sdk.backend` names (tests with a double).
    pub fn sdk(mut self, sdk: Arc<dyn ZoneSdk>) -> Self {
        self.sdk = Some(sdk);
        self
    }

    /// The configuration (to read; change it before [`Program::builder`]).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Builds the SDK backend (refusing to start if it cannot), opens the store, loads the
    /// keyring and binds `server.listen`.
    pub async fn build(mut self) -> anyhow::Result<App> {
        let sdk = match self.sdk.take() {
            Some(sdk) => sdk,
            None => sdk::build(&self.config).context("starting the SDK backend")?,
        };
        let (config, registry, events) = self.into_parts();
        App::assemble(config, sdk, registry, events).await
    }

    fn into_parts(self) -> (Config, abilities::Registry, events::Events) {
        let abilities = &self.config.abilities;
        let registry =
            abilities::Registry::from_abilities(self.abilities, abilities.max_input_bytes, abilities.output_envelope);
        let events = events::Events::new(self.event_handlers, self.default_event_handler);
        (self.config, registry, events)
    }

    /// The registry alone (tests).
    #[cfg(test)]
    pub(crate) fn into_registry(self) -> abilities::Registry {
        self.into_parts().1
    }
}

#[cfg(test)]
mod tests {
    use async_trait::async_trait;
    use serde_json::json;

    use super::*;
    use crate::abilities::{AbilityCx, AbilityInfo, Output};
    use crate::context::EventCx;
    use crate::error::AppError;
    use crate::events::{Event, EventStep};

    struct Mine(&'static str);

    #[async_trait]
    impl Handler for Mine {
        type Input = crate::abilities::get_callback_data::Input;
        fn info(&self) -> AbilityInfo {
            AbilityInfo {
                id: self.0.into(),
                description: "mine".into(),
                long_running: false,
                input_example: json!({}),
                output_example: json!({}),
            }
        }
        async fn run(&self, _: &AbilityCx, _: Self::Input) -> Result<Output, AppError> {
            Ok(Output::Json(json!({"errcode": 0, "errmsg": "ok"})))
        }
    }

    struct Quiet;

    #[async_trait]
    impl EventHandler for Quiet {
        async fn handle(&self, _: &EventCx, _: &Event) -> EventStep {
            EventStep::Done
        }
    }

    #[test]
    fn a_bare_builder_has_only_list_abilities_and_no_event_handler() {
        let (_, registry, events) = Program::builder(Config::default()).into_parts();
        assert_eq!(registry.ids().collect::<Vec<_>>(), ["list_abilities"]);
        assert!(events.handler("hit_keyword").is_none() && events.handler("anything").is_none());
    }

    #[test]
    fn the_stock_parts_come_through_the_public_methods_and_a_provider_adds_and_replaces() {
        let program = Program::stock(Config::default()).ability(Mine("risk_alert")).ability(Mine("chat_digest"));
        let program = program.event_handler("hit_keyword", Quiet);
        let (_, registry, events) = program.into_parts();
        assert_eq!(
            registry.ids().count(),
            abilities::catalog::SDK_APIS.len() + 7 - abilities::catalog::PROGRAM_APIS.len()
        );
        assert_eq!(registry.get("chat_digest").unwrap().info().description, "mine", "a later ability replaces");
        assert!(registry.get("risk_alert").is_ok() && registry.get("keyword_report").is_ok());
        for kind in EventType::ALL {
            assert!(events.handler(kind.name()).is_some(), "{kind:?}");
        }
        assert!(events.handler("some_future_event").is_some(), "the stock fallback");
        assert_eq!(events.len(), EventType::ALL.len() - 1);
    }

    /// Review finding 7: an app set its own async result through `invoke_program_async_job_call_back`
    /// and sent notifications through `invoke_spec_notify_app`.
    #[test]
    fn the_programs_own_apis_are_abilities_only_when_listed() {
        use crate::error::ErrorCode;
        let (_, registry, _) = Program::stock(Config::default()).into_parts();
        for api in abilities::catalog::PROGRAM_APIS {
            let refused = registry.get(&format!("invoke_{api}")).err().map(|e| e.code());
            assert_eq!(refused, Some(ErrorCode::UnknownAbility), "{api}");
        }
        let mut config = Config::default();
        config.abilities.expose_program_apis = vec!["spec_notify_app".to_owned()];
        let (_, registry, _) = Program::stock(config).into_parts();
        assert!(registry.get("invoke_spec_notify_app").is_ok());
        assert!(registry.get("invoke_program_async_job_call_back").is_err());
    }
}
