//! The job runner of the program: ability jobs through the registry (their output is the result to
//! report), event jobs through the handler registered for their type.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::payload::JobPayload;
use super::{JobRunner, Step};
use crate::app::AppState;
use crate::error::AppError;
use crate::store::{JobKind, JobRow};

/// Runs jobs for the workers: abilities through the registry, events through their handlers.
pub struct Runner {
    state: AppState,
}

impl Runner {
    /// A runner over `state`.
    pub fn new(state: AppState) -> Arc<Self> {
        Arc::new(Self { state })
    }
}

#[async_trait]
impl JobRunner for Runner {
    async fn run(&self, job: JobRow, last_try: bool) -> Step {
        match job.kind {
            JobKind::Ability => {
                let outcome = match JobPayload::parse(JobKind::Ability, &job.payload) {
                    Some(JobPayload::Ability(payload)) => {
                        let budget = Duration::from_secs(self.state.config.jobs.model_poll_deadline_secs);
                        let cx = self.state.ability_cx(job.ctx.clone(), payload.notify_id, budget);
                        self.state.abilities.call(&cx, &job.ctx.ability_id, &payload.data).await
                    }
                    _ => Err(AppError::Internal(anyhow::anyhow!("an ability job payload does not parse"))),
                };
                if let Err(AppError::Internal(detail)) = &outcome {
                    tracing::error!(detail = %format!("{detail:#}"), "async job failed");
                }
                let (errcode, result) = self.state.abilities.reply(outcome);
                Step::Report { errcode, result }
            }
            JobKind::Event => match crate::events::run_job(&self.state, job, last_try).await {
                crate::events::EventStep::Done => Step::Done,
                crate::events::EventStep::Retry => Step::Retry,
                crate::events::EventStep::Failed => Step::Failed,
                crate::events::EventStep::Wait => Step::Wait,
            },
        }
    }
}
