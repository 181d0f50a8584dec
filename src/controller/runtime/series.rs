//! The per-token metric series, read from the token caches when Prometheus scrapes.
//!
//! Keeping a gauge per token beside the cache held a second copy of every name, namespace and
//! environment key (about 0.6 KiB per token), and a deleted resource's series had to be
//! removed by hand. A scrape walks the reflector stores instead, the way kube-state-metrics
//! does: the series are exactly the cached resources, at no cost between scrapes.

use kube::runtime::reflector::Store;

use crate::api::{EnvironmentRef, ManagementPolicy};
use crate::controller::environment::reference::{effective_ref, environment_key};
use crate::controller::kinds::TokenResource;
use crate::metrics::{TokenSample, TokenSource};

pub struct StoreSeries<K: TokenResource> {
    store: Store<K>,
    default_environment: EnvironmentRef,
}

impl<K: TokenResource> StoreSeries<K> {
    pub fn new(store: Store<K>, default_environment: EnvironmentRef) -> Self {
        StoreSeries {
            store,
            default_environment,
        }
    }
}

/// The series of one cached resource.
fn sample<'a, K: TokenResource>(obj: &'a K, default: &EnvironmentRef) -> TokenSample<'a> {
    let namespace = obj.meta().namespace.as_deref().unwrap_or_default();
    let mut sample = TokenSample {
        kind: K::KIND,
        namespace,
        name: obj.meta().name.as_deref().unwrap_or_default(),
        ..TokenSample::default()
    };
    let Some(status) = obj.token_status() else {
        return sample;
    };
    if obj.common().management_policy == ManagementPolicy::Observe {
        sample.observed_exists = status.observed.as_ref().map(|o| o.exists);
        sample.expiry = status
            .observed
            .as_ref()
            .and_then(|o| o.expires_at)
            .map(|t| t.as_second());
        return sample;
    }
    if let Some(current) = &status.current {
        let env = effective_ref(obj.common().environment_ref.as_ref(), default);
        sample.managed_in = Some(environment_key(env, namespace));
        sample.expiry = current.expires_at.map(|t| t.as_second());
    }
    if status.current.is_some() || !status.pending_revocations.is_empty() {
        sample.pending_revocations = Some(status.pending_revocations.len());
    }
    sample.next_renewal = status.next_renewal.map(|t| t.as_second());
    sample
}

impl<K: TokenResource> TokenSource for StoreSeries<K> {
    fn visit(&self, f: &mut dyn FnMut(&TokenSample<'_>)) {
        for obj in self.store.state() {
            f(&sample(&*obj, &self.default_environment));
        }
    }
}

#[cfg(test)]
mod tests {
    use jiff::Timestamp;
    use kube::runtime::{reflector, watcher};

    use super::*;
    use crate::api::{
        EnvironmentKind, IssuedTokenRecord, ObservedToken, PendingRevocation, TokenStatus,
        UserApiToken,
    };
    use crate::controller::runtime::fixtures::user_api_token;

    fn default_env() -> EnvironmentRef {
        EnvironmentRef {
            kind: EnvironmentKind::ClusterFronteggEnvironment,
            name: "shared".into(),
        }
    }

    fn issued(expires: Option<i64>) -> IssuedTokenRecord {
        IssuedTokenRecord {
            id: "tok".into(),
            issued_at: Timestamp::UNIX_EPOCH,
            expires_at: expires.and_then(|s| Timestamp::from_second(s).ok()),
            secret_name: "ci".into(),
            issued_spec_hash: "h".into(),
            patched_spec_hash: None,
            attempt_id: None,
            secret_digest: None,
            updated_at: None,
            imported: false,
            reissued_for_drift: false,
            connection: None,
        }
    }

    fn collect(store: Store<UserApiToken>) -> Vec<String> {
        let mut seen = Vec::new();
        StoreSeries::new(store, default_env()).visit(&mut |t| {
            seen.push(format!(
                "{} {:?} {:?} {:?} {:?} {:?}",
                t.name,
                t.managed_in,
                t.expiry,
                t.next_renewal,
                t.pending_revocations,
                t.observed_exists
            ));
        });
        seen.sort();
        seen
    }

    #[test]
    fn series_follow_the_cached_status_and_leave_with_the_resource() {
        let mut writer = reflector::store::Writer::<UserApiToken>::default();
        let store = writer.as_reader();

        let mut live = user_api_token(|_| {});
        live.metadata.name = Some("live".into());
        live.status = Some(TokenStatus {
            current: Some(issued(Some(2_000))),
            next_renewal: Timestamp::from_second(1_500).ok(),
            pending_revocations: vec![PendingRevocation {
                id: "old".into(),
                reason: "rotated".into(),
                not_before: None,
                connection: None,
            }],
            ..TokenStatus::default()
        });
        let mut fresh = user_api_token(|c| {
            c.environment_ref = Some(EnvironmentRef {
                kind: EnvironmentKind::FronteggEnvironment,
                name: "team".into(),
            })
        });
        fresh.metadata.name = Some("fresh".into());
        let mut watched = user_api_token(|c| {
            c.management_policy = ManagementPolicy::Observe;
        });
        watched.metadata.name = Some("watched".into());
        watched.status = Some(TokenStatus {
            observed: Some(ObservedToken {
                id: "x".into(),
                exists: false,
                expires_at: Timestamp::from_second(9).ok(),
                drift: Vec::new(),
            }),
            ..TokenStatus::default()
        });
        for obj in [&live, &fresh, &watched] {
            writer.apply_watcher_event(&watcher::Event::Apply(obj.clone()));
        }

        assert_eq!(
            collect(store.clone()),
            vec![
                "fresh None None None None None".to_string(),
                "live Some(\"ClusterFronteggEnvironment/shared\") Some(2000) Some(1500) Some(1) None"
                    .to_string(),
                "watched None Some(9) None None Some(false)".to_string(),
            ]
        );

        // A resource that issues its token under its own environment joins that series.
        fresh.status = Some(TokenStatus {
            current: Some(issued(None)),
            ..TokenStatus::default()
        });
        writer.apply_watcher_event(&watcher::Event::Apply(fresh.clone()));
        writer.apply_watcher_event(&watcher::Event::Delete(live.clone()));
        assert_eq!(
            collect(store),
            vec![
                "fresh Some(\"FronteggEnvironment/ns/team\") None None Some(0) None".to_string(),
                "watched None Some(9) None None Some(false)".to_string(),
            ]
        );
    }
}
