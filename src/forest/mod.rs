//! The model: everything canopy knows of the cluster, kept in step by its watches.
//!
//! - the Forest (`tree.rs`): every namespace, its parent, children, tenant and labels;
//!   every query on it is pure and needs no cluster;
//! - the propagated kinds (`propagated/`): per kind, an index of sources and copies;
//! - the LimitRanges by namespace (`limit_ranges.rs`);
//! - the cluster's default StorageClass (`storage_classes.rs`);
//! - reflector stores of anchors, HierarchyConfigurations, Tenants and PersistentVolumes,
//!   and the configuration, together the `ClusterState` (`watch.rs`).
//!
//! Every watch feeds its part through one `Indexer` (`indexer.rs`, `feeds.rs`), which
//! applies events and reports what changed. Reconcilers and webhooks only read the model.

mod feeds;
mod halt;
pub mod indexer;
pub mod limit_ranges;
pub mod propagated;
pub mod quota;
pub mod quota_counts;
pub mod storage_classes;
pub mod tenant_metrics;
#[cfg(test)]
pub mod testing;
mod tree;
mod volumes;
pub mod watch;
pub mod watch_health;

pub use halt::HaltReason;
pub use tree::{Forest, NamespaceState};
pub use volumes::volume_tenant;

#[cfg(test)]
mod tests;
