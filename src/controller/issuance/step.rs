//! What every execute step works on (`Step`: read-only) and what it changes (`Changes`), so
//! that a step takes two values instead of ten parameters.

use jiff::Timestamp;

use crate::api::TokenStatus;
use crate::controller::kinds::TokenResource;
use crate::controller::runtime::context::Context;
use crate::controller::runtime::error::Error;
use crate::controller::runtime::events::Note;
use crate::controller::secret::credential::Credential;
use crate::controller::secret::{layout, write};
use crate::controller::steps::dereference::World;
use crate::controller::steps::plan::Desired;

/// The inputs of the planned step: the resource, the shared context, what dereference read,
/// what the spec wants, and the time the pass planned at.
pub struct Step<'a, K> {
    pub obj: &'a K,
    pub ctx: &'a Context,
    pub world: &'a World,
    pub desired: &'a Desired,
    pub now: Timestamp,
}

/// What the step changes: the status the pass records and the Events it publishes. `written`
/// is the status of a step that failed after closing its journal (the new token revoked
/// again), for the failure report to record that.
pub struct Changes {
    pub status: TokenStatus,
    pub notes: Vec<Note>,
    pub written: Option<TokenStatus>,
}

impl Changes {
    pub fn new(status: TokenStatus) -> Self {
        Changes {
            status,
            notes: Vec::new(),
            written: None,
        }
    }

    /// The journal is settled (the token it opened for is gone again): what a failure must
    /// still record.
    pub fn settle_journal(&mut self) {
        self.status.close_journal();
        self.written = Some(self.status.clone());
    }
}

impl<K: TokenResource> Step<'_, K> {
    pub fn uid(&self) -> String {
        self.obj.meta().uid.clone().unwrap_or_default()
    }

    /// Writes the token's Secret holding `cred`.
    pub async fn write_credential(&self, cred: &Credential) -> Result<(), Error> {
        let want = layout::desired_secret(
            self.obj,
            &self.desired.secret_name,
            cred,
            &self.world.secret_context(),
        )?;
        write::write(&self.world.secrets, self.world.live_secret.as_ref(), want).await
    }
}
