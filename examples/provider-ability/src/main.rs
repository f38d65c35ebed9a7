//! The provider's image binary: the stock program plus this crate's ability and event handler.

use provider_ability::{HitSummary, RiskAlert};
use zone_program::Program;
use zone_program::config::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let path = std::env::args().nth(1);
    let config = Config::load(path.as_deref().map(std::path::Path::new), std::env::vars())?;
    let app = Program::stock(config).ability(RiskAlert).event_handler("hit_keyword", HitSummary).build().await?;
    app.run_until_stopped(zone_program::app::shutdown_signal()).await
}
