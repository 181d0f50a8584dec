//! Client for Frontegg's identity API (token endpoints) and vendor authentication.
//!
//! Contract: `shared/frontegg-openapi/identity.yml` and `vendor-auth.yml`.

mod client;
mod endpoints;
mod error;

pub use client::{
    ApiTokenGrant, AuthMode, ClientOptions, EnvironmentConfig, IdentityClient, RequestObserver,
    TokenOwner, UserIdentity,
};
pub use endpoints::*;
pub use error::IdentityError;
pub use secrecy::{ExposeSecret, SecretString};
