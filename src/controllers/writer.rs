//! The one place that writes to the apiserver. Every write names field manager `canopy`.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::admissionregistration::v1::{
    RuleWithOperations, ValidatingWebhookConfiguration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};
use k8s_openapi::jiff::Timestamp;
use kube::core::{ApiResource, DynamicObject};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, Resource};

use serde_json::{Value, json};

use super::metrics::ControllerMetrics;
use super::ops::{Executed, Op};
use super::write_bounds::WriteBounds;
use crate::api::errors;
use crate::api::keys::FIELD_MANAGER;
use crate::api::{
    AnchorState, Condition, HIERARCHY_NAME, HierarchyConfiguration, HierarchyConfigurationSpec,
    SubnamespaceAnchor,
};

/// A write that failed, with what was being written.
#[derive(Debug, thiserror::Error)]
#[error("{action}: {source}")]
pub struct WriteError {
    pub action: String,
    #[source]
    pub source: kube::Error,
}

impl WriteError {
    /// The apiserver refused the content: for a copy, an immutable field (a RoleBinding's
    /// roleRef) changed in its source.
    pub fn is_invalid(&self) -> bool {
        errors::is_invalid(&self.source)
    }

    /// The target namespace is gone or going: nothing to write into.
    pub fn is_namespace_gone(&self) -> bool {
        errors::is_not_found(&self.source) || errors::is_namespace_terminating(&self.source)
    }

    /// Refused by RBAC (or an admission plugin).
    pub fn is_forbidden(&self) -> bool {
        errors::is_forbidden(&self.source)
    }

    /// The object written to does not exist (any more).
    pub fn is_not_found(&self) -> bool {
        errors::is_not_found(&self.source)
    }

    /// A conflict or a missing object that the next reconcile sees differently.
    pub fn is_transient(&self) -> bool {
        let source = &self.source;
        errors::is_conflict(source)
            || errors::is_already_exists(source)
            || errors::is_not_found(source)
            || errors::is_server_error(source)
            || errors::is_namespace_terminating(source)
    }
}

type Result<T> = std::result::Result<T, WriteError>;

fn context(action: impl FnOnce() -> String) -> impl FnOnce(kube::Error) -> WriteError {
    move |source| WriteError {
        action: action(),
        source,
    }
}

fn merge_params() -> PatchParams {
    PatchParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PatchParams::default()
    }
}

/// Writes canopy's decisions; cheap to clone. Writes of copies pass `WriteBounds`: a
/// bounded number in flight, so a fan-out to thousands of namespaces goes as fast as the
/// apiserver's flow control lets it and never floods it.
#[derive(Clone)]
pub struct Writer {
    client: Client,
    bounds: WriteBounds,
    events: Recorder,
    /// The controllers' metrics travel with the writer, the one handle every reconciler
    /// and propagation already holds.
    metrics: Arc<ControllerMetrics>,
}

impl Writer {
    /// A writer bounded only by copy writes in flight (`write_bounds`).
    pub fn new(client: Client) -> Self {
        Self::with_qps(client, None)
    }

    /// A writer that also makes at most `qps` copy writes per second (bursts of as many),
    /// if given (`--write-qps`).
    pub fn with_qps(client: Client, qps: Option<u32>) -> Self {
        let reporter = Reporter {
            controller: FIELD_MANAGER.to_owned(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Self {
            events: Recorder::new(client.clone(), reporter),
            client,
            bounds: WriteBounds::new(qps),
            metrics: Arc::default(),
        }
    }

    /// Records writes (and, through `metrics()`, reconciles) in `metrics` instead of a
    /// set of its own that nobody serves.
    pub fn with_metrics(mut self, metrics: Arc<ControllerMetrics>) -> Self {
        self.metrics = metrics;
        self
    }

    pub fn metrics(&self) -> &Arc<ControllerMetrics> {
        &self.metrics
    }

    /// Records a Kubernetes Event (what `kubectl describe` shows). Events are best
    /// effort: a failure is logged, never retried.
    async fn event(&self, event: super::ops::Event) {
        if let Some(namespace) = event
            .namespace
            .as_deref()
            .filter(|ns| event.object.namespace.as_deref() != Some(*ns))
        {
            self.event_in_namespace(namespace, event.clone()).await;
        }
        let published = Event {
            type_: if event.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: event.reason.clone(),
            note: Some(event.note),
            action: event.action,
            secondary: None,
        };
        if let Err(err) = self.events.publish(&published, &event.object).await {
            tracing::debug!(error = %err, reason = %event.reason, "cannot record an event");
        }
    }

    /// Records `event` in `namespace` too, regarding that Namespace, with `event.object`
    /// (cluster-scoped: its own Events must live in `default`) as `related`. Best effort.
    async fn event_in_namespace(&self, namespace: &str, event: super::ops::Event) {
        use k8s_openapi::api::core::v1::ObjectReference;
        use k8s_openapi::api::events::v1::Event as K8sEvent;
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
        let now = Timestamp::now();
        let object = event.object.name.clone().unwrap_or_default();
        let regarding = ObjectReference {
            api_version: Some("v1".to_owned()),
            kind: Some("Namespace".to_owned()),
            name: Some(namespace.to_owned()),
            // The apiserver requires it to match the Event's namespace.
            namespace: Some(namespace.to_owned()),
            ..ObjectReference::default()
        };
        let published = K8sEvent {
            metadata: ObjectMeta {
                // As client-go names Events: the object's name and a unique suffix.
                name: Some(format!("{object}.{:x}", now.as_nanosecond())),
                namespace: Some(namespace.to_owned()),
                ..ObjectMeta::default()
            },
            event_time: Some(MicroTime(now)),
            type_: Some(if event.warning { "Warning" } else { "Normal" }.to_owned()),
            reason: Some(event.reason.clone()),
            action: Some(event.action),
            note: Some(event.note),
            regarding: Some(regarding),
            related: Some(event.object),
            reporting_controller: Some(FIELD_MANAGER.to_owned()),
            reporting_instance: Some(
                std::env::var("POD_NAME").unwrap_or_else(|_| FIELD_MANAGER.to_owned()),
            ),
            ..K8sEvent::default()
        };
        let api: Api<K8sEvent> = Api::namespaced(self.client.clone(), namespace);
        if let Err(err) = api.create(&PostParams::default(), &published).await {
            tracing::debug!(error = %err, reason = %event.reason, %namespace, "cannot record an event");
        }
    }

    /// Server-side applies a propagated copy (forcing: canopy owns copies outright),
    /// within the copy-write bounds.
    async fn apply_copy(
        &self,
        resource: &ApiResource,
        namespace: &str,
        name: &str,
        copy: &Value,
    ) -> Result<()> {
        let _in_flight = self.bounds.enter(&resource.plural).await;
        self.metrics.record_write(&resource.plural, "apply");
        self.apply_object(resource, Some(namespace), name, copy)
            .await
    }

    /// Server-side applies an object canopy owns outright (a Tenant's root objects, the
    /// owners' ClusterRole); `namespace` is `None` for cluster-scoped kinds.
    async fn apply_object(
        &self,
        resource: &ApiResource,
        namespace: Option<&str>,
        name: &str,
        body: &Value,
    ) -> Result<()> {
        let what = || format!("writing {} {}", resource.kind, qualified(namespace, name));
        // As `Api::patch`, but the object the apiserver answers with is skipped, not
        // decoded: nothing reads it, and decoding it (managed fields and all) cost more
        // than the rest of a copy write in canopy.
        let mut request = kube::core::Request::new(DynamicObject::url_path(resource, namespace))
            .patch(
                name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(body),
            )
            .map_err(kube::Error::BuildRequest)
            .map_err(context(what))?;
        // The verb kube's tracing layer names the request's span after, as `Api::patch` does.
        request.extensions_mut().insert("patch");
        self.client
            .request::<serde::de::IgnoredAny>(request)
            .await
            .map_err(context(what))?;
        Ok(())
    }

    /// Deletes an object; one already gone is fine.
    async fn delete_object(
        &self,
        resource: &ApiResource,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<()> {
        match self
            .dynamic(resource, namespace)
            .delete(name, &DeleteParams::default())
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if errors::is_not_found(&e) => Ok(()),
            Err(e) => Err(context(|| {
                format!("deleting {} {}", resource.kind, qualified(namespace, name))
            })(e)),
        }
    }

    /// Creates `body` unless an object named `name` exists (then nothing changes).
    async fn create_if_missing(
        &self,
        resource: &ApiResource,
        namespace: Option<&str>,
        name: &str,
        body: Value,
    ) -> Result<()> {
        let what = || format!("creating {} {}", resource.kind, qualified(namespace, name));
        let object: DynamicObject = serde_json::from_value(body)
            .map_err(kube::Error::SerdeError)
            .map_err(context(what))?;
        let params = PostParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PostParams::default()
        };
        match self
            .dynamic(resource, namespace)
            .create(&params, &object)
            .await
        {
            Ok(_) => {
                tracing::info!(kind = %resource.kind, name = %qualified(namespace, name), "created");
                Ok(())
            }
            Err(e) if errors::is_already_exists(&e) => Ok(()),
            Err(e) => Err(context(what)(e)),
        }
    }

    fn dynamic(&self, resource: &ApiResource, namespace: Option<&str>) -> Api<DynamicObject> {
        match namespace {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, resource),
            None => Api::all_with(self.client.clone(), resource),
        }
    }

    /// Replaces an object's finalizers, failing with a conflict if it changed since
    /// `resource_version` (so a finalizer someone else added is never dropped).
    async fn set_finalizers(
        &self,
        resource: &ApiResource,
        namespace: Option<&str>,
        name: &str,
        finalizers: &[String],
        resource_version: &str,
    ) -> Result<()> {
        let patch =
            json!({"metadata": {"finalizers": finalizers, "resourceVersion": resource_version}});
        self.dynamic(resource, namespace)
            .patch(name, &merge_params(), &Patch::Merge(&patch))
            .await
            .map_err(context(|| {
                format!("updating the finalizers of {} {name}", resource.kind)
            }))?;
        Ok(())
    }

    /// Server-side applies an object's whole status (through the status subresource, so
    /// spec and metadata are never touched).
    async fn apply_status(
        &self,
        resource: &ApiResource,
        namespace: Option<&str>,
        name: &str,
        status: &Value,
        field_manager: &str,
    ) -> Result<()> {
        let mut metadata = json!({"name": name});
        if let Some(ns) = namespace {
            metadata["namespace"] = json!(ns);
        }
        let patch = json!({
            "apiVersion": resource.api_version,
            "kind": resource.kind,
            "metadata": metadata,
            "status": status,
        });
        self.dynamic(resource, namespace)
            .patch_status(
                name,
                &PatchParams::apply(field_manager).force(),
                &Patch::Apply(&patch),
            )
            .await
            .map_err(context(|| {
                format!("writing the status of {} {name}", resource.kind)
            }))?;
        Ok(())
    }

    /// Replaces an object's status, with the resourceVersion in `object` as precondition.
    async fn replace_status(
        &self,
        resource: &ApiResource,
        namespace: Option<&str>,
        name: &str,
        object: &Value,
    ) -> Result<()> {
        let body: DynamicObject =
            serde_json::from_value(object.clone()).map_err(|e| WriteError {
                action: format!("encoding the status of {} {name}", resource.kind),
                source: kube::Error::SerdeError(e),
            })?;
        let params = PostParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PostParams::default()
        };
        self.dynamic(resource, namespace)
            .replace_status(name, &params, &body)
            .await
            .map_err(context(|| {
                format!("replacing the status of {} {name}", resource.kind)
            }))?;
        Ok(())
    }

    /// Replaces the rules of the webhook named `webhook` in the ValidatingWebhookConfiguration
    /// `configuration`. A strategic merge keyed by webhook name (`rules` is an atomic
    /// list): the webhook's clientConfig and every other webhook are left as they are,
    /// whoever wrote them (the caBundle, the tests' URLs).
    async fn set_webhook_rules(
        &self,
        configuration: &str,
        webhook: &str,
        rules: &[RuleWithOperations],
    ) -> Result<()> {
        let patch = json!({"webhooks": [{"name": webhook, "rules": rules}]});
        Api::<ValidatingWebhookConfiguration>::all(self.client.clone())
            .patch(configuration, &merge_params(), &Patch::Strategic(&patch))
            .await
            .map_err(context(|| {
                format!("setting the rules of webhook {webhook} in ValidatingWebhookConfiguration {configuration}")
            }))?;
        Ok(())
    }

    /// Sets the `namespaceSelector` of `webhook` in the ValidatingWebhookConfiguration
    /// `configuration` (a strategic merge keyed by webhook name: nothing else changes).
    async fn set_webhook_selector(
        &self,
        configuration: &str,
        webhook: &str,
        selector: &LabelSelector,
    ) -> Result<()> {
        let patch = json!({"webhooks": [{"name": webhook, "namespaceSelector": selector}]});
        Api::<ValidatingWebhookConfiguration>::all(self.client.clone())
            .patch(configuration, &merge_params(), &Patch::Strategic(&patch))
            .await
            .map_err(context(|| {
                format!("setting the namespace selector of webhook {webhook} in ValidatingWebhookConfiguration {configuration}")
            }))?;
        Ok(())
    }

    /// Deletes a copy, within the copy-write bounds; one already gone is fine.
    async fn delete_copy(&self, resource: &ApiResource, namespace: &str, name: &str) -> Result<()> {
        let _in_flight = self.bounds.enter(&resource.plural).await;
        self.metrics.record_write(&resource.plural, "delete");
        self.delete_object(resource, Some(namespace), name).await
    }

    /// Sets `set` and removes `remove` among a namespace's labels, leaving all others.
    async fn patch_namespace_labels(
        &self,
        name: &str,
        set: &BTreeMap<String, String>,
        remove: &[String],
    ) -> Result<()> {
        let mut labels = serde_json::Map::new();
        for (k, v) in set {
            labels.insert(k.clone(), Value::String(v.clone()));
        }
        for k in remove {
            labels.insert(k.clone(), Value::Null);
        }
        let patch = json!({"metadata": {"labels": labels}});
        Api::<Namespace>::all(self.client.clone())
            .patch(name, &merge_params(), &Patch::Merge(&patch))
            .await
            .map_err(context(|| format!("patching labels of namespace {name}")))?;
        Ok(())
    }

    /// Sets (or with `None` removes) a PersistentVolume's tenant label.
    async fn label_volume(&self, name: &str, tenant: Option<&str>) -> Result<()> {
        let patch = json!({"metadata": {"labels": {crate::api::keys::TENANT: tenant}}});
        Api::<k8s_openapi::api::core::v1::PersistentVolume>::all(self.client.clone())
            .patch(name, &merge_params(), &Patch::Merge(&patch))
            .await
            .map_err(context(|| format!("labelling PersistentVolume {name}")))?;
        Ok(())
    }

    /// Creates a namespace; `Ok(false)` if one of that name exists already.
    async fn create_namespace(
        &self,
        name: &str,
        labels: BTreeMap<String, String>,
        annotations: BTreeMap<String, String>,
    ) -> Result<bool> {
        let mut ns = Namespace::default();
        ns.metadata.name = Some(name.to_owned());
        ns.metadata.labels = Some(labels);
        ns.metadata.annotations = (!annotations.is_empty()).then_some(annotations);
        let params = PostParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PostParams::default()
        };
        match Api::<Namespace>::all(self.client.clone())
            .create(&params, &ns)
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if errors::is_already_exists(&e) => Ok(false),
            Err(e) => Err(context(|| format!("creating namespace {name}"))(e)),
        }
    }

    async fn delete_namespace(&self, name: &str) -> Result<()> {
        match Api::<Namespace>::all(self.client.clone())
            .delete(name, &DeleteParams::default())
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if errors::is_not_found(&e) => Ok(()),
            Err(e) => Err(context(|| format!("deleting namespace {name}"))(e)),
        }
    }

    /// Makes `parent` the parent of `namespace` (server-side apply of `spec.parent` only).
    async fn set_parent(&self, namespace: &str, parent: &str) -> Result<()> {
        let patch = json!({
            "apiVersion": HierarchyConfiguration::api_version(&()),
            "kind": HierarchyConfiguration::kind(&()),
            "metadata": {"name": HIERARCHY_NAME, "namespace": namespace},
            "spec": HierarchyConfigurationSpec { parent: Some(parent.to_owned()), allow_cascading_deletion: false },
        });
        Api::<HierarchyConfiguration>::namespaced(self.client.clone(), namespace)
            .patch(
                HIERARCHY_NAME,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await
            .map_err(context(|| {
                format!("setting the parent of {namespace} to {parent}")
            }))?;
        Ok(())
    }

    /// Creates an empty HierarchyConfiguration so its status can be written; a namespace
    /// without one is a root.
    async fn ensure_hierarchy(&self, namespace: &str) -> Result<()> {
        let hc = HierarchyConfiguration::new(HIERARCHY_NAME, HierarchyConfigurationSpec::default());
        let params = PostParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PostParams::default()
        };
        match Api::<HierarchyConfiguration>::namespaced(self.client.clone(), namespace)
            .create(&params, &hc)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if errors::is_already_exists(&e) => Ok(()),
            Err(e) => Err(context(|| {
                format!("creating the HierarchyConfiguration of {namespace}")
            })(e)),
        }
    }

    async fn set_anchor_state(
        &self,
        namespace: &str,
        name: &str,
        state: AnchorState,
        reason: &str,
        message: &str,
    ) -> Result<()> {
        // The condition says why, for `kubectl describe` and for GitOps health checks.
        let ready = Condition {
            type_: crate::api::READY.to_owned(),
            status: if state == AnchorState::Ok {
                "True"
            } else {
                "False"
            }
            .to_owned(),
            reason: reason.to_owned(),
            message: message.to_owned(),
            last_transition_time: Time(Timestamp::now()),
            observed_generation: None,
        };
        let patch = json!({"status": {"status": state, "conditions": [ready]}});
        Api::<SubnamespaceAnchor>::namespaced(self.client.clone(), namespace)
            .patch_status(name, &merge_params(), &Patch::Merge(&patch))
            .await
            .map_err(context(|| {
                format!("writing the status of anchor {namespace}/{name}")
            }))?;
        Ok(())
    }
}

impl Writer {
    /// Carries out `ops` in order. Stops at the first failure, and when one finds the
    /// cluster differs from what the plan assumed (`Executed::Replan`).
    pub async fn execute_all(&self, ops: Vec<Op>) -> Result<Executed> {
        for op in ops {
            tracing::debug!(?op, "writing");
            if self.execute(op).await? == Executed::Replan {
                return Ok(Executed::Replan);
            }
        }
        Ok(Executed::Done)
    }

    /// Carries out one op.
    pub async fn execute(&self, op: Op) -> Result<Executed> {
        match op {
            Op::Apply {
                resource,
                namespace,
                name,
                body,
            } => {
                self.apply_object(&resource, namespace.as_deref(), &name, &body)
                    .await?
            }
            Op::ApplyCopy {
                resource,
                namespace,
                name,
                body,
            } => self.apply_copy(&resource, &namespace, &name, &body).await?,
            Op::Delete {
                resource,
                namespace,
                name,
            } => {
                self.delete_object(&resource, namespace.as_deref(), &name)
                    .await?
            }
            Op::DeleteCopy {
                resource,
                namespace,
                name,
            } => self.delete_copy(&resource, &namespace, &name).await?,
            Op::SetFinalizers {
                resource,
                namespace,
                name,
                finalizers,
                resource_version,
            } => {
                self.set_finalizers(
                    &resource,
                    namespace.as_deref(),
                    &name,
                    &finalizers,
                    &resource_version,
                )
                .await?
            }
            Op::ApplyStatus {
                resource,
                namespace,
                name,
                status,
                field_manager,
            } => {
                self.apply_status(
                    &resource,
                    namespace.as_deref(),
                    &name,
                    &status,
                    field_manager,
                )
                .await?
            }
            Op::ReplaceStatus {
                resource,
                namespace,
                name,
                object,
            } => {
                self.replace_status(&resource, namespace.as_deref(), &name, &object)
                    .await?
            }
            Op::PatchNamespaceLabels { name, set, remove } => {
                self.patch_namespace_labels(&name, &set, &remove).await?
            }
            Op::LabelVolume { name, tenant } => self.label_volume(&name, tenant.as_deref()).await?,
            Op::CreateNamespace {
                name,
                labels,
                annotations,
                created,
                replan_if_exists,
            } => {
                if self.create_namespace(&name, labels, annotations).await? {
                    tracing::info!(namespace = %name, "created namespace");
                    if let Some(event) = created {
                        self.event(event).await;
                    }
                } else if replan_if_exists {
                    return Ok(Executed::Replan);
                }
            }
            Op::DeleteNamespace { name } => {
                tracing::info!(namespace = %name, "deleting namespace");
                self.delete_namespace(&name).await?
            }
            Op::SetParent { namespace, parent } => self.set_parent(&namespace, &parent).await?,
            Op::EnsureHierarchy { namespace } => self.ensure_hierarchy(&namespace).await?,
            Op::SetAnchorState {
                namespace,
                name,
                state,
                reason,
                message,
            } => {
                self.set_anchor_state(&namespace, &name, state, reason, &message)
                    .await?
            }
            Op::SetWebhookRules {
                configuration,
                webhook,
                rules,
            } => {
                self.set_webhook_rules(&configuration, webhook, &rules)
                    .await?
            }
            Op::SetWebhookSelector {
                configuration,
                webhook,
                selector,
            } => {
                self.set_webhook_selector(&configuration, webhook, &selector)
                    .await?
            }
            Op::CreateIfMissing {
                resource,
                namespace,
                name,
                body,
            } => {
                self.create_if_missing(&resource, namespace.as_deref(), &name, body)
                    .await?
            }
            Op::Event(event) => self.event(event).await,
        }
        Ok(Executed::Done)
    }
}

/// `namespace/name`, or `name` for a cluster-scoped object.
fn qualified(namespace: Option<&str>, name: &str) -> String {
    namespace.map_or_else(|| name.to_owned(), |ns| format!("{ns}/{name}"))
}
