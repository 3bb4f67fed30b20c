//! Pod Security Admission levels that canopy puts on every namespace of a tenant.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A Pod Security Standard level, spelled as the `pod-security.kubernetes.io/*` labels
/// spell it.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PodSecurityLevel {
    /// No restriction: privileged Pods, host namespaces and host paths are admitted.
    Privileged,
    /// Known privilege escalations refused: privileged containers, host namespaces,
    /// hostPath volumes, host ports, added capabilities beyond the default set.
    #[default]
    Baseline,
    /// Hardened: baseline plus non-root, no privilege escalation, seccomp, dropped
    /// capabilities.
    Restricted,
}

impl PodSecurityLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            PodSecurityLevel::Privileged => "privileged",
            PodSecurityLevel::Baseline => "baseline",
            PodSecurityLevel::Restricted => "restricted",
        }
    }
}
