//! Watches that survive objects the operator cannot read.
//!
//! A typed watch decodes a whole list at once: one SecurityBaseline or NodeReport that does
//! not fit our types — written under a newer CRD (a `mode` this version does not know), or
//! by a newer agent — would fail every list, and the operator would never get past
//! start-up. These watches read [`DynamicObject`]s and decode each one alone: an object that
//! does not decode is left out of the typed stream with a warning that names it and says
//! why; the others go on.
//!
//! Left out is not absent. Each watch keeps an [`Unreadable`] register of the objects that
//! exist but do not decode (and of those deleted while unreadable), and the controller asks
//! it before acting: an unreadable baseline still owns its Pod Security labels, objects and
//! finalizer, and an unreadable NodeReport still says its node runs an agent. Acting on an
//! object's last readable version (still in the caches when it changed while we ran, gone
//! after a relist) would differ between a running and a restarted operator; the register
//! makes both the same. The register is exported as `kube_baseline_unreadable_objects{kind}`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use futures::{Stream, StreamExt, future};
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::watcher::{self, Event};
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use tracing::{info, warn};

use crate::controller::runtime::metrics::Metrics;

/// A watch of `K` (cluster-scoped) that leaves out objects which do not decode as `K`,
/// recording them in `unreadable`.
pub fn watch_all<K>(
    client: Client,
    config: watcher::Config,
    unreadable: Arc<Unreadable>,
) -> impl Stream<Item = Result<Event<K>, watcher::Error>> + Send + 'static
where
    K: kube::Resource<DynamicType = ()> + DeserializeOwned + Actionable + Send + 'static,
{
    let resource = ApiResource::erase::<K>(&());
    let api: Api<DynamicObject> = Api::all_with(client, &resource);
    watcher::watcher(api, config)
        .filter_map(move |event| future::ready(decode_event(event, &unreadable)))
}

pub(in crate::controller) fn decode_event<K>(
    event: Result<Event<DynamicObject>, watcher::Error>,
    unreadable: &Unreadable,
) -> Option<Result<Event<K>, watcher::Error>>
where
    K: kube::Resource<DynamicType = ()> + DeserializeOwned + Actionable,
{
    let event = match event {
        Err(error) => return Some(Err(error)),
        Ok(event) => event,
    };
    let decoded = match event {
        Event::Init => {
            unreadable.update(|state| state.relist_started());
            Event::Init
        }
        Event::InitDone => {
            unreadable.update(|state| state.relist_done());
            Event::InitDone
        }
        Event::Apply(object) => {
            let name = object.metadata.name.clone().unwrap_or_default();
            match decode(object) {
                Ok(typed) => {
                    unreadable.update(|state| state.readable(&name));
                    Event::Apply(typed)
                }
                Err(why) => {
                    unreadable.update(|state| state.unreadable(&name, why));
                    return None;
                }
            }
        }
        Event::InitApply(object) => {
            let name = object.metadata.name.clone().unwrap_or_default();
            match decode(object) {
                Ok(typed) => Event::InitApply(typed),
                Err(why) => {
                    unreadable.update(|state| state.unreadable_listed(&name, why));
                    return None;
                }
            }
        }
        Event::Delete(object) => {
            let name = object.metadata.name.clone().unwrap_or_default();
            match decode(object) {
                Ok(typed) => {
                    unreadable.update(|state| state.readable(&name));
                    Event::Delete(typed)
                }
                Err(_) => {
                    // The caches may hold its last readable version: hide it from now on.
                    unreadable.update(|state| state.deleted_unreadable(&name));
                    return None;
                }
            }
        }
    };
    Some(Ok(decoded))
}

/// What decodes but still cannot be acted on safely.
pub trait Actionable {
    /// Why acting on this object could do harm, if it could.
    fn not_actionable(&self) -> Option<String> {
        None
    }
}

/// A selector Kubernetes itself rejects (the CRD admits malformed label keys and values)
/// selects nothing: acting on that would release every namespace the baseline holds. It is
/// held like a baseline this version cannot read until it is fixed.
impl Actionable for crate::api::SecurityBaseline {
    fn not_actionable(&self) -> Option<String> {
        crate::domain::selection::invalid_selector(&self.spec)
    }
}

impl Actionable for crate::api::NodeReport {}

/// Decodes one object, or warns (naming it) and says why it cannot be read.
pub fn decode<K>(object: DynamicObject) -> Result<K, String>
where
    K: kube::Resource<DynamicType = ()> + DeserializeOwned + Actionable,
{
    let name = object.metadata.name.clone().unwrap_or_default();
    let version = object.metadata.resource_version.clone().unwrap_or_default();
    let decoded = serde_json::to_value(&object).and_then(serde_json::from_value::<K>);
    if let Ok(Some(why)) = decoded.as_ref().map(Actionable::not_actionable) {
        warn!(
            kind = %K::kind(&()),
            object = %name,
            resource_version = %version,
            error = %why,
            "this object is invalid; it counts as present: nothing it owns is released, \
             deleted or changed until it is fixed, and the others are reconciled as usual"
        );
        return Err(why);
    }
    decoded.map_err(|error| {
        warn!(
            kind = %K::kind(&()),
            object = %name,
            resource_version = %version,
            %error,
            "this version of kube-baseline cannot read this object (a newer CRD or agent); \
             it counts as present: nothing it owns is released, deleted or changed until it \
             can be read, and the others are reconciled as usual"
        );
        error.to_string()
    })
}

/// Objects of one kind that exist but cannot be read, and those deleted while unreadable.
#[derive(Debug)]
pub struct Unreadable {
    kind: &'static str,
    state: Mutex<UnreadableState>,
    metrics: Arc<Metrics>,
    /// Bumped whenever the set of unreadable objects changes.
    changed: tokio::sync::watch::Sender<u64>,
}

impl Unreadable {
    pub fn new(kind: &'static str, metrics: Arc<Metrics>) -> Self {
        Self {
            kind,
            state: Mutex::default(),
            metrics,
            changed: tokio::sync::watch::Sender::new(0),
        }
    }

    fn update(&self, change: impl FnOnce(&mut UnreadableState)) {
        let (before, after, count) = {
            let mut state = self.state.lock();
            let before = state.unreadable.keys().cloned().collect::<BTreeSet<_>>();
            change(&mut state);
            let after = state.unreadable.keys().cloned().collect::<BTreeSet<_>>();
            (
                before,
                after,
                state.listed.then_some(state.unreadable.len()),
            )
        };
        if let Some(count) = count {
            self.metrics
                .set_unreadable(self.kind, i64::try_from(count).unwrap_or(i64::MAX));
        }
        if before != after {
            for name in after.difference(&before) {
                warn!(kind = self.kind, object = %name, "counted as present while unreadable");
            }
            for name in before.difference(&after) {
                info!(kind = self.kind, object = %name, "readable again, or deleted");
            }
            self.changed.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// Whether `name` exists but cannot be read.
    pub fn is_unreadable(&self, name: &str) -> bool {
        self.state.lock().unreadable.contains_key(name)
    }

    /// Whether the cached version of `name` must not be acted on: the object cannot be read
    /// now, or was deleted while unreadable.
    pub fn hides(&self, name: &str) -> bool {
        let state = self.state.lock();
        state.unreadable.contains_key(name) || state.gone.contains(name)
    }

    /// The names of the objects that cannot be read.
    pub fn names(&self) -> Vec<String> {
        self.state.lock().unreadable.keys().cloned().collect()
    }

    /// Whether any object of this kind cannot be read.
    pub fn any(&self) -> bool {
        !self.state.lock().unreadable.is_empty()
    }

    /// Changes whenever the set of unreadable objects does.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changed.subscribe()
    }
}

/// The register's state, fed by the raw watch events (pure bookkeeping).
#[derive(Debug, Default)]
struct UnreadableState {
    /// Unreadable objects now: name → why.
    unreadable: BTreeMap<String, String>,
    /// Unreadable objects of a relist in progress (between Init and InitDone).
    relist: BTreeMap<String, String>,
    /// Deleted while unreadable since the last relist: a cache may still hold their last
    /// readable version.
    gone: BTreeSet<String>,
    /// Whether a first list has completed.
    listed: bool,
}

impl UnreadableState {
    fn relist_started(&mut self) {
        self.relist.clear();
    }

    fn relist_done(&mut self) {
        self.unreadable = std::mem::take(&mut self.relist);
        // The caches were replaced by the same list: nothing stale is left in them.
        self.gone.clear();
        self.listed = true;
    }

    fn unreadable_listed(&mut self, name: &str, why: String) {
        self.relist.insert(name.to_string(), why);
    }

    fn unreadable(&mut self, name: &str, why: String) {
        self.gone.remove(name);
        self.unreadable.insert(name.to_string(), why);
    }

    fn readable(&mut self, name: &str) {
        self.gone.remove(name);
        self.unreadable.remove(name);
    }

    fn deleted_unreadable(&mut self, name: &str) {
        self.unreadable.remove(name);
        self.gone.insert(name.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::SecurityBaseline;

    fn object(yaml: &str) -> DynamicObject {
        serde_saphyr::from_str(yaml).expect("test object")
    }

    #[test]
    fn a_readable_baseline_decodes_and_an_unknown_mode_is_skipped() {
        let good = object(
            "apiVersion: kube-baseline.dev/v1alpha1\nkind: SecurityBaseline\n\
             metadata: {name: good}\nspec: {namespaceSelector: {}}\n",
        );
        let decoded: Result<SecurityBaseline, String> = decode(good);
        assert_eq!(
            decoded.map(|b| b.metadata.name.unwrap_or_default()),
            Ok("good".to_string())
        );
        let newer = object(
            "apiVersion: kube-baseline.dev/v1alpha1\nkind: SecurityBaseline\n\
             metadata: {name: newer}\nspec: {namespaceSelector: {}, mode: Warn}\n",
        );
        assert!(decode::<SecurityBaseline>(newer).is_err());
    }

    #[test]
    fn a_baseline_whose_selector_kubernetes_rejects_is_held_like_an_unreadable_one() {
        let (_, unreadable) = register();
        feed(&unreadable, Event::Init);
        feed(&unreadable, Event::InitDone);
        assert!(feed(
            &unreadable,
            Event::Apply(baseline("selective", "Enforce"))
        ));
        // The CRD admits a malformed key; Kubernetes would reject the selector, and ours
        // would select nothing: acting on it would release every namespace.
        let malformed = object(
            "apiVersion: kube-baseline.dev/v1alpha1\nkind: SecurityBaseline\n\
             metadata: {name: selective}\n\
             spec: {namespaceSelector: {matchLabels: {'bad key': x}}, mode: Enforce}\n",
        );
        assert!(!feed(&unreadable, Event::Apply(malformed)));
        assert!(unreadable.is_unreadable("selective") && unreadable.hides("selective"));
        // Fixed: acted on again.
        assert!(feed(
            &unreadable,
            Event::Apply(baseline("selective", "Enforce"))
        ));
        assert!(!unreadable.hides("selective"));
    }

    fn baseline(name: &str, mode: &str) -> DynamicObject {
        object(&format!(
            "apiVersion: kube-baseline.dev/v1alpha1\nkind: SecurityBaseline\n\
             metadata: {{name: {name}}}\nspec: {{namespaceSelector: {{}}, mode: {mode}}}\n"
        ))
    }

    fn register() -> (Arc<Metrics>, Unreadable) {
        let metrics = Arc::new(Metrics::default());
        let unreadable = Unreadable::new("SecurityBaseline", metrics.clone());
        (metrics, unreadable)
    }

    fn feed(unreadable: &Unreadable, event: Event<DynamicObject>) -> bool {
        decode_event::<SecurityBaseline>(Ok(event), unreadable).is_some()
    }

    const GAUGE: &str = r#"kube_baseline_unreadable_objects{kind="SecurityBaseline"}"#;

    #[test]
    fn events_with_unreadable_objects_are_dropped_and_the_rest_pass() {
        let (_, unreadable) = register();
        assert!(!feed(
            &unreadable,
            Event::InitApply(baseline("newer", "Warn"))
        ));
        assert!(matches!(
            decode_event::<SecurityBaseline>(Ok(Event::InitDone), &unreadable),
            Some(Ok(Event::InitDone))
        ));
    }

    #[test]
    fn an_unreadable_object_counts_as_present_until_readable_or_deleted() {
        let (metrics, unreadable) = register();
        feed(&unreadable, Event::Init);
        assert!(!feed(
            &unreadable,
            Event::InitApply(baseline("newer", "Warn"))
        ));
        assert!(feed(
            &unreadable,
            Event::InitApply(baseline("good", "Enforce"))
        ));
        assert!(
            !metrics.encode().contains(GAUGE),
            "no figure before the first list is complete"
        );
        feed(&unreadable, Event::InitDone);
        assert!(unreadable.is_unreadable("newer") && unreadable.hides("newer"));
        assert!(!unreadable.hides("good"));
        assert!(metrics.encode().contains(&format!("{GAUGE} 1")));

        // A readable baseline switched to a newer CRD while we run: its cached version is
        // hidden from now on.
        assert!(!feed(&unreadable, Event::Apply(baseline("good", "Warn"))));
        assert_eq!(unreadable.names(), ["good", "newer"]);
        assert!(metrics.encode().contains(&format!("{GAUGE} 2")));
        // Readable again.
        assert!(feed(&unreadable, Event::Apply(baseline("good", "Enforce"))));
        assert!(!unreadable.hides("good"));

        // Deleted while unreadable: not unreadable any more, but its stale cached version
        // (if any) stays hidden until the next relist replaces the caches.
        assert!(!feed(&unreadable, Event::Delete(baseline("newer", "Warn"))));
        assert!(!unreadable.is_unreadable("newer") && unreadable.hides("newer"));
        assert!(!unreadable.any());
        assert!(metrics.encode().contains(&format!("{GAUGE} 0")));
        feed(&unreadable, Event::Init);
        feed(&unreadable, Event::InitDone);
        assert!(!unreadable.hides("newer"));
    }

    #[test]
    fn a_relist_replaces_the_register() {
        let (_, unreadable) = register();
        feed(&unreadable, Event::Init);
        feed(&unreadable, Event::InitApply(baseline("a", "Warn")));
        feed(&unreadable, Event::InitDone);
        let changes = unreadable.subscribe();
        // A relist (after 410 Gone) in which `a` is readable and `b` is not.
        feed(&unreadable, Event::Init);
        feed(&unreadable, Event::InitApply(baseline("a", "Audit")));
        feed(&unreadable, Event::InitApply(baseline("b", "Warn")));
        assert_eq!(
            unreadable.names(),
            ["a"],
            "the old set until the list is complete"
        );
        feed(&unreadable, Event::InitDone);
        assert_eq!(unreadable.names(), ["b"]);
        assert!(changes.has_changed().unwrap_or_default());
    }
}
