//! Plans as data: every reconciler turns its decision into a list of `Op`s, and the
//! `Writer` carries them out in order (`Writer::execute`). The ops say everything that is
//! decided (what to write, what to delete, what to do when an object exists already), so
//! reconcilers are tested on the ops they return, and the writer decides nothing.

use std::collections::BTreeMap;

use k8s_openapi::api::admissionregistration::v1::RuleWithOperations;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::core::ApiResource;
use serde_json::Value;

use crate::api::AnchorState;

/// One write to the apiserver.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// Server-side apply of a whole object canopy owns (forced); `namespace` is `None`
    /// for cluster-scoped kinds.
    Apply {
        resource: ApiResource,
        namespace: Option<String>,
        name: String,
        body: Value,
    },
    /// Server-side apply of a propagated copy, within the copy-write rate limit. When the
    /// apiserver refuses its content (an immutable field, such as a RoleBinding's roleRef,
    /// changed in the source), the copy is deleted instead and the reconcile retried, so
    /// the next pass writes it anew; HNC does the same.
    ApplyCopy {
        resource: ApiResource,
        namespace: String,
        name: String,
        body: Value,
    },
    /// Creates `body` unless an object of that name exists; an existing one is left
    /// exactly as it is (a person or a GitOps tool may own it).
    CreateIfMissing {
        resource: ApiResource,
        namespace: Option<String>,
        name: String,
        body: Value,
    },
    /// Deletes an object; one already gone is fine.
    Delete {
        resource: ApiResource,
        namespace: Option<String>,
        name: String,
    },
    /// Deletes a copy, within the copy-write rate limit.
    DeleteCopy {
        resource: ApiResource,
        namespace: String,
        name: String,
    },
    /// Replaces an object's finalizers, failing with a conflict if it changed since
    /// `resource_version` (so a finalizer someone else added is never dropped).
    SetFinalizers {
        resource: ApiResource,
        namespace: Option<String>,
        name: String,
        finalizers: Vec<String>,
        resource_version: String,
    },
    /// Server-side applies an object's whole status through the status subresource, as
    /// `field_manager`.
    ApplyStatus {
        resource: ApiResource,
        namespace: Option<String>,
        name: String,
        status: Value,
        field_manager: &'static str,
    },
    /// Sets `set` and removes `remove` among a namespace's labels, leaving all others.
    PatchNamespaceLabels {
        name: String,
        set: BTreeMap<String, String>,
        remove: Vec<String>,
    },
    /// Replaces an object's whole status through the status subresource, failing with a
    /// conflict if the object changed since `object.metadata.resourceVersion` (the
    /// compare-and-swap of a HierarchicalResourceQuota's usage and reservations).
    ReplaceStatus {
        resource: ApiResource,
        namespace: Option<String>,
        name: String,
        object: Value,
    },
    /// Sets (or with `None` removes) a PersistentVolume's tenant label.
    LabelVolume {
        name: String,
        tenant: Option<String>,
    },
    /// Creates a namespace with the labels it keeps. `created` runs only when this call
    /// created it; when one of that name exists already, the rest of the plan is skipped
    /// and the key planned again if `replan_if_exists`, else the plan goes on.
    CreateNamespace {
        name: String,
        labels: BTreeMap<String, String>,
        annotations: BTreeMap<String, String>,
        created: Option<Event>,
        replan_if_exists: bool,
    },
    DeleteNamespace {
        name: String,
    },
    /// Makes `parent` the parent of `namespace` (server-side apply of `spec.parent`).
    SetParent {
        namespace: String,
        parent: String,
    },
    /// Creates an empty HierarchyConfiguration so its status can be written.
    EnsureHierarchy {
        namespace: String,
    },
    /// An anchor's `status.status` and its `Ready` condition.
    SetAnchorState {
        namespace: String,
        name: String,
        state: AnchorState,
        reason: &'static str,
        message: String,
    },
    /// Replaces the `rules` of the webhook `webhook` in the ValidatingWebhookConfiguration
    /// `configuration`, leaving everything else of it as it is.
    SetWebhookRules {
        configuration: String,
        webhook: &'static str,
        rules: Vec<RuleWithOperations>,
    },
    /// Sets the `namespaceSelector` of `webhook` in `configuration`, nothing else.
    SetWebhookSelector {
        configuration: String,
        webhook: &'static str,
        selector: LabelSelector,
    },
    /// A Kubernetes Event: best effort, never retried.
    Event(Event),
}

/// A Kubernetes Event on `object` (what `kubectl describe` shows). Events of one object
/// with the same reason and action are folded into one series, so events about different
/// things on one object need different actions.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub object: ObjectReference,
    pub warning: bool,
    pub reason: String,
    pub action: String,
    pub note: String,
    /// A namespace the Event concerns, when `object` is cluster-scoped (a Tenant): the
    /// apiserver keeps Events about cluster-scoped objects in `default` (where `kubectl
    /// describe` finds them, and where tenant owners cannot look), so the Event is also
    /// recorded in this namespace, regarding the Namespace, with `object` as `related`
    /// (`kubectl get events -n <namespace>`).
    pub namespace: Option<String>,
}

impl Event {
    /// An Event whose action is its reason.
    pub fn new(object: ObjectReference, warning: bool, reason: &str, note: String) -> Self {
        Self {
            object,
            warning,
            reason: reason.to_owned(),
            action: reason.to_owned(),
            note,
            namespace: None,
        }
    }

    /// The same Event, also recorded in `namespace` (see `Event::namespace`).
    pub fn in_namespace(mut self, namespace: &str) -> Self {
        self.namespace = Some(namespace.to_owned());
        self
    }
}

/// How a plan's execution ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Executed {
    /// Every op was carried out.
    Done,
    /// The cluster differs from what the plan assumed (a namespace existed already, a
    /// copy had to be replaced): the rest was skipped and the key must be planned again.
    Replan,
}
