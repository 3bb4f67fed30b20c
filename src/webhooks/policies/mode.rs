//! Which mode each policy has for one request.
//!
//! In order, the first that applies decides:
//! 1. an excluded namespace: every policy is off (canopy leaves these namespaces alone);
//! 2. an exempt username or group, matched exactly as Pod Security Admission matches its
//!    exemptions: every policy is off for the request, reclaimPolicy and the
//!    PersistentVolume checks included;
//! 3. an exempt namespace: the workload policies are off;
//! 4. `scope: Tenants` and a namespace of no tenant: the workload policies are off;
//! 5. the tenant's `spec.policies` override, for the workload policies;
//! 6. the cluster's `spec.policies`.
//!
//! docs/admission.md ("Which mode applies") lists the same order; tests/admission.rs
//! `an_exemption_covers_volumes_and_storage_classes_and_being_admin_does_not` pins it for
//! cluster-scoped objects.
//!
//! reclaimPolicy and the PersistentVolume hostPath check are about cluster-scoped objects,
//! which belong to no namespace and no tenant: steps 1, 3, 4 and 5 never apply to them,
//! and reclaimPolicy has no tenant override at all.

use k8s_openapi::api::core::v1::LimitRange;

use super::Policy;
use super::guardrails::Guardrails;
use crate::api::{PolicyConfig, PolicyMode, PolicyScope, TenantPolicies};

/// Who sends the request, from the AdmissionRequest's `userInfo`.
#[derive(Clone, Copy, Debug)]
pub struct Requester<'a> {
    pub username: &'a str,
    pub groups: &'a [String],
}

/// The tenant a namespace belongs to.
#[derive(Clone, Copy, Debug)]
pub struct TenantContext<'a> {
    pub name: &'a str,
    /// The Tenant's `spec.policies`.
    pub policies: Option<&'a TenantPolicies>,
    /// The Tenant's guardrails.
    pub guardrails: Guardrails<'a>,
}

/// What canopy knows of the namespace of a namespaced request.
#[derive(Clone, Copy, Debug)]
pub struct NamespaceContext<'a> {
    pub name: &'a str,
    /// In `excludedNamespaces` (the configured list is the only source of truth).
    pub excluded: bool,
    pub tenant: Option<TenantContext<'a>>,
    /// The namespace's LimitRanges, whose defaults pod templates will get.
    pub limit_ranges: &'a [LimitRange],
}

/// Why a policy has its mode, for logs and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModeSource {
    /// `CanopyConfiguration.spec.policies`.
    Cluster,
    /// The Tenant's `spec.policies`.
    Tenant,
    ExcludedNamespace,
    /// `scope: Tenants` and the namespace is in no tenant.
    OutOfScope,
    ExemptUsername,
    ExemptGroup,
    ExemptNamespace,
}

impl ModeSource {
    pub fn as_str(self) -> &'static str {
        match self {
            ModeSource::Cluster => "cluster",
            ModeSource::Tenant => "tenant",
            ModeSource::ExcludedNamespace => "excludedNamespace",
            ModeSource::OutOfScope => "outOfScope",
            ModeSource::ExemptUsername => "exemptUsername",
            ModeSource::ExemptGroup => "exemptGroup",
            ModeSource::ExemptNamespace => "exemptNamespace",
        }
    }
}

/// One policy's mode for a request, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EffectiveMode {
    pub mode: PolicyMode,
    pub source: ModeSource,
}

impl EffectiveMode {
    fn off(source: ModeSource) -> Self {
        Self {
            mode: PolicyMode::Off,
            source,
        }
    }
}

/// Every policy's mode for a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EffectiveModes {
    pub host_path: EffectiveMode,
    pub resources: EffectiveMode,
    pub reclaim_policy: EffectiveMode,
    pub guardrails: EffectiveMode,
}

impl EffectiveModes {
    pub fn get(&self, policy: Policy) -> EffectiveMode {
        match policy {
            Policy::HostPath => self.host_path,
            Policy::Resources => self.resources,
            Policy::ReclaimPolicy => self.reclaim_policy,
            Policy::Guardrails => self.guardrails,
        }
    }
}

/// The modes for a request about an object in `namespace`, or about a cluster-scoped object
/// when `namespace` is `None`.
pub fn resolve_modes(
    config: &PolicyConfig,
    namespace: Option<&NamespaceContext<'_>>,
    requester: &Requester<'_>,
) -> EffectiveModes {
    let cluster = |mode| EffectiveMode {
        mode,
        source: ModeSource::Cluster,
    };
    let requester_exemption = requester_exemption(config, requester);
    let reclaim_policy = match requester_exemption {
        Some(source) => EffectiveMode::off(source),
        None => cluster(config.reclaim_policy),
    };
    let workload = |configured: PolicyMode,
                    tenant_override: fn(&TenantPolicies) -> Option<PolicyMode>| {
        let Some(namespace) = namespace else {
            return match requester_exemption {
                Some(source) => EffectiveMode::off(source),
                None => cluster(configured),
            };
        };
        if namespace.excluded {
            return EffectiveMode::off(ModeSource::ExcludedNamespace);
        }
        if let Some(source) = requester_exemption {
            return EffectiveMode::off(source);
        }
        if config
            .exemptions
            .namespaces
            .iter()
            .any(|n| n == namespace.name)
        {
            return EffectiveMode::off(ModeSource::ExemptNamespace);
        }
        let Some(tenant) = namespace.tenant else {
            return match config.scope {
                PolicyScope::Tenants => EffectiveMode::off(ModeSource::OutOfScope),
                PolicyScope::AllNamespaces => cluster(configured),
            };
        };
        match tenant.policies.and_then(tenant_override) {
            Some(mode) => EffectiveMode {
                mode,
                source: ModeSource::Tenant,
            },
            None => cluster(configured),
        }
    };
    EffectiveModes {
        host_path: workload(config.host_path, |p| p.host_path),
        resources: workload(config.resources, |p| p.resources),
        reclaim_policy,
        guardrails: workload(config.guardrails, |p| p.guardrails),
    }
}

fn requester_exemption(config: &PolicyConfig, requester: &Requester<'_>) -> Option<ModeSource> {
    let exemptions = &config.exemptions;
    if exemptions.usernames.iter().any(|u| u == requester.username) {
        Some(ModeSource::ExemptUsername)
    } else if requester
        .groups
        .iter()
        .any(|g| exemptions.groups.contains(g))
    {
        Some(ModeSource::ExemptGroup)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Exemptions;

    fn config(scope: PolicyScope) -> PolicyConfig {
        PolicyConfig {
            scope,
            host_path: PolicyMode::Enforce,
            resources: PolicyMode::Warn,
            reclaim_policy: PolicyMode::Enforce,
            exemptions: Exemptions {
                usernames: vec!["system:serviceaccount:ci:deployer".to_owned()],
                groups: vec!["canopy:break-glass".to_owned()],
                namespaces: vec!["sandbox".to_owned()],
            },
            ..PolicyConfig::default()
        }
    }

    const NO_GROUPS: &[String] = &[];

    fn alice() -> Requester<'static> {
        Requester {
            username: "alice",
            groups: NO_GROUPS,
        }
    }

    fn namespace<'a>(name: &'a str, tenant: Option<TenantContext<'a>>) -> NamespaceContext<'a> {
        NamespaceContext {
            name,
            excluded: false,
            tenant,
            limit_ranges: &[],
        }
    }

    fn acme(policies: Option<&TenantPolicies>) -> Option<TenantContext<'_>> {
        Some(TenantContext {
            name: "acme",
            policies,
            guardrails: Guardrails::default(),
        })
    }

    fn modes(m: EffectiveModes) -> [(PolicyMode, ModeSource); 4] {
        Policy::ALL.map(|p| (m.get(p).mode, m.get(p).source))
    }

    use ModeSource as S;
    use PolicyMode::{Enforce, Off, Warn};

    #[test]
    fn tenant_namespace_gets_cluster_modes() {
        let ns = namespace("acme-dev", acme(None));
        let found = resolve_modes(&config(PolicyScope::Tenants), Some(&ns), &alice());
        assert_eq!(
            modes(found),
            [
                (Enforce, S::Cluster),
                (Warn, S::Cluster),
                (Enforce, S::Cluster),
                (Enforce, S::Cluster)
            ]
        );
    }

    #[test]
    fn tenant_overrides_workload_policies() {
        let policies = TenantPolicies {
            host_path: Some(Warn),
            resources: None,
            guardrails: None,
        };
        let ns = namespace("acme-dev", acme(Some(&policies)));
        let found = resolve_modes(&config(PolicyScope::Tenants), Some(&ns), &alice());
        assert_eq!(
            found.host_path,
            EffectiveMode {
                mode: Warn,
                source: S::Tenant
            }
        );
        assert_eq!(
            found.resources,
            EffectiveMode {
                mode: Warn,
                source: S::Cluster
            }
        );
        let policies = TenantPolicies {
            host_path: None,
            resources: Some(Off),
            guardrails: Some(Warn),
        };
        let ns = namespace("acme-dev", acme(Some(&policies)));
        let found = resolve_modes(&config(PolicyScope::Tenants), Some(&ns), &alice());
        assert_eq!(
            found.resources,
            EffectiveMode {
                mode: Off,
                source: S::Tenant
            }
        );
        assert_eq!(
            found.guardrails,
            EffectiveMode {
                mode: Warn,
                source: S::Tenant
            }
        );
    }

    #[test]
    fn scope_tenants_skips_other_namespaces() {
        let ns = namespace("default", None);
        let found = resolve_modes(&config(PolicyScope::Tenants), Some(&ns), &alice());
        assert_eq!(found.host_path, EffectiveMode::off(S::OutOfScope));
        assert_eq!(found.resources, EffectiveMode::off(S::OutOfScope));
    }

    #[test]
    fn scope_all_namespaces_checks_them() {
        let ns = namespace("default", None);
        let found = resolve_modes(&config(PolicyScope::AllNamespaces), Some(&ns), &alice());
        assert_eq!(
            found.host_path,
            EffectiveMode {
                mode: Enforce,
                source: S::Cluster
            }
        );
        assert_eq!(
            found.resources,
            EffectiveMode {
                mode: Warn,
                source: S::Cluster
            }
        );
    }

    #[test]
    fn excluded_namespace_is_always_exempt() {
        let ns = NamespaceContext {
            excluded: true,
            ..namespace("kube-system", acme(None))
        };
        for scope in [PolicyScope::Tenants, PolicyScope::AllNamespaces] {
            let found = resolve_modes(&config(scope), Some(&ns), &alice());
            assert_eq!(found.host_path, EffectiveMode::off(S::ExcludedNamespace));
            assert_eq!(found.resources, EffectiveMode::off(S::ExcludedNamespace));
        }
    }

    #[test]
    fn exempt_username_group_and_namespace() {
        let cfg = config(PolicyScope::AllNamespaces);
        let ns = namespace("acme-dev", acme(None));
        let deployer = Requester {
            username: "system:serviceaccount:ci:deployer",
            groups: NO_GROUPS,
        };
        let found = resolve_modes(&cfg, Some(&ns), &deployer);
        assert_eq!(modes(found), [(Off, S::ExemptUsername); 4]);

        let groups = vec![
            "system:authenticated".to_owned(),
            "canopy:break-glass".to_owned(),
        ];
        let admin = Requester {
            username: "kubernetes-admin",
            groups: &groups,
        };
        let found = resolve_modes(&cfg, Some(&ns), &admin);
        assert_eq!(modes(found), [(Off, S::ExemptGroup); 4]);
        // system:masters is a group like any other: not configured, not exempt.
        let masters = vec!["system:masters".to_owned()];
        let found = resolve_modes(
            &cfg,
            Some(&ns),
            &Requester {
                username: "kubernetes-admin",
                groups: &masters,
            },
        );
        assert_eq!(found.host_path.mode, Enforce);

        let sandbox = namespace("sandbox", acme(None));
        let found = resolve_modes(&cfg, Some(&sandbox), &alice());
        assert_eq!(found.host_path, EffectiveMode::off(S::ExemptNamespace));
        assert_eq!(found.resources, EffectiveMode::off(S::ExemptNamespace));

        // Exact matches only, as Pod Security Admission: no prefixes, no case folding.
        let near = Requester {
            username: "system:serviceaccount:ci:deployer2",
            groups: &["canopy:break-glas".to_owned()],
        };
        let found = resolve_modes(&cfg, Some(&ns), &near);
        assert_eq!(found.host_path.mode, Enforce);
    }

    #[test]
    fn cluster_scoped_objects_ignore_scope_and_namespace_rules() {
        let found = resolve_modes(&config(PolicyScope::Tenants), None, &alice());
        assert_eq!(
            modes(found),
            [
                (Enforce, S::Cluster),
                (Warn, S::Cluster),
                (Enforce, S::Cluster),
                (Enforce, S::Cluster)
            ]
        );
        let groups = vec!["canopy:break-glass".to_owned()];
        let admin = Requester {
            username: "admin",
            groups: &groups,
        };
        let found = resolve_modes(&config(PolicyScope::Tenants), None, &admin);
        assert_eq!(found.reclaim_policy, EffectiveMode::off(S::ExemptGroup));
    }

    #[test]
    fn the_default_configuration_exempts_nobody() {
        let cfg = PolicyConfig::default();
        assert_eq!(cfg.exemptions, Exemptions::default());
        assert!(cfg.exemptions.usernames.is_empty());
        assert!(cfg.exemptions.groups.is_empty());
        assert!(cfg.exemptions.namespaces.is_empty());
        // A configuration object without exemptions reads the same.
        let read: PolicyConfig =
            serde_json::from_value(serde_json::json!({"exemptions": {}})).expect("reads");
        assert!(read.exemptions.groups.is_empty());
        // A cluster admin (system:masters) is checked in a tenant and cluster-wide.
        let groups = vec![
            "system:authenticated".to_owned(),
            "system:masters".to_owned(),
        ];
        let admin = Requester {
            username: "kubernetes-admin",
            groups: &groups,
        };
        let ns = namespace("acme-dev", acme(None));
        let found = resolve_modes(&cfg, Some(&ns), &admin);
        assert_eq!(modes(found), [(Enforce, S::Cluster); 4]);
        let found = resolve_modes(&cfg, None, &admin);
        assert_eq!(modes(found), [(Enforce, S::Cluster); 4]);
    }

    #[test]
    fn configured_off_stays_off() {
        let cfg = PolicyConfig {
            host_path: Off,
            reclaim_policy: Off,
            ..config(PolicyScope::AllNamespaces)
        };
        let ns = namespace("acme-dev", acme(None));
        let found = resolve_modes(&cfg, Some(&ns), &alice());
        assert_eq!(
            found.host_path,
            EffectiveMode {
                mode: Off,
                source: S::Cluster
            }
        );
        assert_eq!(
            found.reclaim_policy,
            EffectiveMode {
                mode: Off,
                source: S::Cluster
            }
        );
    }
}
