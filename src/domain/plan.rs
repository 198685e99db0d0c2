//! The plan for one (baseline, namespace): drift between desired and observed objects, and
//! the writes that repair it. Pure: the controller executes the changes, `check` prints
//! the findings, and both therefore always agree.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::LimitRangeItem;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use crate::api::{
    ADOPT_ANNOTATION, BASELINE_LABEL, DriftEntry, DriftReason, EnforcementMode, OnUnselect,
    SecurityBaselineSpec, WaivedEntry,
};
use crate::domain::generated::{
    BaselineRef, DesiredObject, GeneratedKind, NamespacedObject, check_ids, desired_objects,
    wanted_pod_security,
};
use crate::domain::pod_security::pod_security_drift;
use crate::domain::waivers::Waivers;

/// A write the controller makes to repair drift (Enforce mode only). (Not kube's
/// controller `Action`, which says when to reconcile again.)
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Create this object: no object has its name in our cache. A plain create under our
    /// field manager: about half an apply's cost to the API server, and it fails (409)
    /// rather than takes over an object someone created meanwhile.
    Create(Box<NamespacedObject>),
    /// Server-side apply this object (repair, adopt, release) with our field manager,
    /// forced.
    Apply(Box<NamespacedObject>),
    /// Delete an object of ours, with preconditions so a replaced object is never deleted.
    Delete {
        kind: GeneratedKind,
        namespace: String,
        name: String,
        uid: Option<String>,
        resource_version: Option<String>,
    },
}

/// Findings and repairs for one (baseline, namespace).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NamespacePlan {
    /// Drift as observed, before any repair.
    pub findings: Vec<DriftEntry>,
    /// Writes that repair it; empty in Audit mode.
    pub changes: Vec<Change>,
    /// The next instant a finding changes by time alone (a certificate entering its
    /// warning window or expiring, a waiver starting or expiring): the controller plans the
    /// namespace again then.
    pub next_change: Option<k8s_openapi::jiff::Timestamp>,
    /// Findings an active waiver accepts: not drift, and not repaired (see
    /// [`NamespacePlan::waive`]).
    pub waived: Vec<WaivedEntry>,
}

impl NamespacePlan {
    /// Moves the findings `waivers` accept from `findings` to `waived`, and drops the
    /// changes to the objects they are about: a waived object is left as it is (how a team
    /// keeps a deliberate change to a generated object). `labels`: the namespace's.
    pub fn waive(
        &mut self,
        waivers: &Waivers<'_>,
        namespace: &str,
        labels: &BTreeMap<String, String>,
    ) {
        let split = waivers.split(
            std::mem::take(&mut self.findings),
            Some((namespace, labels)),
        );
        self.findings = split.drift;
        let kept = |kind: &str, ns: &str, name: &str| {
            !split
                .waived
                .iter()
                .any(|w| w.kind == kind && w.namespace == ns && w.name == name)
        };
        self.changes.retain(|change| match change {
            Change::Create(object) | Change::Apply(object) => {
                kept(object.kind().as_str(), object.namespace(), object.name())
            }
            Change::Delete {
                kind,
                namespace,
                name,
                ..
            } => kept(kind.as_str(), namespace, name),
        });
        self.waived.extend(split.waived);
        self.waived.sort();
        self.next_change = [self.next_change, waivers.next_change()]
            .into_iter()
            .flatten()
            .min();
    }
}

/// What the plan needs to know about the namespace and the objects in it.
#[derive(Debug)]
pub struct NamespaceState<'a> {
    pub name: &'a str,
    pub labels: &'a BTreeMap<String, String>,
    /// Whether the baseline selects the namespace (see `selection::selects`).
    pub selected: bool,
    /// Objects in the namespace with our managed-by label and this baseline's label.
    pub ours: &'a [&'a NamespacedObject],
}

/// Plans one (baseline, namespace). `lookup_any` finds an object of the namespace by kind
/// and name whatever its labels; it is consulted only for names we would create, to tell
/// a free name from one taken by an object that is not ours.
pub fn plan_namespace(
    spec: &SecurityBaselineSpec,
    baseline: BaselineRef<'_>,
    namespace: &NamespaceState<'_>,
    lookup_any: &dyn Fn(GeneratedKind, &str) -> Option<ObjectMeta>,
) -> NamespacePlan {
    let mut plan = NamespacePlan::default();
    if namespace.selected {
        let desired = desired_objects(spec, baseline, namespace.name);
        for wanted in &desired {
            plan_desired(spec, baseline, namespace, wanted, lookup_any, &mut plan);
        }
        for observed in namespace.ours {
            let still_wanted = desired
                .iter()
                .any(|d| d.object.kind() == observed.kind() && d.object.name() == observed.name());
            if !still_wanted {
                remove(observed, "no longer part of the baseline", &mut plan);
            }
        }
        plan.findings.extend(pod_security_drift(
            namespace.name,
            &wanted_pod_security(spec),
            namespace.labels,
        ));
        // Audit leaves a selected namespace as it is: nothing created, repaired or removed,
        // also what an earlier Enforce generation made.
        if spec.mode == EnforcementMode::Audit {
            plan.changes.clear();
        }
    } else if spec.on_unselect == OnUnselect::Delete {
        // Leaving is governed by onUnselect alone, in either mode: what we made goes.
        for observed in namespace.ours {
            remove(observed, "the namespace is no longer selected", &mut plan);
        }
    }
    plan.findings.sort();
    plan
}

/// Plans what happens to a deleted baseline's objects in one namespace, in either mode:
/// deleted (onUnselect: Delete), or kept with our ownerReference dropped so garbage
/// collection does not remove them once the baseline is gone (Retain). An Audit baseline
/// has objects of its own only from an earlier Enforce generation; dropping the reference
/// is then the one write it makes to them.
pub fn plan_release(
    spec: &SecurityBaselineSpec,
    baseline: BaselineRef<'_>,
    ours: &[&NamespacedObject],
) -> NamespacePlan {
    let mut plan = NamespacePlan::default();
    for observed in ours {
        match spec.on_unselect {
            OnUnselect::Delete => remove(observed, "its baseline is being deleted", &mut plan),
            OnUnselect::Retain => {
                let owned = observed
                    .metadata()
                    .owner_references
                    .iter()
                    .flatten()
                    .any(|r| r.uid == baseline.uid);
                if owned {
                    let meta = observed.metadata();
                    let kept = ObjectMeta {
                        name: meta.name.clone(),
                        namespace: meta.namespace.clone(),
                        labels: meta.labels.clone(),
                        ..ObjectMeta::default()
                    };
                    plan.changes
                        .push(Change::Apply(Box::new(observed.with_metadata(kept))));
                }
            }
        }
    }
    plan.findings.clear();
    plan
}

fn finding(
    object: &NamespacedObject,
    check: &str,
    reason: DriftReason,
    message: String,
) -> DriftEntry {
    DriftEntry {
        namespace: object.namespace().to_string(),
        kind: object.kind().as_str().to_string(),
        name: object.name().to_string(),
        check: check.to_string(),
        reason,
        message,
    }
}

fn plan_desired(
    spec: &SecurityBaselineSpec,
    baseline: BaselineRef<'_>,
    namespace: &NamespaceState<'_>,
    wanted: &DesiredObject,
    lookup_any: &dyn Fn(GeneratedKind, &str) -> Option<ObjectMeta>,
    plan: &mut NamespacePlan,
) {
    let object = &wanted.object;
    let observed = namespace
        .ours
        .iter()
        .find(|o| o.kind() == object.kind() && o.name() == object.name());
    match observed {
        Some(observed) => {
            if let Some(difference) = difference(object, observed, baseline) {
                plan.findings.push(finding(
                    object,
                    wanted.check,
                    DriftReason::Modified,
                    difference,
                ));
                plan.changes.push(Change::Apply(Box::new(object.clone())));
            }
        }
        None => match lookup_any(object.kind(), object.name()) {
            Some(other) => {
                let owner = other
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(BASELINE_LABEL))
                    .map(|b| format!(" (labelled for baseline {b:?})"))
                    .unwrap_or_default();
                if spec.adopt_existing {
                    plan.findings.push(finding(
                        object,
                        wanted.check,
                        DriftReason::Conflict,
                        format!("an object that is not ours has this name{owner}; adopting it (adoptExisting)"),
                    ));
                    plan.changes.push(Change::Apply(Box::new(adopting(object))));
                } else {
                    plan.findings.push(finding(
                        object,
                        wanted.check,
                        DriftReason::Conflict,
                        format!("an object that is not ours has this name{owner}; left untouched (set adoptExisting to take it over)"),
                    ));
                }
            }
            None => {
                plan.findings.push(finding(
                    object,
                    wanted.check,
                    DriftReason::Missing,
                    "does not exist".to_string(),
                ));
                plan.changes.push(Change::Create(Box::new(object.clone())));
            }
        },
    }
}

/// The object marked as adopting one that is not ours: the write guard admits the apply.
fn adopting(object: &NamespacedObject) -> NamespacedObject {
    let mut meta = object.metadata().clone();
    meta.annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(ADOPT_ANNOTATION.to_string(), "true".to_string());
    object.with_metadata(meta)
}

fn remove(observed: &NamespacedObject, why: &str, plan: &mut NamespacePlan) {
    let check = match observed.kind() {
        GeneratedKind::NetworkPolicy if observed.name().ends_with("-allow-dns") => {
            check_ids::ALLOW_DNS
        }
        GeneratedKind::NetworkPolicy if observed.name().ends_with("-allow-same-namespace") => {
            check_ids::ALLOW_SAME_NAMESPACE
        }
        GeneratedKind::NetworkPolicy => check_ids::DEFAULT_DENY,
        GeneratedKind::Role => "role.provisioned",
        GeneratedKind::ResourceQuota => "quota.resource-quota",
        GeneratedKind::LimitRange => "quota.limit-range",
    };
    plan.findings.push(finding(
        observed,
        check,
        DriftReason::Unexpected,
        format!("exists but {why}"),
    ));
    plan.changes.push(Change::Delete {
        kind: observed.kind(),
        namespace: observed.namespace().to_string(),
        name: observed.name().to_string(),
        uid: observed.metadata().uid.clone(),
        resource_version: observed.metadata().resource_version.clone(),
    });
}

/// What differs between the desired and the observed object, for a human; None when the
/// observed object is as wanted. Only what we set is compared: fields the API server
/// defaults, and labels others add, are not drift.
fn difference(
    desired: &NamespacedObject,
    observed: &NamespacedObject,
    baseline: BaselineRef<'_>,
) -> Option<String> {
    let content = match (desired, observed) {
        (NamespacedObject::NetworkPolicy(d), NamespacedObject::NetworkPolicy(o)) => {
            (normalized_policy(d) != normalized_policy(o)).then(|| {
                "spec differs (ingress, egress, policyTypes or podSelector changed)".to_string()
            })
        }
        (NamespacedObject::Role(d), NamespacedObject::Role(o)) => {
            (d.rules != o.rules).then(|| "rules differ from spec.rbac.roles".to_string())
        }
        (NamespacedObject::ResourceQuota(d), NamespacedObject::ResourceQuota(o)) => {
            let empty = BTreeMap::new();
            let want = d
                .spec
                .as_ref()
                .and_then(|s| s.hard.as_ref())
                .unwrap_or(&empty);
            let have = o
                .spec
                .as_ref()
                .and_then(|s| s.hard.as_ref())
                .unwrap_or(&empty);
            let scoped = o
                .spec
                .as_ref()
                .is_some_and(|s| s.scopes.is_some() || s.scope_selector.is_some());
            (!quantity_maps_equal(Some(want), Some(have)) || scoped)
                .then(|| "hard limits differ".to_string())
        }
        (NamespacedObject::LimitRange(d), NamespacedObject::LimitRange(o)) => {
            let want = d
                .spec
                .as_ref()
                .map(|s| s.limits.as_slice())
                .unwrap_or_default();
            let have = o
                .spec
                .as_ref()
                .map(|s| s.limits.as_slice())
                .unwrap_or_default();
            let same = want.len() == have.len()
                && want.iter().zip(have).all(|(w, h)| limit_item_matches(w, h));
            (!same).then(|| "container limits differ".to_string())
        }
        _ => Some("kind differs".to_string()),
    };
    content.or_else(|| {
        let labels = desired.metadata().labels.iter().flatten();
        let missing_label = labels
            .clone()
            .find(|(k, v)| observed.label(k) != Some(v.as_str()));
        let owned = observed
            .metadata()
            .owner_references
            .iter()
            .flatten()
            .any(|r| r.kind == "SecurityBaseline" && refers_to(r, baseline));
        match (missing_label, owned) {
            (Some((key, _)), _) => Some(format!("label {key} is missing or changed")),
            (None, false) => Some("ownerReference to the baseline is missing".to_string()),
            (None, true) => None,
        }
    })
}

/// Whether an ownerReference names the baseline: by uid, or by name when the uid is unknown
/// (empty: a baseline read from a file by `kube-baseline check`, which never had one).
fn refers_to(reference: &OwnerReference, baseline: BaselineRef<'_>) -> bool {
    if baseline.uid.is_empty() {
        reference.name == baseline.name
    } else {
        reference.uid == baseline.uid
    }
}

/// The policy spec with empty rule lists and absent ones made equal: we apply explicit
/// empty lists (to own the fields) and the API server may store them as absent.
fn normalized_policy(
    policy: &k8s_openapi::api::networking::v1::NetworkPolicy,
) -> Option<k8s_openapi::api::networking::v1::NetworkPolicySpec> {
    policy.spec.clone().map(|mut spec| {
        spec.ingress = spec.ingress.filter(|rules| !rules.is_empty());
        spec.egress = spec.egress.filter(|rules| !rules.is_empty());
        spec
    })
}

/// A LimitRange item matches when every field we set is equal; fields we leave unset are
/// defaulted by the API server (default ⇐ max, defaultRequest ⇐ default) and not compared.
fn limit_item_matches(want: &LimitRangeItem, have: &LimitRangeItem) -> bool {
    let field = |w: &Option<BTreeMap<String, Quantity>>, h: &Option<BTreeMap<String, Quantity>>| {
        w.is_none() || quantity_maps_equal(w.as_ref(), h.as_ref())
    };
    want.type_ == have.type_
        && field(&want.default, &have.default)
        && field(&want.default_request, &have.default_request)
        && field(&want.max, &have.max)
        && field(&want.min, &have.min)
}

fn quantity_maps_equal(
    a: Option<&BTreeMap<String, Quantity>>,
    b: Option<&BTreeMap<String, Quantity>>,
) -> bool {
    let empty = BTreeMap::new();
    let (a, b) = (a.unwrap_or(&empty), b.unwrap_or(&empty));
    a.len() == b.len()
        && a.iter().all(|(key, qa)| {
            b.get(key)
                .is_some_and(|qb| match (quantity_value(&qa.0), quantity_value(&qb.0)) {
                    (Some(x), Some(y)) => (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0),
                    _ => qa.0 == qb.0,
                })
        })
}

/// The numeric value of a Kubernetes quantity ("500m", "2Gi", "1e3"); None if malformed.
/// The API server rewrites quantities into canonical form ("0.5" → "500m"), so equality
/// must be by value, not by string.
pub fn quantity_value(text: &str) -> Option<f64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let multiplier = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024f64,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        exponent => {
            let power: i32 = exponent.strip_prefix(['e', 'E'])?.parse().ok()?;
            10f64.powi(power)
        }
    };
    Some(number * multiplier)
}

/// Drift on objects the controller could not write this time (their write budget is spent:
/// another writer keeps changing them; or the write guard kept it from taking the name) is a
/// Conflict: not something the next write would fix. `objects` holds (kind, name); the
/// message is stable, as status is written only when it changes. A Violation (a check, not
/// an object) stays what it is.
pub fn mark_conflicts(
    findings: &mut [DriftEntry],
    objects: &std::collections::BTreeSet<(String, String)>,
    message: &str,
) {
    for finding in findings.iter_mut() {
        let key = (finding.kind.clone(), finding.name.clone());
        if finding.reason != DriftReason::Violation && objects.contains(&key) {
            finding.reason = DriftReason::Conflict;
            finding.message = message.to_string();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::generated::generated_name;

    const BASELINE: BaselineRef<'static> = BaselineRef {
        name: "restricted",
        uid: "uid-1",
    };

    fn spec(yaml: &str) -> SecurityBaselineSpec {
        serde_saphyr::from_str(yaml).expect("spec parses")
    }

    const FULL: &str = r#"
namespaceSelector: {matchLabels: {env: prod}}
podSecurity: {enforce: restricted}
rbac:
  roles:
  - name: app-reader
    rules:
    - {apiGroups: [""], resources: [pods], verbs: [get, list]}
resourceQuota:
  hard: {pods: 50, requests.cpu: "0.5"}
  limits: {default: {cpu: 500m}}
"#;

    fn no_objects(_: GeneratedKind, _: &str) -> Option<ObjectMeta> {
        None
    }

    fn plan(
        spec: &SecurityBaselineSpec,
        selected: bool,
        ours: &[&NamespacedObject],
        labels: &BTreeMap<String, String>,
    ) -> NamespacePlan {
        let state = NamespaceState {
            name: "shop",
            labels,
            selected,
            ours,
        };
        plan_namespace(spec, BASELINE, &state, &no_objects)
    }

    fn summary(plan: &NamespacePlan) -> Vec<(String, String, DriftReason)> {
        plan.findings
            .iter()
            .map(|f| (f.kind.clone(), f.name.clone(), f.reason))
            .collect()
    }

    fn restricted_labels() -> BTreeMap<String, String> {
        BTreeMap::from([(
            "pod-security.kubernetes.io/enforce".to_string(),
            "restricted".to_string(),
        )])
    }

    /// What the API server hands back after applying the desired objects: quantities in
    /// canonical form, server-set metadata added.
    fn as_stored(desired: &[DesiredObject]) -> Vec<NamespacedObject> {
        desired
            .iter()
            .map(|d| {
                let mut object = d.object.clone();
                let mut meta = object.metadata().clone();
                meta.uid = Some(format!("uid-{}", d.object.name()));
                meta.resource_version = Some("7".to_string());
                object = object.with_metadata(meta);
                if let NamespacedObject::ResourceQuota(rq) = &mut object {
                    let hard = rq
                        .spec
                        .as_mut()
                        .and_then(|s| s.hard.as_mut())
                        .expect("hard");
                    hard.insert("requests.cpu".to_string(), Quantity("500m".to_string()));
                }
                if let NamespacedObject::LimitRange(lr) = &mut object {
                    // The API server defaults defaultRequest from default.
                    let item = &mut lr.spec.as_mut().expect("spec").limits[0];
                    item.default_request = item.default.clone();
                }
                object
            })
            .collect()
    }

    #[test]
    fn a_new_namespace_gets_every_object_and_label() {
        let plan = plan(&spec(FULL), true, &[], &BTreeMap::new());
        assert_eq!(
            summary(&plan),
            vec![
                (
                    "LimitRange".into(),
                    "baseline-restricted-limits".into(),
                    DriftReason::Missing
                ),
                ("Namespace".into(), "shop".into(), DriftReason::Missing),
                (
                    "NetworkPolicy".into(),
                    "baseline-restricted-allow-dns".into(),
                    DriftReason::Missing
                ),
                (
                    "NetworkPolicy".into(),
                    "baseline-restricted-deny-all".into(),
                    DriftReason::Missing
                ),
                (
                    "ResourceQuota".into(),
                    "baseline-restricted-quota".into(),
                    DriftReason::Missing
                ),
                (
                    "Role".into(),
                    "baseline-restricted-app-reader".into(),
                    DriftReason::Missing
                ),
            ]
        );
        assert_eq!(
            plan.changes.len(),
            5,
            "one create per object; labels are applied per namespace"
        );
        assert!(plan.changes.iter().all(|a| matches!(a, Change::Create(_))));
    }

    #[test]
    fn a_converged_namespace_needs_nothing() {
        let s = spec(FULL);
        let stored = as_stored(&desired_objects(&s, BASELINE, "shop"));
        let ours: Vec<_> = stored.iter().collect();
        let plan = plan(&s, true, &ours, &restricted_labels());
        assert_eq!(plan, NamespacePlan::default());
    }

    #[test]
    fn an_edited_policy_is_modified_and_reapplied() {
        let s = spec(FULL);
        let mut stored = as_stored(&desired_objects(&s, BASELINE, "shop"));
        let deny_all = stored
            .iter_mut()
            .find(|o| o.name() == "baseline-restricted-deny-all")
            .expect("deny-all");
        if let NamespacedObject::NetworkPolicy(np) = deny_all {
            let edited: k8s_openapi::api::networking::v1::NetworkPolicySpec =
                serde_saphyr::from_str(
                    "podSelector: {}\npolicyTypes: [Ingress, Egress]\ningress: [{}]",
                )
                .expect("spec");
            np.spec = Some(edited);
        }
        let ours: Vec<_> = stored.iter().collect();
        let plan = plan(&s, true, &ours, &restricted_labels());
        assert_eq!(
            summary(&plan),
            vec![(
                "NetworkPolicy".into(),
                "baseline-restricted-deny-all".into(),
                DriftReason::Modified
            )]
        );
        assert_eq!(plan.findings[0].check, "network.default-deny");
        assert!(
            matches!(&plan.changes[..], [Change::Apply(o)] if o.name() == "baseline-restricted-deny-all")
        );
    }

    #[test]
    fn a_waived_edit_is_kept_and_an_unwaived_one_repaired() {
        let s = spec(FULL);
        let waivers: Vec<crate::api::Waiver> = serde_saphyr::from_str(
            r#"
- name: shop-ingress
  checks: [network.default-deny]
  objects: [{kind: NetworkPolicy, name: baseline-restricted-deny-all, namespace: shop}]
  reason: the shop front end takes traffic from the load balancer
  owner: team-shop
  granted: "2026-12-01T00:00:00Z"
  expires: "2026-12-31T00:00:00Z"
"#,
        )
        .expect("waivers");
        let mut stored = as_stored(&desired_objects(&s, BASELINE, "shop"));
        let edited: k8s_openapi::api::networking::v1::NetworkPolicySpec = serde_saphyr::from_str(
            "podSelector: {}\npolicyTypes: [Ingress, Egress]\ningress: [{}]",
        )
        .expect("spec");
        for object in &mut stored {
            if let NamespacedObject::NetworkPolicy(np) = object {
                // Both policies edited by the team; only deny-all is waived.
                np.spec = Some(edited.clone());
            }
        }
        let ours: Vec<_> = stored.iter().collect();
        let labels = restricted_labels();
        let mut planned = plan(&s, true, &ours, &labels);
        assert_eq!(planned.changes.len(), 2);
        let now: k8s_openapi::jiff::Timestamp = "2026-12-02T00:00:00Z".parse().expect("time");
        planned.waive(&Waivers::new(&waivers, now), "shop", &labels);
        assert_eq!(
            summary(&planned),
            vec![(
                "NetworkPolicy".into(),
                "baseline-restricted-allow-dns".into(),
                DriftReason::Modified
            )]
        );
        assert_eq!(planned.waived.len(), 1);
        assert_eq!(planned.waived[0].name, "baseline-restricted-deny-all");
        assert_eq!(planned.waived[0].waiver, "shop-ingress");
        assert!(
            matches!(&planned.changes[..], [Change::Apply(o)] if o.name() == "baseline-restricted-allow-dns"),
            "only the unwaived edit is repaired: {:?}",
            planned.changes
        );
        // The namespace is planned again when the waiver expires.
        assert_eq!(
            planned.next_change,
            Some("2026-12-31T00:00:00Z".parse().expect("time"))
        );

        // Expired: the edit is drift again, and repaired.
        let mut later = plan(&s, true, &ours, &labels);
        let after: k8s_openapi::jiff::Timestamp = "2026-12-31T00:00:00Z".parse().expect("time");
        later.waive(&Waivers::new(&waivers, after), "shop", &labels);
        assert!(later.waived.is_empty());
        assert_eq!(later.changes.len(), 2);
        assert_eq!(later.next_change, None);
    }

    #[test]
    fn a_stripped_label_or_owner_reference_is_modified() {
        let s = spec("networkPolicy: {defaultDeny: {ingress: true, egress: false}}");
        let stored = as_stored(&desired_objects(&s, BASELINE, "shop"));
        let mut meta = stored[0].metadata().clone();
        meta.owner_references = None;
        let orphaned = stored[0].with_metadata(meta);
        let plan = plan(&s, true, &[&orphaned], &BTreeMap::new());
        assert_eq!(plan.findings[0].reason, DriftReason::Modified);
        assert!(plan.findings[0].message.contains("ownerReference"));
    }

    #[test]
    fn an_unknown_uid_compares_the_owner_reference_by_name() {
        let s = spec("networkPolicy: {defaultDeny: {ingress: true, egress: false}}");
        // Stored by the controller for the cluster's baseline (uid-1).
        let stored = as_stored(&desired_objects(&s, BASELINE, "shop"));
        let labels = BTreeMap::new();
        let state = NamespaceState {
            name: "shop",
            labels: &labels,
            selected: true,
            ours: &[&stored[0]],
        };
        let from_file = BaselineRef {
            name: "restricted",
            uid: "",
        };
        assert_eq!(
            plan_namespace(&s, from_file, &state, &no_objects),
            NamespacePlan::default(),
            "a baseline read from a file has no uid: the name decides"
        );
        let mut meta = stored[0].metadata().clone();
        for reference in meta.owner_references.iter_mut().flatten() {
            reference.name = "another-baseline".to_string();
        }
        let foreign_owner = stored[0].with_metadata(meta);
        let state = NamespaceState {
            ours: &[&foreign_owner],
            ..state
        };
        let plan = plan_namespace(&s, from_file, &state, &no_objects);
        assert_eq!(plan.findings.len(), 1, "{plan:?}");
        assert!(plan.findings[0].message.contains("ownerReference"));
    }

    #[test]
    fn unselected_namespace_objects_are_deleted_or_retained() {
        let s = spec(FULL);
        let stored = as_stored(&desired_objects(&s, BASELINE, "shop"));
        let ours: Vec<_> = stored.iter().collect();
        let deleting = plan(&s, false, &ours, &BTreeMap::new());
        assert_eq!(deleting.findings.len(), 5);
        assert!(
            deleting
                .findings
                .iter()
                .all(|f| f.reason == DriftReason::Unexpected)
        );
        assert!(deleting.changes.iter().all(|a| matches!(
            a,
            Change::Delete {
                uid: Some(_),
                resource_version: Some(_),
                ..
            }
        )));
        let retain = spec(&format!("{FULL}\nonUnselect: Retain"));
        assert_eq!(
            plan(&retain, false, &ours, &BTreeMap::new()),
            NamespacePlan::default()
        );
    }

    #[test]
    fn a_role_removed_from_the_spec_is_deleted() {
        let with_role = spec(FULL);
        let stored = as_stored(&desired_objects(&with_role, BASELINE, "shop"));
        let ours: Vec<_> = stored.iter().collect();
        let without_role = spec(&FULL.replace("app-reader", "other-reader"));
        let plan = plan(&without_role, true, &ours, &restricted_labels());
        assert_eq!(
            summary(&plan),
            vec![
                (
                    "Role".into(),
                    "baseline-restricted-app-reader".into(),
                    DriftReason::Unexpected
                ),
                (
                    "Role".into(),
                    "baseline-restricted-other-reader".into(),
                    DriftReason::Missing
                ),
            ]
        );
    }

    #[test]
    fn an_object_that_is_not_ours_is_a_conflict_unless_adopted() {
        let s = spec("networkPolicy: {defaultDeny: {ingress: true, egress: false}}");
        let foreign = |kind: GeneratedKind, name: &str| {
            (kind == GeneratedKind::NetworkPolicy && name == "baseline-restricted-deny-all").then(
                || ObjectMeta {
                    name: Some(name.to_string()),
                    labels: Some(BTreeMap::from([("team".to_string(), "shop".to_string())])),
                    ..ObjectMeta::default()
                },
            )
        };
        let labels = BTreeMap::new();
        let state = NamespaceState {
            name: "shop",
            labels: &labels,
            selected: true,
            ours: &[],
        };
        let conflict = plan_namespace(&s, BASELINE, &state, &foreign);
        assert_eq!(conflict.findings[0].reason, DriftReason::Conflict);
        assert!(
            conflict.changes.is_empty(),
            "an object that is not ours is never touched"
        );
        let adopt = spec(
            "networkPolicy: {defaultDeny: {ingress: true, egress: false}}\nadoptExisting: true",
        );
        let adopted = plan_namespace(&adopt, BASELINE, &state, &foreign);
        assert_eq!(adopted.findings[0].reason, DriftReason::Conflict);
        let [Change::Apply(object)] = adopted.changes.as_slice() else {
            panic!("one apply: {:?}", adopted.changes)
        };
        assert_eq!(
            object
                .metadata()
                .annotations
                .as_ref()
                .and_then(|a| a.get(ADOPT_ANNOTATION))
                .map(String::as_str),
            Some("true"),
            "the write guard admits an adopting apply only with this mark"
        );
    }

    #[test]
    fn a_deleted_baseline_deletes_or_orphans_its_objects() {
        let s = spec(FULL);
        let stored = as_stored(&desired_objects(&s, BASELINE, "shop"));
        let ours: Vec<_> = stored.iter().collect();
        let deleting = plan_release(&s, BASELINE, &ours);
        assert_eq!(deleting.changes.len(), 5);
        assert!(
            deleting
                .changes
                .iter()
                .all(|a| matches!(a, Change::Delete { .. }))
        );
        let retain = spec(&format!("{FULL}\nonUnselect: Retain"));
        let orphaning = plan_release(&retain, BASELINE, &ours);
        assert_eq!(orphaning.changes.len(), 5);
        for action in &orphaning.changes {
            let Change::Apply(object) = action else {
                panic!("orphaning applies")
            };
            assert!(
                object.metadata().owner_references.is_none(),
                "ownerReference dropped"
            );
            assert!(object.is_managed_by_us(), "labels kept");
            assert!(
                object.metadata().uid.is_none(),
                "server fields are not applied"
            );
        }
    }

    #[test]
    fn audit_mode_reports_and_writes_nothing() {
        let s = spec(&format!("{FULL}\nmode: Audit"));
        let plan = plan(&s, true, &[], &BTreeMap::new());
        assert_eq!(plan.findings.len(), 6);
        assert!(plan.changes.is_empty());
    }

    #[test]
    fn audit_mode_leaves_what_an_earlier_enforce_made_in_a_selected_namespace() {
        let enforce = spec(FULL);
        let stored = as_stored(&desired_objects(&enforce, BASELINE, "shop"));
        let ours: Vec<_> = stored.iter().collect();
        let audit = spec(&format!(
            "{}\nmode: Audit",
            FULL.replace("app-reader", "other-reader")
        ));
        let plan = plan(&audit, true, &ours, &restricted_labels());
        assert!(
            plan.findings
                .iter()
                .any(|f| f.reason == DriftReason::Unexpected),
            "{:?}",
            plan.findings
        );
        assert!(plan.changes.is_empty(), "nothing removed or created");
    }

    #[test]
    fn leaving_follows_on_unselect_in_audit_mode_too() {
        let enforce = spec(FULL);
        let stored = as_stored(&desired_objects(&enforce, BASELINE, "shop"));
        let ours: Vec<_> = stored.iter().collect();
        for on_unselect in ["Delete", "Retain"] {
            let audit = spec(&format!("{FULL}\nmode: Audit\nonUnselect: {on_unselect}"));
            let enforcing = spec(&format!("{FULL}\nonUnselect: {on_unselect}"));
            assert_eq!(
                plan(&audit, false, &ours, &BTreeMap::new()),
                plan(&enforcing, false, &ours, &BTreeMap::new()),
                "unselected, {on_unselect}"
            );
            assert_eq!(
                plan_release(&audit, BASELINE, &ours),
                plan_release(&enforcing, BASELINE, &ours),
                "deleted, {on_unselect}"
            );
            assert_eq!(plan_release(&audit, BASELINE, &ours).changes.len(), 5);
        }
    }

    #[test]
    fn generated_names_stay_valid_dns_labels() {
        assert_eq!(
            generated_name("restricted", "deny-all"),
            "baseline-restricted-deny-all"
        );
        let long = "a".repeat(60);
        let first = generated_name(&long, "deny-all");
        let second = generated_name(&long, "allow-dns");
        assert!(first.len() <= 63 && second.len() <= 63);
        assert_ne!(first, second);
        assert_eq!(first, generated_name(&long, "deny-all"), "stable");
        assert!(!first.ends_with('-') && first.starts_with("baseline-aaa"));
    }

    #[test]
    fn quantities_compare_by_value() {
        assert_eq!(quantity_value("500m"), Some(0.5));
        assert_eq!(quantity_value("2Gi"), Some(2.0 * 1024.0 * 1024.0 * 1024.0));
        assert_eq!(quantity_value("1e3"), Some(1000.0));
        assert_eq!(quantity_value("12"), Some(12.0));
        assert_eq!(quantity_value("x"), None);
        let a = BTreeMap::from([("cpu".to_string(), Quantity("0.5".to_string()))]);
        let b = BTreeMap::from([("cpu".to_string(), Quantity("500m".to_string()))]);
        assert!(quantity_maps_equal(Some(&a), Some(&b)));
    }

    fn finding(kind: &str, name: &str, reason: DriftReason) -> DriftEntry {
        DriftEntry {
            namespace: "team-a".to_owned(),
            kind: kind.to_owned(),
            name: name.to_owned(),
            check: String::new(),
            reason,
            message: "as planned".to_owned(),
        }
    }

    #[test]
    fn drift_on_an_unwritten_object_is_a_conflict_and_nothing_else_changes() {
        let mut findings = vec![
            finding(
                "NetworkPolicy",
                "baseline-b-deny-all",
                DriftReason::Modified,
            ),
            finding(
                "NetworkPolicy",
                "baseline-b-allow-dns",
                DriftReason::Missing,
            ),
            finding("Role", "baseline-b-deny-all", DriftReason::Unexpected),
            finding(
                "NetworkPolicy",
                "baseline-b-deny-all",
                DriftReason::Violation,
            ),
        ];
        let unwritten = [("NetworkPolicy".to_owned(), "baseline-b-deny-all".to_owned())]
            .into_iter()
            .collect();
        mark_conflicts(&mut findings, &unwritten, "someone else keeps changing it");
        let reasons: Vec<_> = findings
            .iter()
            .map(|f| (f.reason, f.message.as_str()))
            .collect();
        assert_eq!(
            reasons,
            [
                (DriftReason::Conflict, "someone else keeps changing it"),
                (DriftReason::Missing, "as planned"),
                (DriftReason::Unexpected, "as planned"),
                (DriftReason::Violation, "as planned"),
            ]
        );
    }
}
