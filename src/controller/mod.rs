//! The controllers: one token lifecycle for the four kinds, and the environments' health.
//!
//! The wings, from the watch event down (a file uses only wings below its own, or files of
//! its own wing that come before it in the pipeline; `docs/architecture.md` draws it):
//! - `run`: which controllers run over which watches.
//! - `token`: the drivers. A pass (`pass.rs`) is validate → dereference → plan → execute →
//!   status; deletion runs `cleanup.rs`, `managementPolicy: Observe` runs `observe.rs`, and
//!   `report.rs` writes what a pass decided.
//! - `issuance`: the steps that change a remote token (issue, recover, import, patch,
//!   refresh, revoke), one file each, dispatched by `execute.rs`.
//! - `steps`: what a pass reads and decides, most of it pure: validate, dereference, plan,
//!   status, and the records they read (the journal, the mark, drift).
//! - `secret`: the Secret a token is written to: layout, template, JWT delivery, writes.
//! - `environment`: which environment serves a token: resolve, policy, health, in-use
//!   protection and leaked tokens.
//! - `runtime`: what every wing shares: context, caches, errors, Events, conditions,
//!   listings, the reissue throttle, triggers and per-token metric series.
//! - `kinds`: `TokenResource`, the four kinds as data over the one lifecycle.

pub mod environment;
pub mod issuance;
pub mod kinds;
mod run;
pub mod runtime;
pub mod secret;
pub mod steps;
pub mod token;

pub use environment::reference::parse_environment_ref;
pub use kinds::{SecretLayout, TokenResource};
pub use run::{WatchScope, run};
pub use runtime::context::{Config, Context};
pub use runtime::error::Error;
pub use runtime::events;
pub use steps::marker::installation_id;
