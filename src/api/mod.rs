//! The canopy API: group `canopy.dev`, version `v1alpha1`.
//!
//! The Rust types here are the source of the CRD schemas (`canopy crds`, `crds/`).

// `printcolumn(..., type_ = ...)` repeats keys by design of kube-derive's attribute syntax.
#![allow(clippy::duplicated_attributes)]

mod canopy_configuration;
mod condition;
mod crds;
pub mod errors;
mod hierarchical_resource_quota;
mod hierarchy_configuration;
pub mod keys;
mod pod_security;
mod propagation;
pub mod quota_usage;
mod subnamespace_anchor;
mod tenant;

pub use canopy_configuration::*;
pub use condition::*;
pub use crds::{all_crds, crd_file_name, crd_yaml, crds_yaml};
pub use hierarchical_resource_quota::*;
pub use hierarchy_configuration::*;
pub use pod_security::PodSecurityLevel;
pub use propagation::never_propagated;
pub use subnamespace_anchor::*;
pub use tenant::*;

/// The API group of every canopy kind.
pub const GROUP: &str = "canopy.dev";
/// The API version of every canopy kind.
pub const VERSION: &str = "v1alpha1";
