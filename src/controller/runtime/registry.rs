//! One shared client per environment.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::error::Error;
use crate::identity::IdentityClient;

/// One client per environment, replaced when its connection or credentials change, so the
/// vendor token cache, rate limiter and 429 gate are shared by every token of the environment.
#[derive(Default)]
pub struct ClientRegistry {
    clients: Mutex<HashMap<String, (String, Arc<IdentityClient>)>>,
}

impl ClientRegistry {
    pub fn cached(&self, key: &str) -> Option<Arc<IdentityClient>> {
        self.clients.lock().ok()?.get(key).map(|(_, c)| c.clone())
    }

    pub fn get_or_create(
        &self,
        key: &str,
        fingerprint: String,
        make: impl FnOnce() -> Result<IdentityClient, Error>,
    ) -> Result<Arc<IdentityClient>, Error> {
        let mut clients = self
            .clients
            .lock()
            .map_err(|_| Error::CredentialsInvalid("client registry poisoned".into()))?;
        if let Some((fp, client)) = clients.get(key)
            && *fp == fingerprint
        {
            return Ok(client.clone());
        }
        let client = Arc::new(make()?);
        clients.insert(key.to_string(), (fingerprint, client.clone()));
        Ok(client)
    }
}
