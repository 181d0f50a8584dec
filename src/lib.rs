//! Frontegg token operator: issues Frontegg API and access tokens into Kubernetes Secrets.
//!
//! No input may reach a panic: the lints below hold outside tests (see `make lint`).
#![cfg_attr(
    not(test),
    deny(
        clippy::arithmetic_side_effects,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::unchecked_time_subtraction
    )
)]

pub mod api;
pub mod controller;
#[cfg(test)]
mod fuzz;
pub mod identity;
pub mod leader;
pub mod metrics;
pub mod server;
