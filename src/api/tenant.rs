use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{LimitRangeSpec, ResourceQuotaSpec};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Condition, PodSecurityLevel, PolicyMode};

/// The objects a Tenant writes into its root namespace.
pub const OWNERS_BINDING: &str = "canopy-owners";
pub const QUOTA: &str = "canopy-quota";
pub const LIMITS: &str = "canopy-limits";
pub const ISOLATION: &str = "canopy-isolation";
/// All of them, with their kinds as `(group, plural, name)`; only canopy may change them.
pub const ROOT_OBJECTS: [(&str, &str, &str); 5] = [
    ("rbac.authorization.k8s.io", "rolebindings", OWNERS_BINDING),
    ("", "resourcequotas", QUOTA),
    ("", "limitranges", LIMITS),
    ("networking.k8s.io", "networkpolicies", ISOLATION),
    (
        "canopy.dev",
        "hierarchicalresourcequotas",
        super::TENANT_QUOTA,
    ),
];

/// Whether an object of `resource` (in `group`) named `name` in a Tenant's root is one
/// of the Tenant's root objects. By kind too: the propagated-kinds webhook also sees
/// configured kinds, and a ConfigMap named `canopy-quota` is the owners' own business.
pub fn is_root_object(group: &str, resource: &str, name: &str) -> bool {
    ROOT_OBJECTS
        .iter()
        .any(|(g, r, n)| *g == group && *r == resource && *n == name)
}

impl Tenant {
    /// The root namespace this Tenant declares: `spec.rootNamespace`, else its own name.
    pub fn root_namespace(&self) -> String {
        self.spec
            .root_namespace
            .clone()
            .unwrap_or_else(|| kube::ResourceExt::name_any(self))
    }
}

/// The ClusterRole (and binding) that lets a Tenant's owners read it.
pub fn owner_access_name(tenant: &str) -> String {
    format!("canopy-tenant-{tenant}")
}

/// A tenant declared by a cluster admin: a root namespace, its owners, and the policy
/// that every namespace of its tree gets.
#[derive(CustomResource, JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "canopy.dev",
    version = "v1alpha1",
    kind = "Tenant",
    doc = "A tenant: a root namespace, its owners, and the quota, limits, isolation and policies of every namespace in its tree.",
    plural = "tenants",
    shortname = "tn",
    status = "TenantStatus",
    // Without spec.rootNamespace the Tenant's name is its root namespace's.
    validation = Rule::new("has(self.spec) && has(self.spec.rootNamespace) || (size(self.metadata.name) <= 63 && self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'))").message("a Tenant without spec.rootNamespace names its root namespace after itself, so its name must be a namespace name: at most 63 characters, lowercase letters, digits and '-', starting and ending with a letter or digit (an RFC 1123 label, no dots); or set spec.rootNamespace"),
    printcolumn(name = "Root", type_ = "string", json_path = ".status.rootNamespace"),
    printcolumn(
        name = "Namespaces",
        type_ = "integer",
        json_path = ".status.namespaceCount"
    ),
    printcolumn(name = "Max", type_ = "integer", json_path = ".spec.maxNamespaces"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct TenantSpec {
    /// Who owns the tenant: bound to `ownerRole` in the root namespace, and through
    /// propagation in every namespace of the tree.
    #[serde(default)]
    pub owners: Vec<Owner>,
    /// The ClusterRole the owners get.
    #[serde(default = "default_owner_role")]
    #[schemars(length(min = 1))]
    pub owner_role: String,
    /// The tenant's root namespace; defaults to the Tenant's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub root_namespace: Option<String>,
    /// How many namespaces the tenant may have, root included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_namespaces: Option<u32>,
    /// A ResourceQuota spec; each namespace of the tenant gets its own copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_quota: Option<ResourceQuotaSpec>,
    /// One budget for the whole tenant (the `hard` of a HierarchicalResourceQuota): canopy
    /// writes it as the HierarchicalResourceQuota `canopy-tenant-quota` in the root, so
    /// all the tenant's namespaces share it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<
        std::collections::BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
    >,
    /// A LimitRange spec; each namespace of the tenant gets its own copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_range: Option<LimitRangeSpec>,
    /// Admit ingress only from the tenant's own namespaces (and excluded/system ones).
    #[serde(default = "default_true")]
    pub network_isolation: bool,
    /// Overrides of the cluster's admission policy modes for this tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policies: Option<TenantPolicies>,
    /// What deleting the Tenant does to its namespaces.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// The Pod Security Standard level of every namespace of the tenant (the
    /// `pod-security.kubernetes.io/enforce`, `warn` and `audit` labels); defaults to the
    /// CanopyConfiguration's `podSecurity`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_security: Option<PodSecurityLevel>,
    /// Guardrails: the RuntimeClasses the tenant's Pods may run with. Checked, never
    /// filled in: a Pod that names none is refused with the class to set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_classes: Option<RuntimeClasses>,
    /// Guardrails: node labels every Pod of the tenant must select (in `nodeSelector`, or
    /// with an equivalent required node affinity), so its Pods run only on its nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,
    /// Guardrails: the StorageClasses of the tenant's PersistentVolumeClaims and generic
    /// ephemeral volumes; a claim without a class gets the cluster's default class, which
    /// must then be allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_classes: Option<AllowedNames>,
    /// Guardrails: the Service types the tenant may create; all when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_types: Option<ServiceTypes>,
    /// Guardrails: the CIDRs the tenant's Services may name in `externalIPs`. Without it a
    /// tenant's Service may name none (an external IP captures that address's traffic
    /// cluster-wide, CVE-2020-8554).
    #[serde(
        rename = "externalIPs",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub external_ips: Option<AllowedCidrs>,
    /// Guardrails: prefixes every container image of the tenant must start with, as
    /// written (`registry.example.com/acme/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_registries: Option<AllowedNames>,
    /// Guardrails: the PriorityClasses the tenant's Pods may name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_classes: Option<AllowedNames>,
}

/// The RuntimeClasses a tenant's Pods may run with.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[x_kube(validation = Rule::new("!has(self.default) || self.default in self.allowed").message("default must be one of allowed"))]
pub struct RuntimeClasses {
    /// The RuntimeClasses the tenant's Pods may name in `runtimeClassName`.
    #[serde(default)]
    pub allowed: Vec<String>,
    /// The class a Pod that names none is told to set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
}

/// A list of allowed names (or prefixes, for image registries).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct AllowedNames {
    /// The names the tenant may use (for image registries: the prefixes every image must start with).
    #[serde(default)]
    pub allowed: Vec<String>,
}

/// The Service types a tenant may create.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct ServiceTypes {
    /// The Service types the tenant may create; any other type is refused.
    #[serde(default)]
    pub allowed: Vec<ServiceType>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ServiceType {
    ClusterIP,
    NodePort,
    LoadBalancer,
    ExternalName,
}

impl ServiceType {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceType::ClusterIP => "ClusterIP",
            ServiceType::NodePort => "NodePort",
            ServiceType::LoadBalancer => "LoadBalancer",
            ServiceType::ExternalName => "ExternalName",
        }
    }
}

/// CIDRs (`203.0.113.0/24`, or one address) a tenant's Services may use as external IPs.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct AllowedCidrs {
    /// The CIDRs every external IP of the tenant's Services must fall in; none when empty.
    #[serde(default)]
    pub allowed: Vec<String>,
}

fn default_owner_role() -> String {
    "admin".to_owned()
}

fn default_true() -> bool {
    true
}

/// A subject bound to the tenant's owner role.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[x_kube(validation = Rule::new("self.kind == 'ServiceAccount' ? has(self.__namespace__) : !has(self.__namespace__)").message("namespace is required for a ServiceAccount owner and not allowed otherwise"))]
pub struct Owner {
    /// The kind of subject: `User`, `Group` or `ServiceAccount`.
    // Checked by a CEL rule rather than an enum: a schema error makes the apiserver skip
    // every CEL rule of the object and add a second, puzzling line ("some validation rules
    // were not checked"), where a rule gives one clear line.
    #[schemars(schema_with = "owner_kind_schema")]
    #[x_kube(validation = Rule::new("self == 'User' || self == 'Group' || self == 'ServiceAccount'").message("kind must be User, Group or ServiceAccount"))]
    pub kind: OwnerKind,
    /// The user's, group's or ServiceAccount's name.
    #[schemars(length(min = 1))]
    pub name: String,
    /// The ServiceAccount's namespace; only for `kind: ServiceAccount`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// The schema of `Owner.kind`: a string, checked by the field's CEL rule.
fn owner_kind_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "string",
        "description": "The kind of subject: `User`, `Group` or `ServiceAccount`.",
        // Bounds the rule's estimated cost, which the apiserver limits per CRD.
        "maxLength": 14,
    })
}

/// The kind of subject an owner is.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum OwnerKind {
    User,
    Group,
    ServiceAccount,
}

/// What deleting a Tenant does to its namespaces.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DeletionPolicy {
    /// The namespaces stay, without the tenant's label and owner binding.
    #[default]
    Orphan,
    /// The root namespace and its subtree are deleted with the Tenant.
    Cascade,
}

/// Per-tenant overrides of `CanopyConfiguration.spec.policies`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantPolicies {
    /// The hostPath policy in this tenant's namespaces: `Enforce`, `Warn` or `Off`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_path: Option<PolicyMode>,
    /// The resources policy in this tenant's namespaces: `Enforce`, `Warn` or `Off`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<PolicyMode>,
    /// The mode of the tenant's guardrails (runtimeClasses, nodeSelector, storageClasses,
    /// serviceTypes, externalIPs, imageRegistries, priorityClasses).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guardrails: Option<PolicyMode>,
}

/// What canopy reports about the Tenant; written by canopy.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantStatus {
    /// The tenant's root namespace, once canopy has it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_namespace: Option<String>,
    /// Every namespace of the tenant: the root and its descendants.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// How many namespaces the tenant has, root included.
    #[serde(default)]
    pub namespace_count: u32,
    /// `Ready`: true once the root namespace and the tenant's objects in it are in place,
    /// otherwise false with the reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}
