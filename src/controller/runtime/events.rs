//! Kubernetes Events (events.k8s.io/v1), with repeats folded into a series like kube's
//! `Recorder` and client-go do, but at a bounded cost.
//!
//! kube's `Recorder` keeps every Event it published, whole, for six minutes, and scans that
//! cache on every publish. Issuing 5,000 tokens left 17.7 MiB in it (heaptrack, docs/
//! benchmarks.md), and at 20,000 the scans made the operator's CPU grow with the square of
//! the burst. Here a repeat is remembered by a digest and the Event's name only, and expired
//! entries are swept at most every 30 s.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, Patch, PatchParams, PostParams};
pub use kube::runtime::events::EventType;

/// An Event a step wants published once the pass is recorded: type, reason, note.
pub type Note = (EventType, &'static str, String);

/// How long a repeat joins the series of an earlier Event (client-go's and kube's value).
const SERIES_WINDOW: Duration = Duration::from_secs(6 * 60);
const SWEEP_EVERY: Duration = Duration::from_secs(30);

struct Series {
    name: String,
    count: i32,
    last: Timestamp,
}

#[derive(Default)]
struct State {
    series: HashMap<u64, Series>,
    swept: Option<Timestamp>,
}

pub struct EventPublisher {
    client: kube::Client,
    controller: String,
    instance: String,
    state: Mutex<State>,
}

impl EventPublisher {
    pub fn new(client: kube::Client, controller: String, instance: String) -> Self {
        EventPublisher {
            client,
            controller,
            instance,
            state: Mutex::default(),
        }
    }

    pub async fn publish(
        &self,
        regarding: &ObjectReference,
        type_: EventType,
        reason: &str,
        note: &str,
    ) -> Result<(), kube::Error> {
        let now = Timestamp::now();
        let key = series_key(regarding, type_, reason, note);
        let namespace = regarding.namespace.clone().unwrap_or_default();
        let earlier = self.remember(key, now);
        let events: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        match earlier {
            Some((name, count)) => {
                let patch = serde_json::json!({
                    "series": EventSeries { count, last_observed_time: MicroTime(now) },
                });
                events
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map(drop)
            }
            None => {
                let (name, event) = self.new_event(regarding, type_, reason, note, now);
                let created = events.create(&PostParams::default(), &event).await;
                if created.is_ok()
                    && let Ok(mut state) = self.state.lock()
                {
                    state.series.insert(
                        key,
                        Series {
                            name,
                            count: 1,
                            last: now,
                        },
                    );
                }
                created.map(drop)
            }
        }
    }

    /// A new Event (not a repeat), named after the object and the time.
    fn new_event(
        &self,
        regarding: &ObjectReference,
        type_: EventType,
        reason: &str,
        note: &str,
        now: Timestamp,
    ) -> (String, Event) {
        let name = format!(
            "{}.{:x}",
            regarding.name.as_deref().unwrap_or(&self.controller),
            now.as_nanosecond()
        );
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: regarding.namespace.clone().or(Some(String::new())),
                ..Default::default()
            },
            action: Some("Reconcile".into()),
            reason: Some(reason.into()),
            note: Some(note.into()),
            event_time: Some(MicroTime(now)),
            regarding: Some(regarding.clone()),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            type_: Some(
                match type_ {
                    EventType::Normal => "Normal",
                    EventType::Warning => "Warning",
                }
                .into(),
            ),
            ..Default::default()
        };
        (name, event)
    }

    fn remember(&self, key: u64, now: Timestamp) -> Option<(String, i32)> {
        self.state.lock().ok()?.remember(key, now)
    }
}

impl State {
    /// The earlier Event this one repeats, with the series count it now reaches; sweeps the
    /// expired entries now and then.
    fn remember(&mut self, key: u64, now: Timestamp) -> Option<(String, i32)> {
        let due = self.swept.is_none_or(|t| {
            now.duration_since(t).as_secs() >= i64::try_from(SWEEP_EVERY.as_secs()).unwrap_or(0)
        });
        if due {
            self.series.retain(|_, s| fresh(s.last, now));
            self.swept = Some(now);
        }
        let series = self.series.get_mut(&key).filter(|s| fresh(s.last, now))?;
        series.count = series.count.saturating_add(1);
        series.last = now;
        Some((series.name.clone(), series.count))
    }
}

fn fresh(last: Timestamp, now: Timestamp) -> bool {
    now.duration_since(last).as_secs() < i64::try_from(SERIES_WINDOW.as_secs()).unwrap_or(0)
}

fn series_key(regarding: &ObjectReference, type_: EventType, reason: &str, note: &str) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (
        regarding.uid.as_deref(),
        regarding.namespace.as_deref(),
        regarding.name.as_deref(),
        regarding.kind.as_deref(),
        matches!(type_, EventType::Warning),
        reason,
        note,
    )
        .hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_join_a_series_and_old_entries_are_swept() {
        let mut state = State::default();
        let t0 = Timestamp::now();
        state.series.insert(
            1,
            Series {
                name: "a.1".into(),
                count: 1,
                last: t0,
            },
        );
        state.swept = Some(t0);
        assert_eq!(state.remember(1, t0), Some(("a.1".into(), 2)));
        assert_eq!(
            state.remember(2, t0),
            None,
            "a different Event starts its own"
        );
        // Past the series window the entry is swept, and the repeat starts a new Event.
        let later = t0.checked_add(jiff::SignedDuration::from_mins(7)).unwrap();
        assert_eq!(state.remember(1, later), None);
        assert!(state.series.is_empty(), "swept");
    }

    #[test]
    fn the_note_and_the_object_are_part_of_the_series() {
        let obj = ObjectReference {
            uid: Some("u".into()),
            ..Default::default()
        };
        let other = ObjectReference {
            uid: Some("v".into()),
            ..Default::default()
        };
        let k = series_key(&obj, EventType::Normal, "Issued", "token 1");
        assert_eq!(k, series_key(&obj, EventType::Normal, "Issued", "token 1"));
        assert_ne!(k, series_key(&obj, EventType::Normal, "Issued", "token 2"));
        assert_ne!(
            k,
            series_key(&other, EventType::Normal, "Issued", "token 1")
        );
        assert_ne!(k, series_key(&obj, EventType::Warning, "Issued", "token 1"));
    }
}
