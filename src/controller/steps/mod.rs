//! What a pass reads and decides, in pipeline order: `validate` (pure: the spec against its
//! bounds), `dereference` (the environment, the Secret, the remote state), `plan` (pure: the
//! one next step), `status` (pure: Ready, the next renewal, the requeue). Beside them, the
//! records they read: `journal` (the issuance journal and the finalizer), `marker` (pure: the
//! mark on remote tokens), `drift` (pure: spec against listing) and `leaks` (the marked tokens
//! a listing shows whose resource is gone).
//!
//! May use: `secret`, `environment`, `runtime`, `kinds`. Never `issuance` or `token`.

pub mod dereference;
pub mod drift;
pub mod journal;
pub mod leaks;
pub mod marker;
pub mod plan;
pub mod status;
pub mod validate;
