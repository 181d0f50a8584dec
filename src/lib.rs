//! Frontegg token operator: issues Frontegg API and access tokens into Kubernetes Secrets.
//!
//! No input may reach a panic, and no function outside tests runs past 60 lines or takes more
//! than 6 parameters: the lints below and `clippy.toml` hold it (see `make lint`).
#![cfg_attr(
    not(test),
    deny(
        clippy::arithmetic_side_effects,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::unchecked_time_subtraction,
        clippy::too_many_lines
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
pub mod webhook;
