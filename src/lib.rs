//! Frontegg token operator: issues Frontegg API and access tokens into Kubernetes Secrets.

pub mod api;
pub mod controller;
pub mod identity;
pub mod leader;
pub mod metrics;
pub mod server;
