//! Secrets for the certificate checks (`spec.tls`), controller side, only with
//! `--tls-secrets` (the opt-in overlay config/rbac/tls-secrets grants the read). One watch
//! of the Secrets of type `kubernetes.io/tls` (a field selector: Opaque, token and Helm
//! release Secrets never reach us), each reduced at once to `domain::tls::SecretFacts`:
//! the leaf certificate's expiry and DNS names. `tls.key` is dropped unread; nothing of a
//! Secret is logged.

use std::sync::Arc;

use futures::{Stream, StreamExt, stream};
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};

use crate::controller::feeds::initial_lists::InitialLists;
use crate::controller::feeds::lean;
use crate::controller::feeds::watches::log_and_skip;
use crate::controller::state::cache::NamespacedIndex;
use crate::controller::state::namespace_store::CachedNamespace;
use crate::domain::tls::SecretFacts;

type NamespaceRef = ObjectRef<CachedNamespace>;

/// The type the watch selects.
const TLS_TYPE: &str = "kubernetes.io/tls";

/// Every TLS Secret's facts, by namespace and name.
pub type TlsSecretIndex = NamespacedIndex<SecretFacts>;

/// Why certificates are Unknown without the opt-in (in every such finding).
pub const NOT_READ: &str = "the operator does not read Secrets; apply the opt-in overlay config/rbac/tls-secrets (RBAC to read Secrets and the flag --tls-secrets) to check certificates";

/// Feeds `index` from a watch of every `kubernetes.io/tls` Secret; yields the namespace of
/// each change of what the checks read (a label change or re-annotation changes nothing).
pub fn namespace_triggers(
    client: &Client,
    lists: InitialLists,
    index: Arc<TlsSecretIndex>,
) -> impl Stream<Item = NamespaceRef> + Send + 'static {
    let config = lists.config().fields(&format!("type={TLS_TYPE}"));
    lean::watch_all::<Secret>(client, config)
        .default_backoff()
        .filter_map(|result| log_and_skip(result, "Secret"))
        .flat_map(move |event| stream::iter(observe(&index, &event)))
}

/// Applies `event` to `index`; the namespaces to re-plan: that of a change to the cached
/// facts, and at the end of a re-list those it found without an object held there.
fn observe(index: &TlsSecretIndex, event: &watcher::Event<Secret>) -> Vec<NamespaceRef> {
    index
        .apply_reporting_changes(event, facts)
        .iter()
        .map(|namespace| NamespaceRef::new(namespace))
        .collect()
}

fn facts(secret: &Secret) -> Option<(String, String, SecretFacts)> {
    let tls_crt = secret
        .data
        .as_ref()
        .and_then(|data| data.get("tls.crt"))
        .map(|bytes| bytes.0.as_slice());
    Some((
        secret.namespace()?,
        secret.metadata.name.clone()?,
        SecretFacts::from_parts(secret.type_.as_deref(), tls_crt),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(crt: &str, labels: &[(&str, &str)]) -> Secret {
        serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": "web-tls", "namespace": "shop", "resourceVersion": "1",
                "labels": labels.iter().copied().collect::<std::collections::BTreeMap<_, _>>(),
            },
            "type": TLS_TYPE,
            "data": {
                "tls.crt": base64_of(crt),
                "tls.key": base64_of("-----BEGIN PRIVATE KEY-----\nsecret\n-----END PRIVATE KEY-----\n"),
            },
        }))
        .expect("Secret")
    }

    fn base64_of(text: &str) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(text)
    }

    #[test]
    fn only_changes_of_the_certificate_re_plan_the_namespace_and_the_key_is_not_kept() {
        let index = TlsSecretIndex::default();
        let planned = |event| -> Vec<String> {
            observe(&index, &event)
                .into_iter()
                .map(|r| r.name)
                .collect()
        };
        let first = secret("not a certificate", &[]);
        assert_eq!(planned(watcher::Event::Apply(first.clone())), ["shop"]);
        assert_eq!(planned(watcher::Event::Apply(first.clone())), [""; 0]);
        assert_eq!(
            planned(watcher::Event::Apply(secret(
                "not a certificate",
                &[("a", "b")]
            ))),
            [""; 0]
        );
        // Another unparsable text reads the same: nothing to re-plan.
        assert_eq!(
            planned(watcher::Event::Apply(secret(
                "another non-certificate",
                &[]
            ))),
            [""; 0]
        );
        let key = rcgen::KeyPair::generate().expect("key");
        let renewed = rcgen::CertificateParams::new(vec!["a.example.com".to_owned()])
            .expect("params")
            .self_signed(&key)
            .expect("certificate")
            .pem();
        assert_eq!(
            planned(watcher::Event::Apply(secret(&renewed, &[]))),
            ["shop"]
        );
        let cached = index.get("shop", "web-tls").expect("cached");
        assert!(matches!(cached.as_ref(), SecretFacts::Tls(Ok(_))));
        assert!(!format!("{cached:?}").contains("secret"), "{cached:?}");
        assert_eq!(planned(watcher::Event::Delete(first)), ["shop"]);
        assert!(index.get("shop", "web-tls").is_none());
    }
}
