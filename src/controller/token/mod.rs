//! The drivers of a token resource, entered from the controller: `reconcile` (the entry: a
//! panic guard, metrics, the error policy), `pass` (the step list: validate → dereference →
//! plan → execute → status), `cleanup` (deletion), `observe` (`managementPolicy: Observe`) and
//! `report` (the status write and the Events of an outcome or a failure).
//!
//! May use every other wing; nothing imports `token` but `run`.

pub mod cleanup;
pub mod observe;
pub mod pass;
pub mod reconcile;
pub mod report;
