//! Kubernetes Events (`events.k8s.io/v1`) with repeats counted, keyed by what they say.
//!
//! kube-runtime's `Recorder` counts a repeat into the first Event's series when type,
//! reason, action and objects match, whatever the note says: a baseline's second
//! `Repaired` Event, about another namespace or another object, only raised the first's
//! count and kept its note, so Events named the first repair after start and no other.
//! client-go's events broadcaster keys on the note too; so does this. A repeat of the same
//! Event within [`REPEAT_WINDOW`] patches its series (`kubectl` shows "x2 over 75s").
//!
//! An Event that cannot be published (no RBAC for `events.k8s.io`, an API server refusing
//! it) does not fail the reconcile that announced it: it is counted in
//! `kube_baseline_event_failures_total` by reason and logged as a warning at most once a
//! [`FAILURE_WARNING_EVERY`], with how many failed since the last warning.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event as KubeEvent, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType, Reporter};
use parking_lot::Mutex;
use tracing::warn;

use crate::controller::runtime::metrics::Metrics;

/// How long an Event is remembered for its repeats (kube-runtime's and client-go's 6
/// minutes).
pub const REPEAT_WINDOW: Duration = Duration::from_secs(6 * 60);

/// At most one warning about Events that could not be published in this long: a missing
/// RBAC rule fails every Event, thousands in a converge.
pub const FAILURE_WARNING_EVERY: Duration = Duration::from_secs(60);

/// Publishes Events, counting exact repeats into a series.
pub struct EventRecorder {
    client: Client,
    reporter: Reporter,
    recent: Mutex<RecentEvents>,
    metrics: Arc<Metrics>,
    failures: Mutex<FailureWarnings>,
}

impl std::fmt::Debug for EventRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventRecorder")
            .field("reporter", &self.reporter)
            .finish_non_exhaustive()
    }
}

impl EventRecorder {
    pub fn new(client: Client, reporter: Reporter, metrics: Arc<Metrics>) -> Self {
        Self {
            client,
            reporter,
            recent: Mutex::default(),
            metrics,
            failures: Mutex::default(),
        }
    }

    /// Publishes `event` about `regarding`: a new Event, or, when the same one was
    /// published within [`REPEAT_WINDOW`], one more in its series. A failure is counted
    /// and warned of here (see the module's notes), not returned: nothing the caller does
    /// depends on it.
    pub async fn publish(&self, event: &Event, regarding: &ObjectReference) {
        if let Err(error) = self.send(event, regarding).await {
            self.metrics.count_event_failure(&event.reason);
            if let Some(failed) = self.failures.lock().failed(Instant::now()) {
                warn!(
                    %error,
                    reason = %event.reason,
                    failed,
                    "cannot publish Events (may the operator's ServiceAccount create \
                     events.k8s.io Events?); `failed` counts them since the last warning"
                );
            }
        }
    }

    async fn send(&self, event: &Event, regarding: &ObjectReference) -> Result<(), kube::Error> {
        let key = EventKey::new(event, regarding);
        let namespace = regarding.namespace.as_deref().unwrap_or("default");
        let events = Api::<KubeEvent>::namespaced(self.client.clone(), namespace);
        let seen = self.recent.lock().repeat(&key, Instant::now());
        let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
        match seen {
            Some(Repeat { name, count }) => {
                let series = serde_json::json!({
                    "series": EventSeries { count, last_observed_time: now }
                });
                events
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&series))
                    .await?;
            }
            None => {
                let created = events
                    .create(
                        &PostParams::default(),
                        &self.new_event(event, regarding, now),
                    )
                    .await?;
                let name = created.metadata.name.unwrap_or_default();
                self.recent.lock().remember(key, name, Instant::now());
            }
        }
        Ok(())
    }

    fn new_event(&self, event: &Event, regarding: &ObjectReference, now: MicroTime) -> KubeEvent {
        let controller = &self.reporter.controller;
        let prefix = regarding.name.as_deref().unwrap_or(controller);
        KubeEvent {
            metadata: ObjectMeta {
                // client-go's name: the object's and the time in hex nanoseconds.
                name: Some(format!("{prefix}.{:x}", now.0.as_nanosecond())),
                namespace: regarding.namespace.clone(),
                ..ObjectMeta::default()
            },
            action: Some(event.action.clone()),
            reason: Some(event.reason.clone()),
            note: event.note.clone(),
            event_time: Some(now),
            regarding: Some(regarding.clone()),
            related: event.secondary.clone(),
            reporting_controller: Some(controller.clone()),
            reporting_instance: Some(
                self.reporter
                    .instance
                    .clone()
                    .unwrap_or_else(|| controller.clone()),
            ),
            type_: Some(type_name(event.type_).to_string()),
            ..KubeEvent::default()
        }
    }
}

fn type_name(type_: EventType) -> &'static str {
    match type_ {
        EventType::Normal => "Normal",
        EventType::Warning => "Warning",
    }
}

/// When to warn of Events that could not be published: the first failure, then at most once
/// a [`FAILURE_WARNING_EVERY`].
#[derive(Debug, Default)]
struct FailureWarnings {
    last_warned: Option<Instant>,
    /// Failures since the last warning, this one included.
    since_warned: u64,
}

impl FailureWarnings {
    /// Records one failure at `now`; the failures since the last warning if one is due now.
    fn failed(&mut self, now: Instant) -> Option<u64> {
        self.since_warned = self.since_warned.saturating_add(1);
        let due = self
            .last_warned
            .is_none_or(|last| now.saturating_duration_since(last) >= FAILURE_WARNING_EVERY);
        if !due {
            return None;
        }
        self.last_warned = Some(now);
        Some(std::mem::take(&mut self.since_warned))
    }
}

/// What makes two Events the same: everything they say, the note included.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct EventKey {
    type_: &'static str,
    reason: String,
    action: String,
    note: Option<String>,
    regarding: ObjectKey,
    related: Option<ObjectKey>,
}

/// An object reference without its resourceVersion (it changes with every write).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ObjectKey {
    api_version: Option<String>,
    kind: Option<String>,
    namespace: Option<String>,
    name: Option<String>,
    uid: Option<String>,
}

impl ObjectKey {
    fn new(reference: &ObjectReference) -> Self {
        Self {
            api_version: reference.api_version.clone(),
            kind: reference.kind.clone(),
            namespace: reference.namespace.clone(),
            name: reference.name.clone(),
            uid: reference.uid.clone(),
        }
    }
}

impl EventKey {
    fn new(event: &Event, regarding: &ObjectReference) -> Self {
        Self {
            type_: type_name(event.type_),
            reason: event.reason.clone(),
            action: event.action.clone(),
            note: event.note.clone(),
            regarding: ObjectKey::new(regarding),
            related: event.secondary.as_ref().map(ObjectKey::new),
        }
    }
}

/// One more of an Event already published: its name and its count with this one.
#[derive(Debug, PartialEq, Eq)]
struct Repeat {
    name: String,
    count: i32,
}

/// The Events published within the window: key → (name, count, last seen).
#[derive(Debug, Default)]
struct RecentEvents {
    by_key: HashMap<EventKey, Recent>,
    /// When the window's passed Events were last forgotten (at most once a minute, not on
    /// every Event: a burst of thousands would walk them all each time).
    swept: Option<Instant>,
}

/// How often the Events the window has passed are forgotten.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug)]
struct Recent {
    name: String,
    count: i32,
    last: Instant,
}

impl RecentEvents {
    /// Whether `key` is a repeat (counted in) or a new Event; forgets what the window has
    /// passed, so this holds at most the Events of the last [`REPEAT_WINDOW`].
    fn repeat(&mut self, key: &EventKey, now: Instant) -> Option<Repeat> {
        let in_window =
            |recent: &Recent| now.saturating_duration_since(recent.last) < REPEAT_WINDOW;
        if self
            .swept
            .is_none_or(|swept| now.saturating_duration_since(swept) >= SWEEP_EVERY)
        {
            self.by_key.retain(|_, recent| in_window(recent));
            self.swept = Some(now);
        }
        let recent = self
            .by_key
            .get_mut(key)
            .filter(|recent| in_window(recent))?;
        recent.count = recent.count.saturating_add(1);
        recent.last = now;
        Some(Repeat {
            name: recent.name.clone(),
            count: recent.count,
        })
    }

    /// Remembers a new Event by the name the API server gave it.
    fn remember(&mut self, key: EventKey, name: String, now: Instant) {
        self.by_key.insert(
            key,
            Recent {
                name,
                count: 1,
                last: now,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repaired(note: &str) -> EventKey {
        let event = Event {
            type_: EventType::Normal,
            reason: "Repaired".to_string(),
            note: Some(note.to_string()),
            action: "Reconcile".to_string(),
            secondary: None,
        };
        let baseline = ObjectReference {
            kind: Some("SecurityBaseline".to_string()),
            name: Some("restricted".to_string()),
            resource_version: Some("1".to_string()),
            ..ObjectReference::default()
        };
        EventKey::new(&event, &baseline)
    }

    #[test]
    fn an_event_with_another_note_is_a_new_event_not_a_repeat_of_the_first() {
        let mut recent = RecentEvents::default();
        let now = Instant::now();
        let shop = repaired("namespace shop: Missing NetworkPolicy deny-all");
        assert_eq!(recent.repeat(&shop, now), None);
        recent.remember(shop, "restricted.abc".to_string(), now);
        let cart = repaired("namespace cart: Missing NetworkPolicy deny-all");
        assert_eq!(recent.repeat(&cart, now), None);
    }

    #[test]
    fn the_same_event_again_counts_into_its_series_until_the_window_passes() {
        let mut recent = RecentEvents::default();
        let start = Instant::now();
        let shop = repaired("namespace shop: Missing NetworkPolicy deny-all");
        recent.remember(shop.clone(), "restricted.abc".to_string(), start);
        let second = start + Duration::from_secs(60);
        assert_eq!(
            recent.repeat(&shop, second),
            Some(Repeat {
                name: "restricted.abc".to_string(),
                count: 2
            })
        );
        // The window counts from the last repeat.
        let third = second + REPEAT_WINDOW - Duration::from_secs(1);
        assert_eq!(recent.repeat(&shop, third).map(|r| r.count), Some(3));
        assert_eq!(recent.repeat(&shop, third + REPEAT_WINDOW), None);
        let other = repaired("namespace cart: Missing Role reader");
        assert_eq!(
            recent.repeat(&other, third + REPEAT_WINDOW + SWEEP_EVERY),
            None
        );
        assert!(recent.by_key.is_empty(), "forgotten after the window");
    }

    #[test]
    fn failures_are_warned_of_at_once_then_at_most_once_a_minute_with_their_count() {
        let mut warnings = FailureWarnings::default();
        let start = Instant::now();
        assert_eq!(warnings.failed(start), Some(1), "the first one at once");
        let later = start + FAILURE_WARNING_EVERY - Duration::from_millis(1);
        assert_eq!(warnings.failed(start + Duration::from_secs(1)), None);
        assert_eq!(warnings.failed(later), None);
        assert_eq!(
            warnings.failed(start + FAILURE_WARNING_EVERY),
            Some(3),
            "the next warning counts the two held back and itself"
        );
        assert_eq!(warnings.failed(start + FAILURE_WARNING_EVERY), None);
    }

    #[test]
    fn a_new_resource_version_of_the_object_is_the_same_object() {
        let mut other_version = repaired("n");
        other_version.regarding = ObjectKey::new(&ObjectReference {
            kind: Some("SecurityBaseline".to_string()),
            name: Some("restricted".to_string()),
            resource_version: Some("2".to_string()),
            ..ObjectReference::default()
        });
        assert_eq!(other_version, repaired("n"));
    }
}
