//! The Forest: the in-memory model of every namespace, its parent, children, tenant and
//! labels. Watchers write it, reconcilers and webhooks read it; every operation here is
//! pure and needs no cluster.

mod halt;
pub mod limit_ranges;
mod tree;
mod volumes;
pub mod watch;
pub mod watch_health;

pub use halt::HaltReason;
pub use tree::{Forest, NamespaceState};
pub use volumes::volume_tenant;

#[cfg(test)]
mod tests;
