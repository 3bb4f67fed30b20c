//! Guardrails: where and how a tenant's Pods run, what storage and Services it may use.
//!
//! Each is a field of `Tenant.spec` (`runtimeClasses`, `nodeSelector`, `storageClasses`,
//! `serviceTypes`, `externalIPs`, `imageRegistries`, `priorityClasses`), checked in the
//! tenant's namespaces on Pods and every pod template kind, PersistentVolumeClaims and
//! Services. canopy validates and never mutates: a refused object names the field and the
//! value to set, so what runs is what the owner wrote (and what GitOps keeps applying).

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Affinity, PersistentVolumeClaimSpec, ServiceSpec};

pub use super::breach::{Breach, ClaimClass};
use super::pod_specs::{Container, ExtractedPodSpec, PodSpec};
use super::violation::{ContainerRole, Policy, Problem, Subject, Violation};
use crate::api::{AllowedCidrs, AllowedNames, RuntimeClasses, ServiceTypes, TenantSpec};

/// A tenant's guardrails, borrowed from its spec, and the cluster's default StorageClass
/// (which a claim without a class gets).
#[derive(Clone, Copy, Debug, Default)]
pub struct Guardrails<'a> {
    pub runtime_classes: Option<&'a RuntimeClasses>,
    pub node_selector: Option<&'a BTreeMap<String, String>>,
    pub storage_classes: Option<&'a AllowedNames>,
    pub service_types: Option<&'a ServiceTypes>,
    pub external_ips: Option<&'a AllowedCidrs>,
    pub image_registries: Option<&'a AllowedNames>,
    pub priority_classes: Option<&'a AllowedNames>,
    /// The cluster's default StorageClass, if there is one.
    pub default_storage_class: Option<&'a str>,
}

impl<'a> Guardrails<'a> {
    pub fn of(spec: &'a TenantSpec, default_storage_class: Option<&'a str>) -> Self {
        Self {
            runtime_classes: spec.runtime_classes.as_ref(),
            node_selector: spec.node_selector.as_ref().filter(|s| !s.is_empty()),
            storage_classes: spec.storage_classes.as_ref(),
            service_types: spec.service_types.as_ref(),
            external_ips: spec.external_ips.as_ref(),
            image_registries: spec.image_registries.as_ref(),
            priority_classes: spec.priority_classes.as_ref(),
            default_storage_class,
        }
    }

    /// Whether any guardrail concerns pod specs.
    pub fn cover_pods(&self) -> bool {
        self.runtime_classes.is_some()
            || self.node_selector.is_some()
            || self.storage_classes.is_some()
            || self.image_registries.is_some()
            || self.priority_classes.is_some()
    }

    pub fn cover_claims(&self) -> bool {
        self.storage_classes.is_some()
    }
}

fn object_violation(field_path: String, breach: Breach) -> Violation {
    Violation {
        policy: Policy::Guardrails,
        subject: Subject::Object,
        field_path,
        problem: Problem::Guardrail(breach),
    }
}

/// Every guardrail a pod spec breaks.
pub fn check_pod_spec(pod: &ExtractedPodSpec, rails: &Guardrails<'_>) -> Vec<Violation> {
    let spec = &pod.spec;
    let path = pod.path;
    let mut found = Vec::new();
    if let Some(rule) = rails.runtime_classes {
        let value = spec.runtime_class_name.as_deref();
        if value.is_none_or(|v| !rule.allowed.iter().any(|a| a == v)) {
            found.push(object_violation(
                format!("{path}.runtimeClassName"),
                Breach::RuntimeClass {
                    value: value.map(str::to_owned),
                    allowed: rule.allowed.clone(),
                    default: rule.default.clone(),
                },
            ));
        }
    }
    if let Some(required) = rails.node_selector {
        found.extend(check_node_selector(spec, path, required));
    }
    if let Some(rule) = rails.priority_classes
        && let Some(value) = spec
            .priority_class_name
            .as_deref()
            .filter(|v| !v.is_empty())
        && !rule.allowed.iter().any(|a| a == value)
    {
        found.push(object_violation(
            format!("{path}.priorityClassName"),
            Breach::PriorityClass {
                value: value.to_owned(),
                allowed: rule.allowed.clone(),
            },
        ));
    }
    if let Some(rule) = rails.storage_classes {
        for (index, volume) in spec.volumes.iter().flatten().enumerate() {
            let Some(claim) = volume
                .ephemeral
                .as_ref()
                .and_then(|e| e.volume_claim_template.as_ref())
            else {
                continue;
            };
            let field = format!(
                "{path}.volumes[{index}].ephemeral.volumeClaimTemplate.spec.storageClassName"
            );
            found.extend(check_class(
                field,
                claim.spec.storage_class_name.as_deref(),
                rule,
                rails.default_storage_class,
            ));
        }
    }
    if let Some(rule) = rails.image_registries {
        found.extend(check_images(spec, path, &rule.allowed));
    }
    found
}

/// Each required label must be selected by `nodeSelector` or by every term of the required
/// node affinity (terms are ORed, so one term without it lets a Pod onto any node).
fn check_node_selector(
    spec: &PodSpec,
    path: &str,
    required: &BTreeMap<String, String>,
) -> Vec<Violation> {
    let all: Vec<(String, String)> = required
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    required
        .iter()
        .filter_map(|(key, value)| {
            let selected = spec.node_selector.as_ref().and_then(|s| s.get(key));
            if selected == Some(value) || affinity_pins(spec.affinity.as_ref(), key, value) {
                return None;
            }
            Some(object_violation(
                format!("{path}.nodeSelector"),
                Breach::NodeSelector {
                    key: key.clone(),
                    value: value.clone(),
                    found: selected.cloned(),
                    required: all.clone(),
                },
            ))
        })
        .collect()
}

/// Whether every required node affinity term says `key In [value]` (only that value).
fn affinity_pins(affinity: Option<&Affinity>, key: &str, value: &str) -> bool {
    let Some(terms) = affinity
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .map(|r| &r.node_selector_terms)
    else {
        return false;
    };
    !terms.is_empty()
        && terms.iter().all(|term| {
            term.match_expressions.iter().flatten().any(|e| {
                e.key == key
                    && e.operator == "In"
                    && e.values
                        .as_ref()
                        .is_some_and(|v| !v.is_empty() && v.iter().all(|v| v == value))
            })
        })
}

fn check_class(
    field_path: String,
    name: Option<&str>,
    rule: &AllowedNames,
    default: Option<&str>,
) -> Option<Violation> {
    let (class, effective) = match name {
        Some("") => (ClaimClass::Empty, None),
        Some(name) => (ClaimClass::Named(name.to_owned()), Some(name)),
        None => (ClaimClass::Default(default.map(str::to_owned)), default),
    };
    if effective.is_some_and(|c| rule.allowed.iter().any(|a| a == c)) {
        return None;
    }
    Some(object_violation(
        field_path,
        Breach::StorageClass {
            class,
            allowed: rule.allowed.clone(),
        },
    ))
}

/// A PersistentVolumeClaim's class.
pub fn check_claim(spec: &PersistentVolumeClaimSpec, rails: &Guardrails<'_>) -> Vec<Violation> {
    let Some(rule) = rails.storage_classes else {
        return Vec::new();
    };
    check_class(
        "spec.storageClassName".to_owned(),
        spec.storage_class_name.as_deref(),
        rule,
        rails.default_storage_class,
    )
    .into_iter()
    .collect()
}

/// The claims a StatefulSet will make (`spec.volumeClaimTemplates[i]`), checked at the
/// StatefulSet so that a bad class is refused at `kubectl apply`, not when the controller
/// creates the claim.
pub fn check_claim_templates(
    templates: &[PersistentVolumeClaimSpec],
    rails: &Guardrails<'_>,
) -> Vec<Violation> {
    let Some(rule) = rails.storage_classes else {
        return Vec::new();
    };
    templates
        .iter()
        .enumerate()
        .filter_map(|(index, spec)| {
            check_class(
                format!("spec.volumeClaimTemplates[{index}].spec.storageClassName"),
                spec.storage_class_name.as_deref(),
                rule,
                rails.default_storage_class,
            )
        })
        .collect()
}

fn check_images(spec: &PodSpec, path: &str, allowed: &[String]) -> Vec<Violation> {
    let allowed_image = |image: &str| allowed.iter().any(|p| image.starts_with(p.as_str()));
    let mut found = Vec::new();
    let mut check = |role: ContainerRole, container_path: String, name: &str, image: &str| {
        if !allowed_image(image) {
            found.push(Violation {
                policy: Policy::Guardrails,
                field_path: format!("{container_path}.image"),
                subject: Subject::Container {
                    role,
                    name: name.to_owned(),
                    path: container_path,
                },
                problem: Problem::Guardrail(Breach::Image {
                    image: image.to_owned(),
                    allowed: allowed.to_vec(),
                }),
            });
        }
    };
    let image = |c: &Container| c.image.clone().unwrap_or_default();
    for (i, c) in spec.init_containers.iter().flatten().enumerate() {
        let role = if c.restart_policy.as_deref() == Some("Always") {
            ContainerRole::Sidecar
        } else {
            ContainerRole::InitContainer
        };
        check(
            role,
            format!("{path}.initContainers[{i}]"),
            &c.name,
            &image(c),
        );
    }
    for (i, c) in spec.containers.iter().enumerate() {
        check(
            ContainerRole::Container,
            format!("{path}.containers[{i}]"),
            &c.name,
            &image(c),
        );
    }
    for (i, c) in spec.ephemeral_containers.iter().flatten().enumerate() {
        check(
            ContainerRole::Ephemeral,
            format!("{path}.ephemeralContainers[{i}]"),
            &c.name,
            c.image.as_deref().unwrap_or_default(),
        );
    }
    found
}

/// A Service's type (`ClusterIP` when unset), its LoadBalancer node ports, its external IPs.
pub fn check_service(spec: &ServiceSpec, rails: &Guardrails<'_>) -> Vec<Violation> {
    let mut found = Vec::new();
    if let Some(rule) = rails.service_types {
        let allowed: Vec<String> = rule.allowed.iter().map(|t| t.as_str().to_owned()).collect();
        let value = spec.type_.as_deref().unwrap_or("ClusterIP");
        let is_allowed = |t: &str| allowed.iter().any(|a| a == t);
        if !is_allowed(value) {
            found.push(object_violation(
                "spec.type".to_owned(),
                Breach::ServiceType {
                    value: value.to_owned(),
                    allowed: allowed.clone(),
                },
            ));
        } else if value == "LoadBalancer"
            && !is_allowed("NodePort")
            && spec.allocate_load_balancer_node_ports != Some(false)
        {
            // Every node then forwards the allocated port: a NodePort by another name.
            found.push(object_violation(
                "spec.allocateLoadBalancerNodePorts".to_owned(),
                Breach::LoadBalancerNodePorts { allowed },
            ));
        }
    }
    let cidrs: &[String] = rails.external_ips.map_or(&[], |r| &r.allowed);
    for (index, ip) in spec.external_ips.iter().flatten().enumerate() {
        if !cidrs.iter().any(|cidr| cidr_contains(cidr, ip)) {
            found.push(object_violation(
                format!("spec.externalIPs[{index}]"),
                Breach::ExternalIp {
                    ip: ip.clone(),
                    allowed: cidrs.to_vec(),
                },
            ));
        }
    }
    found
}

/// Whether `cidr` (`10.0.0.0/8`, or one address) contains `ip`; anything unreadable
/// contains nothing.
pub fn cidr_contains(cidr: &str, ip: &str) -> bool {
    let (network, bits) = match cidr.split_once('/') {
        Some((network, bits)) => (network, bits.parse::<u32>().ok()),
        None => (cidr, None),
    };
    let (Ok(network), Ok(ip)) = (network.parse::<IpAddr>(), ip.parse::<IpAddr>()) else {
        return false;
    };
    match (network, ip) {
        (IpAddr::V4(n), IpAddr::V4(i)) => {
            let bits = bits.unwrap_or(32);
            bits <= 32 && prefix_eq(u32::from(n).into(), u32::from(i).into(), bits, 32)
        }
        (IpAddr::V6(n), IpAddr::V6(i)) => {
            let bits = bits.unwrap_or(128);
            bits <= 128 && prefix_eq(u128::from(n), u128::from(i), bits, 128)
        }
        _ => false,
    }
}

fn prefix_eq(a: u128, b: u128, bits: u32, width: u32) -> bool {
    if bits == 0 {
        return true;
    }
    let shift = width - bits;
    (a >> shift) == (b >> shift)
}

#[cfg(test)]
mod tests {
    use super::super::object::raw;
    use serde_json::json;

    use super::super::WorkloadKind;
    use super::super::pod_specs::extract_pod_spec;
    use super::*;

    fn spec() -> TenantSpec {
        serde_json::from_value(json!({
            "runtimeClasses": {"allowed": ["gvisor", "kata"], "default": "gvisor"},
            "nodeSelector": {"pool": "acme"},
            "storageClasses": {"allowed": ["fast"]},
            "serviceTypes": {"allowed": ["ClusterIP", "LoadBalancer"]},
            "externalIPs": {"allowed": ["203.0.113.0/24"]},
            "imageRegistries": {"allowed": ["registry.example.com/acme/"]},
            "priorityClasses": {"allowed": ["low"]},
        }))
        .expect("a valid spec")
    }

    fn pod(kind: WorkloadKind, object: serde_json::Value) -> Vec<Violation> {
        let spec = spec();
        let rails = Guardrails::of(&spec, Some("standard"));
        check_pod_spec(
            &extract_pod_spec(kind, &raw(&object)).expect("parses"),
            &rails,
        )
    }

    fn fields(found: &[Violation]) -> Vec<&str> {
        found.iter().map(|v| v.field_path.as_str()).collect()
    }

    #[test]
    fn a_compliant_pod_passes() {
        let found = pod(
            WorkloadKind::Pod,
            json!({"spec": {
                "runtimeClassName": "kata",
                "nodeSelector": {"pool": "acme", "zone": "a"},
                "priorityClassName": "low",
                "containers": [{"name": "app", "image": "registry.example.com/acme/web:1"}],
                "volumes": [{"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec":
                    {"storageClassName": "fast", "accessModes": ["ReadWriteOnce"]}}}}],
            }}),
        );
        assert_eq!(found, []);
    }

    #[test]
    fn every_rail_of_a_template_is_named_with_its_field() {
        let found = pod(
            WorkloadKind::Deployment,
            json!({"spec": {"template": {"spec": {
                "nodeSelector": {"pool": "globex"},
                "priorityClassName": "high",
                "initContainers": [{"name": "proxy", "image": "envoy", "restartPolicy": "Always"}],
                "containers": [{"name": "app", "image": "registry.example.com/acme/web:1"}],
                "volumes": [{"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec":
                    {"accessModes": ["ReadWriteOnce"]}}}}],
            }}}}),
        );
        assert_eq!(
            fields(&found),
            [
                "spec.template.spec.runtimeClassName",
                "spec.template.spec.nodeSelector",
                "spec.template.spec.priorityClassName",
                "spec.template.spec.volumes[0].ephemeral.volumeClaimTemplate.spec.storageClassName",
                "spec.template.spec.initContainers[0].image",
            ]
        );
        let texts: Vec<String> = found.iter().map(|v| v.problem_text()).collect();
        assert_eq!(texts[0], "is unset");
        assert_eq!(texts[1], "selects pool=\"globex\"");
        assert_eq!(
            texts[3],
            "is unset, which means the cluster's default class \"standard\""
        );
        assert_eq!(texts[4], "uses image \"envoy\"");
        assert_eq!(
            found[0].fix(),
            "set spec.template.spec.runtimeClassName to \"gvisor\""
        );
        assert_eq!(
            found[1].fix(),
            "set spec.template.spec.nodeSelector.pool to \"acme\""
        );
        assert_eq!(found[2].fix(), "set it to \"low\" or remove it");
        assert_eq!(
            found[4].fix(),
            "use an image that starts with \"registry.example.com/acme/\""
        );
    }

    #[test]
    fn a_required_node_affinity_is_as_good_as_a_selector() {
        let affinity = |terms: serde_json::Value| {
            pod(
                WorkloadKind::Pod,
                json!({"spec": {
                    "runtimeClassName": "gvisor",
                    "containers": [{"name": "app", "image": "registry.example.com/acme/web"}],
                    "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
                        {"nodeSelectorTerms": terms}}},
                }}),
            )
        };
        let pinned =
            json!({"matchExpressions": [{"key": "pool", "operator": "In", "values": ["acme"]}]});
        assert_eq!(affinity(json!([pinned.clone()])), []);
        // A second term without the label lets the Pod onto any node.
        let open =
            json!({"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]});
        assert_eq!(
            fields(&affinity(json!([pinned, open]))),
            ["spec.nodeSelector"]
        );
        let wider = json!({"matchExpressions": [{"key": "pool", "operator": "In", "values": ["acme", "globex"]}]});
        assert_eq!(fields(&affinity(json!([wider]))), ["spec.nodeSelector"]);
        let not_in = json!({"matchExpressions": [{"key": "pool", "operator": "NotIn", "values": ["globex"]}]});
        assert_eq!(fields(&affinity(json!([not_in]))), ["spec.nodeSelector"]);
    }

    #[test]
    fn runtime_class_without_a_default_names_the_choices() {
        let mut spec = spec();
        spec.runtime_classes = Some(RuntimeClasses {
            allowed: vec!["gvisor".into(), "kata".into()],
            default: None,
        });
        spec.node_selector = None;
        spec.image_registries = None;
        let rails = Guardrails::of(&spec, None);
        let object = json!({"spec": {"runtimeClassName": "runc", "containers": []}});
        let found = check_pod_spec(
            &extract_pod_spec(WorkloadKind::Pod, &raw(&object)).expect("parses"),
            &rails,
        );
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].problem_text(), "is \"runc\"");
        assert_eq!(
            found[0].fix(),
            "set spec.runtimeClassName to one of \"gvisor\", \"kata\""
        );
        let Problem::Guardrail(breach) = &found[0].problem else {
            panic!("a guardrail");
        };
        assert_eq!(
            breach.reason(Some("acme")),
            "tenant acme allows runtime classes \"gvisor\", \"kata\""
        );
    }

    #[test]
    fn images_of_every_container_kind_are_checked() {
        let found = pod(
            WorkloadKind::Pod,
            json!({"spec": {
                "runtimeClassName": "gvisor", "nodeSelector": {"pool": "acme"},
                "initContainers": [{"name": "init", "image": "busybox"}],
                "containers": [{"name": "app", "image": "registry.example.com/acme/web"},
                               {"name": "evil", "image": "registry.example.com/acme-evil/x"}],
                "ephemeralContainers": [{"name": "debug", "image": "busybox"}],
            }}),
        );
        assert_eq!(
            fields(&found),
            [
                "spec.initContainers[0].image",
                "spec.containers[1].image",
                "spec.ephemeralContainers[0].image"
            ]
        );
        assert!(matches!(
            found[2].subject,
            Subject::Container {
                role: ContainerRole::Ephemeral,
                ..
            }
        ));
    }

    fn claim(class: Option<&str>, default: Option<&str>) -> Vec<Violation> {
        let spec = spec();
        let rails = Guardrails::of(&spec, default);
        let claim = PersistentVolumeClaimSpec {
            storage_class_name: class.map(str::to_owned),
            ..Default::default()
        };
        check_claim(&claim, &rails)
    }

    #[test]
    fn claims_fall_back_to_the_default_class() {
        assert_eq!(claim(Some("fast"), None), []);
        assert_eq!(claim(None, Some("fast")), []);
        assert_eq!(
            claim(Some("slow"), Some("fast"))[0].problem_text(),
            "is \"slow\""
        );
        assert_eq!(
            claim(None, Some("standard"))[0].problem_text(),
            "is unset, which means the cluster's default class \"standard\""
        );
        assert_eq!(
            claim(None, None)[0].problem_text(),
            "is unset and the cluster has no default StorageClass"
        );
        // "" is no class at all, never the default.
        assert_eq!(claim(Some(""), Some("fast")).len(), 1);
        assert_eq!(
            claim(Some("slow"), None)[0].fix(),
            "set spec.storageClassName to \"fast\""
        );
    }

    fn service(object: serde_json::Value, spec: &TenantSpec) -> Vec<Violation> {
        let rails = Guardrails::of(spec, None);
        let service: ServiceSpec = serde_json::from_value(object).expect("parses");
        check_service(&service, &rails)
    }

    #[test]
    fn service_types_node_ports_and_external_ips() {
        let spec = spec();
        assert_eq!(service(json!({}), &spec), []);
        let found = service(json!({"type": "NodePort"}), &spec);
        assert_eq!(fields(&found), ["spec.type"]);
        assert_eq!(
            found[0].fix(),
            "set spec.type to one of \"ClusterIP\", \"LoadBalancer\""
        );
        let found = service(json!({"type": "LoadBalancer"}), &spec);
        assert_eq!(fields(&found), ["spec.allocateLoadBalancerNodePorts"]);
        assert_eq!(
            service(
                json!({"type": "LoadBalancer", "allocateLoadBalancerNodePorts": false}),
                &spec
            ),
            []
        );
        let found = service(
            json!({"externalIPs": ["203.0.113.9", "198.51.100.1", "2001:db8::1"]}),
            &spec,
        );
        assert_eq!(
            fields(&found),
            ["spec.externalIPs[1]", "spec.externalIPs[2]"]
        );
        // A tenant without externalIPs may name none; without serviceTypes, any type.
        let mut open = spec.clone();
        open.external_ips = None;
        open.service_types = None;
        let found = service(
            json!({"type": "NodePort", "externalIPs": ["203.0.113.9"]}),
            &open,
        );
        assert_eq!(fields(&found), ["spec.externalIPs[0]"]);
        let Problem::Guardrail(breach) = &found[0].problem else {
            panic!("a guardrail");
        };
        assert_eq!(
            breach.reason(Some("acme")),
            "tenant acme allows no external IPs"
        );
    }

    #[test]
    fn cidrs() {
        assert!(cidr_contains("10.0.0.0/8", "10.1.2.3"));
        assert!(!cidr_contains("10.0.0.0/8", "11.0.0.1"));
        assert!(cidr_contains("203.0.113.7", "203.0.113.7"));
        assert!(!cidr_contains("203.0.113.7", "203.0.113.8"));
        assert!(cidr_contains("0.0.0.0/0", "1.2.3.4"));
        assert!(cidr_contains("2001:db8::/32", "2001:db8::1"));
        assert!(!cidr_contains("2001:db8::/32", "10.0.0.1"));
        assert!(!cidr_contains("10.0.0.0/33", "10.0.0.1"));
        assert!(!cidr_contains("bogus", "10.0.0.1"));
    }
}
