//! What every wing shares, and nothing of the lifecycle itself: the `Context` a reconcile
//! gets, the watch caches, the error categories (which become condition and Event reasons),
//! Events and conditions, the shared remote listings and their background listers, the
//! reissue throttle, the client registry, the trigger filter,
//! the view of which tokens hold an environment, the leaked tokens found, the per-token
//! metric series, and the test-only hooks and fixtures.
//!
//! May use: `crate::api`, `crate::identity`, `crate::metrics`, `kinds`, and the one leaf type
//! the context holds from another wing (`secret::sessions`). Nothing here imports `token`,
//! `issuance`, `steps` or `environment`.

pub mod background;
pub mod caches;
pub mod conditions;
pub mod context;
pub mod error;
pub mod events;
#[cfg(test)]
pub mod fixtures;
pub mod holders;
pub mod jitter;
pub mod leaks;
pub mod listings;
pub mod registry;
pub mod series;
pub mod shares;
pub mod test_hooks;
pub mod throttle;
pub mod trigger;
