//! The memory of our own writes whose watch events have not reached the caches yet.
//!
//! A reconcile triggered by our own write can run before the cache has that write: it would
//! see the old version, plan the same write again and report a repair that was none. So each
//! successful write is remembered with the cached resourceVersion it was written over, and
//! the same write over the version the cache still shows is skipped. As soon as the cache
//! shows another version the write has arrived (or someone else wrote after it) and it is
//! forgotten, so this holds at most the writes in flight.
//!
//! A namespace's writes are settled when it is next reconciled, and that can be long after
//! the echo arrived: in a cold start every echo waits behind the namespaces not protected
//! yet (the work queue serves new namespaces first), so a 10,000-namespace converge would
//! remember every write it made. [`WritesInFlight::sweep_due`] says when to settle every
//! namespace at once ([`WritesInFlight::sweep`]): whenever the remembered namespaces have
//! doubled since the last sweep, amortised O(1) per write.
//!
//! Pure: the caller passes the cached versions and the time in.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use crate::domain::generated::GeneratedKind;

/// How long a write may take to reach the caches through the watches (milliseconds in
/// practice).
pub const IN_FLIGHT_LIMIT: Duration = Duration::from_secs(5);

/// A generated object: its kind, namespace and name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectKey<'a> {
    pub kind: GeneratedKind,
    pub namespace: &'a str,
    pub name: &'a str,
}

/// Our writes in flight, per namespace.
#[derive(Debug, Default)]
pub struct WritesInFlight {
    /// Pod Security label writes: namespace → the last one.
    labels: HashMap<String, LabelWrite>,
    /// Applies of generated objects: namespace → the last one per object.
    objects: HashMap<String, Vec<ObjectWrite>>,
    /// Entries of both maps after the last sweep.
    swept_at: usize,
}

/// No sweep below this many remembered namespaces (a sweep's lookups are not worth it).
const SWEEP_FLOOR: usize = 512;

/// A label write over a namespace version.
#[derive(Debug, Clone)]
struct LabelWrite {
    written_over: Option<String>,
    labels: BTreeMap<String, String>,
}

/// An apply of a generated object: kind, name, the cached resourceVersion it was written
/// over (None: not cached), and a hash of the applied body.
#[derive(Debug, Clone)]
struct ObjectWrite {
    kind: GeneratedKind,
    name: String,
    written_over: Option<String>,
    body: BodyHash,
    /// When it was written: an entry older than [`IN_FLIGHT_LIMIT`] is not trusted (an
    /// add and a delete that both reached the cache would look like "not cached yet").
    at: Instant,
}

impl ObjectWrite {
    fn is_fresh(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.at) < IN_FLIGHT_LIMIT
    }
}

/// A hash of a write's body (see [`super::json_hash`]): it runs for every write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyHash(u64);

impl BodyHash {
    pub fn of(body: &impl serde::Serialize) -> Self {
        Self(super::json_hash(body))
    }
}

impl WritesInFlight {
    /// Whether `labels` were already applied to `namespace` over `cached_version`, the
    /// version the namespace cache still shows. A write the cache has moved past is
    /// forgotten. Label writes have no age limit: a namespace's resourceVersion changes
    /// with every write and deletion forgets the namespace, so an old version never returns.
    pub fn labels_in_flight(
        &mut self,
        namespace: &str,
        cached_version: Option<&str>,
        labels: &BTreeMap<String, String>,
    ) -> bool {
        match self.labels.get(namespace) {
            Some(write) if write.written_over.as_deref() == cached_version => {
                &write.labels == labels
            }
            Some(_) => {
                self.labels.remove(namespace);
                false
            }
            None => false,
        }
    }

    /// Remembers a successful label write over `written_over`, replacing the previous one.
    pub fn labels_written(
        &mut self,
        namespace: &str,
        written_over: Option<&str>,
        labels: BTreeMap<String, String>,
    ) {
        self.labels.insert(
            namespace.to_string(),
            LabelWrite {
                written_over: written_over.map(str::to_string),
                labels,
            },
        );
    }

    /// Whether exactly this apply (same body) of `object` was made over `cached_version`,
    /// the version the cache still shows, less than [`IN_FLIGHT_LIMIT`] before `now`.
    pub fn apply_in_flight(
        &self,
        object: ObjectKey<'_>,
        cached_version: Option<&str>,
        body: BodyHash,
        now: Instant,
    ) -> bool {
        self.objects.get(object.namespace).is_some_and(|writes| {
            writes.iter().any(|w| {
                w.kind == object.kind
                    && w.name == object.name
                    && w.written_over.as_deref() == cached_version
                    && w.body == body
                    && w.is_fresh(now)
            })
        })
    }

    /// Remembers a successful apply of `object` over `written_over` at `now`, replacing
    /// the previous apply of the same object.
    pub fn applied(
        &mut self,
        object: ObjectKey<'_>,
        written_over: Option<String>,
        body: BodyHash,
        now: Instant,
    ) {
        let write = ObjectWrite {
            kind: object.kind,
            name: object.name.to_string(),
            written_over,
            body,
            at: now,
        };
        let writes = self
            .objects
            .entry(object.namespace.to_string())
            .or_default();
        writes.retain(|w| w.kind != write.kind || w.name != write.name);
        writes.push(write);
    }

    /// A watch event for `object` reached the caches: it now stands at `version` (None:
    /// deleted). An apply written over another version, or any apply of an object since
    /// deleted, has been overtaken and is forgotten. Settling this at the event, not at the
    /// next reconcile, matters for a create: if the object is added and deleted again before
    /// that reconcile, the cache shows it absent, just as when we created it, and the
    /// deletion would pass for our create still in flight.
    pub fn observed(&mut self, object: ObjectKey<'_>, version: Option<&str>) {
        let Some(writes) = self.objects.get_mut(object.namespace) else {
            return;
        };
        writes.retain(|w| {
            w.kind != object.kind
                || w.name != object.name
                || (version.is_some() && w.written_over.as_deref() == version)
        });
        if writes.is_empty() {
            self.objects.remove(object.namespace);
        }
    }

    /// A watch of `kind` lists again (after an error): the events it missed, deletions
    /// among them, come as a new list, not one by one, so its applies in flight are
    /// forgotten. At worst an apply is sent twice.
    pub fn relisting(&mut self, kind: GeneratedKind) {
        self.objects.retain(|_, writes| {
            writes.retain(|w| w.kind != kind);
            !writes.is_empty()
        });
    }

    /// Drops the writes in `namespace` the caches have caught up with: the label write if
    /// the namespace is no longer at the version it was written over, each apply whose
    /// object `cached_version(kind, name)` has moved or that is older than the limit.
    pub fn settle(
        &mut self,
        namespace: &str,
        namespace_version: Option<&str>,
        cached_version: impl Fn(GeneratedKind, &str) -> Option<String>,
        now: Instant,
    ) {
        if self
            .labels
            .get(namespace)
            .is_some_and(|write| write.written_over.as_deref() != namespace_version)
        {
            self.labels.remove(namespace);
        }
        if let Some(writes) = self.objects.get_mut(namespace) {
            writes.retain(|w| w.is_fresh(now) && cached_version(w.kind, &w.name) == w.written_over);
            if writes.is_empty() {
                self.objects.remove(namespace);
            }
        }
    }

    /// Whether the remembered namespaces have doubled since the last sweep (see the
    /// module's comment).
    pub fn sweep_due(&self) -> bool {
        self.labels.len() + self.objects.len() >= (self.swept_at * 2).max(SWEEP_FLOOR)
    }

    /// Settles every namespace at once: `namespace_version(namespace)` is the version the
    /// namespace cache shows, `cached_version(kind, namespace, name)` an object's.
    pub fn sweep(
        &mut self,
        namespace_version: impl Fn(&str) -> Option<String>,
        cached_version: impl Fn(GeneratedKind, &str, &str) -> Option<String>,
        now: Instant,
    ) {
        self.labels
            .retain(|namespace, write| write.written_over == namespace_version(namespace));
        self.objects.retain(|namespace, writes| {
            writes.retain(|w| {
                w.is_fresh(now) && cached_version(w.kind, namespace, &w.name) == w.written_over
            });
            !writes.is_empty()
        });
        self.labels.shrink_to_fit();
        self.objects.shrink_to_fit();
        self.swept_at = self.labels.len() + self.objects.len();
    }

    /// Forgets every write in a namespace that is going away.
    pub fn forget_namespace(&mut self, namespace: &str) {
        self.labels.remove(namespace);
        self.objects.remove(namespace);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SHOP: &str = "shop";

    fn deny_all(namespace: &str) -> ObjectKey<'_> {
        ObjectKey {
            kind: GeneratedKind::NetworkPolicy,
            namespace,
            name: "baseline-restricted-deny-all",
        }
    }

    fn reader(namespace: &str) -> ObjectKey<'_> {
        ObjectKey {
            kind: GeneratedKind::Role,
            namespace,
            name: "baseline-restricted-reader",
        }
    }

    fn labels(level: &str) -> BTreeMap<String, String> {
        BTreeMap::from([(
            "pod-security.kubernetes.io/enforce".to_string(),
            level.to_string(),
        )])
    }

    fn remembered_objects(writes: &WritesInFlight, namespace: &str) -> usize {
        writes.objects.get(namespace).map_or(0, Vec::len)
    }

    #[test]
    fn the_same_labels_over_the_version_the_cache_still_shows_are_in_flight() {
        let mut writes = WritesInFlight::default();
        assert!(!writes.labels_in_flight(SHOP, Some("10"), &labels("restricted")));
        writes.labels_written(SHOP, Some("10"), labels("restricted"));
        assert!(writes.labels_in_flight(SHOP, Some("10"), &labels("restricted")));
        // Asking again does not use the write up: every duplicate is skipped.
        assert!(writes.labels_in_flight(SHOP, Some("10"), &labels("restricted")));
    }

    #[test]
    fn other_labels_over_the_same_version_are_not_in_flight() {
        let mut writes = WritesInFlight::default();
        writes.labels_written(SHOP, Some("10"), labels("restricted"));
        assert!(!writes.labels_in_flight(SHOP, Some("10"), &labels("baseline")));
        assert!(!writes.labels_in_flight(SHOP, Some("10"), &BTreeMap::new()));
        // The write is still in flight for what it applied.
        assert!(writes.labels_in_flight(SHOP, Some("10"), &labels("restricted")));
    }

    #[test]
    fn labels_the_cache_moved_past_are_not_in_flight_and_are_forgotten() {
        let mut writes = WritesInFlight::default();
        writes.labels_written(SHOP, Some("10"), labels("restricted"));
        assert!(!writes.labels_in_flight(SHOP, Some("11"), &labels("restricted")));
        assert!(writes.labels.is_empty(), "forgotten once the cache moved");
        // Even the version written over no longer counts.
        assert!(!writes.labels_in_flight(SHOP, Some("10"), &labels("restricted")));
    }

    #[test]
    fn the_same_apply_over_the_version_the_cache_still_shows_is_in_flight() {
        let mut writes = WritesInFlight::default();
        let now = Instant::now();
        let body = BodyHash::of(&json!({"spec": {"policyTypes": ["Ingress"]}}));
        assert!(!writes.apply_in_flight(deny_all(SHOP), Some("7"), body, now));
        writes.applied(deny_all(SHOP), Some("7".to_string()), body, now);
        assert!(writes.apply_in_flight(deny_all(SHOP), Some("7"), body, now));
        // A create: written over nothing cached, in flight while the cache has nothing.
        writes.applied(reader(SHOP), None, body, now);
        assert!(writes.apply_in_flight(reader(SHOP), None, body, now));
    }

    #[test]
    fn a_create_whose_object_was_added_and_deleted_is_no_longer_in_flight() {
        let mut writes = WritesInFlight::default();
        let now = Instant::now();
        let body = BodyHash::of(&json!({"spec": {"policyTypes": ["Ingress"]}}));
        writes.applied(deny_all(SHOP), None, body, now);
        writes.applied(reader(SHOP), None, body, now);
        // The cache had nothing when we created it and has nothing again.
        writes.observed(deny_all(SHOP), Some("8"));
        writes.observed(deny_all(SHOP), None);
        assert!(!writes.apply_in_flight(deny_all(SHOP), None, body, now));
        assert!(
            writes.apply_in_flight(reader(SHOP), None, body, now),
            "another object's create is still in flight"
        );
        writes.observed(reader(SHOP), None);
        assert_eq!(
            remembered_objects(&writes, SHOP),
            0,
            "a deletion alone overtakes"
        );
    }

    #[test]
    fn an_event_at_the_version_written_over_keeps_the_write_in_flight() {
        let mut writes = WritesInFlight::default();
        let now = Instant::now();
        let body = BodyHash::of(&json!({"spec": {"policyTypes": ["Ingress"]}}));
        writes.applied(deny_all(SHOP), Some("7".to_string()), body, now);
        writes.observed(deny_all(SHOP), Some("7"));
        assert!(writes.apply_in_flight(deny_all(SHOP), Some("7"), body, now));
        writes.observed(deny_all(SHOP), Some("9"));
        assert_eq!(
            remembered_objects(&writes, SHOP),
            0,
            "our echo (or a later write)"
        );
    }

    #[test]
    fn a_relist_forgets_the_applies_of_its_kind_only() {
        let mut writes = WritesInFlight::default();
        let now = Instant::now();
        let body = BodyHash::of(&json!({"spec": {"policyTypes": ["Ingress"]}}));
        writes.applied(deny_all(SHOP), None, body, now);
        writes.applied(reader(SHOP), None, body, now);
        writes.relisting(GeneratedKind::NetworkPolicy);
        assert!(!writes.apply_in_flight(deny_all(SHOP), None, body, now));
        assert!(writes.apply_in_flight(reader(SHOP), None, body, now));
    }

    #[test]
    fn another_body_version_or_object_is_not_in_flight() {
        let mut writes = WritesInFlight::default();
        let now = Instant::now();
        let body = BodyHash::of(&json!({"spec": {"policyTypes": ["Ingress"]}}));
        writes.applied(deny_all(SHOP), Some("7".to_string()), body, now);
        let other_body = BodyHash::of(&json!({"spec": {"policyTypes": ["Ingress", "Egress"]}}));
        assert!(!writes.apply_in_flight(deny_all(SHOP), Some("7"), other_body, now));
        // The cache moved past the write (its event arrived, or someone wrote after it).
        assert!(!writes.apply_in_flight(deny_all(SHOP), Some("8"), body, now));
        assert!(!writes.apply_in_flight(deny_all(SHOP), None, body, now));
        // Another kind or name is another object.
        let same_name_role = ObjectKey {
            kind: GeneratedKind::Role,
            ..deny_all(SHOP)
        };
        assert!(!writes.apply_in_flight(same_name_role, Some("7"), body, now));
        assert!(!writes.apply_in_flight(reader(SHOP), Some("7"), body, now));
    }

    #[test]
    fn an_apply_older_than_the_limit_is_not_in_flight() {
        let mut writes = WritesInFlight::default();
        let at = Instant::now();
        let body = BodyHash::of(&json!({"rules": []}));
        writes.applied(reader(SHOP), None, body, at);
        let just_before = at + IN_FLIGHT_LIMIT - Duration::from_millis(1);
        assert!(writes.apply_in_flight(reader(SHOP), None, body, just_before));
        assert!(!writes.apply_in_flight(reader(SHOP), None, body, at + IN_FLIGHT_LIMIT));
        // And settling then drops it, though the cache still shows the same (nothing).
        writes.settle(SHOP, None, |_, _| None, at + IN_FLIGHT_LIMIT);
        assert_eq!(remembered_objects(&writes, SHOP), 0);
    }

    #[test]
    fn settling_drops_what_the_cache_caught_up_with_and_keeps_the_rest() {
        let mut writes = WritesInFlight::default();
        let now = Instant::now();
        let body = BodyHash::of(&json!({"x": 1}));
        writes.labels_written(SHOP, Some("10"), labels("restricted"));
        writes.applied(deny_all(SHOP), Some("7".to_string()), body, now);
        writes.applied(reader(SHOP), None, body, now);
        // The cache has the NetworkPolicy's new version; the Role and the labels not yet.
        let cache = |kind: GeneratedKind, _: &str| {
            (kind == GeneratedKind::NetworkPolicy).then(|| "8".to_string())
        };
        writes.settle(SHOP, Some("10"), cache, now);
        assert_eq!(remembered_objects(&writes, SHOP), 1);
        assert!(!writes.apply_in_flight(deny_all(SHOP), Some("7"), body, now));
        assert!(writes.apply_in_flight(reader(SHOP), None, body, now));
        assert!(writes.labels_in_flight(SHOP, Some("10"), &labels("restricted")));
        // Then the namespace and the Role arrive too: nothing is left of the namespace.
        writes.settle(SHOP, Some("11"), |_, _| Some("9".to_string()), now);
        assert!(writes.labels.is_empty());
        assert!(writes.objects.is_empty());
    }

    #[test]
    fn a_second_apply_of_the_same_object_replaces_the_first() {
        let mut writes = WritesInFlight::default();
        let now = Instant::now();
        let first = BodyHash::of(&json!({"v": 1}));
        let second = BodyHash::of(&json!({"v": 2}));
        writes.applied(deny_all(SHOP), Some("7".to_string()), first, now);
        writes.applied(deny_all(SHOP), Some("8".to_string()), second, now);
        assert!(writes.apply_in_flight(deny_all(SHOP), Some("8"), second, now));
        assert!(!writes.apply_in_flight(deny_all(SHOP), Some("7"), first, now));
        assert_eq!(remembered_objects(&writes, SHOP), 1);
        // Label writes too: the last one counts.
        writes.labels_written(SHOP, Some("10"), labels("restricted"));
        writes.labels_written(SHOP, Some("12"), labels("baseline"));
        assert!(writes.labels_in_flight(SHOP, Some("12"), &labels("baseline")));
    }

    #[test]
    fn writes_the_caches_caught_up_with_are_swept_without_their_namespaces_reconciling() {
        let mut writes = WritesInFlight::default();
        let now = Instant::now();
        let body = BodyHash::of(&json!({"x": 1}));
        let mut sweeps = 0;
        for n in 0..10_000 {
            let namespace = format!("team-{n}");
            writes.labels_written(&namespace, Some("10"), labels("restricted"));
            writes.applied(deny_all(&namespace), None, body, now);
            if writes.sweep_due() {
                sweeps += 1;
                // Every namespace's echo has arrived, but the last one's.
                let last = namespace.clone();
                writes.sweep(
                    |ns| Some(if ns == last { "10" } else { "11" }.to_string()),
                    |_, ns, _| (ns != last).then(|| "1".to_string()),
                    now,
                );
            }
        }
        assert!(sweeps > 0);
        // Bounded by the floor, not by the 10,000 namespaces written.
        assert!(writes.labels.len() + writes.objects.len() < 2 * SWEEP_FLOOR);
        // What the caches have not caught up with is kept.
        let last = "team-9999";
        writes.sweep(
            |ns| Some(if ns == last { "10" } else { "11" }.to_string()),
            |_, ns, _| (ns != last).then(|| "1".to_string()),
            now,
        );
        assert!(writes.labels_in_flight(last, Some("10"), &labels("restricted")));
        assert!(writes.apply_in_flight(deny_all(last), None, body, now));
        assert_eq!(writes.labels.len() + writes.objects.len(), 2);
    }

    #[test]
    fn other_namespaces_are_unaffected() {
        let mut writes = WritesInFlight::default();
        let now = Instant::now();
        let body = BodyHash::of(&json!({"x": 1}));
        for namespace in ["shop", "bank"] {
            writes.labels_written(namespace, Some("10"), labels("restricted"));
            writes.applied(deny_all(namespace), Some("7".to_string()), body, now);
        }
        // The same object and labels in a namespace nothing was written to.
        assert!(!writes.apply_in_flight(deny_all("blog"), Some("7"), body, now));
        assert!(!writes.labels_in_flight("blog", Some("10"), &labels("restricted")));
        // The cache moved in shop: shop's writes go, bank's stay.
        assert!(!writes.labels_in_flight("shop", Some("11"), &labels("restricted")));
        writes.settle("shop", Some("11"), |_, _| Some("8".to_string()), now);
        assert!(writes.labels_in_flight("bank", Some("10"), &labels("restricted")));
        assert!(writes.apply_in_flight(deny_all("bank"), Some("7"), body, now));
        writes.labels_written("shop", Some("11"), labels("restricted"));
        writes.forget_namespace("shop");
        assert!(writes.labels_in_flight("bank", Some("10"), &labels("restricted")));
        assert!(writes.apply_in_flight(deny_all("bank"), Some("7"), body, now));
        assert!(!writes.labels.contains_key("shop"));
        assert!(!writes.objects.contains_key("shop"));
    }
}
