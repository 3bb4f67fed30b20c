use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Condition;

/// Asks canopy for a child namespace named like this anchor, under the anchor's namespace.
#[derive(CustomResource, JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "canopy.dev",
    version = "v1alpha1",
    kind = "SubnamespaceAnchor",
    doc = "Asks canopy for a child namespace of the namespace the anchor lives in, named like the anchor.",
    plural = "subnamespaceanchors",
    shortname = "subns",
    shortname = "anchor",
    namespaced,
    status = "SubnamespaceAnchorStatus",
    // The anchor's name becomes a namespace's: refused at admission rather than a create
    // that fails with 422 on every retry.
    validation = Rule::new("size(self.metadata.name) <= 63 && self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')").message("an anchor's name becomes its namespace's name: at most 63 characters, lowercase letters, digits and '-', starting and ending with a letter or digit (an RFC 1123 label, no dots)"),
    printcolumn(name = "Status", type_ = "string", json_path = ".status.status"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct SubnamespaceAnchorSpec {
    /// Labels set on the child namespace.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations set on the child namespace.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// Where the anchor's child namespace stands.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum AnchorState {
    /// The child namespace exists and is this anchor's child.
    Ok,
    /// The child namespace has not been created yet.
    Missing,
    /// A namespace of that name exists and is not this anchor's child.
    Conflict,
    /// The name is excluded, or the tenant's `maxNamespaces` is reached.
    Forbidden,
}

/// Where the anchor's child namespace stands; written by canopy.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubnamespaceAnchorStatus {
    /// `Ok`, `Missing`, `Conflict` or `Forbidden`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<AnchorState>,
    /// `Ready`: true once the child namespace exists and is this anchor's child,
    /// otherwise false with the reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}
