//! canopy: Kubernetes multi-tenancy with namespace trees, tenants, self-service
//! subnamespaces, policy propagation and admission checks.

pub mod api;
pub mod dev;
pub mod webhooks;
pub mod telemetry;
