use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Condition, PodSecurityLevel};

/// The one name the CanopyConfiguration may have.
pub const CONFIGURATION_NAME: &str = "config";

/// Cluster-wide settings: what propagates, which namespaces are left alone, which
/// labels and annotations copies drop, and the admission policies.
#[derive(CustomResource, JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "canopy.dev",
    version = "v1alpha1",
    kind = "CanopyConfiguration",
    doc = "Cluster-wide canopy settings: propagated kinds, excluded namespaces, stripped labels and annotations, and admission policies. There is one, named config.",
    plural = "canopyconfigurations",
    status = "CanopyConfigurationStatus",
    validation = Rule::new("self.metadata.name == 'config'").message("the CanopyConfiguration must be named 'config'"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct CanopyConfigurationSpec {
    /// Kinds and how they propagate; Roles and RoleBindings always propagate.
    #[serde(default = "default_resources")]
    pub resources: Vec<ResourceConfig>,
    /// Namespaces that are never part of a tree and that the webhooks skip.
    #[serde(default = "default_excluded_namespaces")]
    pub excluded_namespaces: Vec<String>,
    /// Labels that copies never carry (GitOps tracking labels).
    #[serde(default = "default_strip_labels")]
    pub strip_labels: Vec<String>,
    /// Annotations that copies never carry.
    #[serde(default = "default_strip_annotations")]
    pub strip_annotations: Vec<String>,
    /// The admission policies for workloads, PersistentVolumes and StorageClasses: where
    /// they apply, what each does with a violation, and who is exempt.
    #[serde(default)]
    pub policies: PolicyConfig,
    /// The Pod Security Standard level of the namespaces of Tenants that set none.
    #[serde(default)]
    pub pod_security: PodSecurityLevel,
}

impl Default for CanopyConfigurationSpec {
    fn default() -> Self {
        Self {
            resources: default_resources(),
            excluded_namespaces: default_excluded_namespaces(),
            strip_labels: default_strip_labels(),
            strip_annotations: default_strip_annotations(),
            policies: PolicyConfig::default(),
            pod_security: PodSecurityLevel::default(),
        }
    }
}

/// How one kind propagates.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct ResourceConfig {
    /// API group; empty for the core group.
    #[serde(default)]
    pub group: String,
    /// Plural resource name, e.g. `secrets`.
    #[schemars(length(min = 1))]
    pub resource: String,
    /// How the kind propagates: `Propagate`, `AllowPropagate`, `Remove` or `Ignore`.
    #[serde(default)]
    pub mode: PropagationMode,
}

/// How a kind propagates from a namespace to its descendants.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum PropagationMode {
    /// Copy every source to every descendant.
    #[default]
    Propagate,
    /// Delete every copy.
    Remove,
    /// Leave sources and copies as they are.
    Ignore,
    /// Copy only sources that opt in with a `propagate.canopy.dev/*` annotation.
    AllowPropagate,
}

/// The admission policies canopy's webhooks enforce.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyConfig {
    /// Where the workload policies (hostPath, resources) apply: `Tenants` (the namespaces
    /// of a Tenant) or `AllNamespaces` (every namespace but the excluded ones).
    #[serde(default)]
    pub scope: PolicyScope,
    /// What to do with hostPath volumes in Pods and pod templates, and with
    /// PersistentVolumes backed by a node's storage: `Enforce`, `Warn` or `Off`.
    #[serde(default)]
    pub host_path: PolicyMode,
    /// What to do with containers that do not request and limit every resource in
    /// `requiredResources`: `Enforce`, `Warn` or `Off`.
    #[serde(default)]
    pub resources: PolicyMode,
    /// Resources every container must request and limit.
    #[serde(default = "default_required_resources")]
    pub required_resources: Vec<String>,
    /// What to do with PersistentVolumes and StorageClasses whose reclaim policy is not
    /// `Delete`, cluster-wide: `Enforce`, `Warn` or `Off`.
    #[serde(default)]
    pub reclaim_policy: PolicyMode,
    /// What to do with a Tenant's guardrails (`runtimeClasses`, `nodeSelector`, ...) in
    /// namespaces of a tenant that sets them: `Enforce`, `Warn` or `Off`. A Tenant's
    /// `spec.policies.guardrails` overrides it.
    #[serde(default)]
    pub guardrails: PolicyMode,
    /// Requesters and namespaces that no policy checks; empty by default.
    #[serde(default)]
    pub exemptions: Exemptions,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            scope: PolicyScope::default(),
            host_path: PolicyMode::default(),
            resources: PolicyMode::default(),
            required_resources: default_required_resources(),
            reclaim_policy: PolicyMode::default(),
            guardrails: PolicyMode::default(),
            exemptions: Exemptions::default(),
        }
    }
}

/// Which namespaces the workload policies apply to.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum PolicyScope {
    /// Only namespaces of a tenant.
    #[default]
    Tenants,
    /// Every namespace but the excluded ones.
    AllNamespaces,
}

/// What a policy does with a violation.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum PolicyMode {
    /// Refuse the request.
    #[default]
    Enforce,
    /// Admit it with an admission warning.
    Warn,
    /// Do not check.
    Off,
}

// Empty by default, as Pod Security Admission ships. An exemption switches every policy
// off for the requester; the old default (`system:masters`) let every cluster admin run
// hostPath Pods in tenants and create `Retain` volumes, and since only admins create
// PersistentVolumes and StorageClasses, reclaimPolicy applied to almost nobody.
/// Requests that no policy checks, as Pod Security Admission's exemptions. Empty by
/// default: add a break-glass group and the identities of trusted provisioners.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Exemptions {
    /// Usernames whose requests no policy checks, e.g. a provisioner's ServiceAccount
    /// (`system:serviceaccount:<namespace>:<name>`).
    #[serde(default)]
    pub usernames: Vec<String>,
    /// Groups whose members' requests no policy checks, e.g. a break-glass group.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Namespaces the workload policies never check; they still take part in trees and
    /// propagation.
    #[serde(default)]
    pub namespaces: Vec<String>,
}

fn default_resources() -> Vec<ResourceConfig> {
    [
        ("rbac.authorization.k8s.io", "roles"),
        ("rbac.authorization.k8s.io", "rolebindings"),
        ("", "resourcequotas"),
        ("networking.k8s.io", "networkpolicies"),
        ("", "limitranges"),
    ]
    .into_iter()
    .map(|(group, resource)| ResourceConfig {
        group: group.to_owned(),
        resource: resource.to_owned(),
        mode: PropagationMode::Propagate,
    })
    .collect()
}

fn default_excluded_namespaces() -> Vec<String> {
    strings(&[
        "kube-system",
        "kube-public",
        "kube-node-lease",
        "canopy-system",
    ])
}

fn default_strip_labels() -> Vec<String> {
    strings(&[
        "argocd.argoproj.io/instance",
        "app.kubernetes.io/instance",
        "kustomize.toolkit.fluxcd.io/name",
        "kustomize.toolkit.fluxcd.io/namespace",
    ])
}

fn default_strip_annotations() -> Vec<String> {
    strings(&[
        "kubectl.kubernetes.io/last-applied-configuration",
        "argocd.argoproj.io/tracking-id",
    ])
}

fn default_required_resources() -> Vec<String> {
    strings(&["cpu", "memory"])
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// What canopy reports about the configuration; written by canopy.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CanopyConfigurationStatus {
    /// `BadConfiguration`: true, naming each configured kind canopy cannot use and how to
    /// fix it, or false when every configured kind is propagated.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Sources and copies per configured kind.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<ResourceStatus>,
}

/// How many objects of one configured kind canopy sees.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct ResourceStatus {
    /// API group of the kind; empty for the core group.
    pub group: String,
    /// Plural resource name of the kind.
    pub resource: String,
    /// How the kind propagates.
    pub mode: PropagationMode,
    /// Objects of the kind that are not copies, in namespaces that are not excluded.
    pub sources: u32,
    /// Copies canopy made, in namespaces that are not excluded.
    pub copies: u32,
}
