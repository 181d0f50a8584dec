//! Which environment serves a token, and whether it can: `reference` (pure: the effective
//! reference, its key, the base URL rules), `resolve` (the guard rails, then the credentials, then the client), `policy` (pure: a
//! ClusterFronteggEnvironment's token policy), `protection` (the in-use finalizer on an
//! environment and its credentials Secret while tokens hold them), `health` (the
//! environments' own controller), `credentials` (the credentials Secrets' controller, which
//! releases one being deleted once nothing holds it), `leaks` (leaked tokens reported and
//! collected) and `pace` (how the background drift checks keep up with the budget).
//!
//! May use: `runtime`, `kinds`, `steps::journal` (what a token holds), `crate::api`,
//! `crate::identity`, `crate::metrics`.

pub mod chart_default;
pub mod credentials;
pub mod health;
pub mod leaks;
pub mod pace;
pub mod policy;
pub mod protection;
pub mod reference;
pub mod resolve;
