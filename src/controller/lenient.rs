//! Watches that survive objects the operator cannot read.
//!
//! A typed watch decodes a whole list at once: one SecurityBaseline or NodeReport that does
//! not fit our types — written under a newer CRD (a `mode` this version does not know), or
//! by a newer agent — would fail every list, and the operator would never get past
//! start-up. These watches read [`DynamicObject`]s and decode each one alone: an object that
//! does not decode is skipped with a warning that names it and says why; the others go on.
//!
//! An object that decoded before and no longer does keeps its last readable version in the
//! caches (acting on it is safer than acting as if it were deleted: a "deleted" baseline's
//! objects would be removed).

use futures::{Stream, StreamExt, future};
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::watcher::{self, Event};
use serde::de::DeserializeOwned;
use tracing::warn;

/// A watch of `K` (cluster-scoped) that skips objects which do not decode as `K`.
pub fn watch_all<K>(
    client: Client,
    config: watcher::Config,
) -> impl Stream<Item = Result<Event<K>, watcher::Error>> + Send + 'static
where
    K: kube::Resource<DynamicType = ()> + DeserializeOwned + Send + 'static,
{
    let resource = ApiResource::erase::<K>(&());
    let api: Api<DynamicObject> = Api::all_with(client, &resource);
    watcher::watcher(api, config).filter_map(|event| future::ready(decode_event(event)))
}

fn decode_event<K>(
    event: Result<Event<DynamicObject>, watcher::Error>,
) -> Option<Result<Event<K>, watcher::Error>>
where
    K: kube::Resource<DynamicType = ()> + DeserializeOwned,
{
    let event = match event {
        Err(error) => return Some(Err(error)),
        Ok(event) => event,
    };
    let decoded = match event {
        Event::Init => Event::Init,
        Event::InitDone => Event::InitDone,
        Event::Apply(object) => Event::Apply(decode(object)?),
        Event::InitApply(object) => Event::InitApply(decode(object)?),
        Event::Delete(object) => Event::Delete(decode(object)?),
    };
    Some(Ok(decoded))
}

/// Decodes one object, or warns and returns None.
pub fn decode<K>(object: DynamicObject) -> Option<K>
where
    K: kube::Resource<DynamicType = ()> + DeserializeOwned,
{
    let name = object.metadata.name.clone().unwrap_or_default();
    let version = object.metadata.resource_version.clone().unwrap_or_default();
    let decoded = serde_json::to_value(&object).and_then(serde_json::from_value::<K>);
    match decoded {
        Ok(typed) => Some(typed),
        Err(error) => {
            warn!(
                kind = %K::kind(&()),
                object = %name,
                resource_version = %version,
                %error,
                "skipping an object this version of kube-baseline cannot read; \
                 the others are reconciled as usual"
            );
            None
        }
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
        let decoded: Option<SecurityBaseline> = decode(good);
        assert_eq!(
            decoded.map(|b| b.metadata.name.unwrap_or_default()),
            Some("good".to_string())
        );
        let newer = object(
            "apiVersion: kube-baseline.dev/v1alpha1\nkind: SecurityBaseline\n\
             metadata: {name: newer}\nspec: {namespaceSelector: {}, mode: Warn}\n",
        );
        assert!(decode::<SecurityBaseline>(newer).is_none());
    }

    #[test]
    fn events_with_unreadable_objects_are_dropped_and_the_rest_pass() {
        let newer = object(
            "apiVersion: kube-baseline.dev/v1alpha1\nkind: SecurityBaseline\n\
             metadata: {name: newer}\nspec: {mode: Warn}\n",
        );
        assert!(decode_event::<SecurityBaseline>(Ok(Event::InitApply(newer))).is_none());
        assert!(matches!(
            decode_event::<SecurityBaseline>(Ok(Event::InitDone)),
            Some(Ok(Event::InitDone))
        ));
    }
}
