//! Condition types and reasons of the contract, shaped like `metav1.Condition`.

pub use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

/// Tenant: everything the tenant declares is in place.
pub const READY: &str = "Ready";
/// HierarchyConfiguration: nothing is propagated into or out of this namespace.
pub const ACTIVITIES_HALTED: &str = "ActivitiesHalted";
/// HierarchyConfiguration: the configuration cannot be honoured as written.
pub const BAD_CONFIGURATION: &str = "BadConfiguration";

/// Condition reasons, by the condition and kind that carry them.
pub mod reasons {
    // HierarchyConfiguration `ActivitiesHalted`.
    pub const IN_CYCLE: &str = "InCycle";
    pub const PARENT_MISSING: &str = "ParentMissing";
    pub const ILLEGAL_PARENT: &str = "IllegalParent";
    pub const ANCESTOR_HALTED: &str = "AncestorHalted";
    pub const DELETING: &str = "Deleting";

    // HierarchyConfiguration `BadConfiguration`.
    pub const SUBNAMESPACE_ANCHOR_MISSING: &str = "SubnamespaceAnchorMissing";
    pub const SUBNAMESPACE_PARENT_MISMATCH: &str = "SubnamespaceParentMismatch";
    pub const CANNOT_PROPAGATE_OBJECT: &str = "CannotPropagateObject";

    // SubnamespaceAnchor `Ready` (with `status.status`).
    pub const CREATED: &str = "Created";
    pub const EXCLUDED_NAMESPACE: &str = "ExcludedNamespace";
    pub const CONFLICT: &str = "Conflict";
    pub const MAX_NAMESPACES_REACHED: &str = "MaxNamespacesReached";

    // Tenant `Ready`.
    pub const READY: &str = "Ready";
    pub const ROOT_EXCLUDED: &str = "RootExcluded";
    pub const ROOT_CLAIMED: &str = "RootClaimed";
    pub const ROOT_INSIDE_ANOTHER_TENANT: &str = "RootInsideAnotherTenant";
    pub const ROOT_NAMESPACE_MISSING: &str = "RootNamespaceMissing";

    // CanopyConfiguration `BadConfiguration`.
    pub const KIND_UNAVAILABLE: &str = "KindUnavailable";
    pub const ALL_KINDS_AVAILABLE: &str = "AllKindsAvailable";
}

/// Event reasons (besides the condition reasons an Event may repeat).
pub mod events {
    pub const SUBNAMESPACE_CREATED: &str = "SubnamespaceCreated";
    pub const ROOT_NAMESPACE_CREATED: &str = "RootNamespaceCreated";
    /// A configured kind can be propagated again (the opposite of `KindUnavailable`).
    pub const KIND_AVAILABLE: &str = "KindAvailable";
}
