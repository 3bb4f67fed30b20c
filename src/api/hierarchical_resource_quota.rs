//! `HierarchicalResourceQuota`: one budget for a namespace and all of its descendants.
//!
//! The shape is HNC's (`spec.hard`, `status.hard`, `status.used`, the `Request` and
//! `Limit` printer columns); canopy adds `status.reservations`, the usage that its
//! admission webhook has granted to objects the controller has not seen yet
//! ([docs/quota.md](../../docs/quota.md)).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The HRQ canopy writes into a tenant's root from `Tenant.spec.quota`.
pub const TENANT_QUOTA: &str = "canopy-tenant-quota";

/// The `resource` of a reservation made for a namespace (its subtree's usage) moving into
/// an HRQ's subtree; its `name` is the namespace.
pub const MOVE_RESOURCE: &str = "namespaces";

/// A quota on the sum of usage over a namespace and all of its descendants.
#[derive(CustomResource, JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "canopy.dev",
    version = "v1alpha1",
    kind = "HierarchicalResourceQuota",
    doc = "A quota shared by a namespace and all of its descendants: every object counted in the subtree counts against spec.hard.",
    plural = "hierarchicalresourcequotas",
    shortname = "hrq",
    namespaced,
    status = "HierarchicalResourceQuotaStatus",
    printcolumn(
        name = "Request",
        type_ = "string",
        json_path = ".status.requestsSummary"
    ),
    printcolumn(name = "Limit", type_ = "string", json_path = ".status.limitsSummary"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct HierarchicalResourceQuotaSpec {
    /// The most the subtree may use, per resource, as in a ResourceQuota's `spec.hard`
    /// (`pods`, `requests.cpu`, `limits.memory`, `services`, `persistentvolumeclaims`,
    /// `requests.storage`, `count/pods`, ...).
    #[serde(default)]
    pub hard: BTreeMap<String, Quantity>,
}

/// What the subtree uses, as counted by canopy.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct HierarchicalResourceQuotaStatus {
    /// The `spec.hard` that `used` was counted for.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub hard: BTreeMap<String, Quantity>,
    /// Usage over the namespace and its descendants, reservations included.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub used: BTreeMap<String, Quantity>,
    /// `used/hard` of every resource that is not a limit, for `kubectl get hrq`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_summary: Option<String>,
    /// `used/hard` of every `limits.*` resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits_summary: Option<String>,
    /// Usage granted at admission to objects the controller has not counted yet; each is
    /// included in `used` until the object is seen or the reservation expires.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reservations: Vec<QuotaReservation>,
}

/// Usage granted to one object by the admission webhook.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct QuotaReservation {
    /// The object's uid (assigned before validating admission).
    pub uid: String,
    /// The object's namespace.
    pub namespace: String,
    /// The object's name.
    pub name: String,
    /// Its resource (`pods`, `services`, `persistentvolumeclaims`).
    pub resource: String,
    /// The usage the object will have once written, of the resources in `hard`.
    #[serde(default)]
    pub usage: BTreeMap<String, Quantity>,
    /// When the reservation lapses if the object never appeared (RFC 3339).
    pub expires: String,
}
