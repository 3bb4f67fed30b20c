//! canopy: Kubernetes multi-tenancy with namespace trees, tenants, self-service
//! subnamespaces, policy propagation and admission checks.

pub mod admin;
pub mod api;
pub mod cli;
pub mod controllers;
pub mod dev;
pub mod forest;
pub mod leader;
pub mod manager;
pub mod telemetry;
pub mod webhooks;
