//! The Kubernetes Secret a token is written to. `credential` holds the values (wrapped, never
//! printed); `layout` (pure) builds the desired Secret per kind; `template` (pure) renders
//! `spec.secret.template`; `jwt` (pure) schedules the delivered JWT and `sessions` keeps its
//! refresh tokens; `write` is the one place that writes or deletes a token's Secret.
//!
//! May use: `kinds`, `runtime`, `crate::api`, `crate::identity`, `crate::metrics`.

pub mod credential;
pub mod jwt;
pub mod layout;
pub mod sessions;
pub mod template;
pub mod write;
