//! Writes: plain creates and server-side applies under our field manager, and guarded
//! deletes.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{LimitRange, Namespace, ResourceQuota};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::Role;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PostParams, Preconditions,
};
use kube::{Api, Client, ResourceExt as _};

use crate::api::{FIELD_MANAGER, WRITE_GUARD};
use crate::controller::state::repair_budget::WriteTarget;
use crate::domain::field_ownership::plain_writes_made_applied;
use crate::domain::generated::{GeneratedKind, NamespacedObject};
use crate::domain::plan::Change;
use crate::domain::status::Failure;

/// A failed write, with what was being written.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {source}")]
pub struct WriteError {
    pub what: String,
    #[source]
    pub source: kube::Error,
}

impl WriteError {
    /// Whether the object changed since the version the write was planned from (409).
    pub fn is_stale(&self) -> bool {
        matches!(&self.source, kube::Error::Api(status) if status.code == 409)
    }

    /// Whether the API server's write guard (config/rbac/write_guard.yaml) refused it: the
    /// object by that name is not ours (someone created it after our cache was read).
    pub fn refused_by_write_guard(&self) -> bool {
        matches!(&self.source, kube::Error::Api(status)
            if status.code == 403 && status.message.contains(WRITE_GUARD))
    }

    /// Whether a create found the name taken: someone created an object by it after our
    /// cache was read (or our cache has not seen our own earlier create yet).
    pub fn name_taken(&self) -> bool {
        matches!(&self.source, kube::Error::Api(status)
            if status.code == 409 && status.reason == "AlreadyExists")
    }

    /// How long until the write budget of its object allows another request, if that is
    /// why it failed (see `repair_budget`).
    pub fn budget_wait(&self) -> Option<std::time::Duration> {
        crate::controller::state::repair_budget::budget_spent(&self.source)
            .map(|spent| spent.retry_in)
    }

    /// How the failure shows in status: a missing permission needs a human.
    pub fn to_failure(&self) -> Failure {
        match &self.source {
            kube::Error::Api(status) if status.code == 403 => Failure::Forbidden(self.to_string()),
            _ => Failure::Error(self.to_string()),
        }
    }
}

pub fn api_resource(kind: GeneratedKind) -> ApiResource {
    match kind {
        GeneratedKind::NetworkPolicy => ApiResource::erase::<NetworkPolicy>(&()),
        GeneratedKind::Role => ApiResource::erase::<Role>(&()),
        GeneratedKind::ResourceQuota => ApiResource::erase::<ResourceQuota>(&()),
        GeneratedKind::LimitRange => ApiResource::erase::<LimitRange>(&()),
    }
}

/// Apply parameters: our stable field manager, forced, because the object is ours and the
/// baseline is the source of truth for every field we set.
pub fn apply_params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

/// Performs one planned change. A delete whose object is already gone or was replaced
/// (precondition failed) is not an error: the next reconcile sees the new state.
/// `take_over_first`: the cache shows our field manager holding fields of the object by
/// its create, which an apply must take over before it can drop any of them
/// (`domain::field_ownership`). Returns the object's version after that take-over, the
/// one the apply was then written over (None when there was none).
pub async fn execute(
    client: &Client,
    change: &Change,
    take_over_first: bool,
) -> Result<Option<String>, WriteError> {
    match change {
        Change::Create(object) => {
            let failed = |source| WriteError {
                what: format!(
                    "create {} {}/{}",
                    object.kind().as_str(),
                    object.namespace(),
                    object.name()
                ),
                source,
            };
            create(client, object).await.map_err(failed)?;
            Ok(None)
        }
        Change::Apply(object) => {
            let kind = object.kind();
            let api: Api<DynamicObject> =
                Api::namespaced_with(client.clone(), object.namespace(), &api_resource(kind));
            let failed = |doing: &str, source| WriteError {
                what: format!(
                    "{doing} {} {}/{}",
                    kind.as_str(),
                    object.namespace(),
                    object.name()
                ),
                source,
            };
            let taken_over = if take_over_first {
                take_over_plain_writes(&api, object.name())
                    .await
                    .map_err(|source| failed("take over the fields of our create of", source))?
            } else {
                None
            };
            api.patch(object.name(), &apply_params(), &Patch::Apply(object))
                .await
                .map_err(|source| failed("apply", source))?;
            Ok(taken_over)
        }
        Change::Delete {
            kind,
            namespace,
            name,
            uid,
            resource_version,
        } => {
            let api: Api<DynamicObject> =
                Api::namespaced_with(client.clone(), namespace, &api_resource(*kind));
            let params = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: uid.clone(),
                    resource_version: resource_version.clone(),
                }),
                ..DeleteParams::default()
            };
            match api.delete(name, &params).await {
                Ok(_) => Ok(None),
                Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => {
                    Ok(None)
                }
                Err(source) => Err(WriteError {
                    what: format!("delete {} {namespace}/{name}", kind.as_str()),
                    source,
                }),
            }
        }
    }
}

/// A plain create of `object` under our field manager, counted in the write budget of the
/// object it names (its URL names only the collection).
async fn create(client: &Client, object: &NamespacedObject) -> Result<(), kube::Error> {
    use kube::Resource as _;
    let resource = api_resource(object.kind());
    let collection = DynamicObject::url_path(&resource, Some(object.namespace()));
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..PostParams::default()
    };
    let body = serde_json::to_vec(object).map_err(kube::Error::SerdeError)?;
    let mut request = kube::core::Request::new(collection)
        .create(&params, body)
        .map_err(kube::Error::BuildRequest)?;
    // What Api::create names the request (kube's tracing span).
    request.extensions_mut().insert("create");
    request.extensions_mut().insert(WriteTarget::object(
        &resource,
        Some(object.namespace()),
        object.name(),
    ));
    // The answer is not read: decoding it (managedFields included) cost about as much as
    // building the request (BENCHMARKS.md, "Where the operator's instructions go").
    client.request_text(request).await.map(|_| ())
}

/// Moves the fields our field manager holds by a plain write (the object's create) into
/// its apply entry, so that the apply after it owns them and drops those it leaves out.
/// Reads the object first (the cache keeps no managedFields) and writes its managedFields
/// over exactly the version read (409 if it changed). Returns the version after the move,
/// or None when nothing was to move.
async fn take_over_plain_writes(
    api: &Api<DynamicObject>,
    name: &str,
) -> Result<Option<String>, kube::Error> {
    let live = api.get(name).await?;
    let Some(entries) = plain_writes_made_applied(live.managed_fields(), FIELD_MANAGER) else {
        return Ok(None);
    };
    let patch = serde_json::json!({
        "metadata": {
            "resourceVersion": live.resource_version(),
            "managedFields": entries,
        }
    });
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..PatchParams::default()
    };
    let moved = api.patch(name, &params, &Patch::Merge(patch)).await?;
    Ok(moved.resource_version())
}

/// Applies the Pod Security labels our field manager owns on a namespace. Labels set by
/// others are untouched; labels only we owned and no longer want are removed. Returns the
/// API server's warnings: PodSecurity admission's verdict on the namespace's existing pods
/// when the enforce level rises. With `dry_run` the same apply persists nothing (the
/// preview of a Gated rollout).
///
/// The apply carries the resourceVersion the labels were planned from: a namespace changed
/// since (another shard's or a user's label write our cache has not seen yet) fails with
/// 409 instead of being overwritten from a stale view; its watch event re-plans it.
pub async fn apply_namespace_labels(
    client: &Client,
    manager: &str,
    namespace: &str,
    planned_from: Option<&str>,
    labels: &BTreeMap<String, String>,
    dry_run: bool,
) -> Result<Vec<String>, WriteError> {
    let mut metadata = serde_json::json!({"name": namespace, "labels": labels});
    if let Some(version) = planned_from {
        metadata["resourceVersion"] = serde_json::Value::from(version);
    }
    let body = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": metadata,
    });
    let mut params = PatchParams::apply(manager).force();
    params.dry_run = dry_run;
    patch_namespace_keeping_warnings(client, namespace, &params, &Patch::Apply(body))
        .await
        .map_err(|source| WriteError {
            what: format!(
                "apply Pod Security labels to namespace {namespace}{}",
                if dry_run { " (dry run)" } else { "" }
            ),
            source,
        })
}

/// A dry run of setting `labels` on a namespace (JSON merge patch: no field manager, so
/// nothing would become ours): what Audit mode and `check --live` preview.
pub async fn dry_run_namespace_labels(
    client: &Client,
    namespace: &str,
    labels: &BTreeMap<String, String>,
) -> Result<Vec<String>, kube::Error> {
    let patch = Patch::Merge(serde_json::json!({"metadata": {"labels": labels}}));
    patch_namespace_keeping_warnings(client, namespace, &PatchParams::default().dry_run(), &patch)
        .await
}

/// One PATCH of a namespace through `client` (with all its layers) that keeps the
/// response's `Warning` headers, which kube's `Api` drops: PodSecurity admission answers a
/// change of the enforce level with one warning per distinct violation of the namespace's
/// existing pods. With `params.dry_run` set the change persists nothing.
pub async fn patch_namespace_keeping_warnings(
    client: &Client,
    namespace: &str,
    params: &PatchParams,
    patch: &Patch<serde_json::Value>,
) -> Result<Vec<String>, kube::Error> {
    use kube::Resource as _;
    let url_path = Namespace::url_path(&(), None);
    let mut request = kube::core::Request::new(url_path)
        .patch(namespace, params, patch)
        .map_err(kube::Error::BuildRequest)?
        .map(kube::client::Body::from);
    // What Api::patch names the request (kube's tracing span).
    request.extensions_mut().insert("patch");
    let response = client.send(request).await?;
    let warnings = response
        .headers()
        .get_all(http::header::WARNING)
        .iter()
        .flat_map(|value| {
            crate::domain::pod_security::preview::parse_warning_header(value.as_bytes())
        })
        .collect();
    let status = response.status();
    let body = response.into_body().collect_bytes().await?;
    if status.is_client_error() || status.is_server_error() {
        // As kube's own client reads an error response.
        let error = serde_json::from_slice::<kube::core::Status>(&body).unwrap_or_else(|_| {
            kube::core::Status::failure(
                &String::from_utf8_lossy(&body),
                "Failed to parse error data",
            )
            .with_code(status.as_u16())
        });
        return Err(kube::Error::Api(error.boxed()));
    }
    Ok(warnings)
}
