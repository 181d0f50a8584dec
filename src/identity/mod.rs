//! Client for Frontegg's identity API (token endpoints) and vendor authentication.
//!
//! Contract: `shared/frontegg-openapi/identity.yml` and `vendor-auth.yml`. `endpoints` holds
//! the token families and their wire types, `client` the authentication, retries and
//! decoding, `budget` the environment's request budget handed out by priority, `breaker` the
//! pause of a failing environment, `error` the categories callers branch on.
//!
//! May use: `crate::api::limits`. Metrics reach it through `RequestObserver`; it never uses
//! the controller.

mod breaker;
mod budget;
mod client;
mod endpoints;
mod error;

pub use budget::Priority;
pub use client::{
    ApiTokenGrant, AuthMode, ClientOptions, EnvironmentConfig, IdentityClient, RequestObserver,
    TokenOwner, UserIdentity,
};
pub use endpoints::*;
pub use error::IdentityError;
pub use secrecy::{ExposeSecret, SecretString};
