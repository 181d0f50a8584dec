//! Frontegg token operator: issues Frontegg API and access tokens into Kubernetes Secrets.

pub mod api;
pub mod identity;
