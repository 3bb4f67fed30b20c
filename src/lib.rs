//! canopy: Kubernetes multi-tenancy with namespace trees, tenants, self-service
//! subnamespaces, policy propagation and admission checks.

pub mod admin;
pub mod api;
pub mod cli;
pub mod controllers;
// The local control plane, the node and the image builder run Linux processes (prctl,
// /proc, mounts, ldd), so they are built on Linux only; the kubectl plugin links this
// library and must build for macOS and Windows too (docs/development.md#releases).
#[cfg(target_os = "linux")]
pub mod dev;
pub mod forest;
pub mod leader;
pub mod manager;
pub mod telemetry;
pub mod webhooks;
