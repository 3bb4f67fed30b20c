//! Condition types and reasons of the contract, shaped like `metav1.Condition`.

pub use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

/// Tenant: everything the tenant declares is in place.
pub const READY: &str = "Ready";
/// HierarchyConfiguration: nothing is propagated into or out of this namespace.
pub const ACTIVITIES_HALTED: &str = "ActivitiesHalted";
/// HierarchyConfiguration: the configuration cannot be honoured as written.
pub const BAD_CONFIGURATION: &str = "BadConfiguration";

/// Reasons of `ActivitiesHalted`.
pub mod reasons {
    pub const IN_CYCLE: &str = "InCycle";
    pub const PARENT_MISSING: &str = "ParentMissing";
    pub const ILLEGAL_PARENT: &str = "IllegalParent";
    pub const ANCESTOR_HALTED: &str = "AncestorHalted";
    pub const DELETING: &str = "Deleting";
}
