//! The e2e suite's harness: a thin layer over the test kit's [`TestZone`] (`zone-testkit`), which
//! starts the local zone, the program and an app receiver on random loopback ports exactly as
//! production does. This layer adds what the suite checks everywhere: every reply and log line is
//! scanned for secrets and message content ([`crate::capture`]), and `ZONE_TEST_BACKEND=native` runs
//! every test on the native backend ([`crate::backend`]). `TestEnv` derefs to the kit's `TestZone`,
//! so every helper (`app_call`, `app_async`, `next_notify`, `sdk`, `control`, `call`,
//! `restart_program`, `settle_jobs`, …) is the kit's.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;

pub use zone_testkit::zone::{CORP, DEADLINE, PROGRAM, TEST_RSA_KEY, install_test_key, poll, test_config};
use zone_testkit::{DevConfig, Hooks, TestZone};

/// The kit's test zone with the suite's checks plugged in.
pub struct TestEnv {
    zone: Option<TestZone>,
}

/// The suite's hooks: secret capture and the backend choice.
fn hooks() -> Hooks {
    Hooks {
        on_config: Some(Arc::new(crate::capture::install)),
        on_zone: Some(Arc::new(|zone| crate::capture::register_zone(zone))),
        finish_program: Some(Arc::new(crate::backend::apply)),
        on_reply: Some(Arc::new(crate::capture::check_reply)),
        on_secret: Some(Arc::new(|token| crate::capture::register([token.to_owned()]))),
    }
}

impl TestEnv {
    /// Starts everything with the test configuration, adjusted by `tweak` (applied after the
    /// harness's wiring, so a test may override any of it except `sdk.local.zone_url`).
    pub async fn spawn_with(tweak: impl FnOnce(&mut DevConfig)) -> Self {
        Self { zone: Some(TestZone::builder().hooks(hooks()).start_configured(tweak).await) }
    }

    /// Starts everything with the test configuration.
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }
}

impl Deref for TestEnv {
    type Target = TestZone;

    fn deref(&self) -> &TestZone {
        self.zone.as_ref().expect("running until dropped")
    }
}

impl DerefMut for TestEnv {
    fn deref_mut(&mut self) -> &mut TestZone {
        self.zone.as_mut().expect("running until dropped")
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        drop(self.zone.take());
        crate::capture::check_new();
    }
}
