//! Execute: carry out the one planned step, then the revocations that are due.

use super::import::import;
use super::issue::issue;
use super::patch::{PatchReason, patch};
use super::recover::recover;
use super::refresh::{refresh_access_token, rewrite_secret};
use super::revoke::revoke_due;
use super::step::{Changes, Step};
use crate::controller::kinds::TokenResource;
use crate::controller::runtime::error::Error;
use crate::controller::steps::plan::Plan;

pub async fn execute<K: TokenResource>(
    step: &Step<'_, K>,
    plan: Plan,
    changes: &mut Changes,
) -> Result<(), Error> {
    match plan {
        Plan::Recover(recovery) => recover(step, changes, recovery).await?,
        Plan::Issue { reason, revoke } => issue(step, changes, reason, revoke).await?,
        Plan::Import => import(step, changes).await?,
        Plan::Patch => patch(step, changes, PatchReason::Spec).await?,
        Plan::RepairDrift => patch(step, changes, PatchReason::Drift).await?,
        Plan::RefreshAccessToken => refresh_access_token(step).await?,
        Plan::WriteSecret => rewrite_secret(step, changes).await?,
        Plan::Steady { .. } => {}
    }
    revoke_due(step, changes).await;
    Ok(())
}
