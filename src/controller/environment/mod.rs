//! Which environment serves a token, and whether it can: `reference` (pure: the effective
//! reference, its key, the base URL rules), `registry` (one shared client per environment),
//! `resolve` (the guard rails, then the credentials, then the client), `policy` (pure: a
//! ClusterFronteggEnvironment's token policy) and `health` (the environments' own controller).
//!
//! May use: `runtime`, `crate::api`, `crate::identity`, `crate::metrics`.

pub mod health;
pub mod policy;
pub mod reference;
pub mod registry;
pub mod resolve;
