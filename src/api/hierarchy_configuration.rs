use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::Condition;

/// The one name a HierarchyConfiguration may have in its namespace.
pub const HIERARCHY_NAME: &str = "hierarchy";

/// A namespace's place in the tree: its parent and whether deleting it may cascade.
///
/// A singleton per namespace, named `hierarchy`; the CRD schema refuses any other name
/// with a CEL rule, so the apiserver enforces it even when canopy is down.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "canopy.dev",
    version = "v1alpha1",
    kind = "HierarchyConfiguration",
    doc = "The parent of the namespace it lives in, and whether deleting that namespace may cascade. There is one per namespace, named hierarchy.",
    plural = "hierarchyconfigurations",
    shortname = "hc",
    namespaced,
    status = "HierarchyConfigurationStatus",
    validation = Rule::new("self.metadata.name == 'hierarchy'").message("a HierarchyConfiguration must be named 'hierarchy'"),
    printcolumn(name = "Parent", type_ = "string", json_path = ".spec.parent"),
    printcolumn(name = "Cascade", type_ = "boolean", json_path = ".spec.allowCascadingDeletion"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct HierarchyConfigurationSpec {
    /// The parent namespace; unset or empty makes this namespace a root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// Whether deleting this namespace (or its anchor) may delete its subnamespaces too.
    /// Also allows it for every descendant.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_cascading_deletion: bool,
}

/// The namespace's children and its problems; written by canopy.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HierarchyConfigurationStatus {
    /// The namespaces whose parent is this namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<String>,
    /// `ActivitiesHalted` (canopy stopped acting on this namespace, and why) and
    /// `BadConfiguration` (something canopy cannot do here, such as an object it cannot
    /// propagate).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}
