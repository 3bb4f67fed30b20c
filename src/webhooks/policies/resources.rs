//! resources: every container must request and limit each required resource, with a
//! positive quantity: a zero limit is no limit at run time, and a zero request or limit
//! counts as nothing against a ResourceQuota's `requests.*`/`limits.*`. Zeros are refused
//! wherever they are written, pod-level `spec.resources` included, and where defaulting
//! would copy one (a zero limit without a request is a zero request too).
//!
//! A container counts as satisfying a resource when it, or Kubernetes on its behalf before
//! the Pod runs, sets it. What Kubernetes adds, in the order the apiserver does it:
//!
//! 1. Decoding a Pod runs `SetDefaults_Pod`: a container with a limit but no request gets
//!    the request equal to the limit, and pod-level `spec.resources` limits of cpu, memory
//!    and hugepages become pod-level requests. This runs for a Pod only, not for templates,
//!    so a template's limit becomes a request when its Pods are created.
//! 2. The LimitRanger admission plugin (mutating, so before any validating webhook) fills
//!    each container's missing requests from the LimitRange's `defaultRequest` and missing
//!    limits from its `default`, for containers and init containers, not ephemeral ones.
//!    The LimitRange itself was defaulted when stored (`SetDefaults_LimitRangeItem`):
//!    `default` from `max`, then `defaultRequest` from `default`, then from `min`. So a
//!    LimitRange with only `default: {memory: 512Mi}` also defaults the memory request.
//!
//! A Pod has been through both by the time we see it, so its fields are the truth and the
//! LimitRange must not count twice (were LimitRanger disabled, nothing would fill them in).
//! A template has been through neither: its Pods will be, so LimitRange defaults count.
//! Step 1 is applied to both: for a Pod it changes nothing, already done.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{LimitRange, LimitRangeSpec, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::pod_specs::{Container, ExtractedPodSpec, SpecOrigin};
use super::quantity::is_positive;
use super::violation::{ContainerRole, Policy, Problem, ResourceField, Subject, Violation};

/// Which resources a namespace's LimitRanges give every container that does not set them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerDefaults {
    requests: BTreeSet<String>,
    limits: BTreeSet<String>,
}

impl ContainerDefaults {
    pub fn from_limit_ranges(limit_ranges: &[LimitRange]) -> Self {
        Self::from_specs(limit_ranges.iter().filter_map(|lr| lr.spec.as_ref()))
    }

    /// From LimitRange specs, e.g. a Tenant's `spec.limitRange` that is not stored yet.
    /// A default of zero gives nothing: it would make a Pod that the Pod check refuses.
    pub fn from_specs<'a>(specs: impl IntoIterator<Item = &'a LimitRangeSpec>) -> Self {
        let mut defaults = Self::default();
        let get = |list: &'a Option<BTreeMap<String, Quantity>>, key: &str| {
            list.as_ref().and_then(|map| map.get(key))
        };
        for item in specs.into_iter().flat_map(|spec| &spec.limits) {
            // Only `Container` items have defaults; `Pod` and `PersistentVolumeClaim` items
            // only bound what is set.
            if item.type_ != "Container" {
                continue;
            }
            let keys: BTreeSet<&String> =
                [&item.default, &item.default_request, &item.max, &item.min]
                    .into_iter()
                    .flatten()
                    .flat_map(BTreeMap::keys)
                    .collect();
            for key in keys {
                // SetDefaults_LimitRangeItem, per resource: default <- max, then
                // defaultRequest <- default, then defaultRequest <- min.
                let limit = get(&item.default, key).or_else(|| get(&item.max, key));
                let request = get(&item.default_request, key)
                    .or(limit)
                    .or_else(|| get(&item.min, key));
                if limit.is_some_and(|q| is_positive(&q.0)) {
                    defaults.limits.insert(key.clone());
                }
                if request.is_some_and(|q| is_positive(&q.0)) {
                    defaults.requests.insert(key.clone());
                }
            }
        }
        defaults
    }

    pub fn gives(&self, field: ResourceField, resource: &str) -> bool {
        match field {
            ResourceField::Requests => self.requests.contains(resource),
            ResourceField::Limits => self.limits.contains(resource),
        }
    }
}

/// What the check needs besides the spec.
#[derive(Clone, Copy, Debug)]
pub struct ResourceRules<'a> {
    /// The resources every container must request and limit, e.g. `["cpu", "memory"]`.
    pub required: &'a [String],
    /// The namespace's LimitRange defaults; counted for templates only.
    pub defaults: &'a ContainerDefaults,
}

/// Every missing or non-positive request or limit of every container and init container
/// (sidecars included), and every non-positive required one of the pod-level resources.
/// Ephemeral containers are exempt: the API forbids resources on them.
///
/// Pod-level violations come first; then each container's missing fields, then its
/// non-positive ones, so the message can say each kind once per container.
pub fn check_pod_spec(pod: &ExtractedPodSpec, rules: ResourceRules<'_>) -> Vec<Violation> {
    let spec = &pod.spec;
    let containers = spec
        .containers
        .iter()
        .enumerate()
        .map(|(index, container)| {
            let path = format!("{}.containers[{index}]", pod.path);
            (ContainerRole::Container, path, container)
        });
    let init_containers =
        spec.init_containers
            .iter()
            .flatten()
            .enumerate()
            .map(|(index, container)| {
                let role = if container.restart_policy.as_deref() == Some("Always") {
                    ContainerRole::Sidecar
                } else {
                    ContainerRole::InitContainer
                };
                let path = format!("{}.initContainers[{index}]", pod.path);
                (role, path, container)
            });
    let pod_level = spec.resources.as_ref();
    let mut violations = Vec::new();
    if let Some(requirements) = pod_level {
        let subject = Subject::PodResources {
            path: format!("{}.resources", pod.path),
        };
        for resource in dedup(rules.required) {
            for field in [ResourceField::Requests, ResourceField::Limits] {
                if let Some(value) = pod_level_non_positive(field, resource, requirements) {
                    violations.push(non_positive(&subject, field, resource, value));
                }
            }
        }
    }
    for (role, path, container) in containers.chain(init_containers) {
        let subject = Subject::Container {
            role,
            name: container.name.clone(),
            path,
        };
        let mut missing = Vec::new();
        let mut non_positive_ones = Vec::new();
        for resource in dedup(rules.required) {
            for field in [ResourceField::Requests, ResourceField::Limits] {
                match supplied(
                    field,
                    resource,
                    container,
                    pod_level,
                    pod.origin,
                    rules.defaults,
                ) {
                    Supplied::Positive => {}
                    Supplied::NonPositive(value) => {
                        non_positive_ones.push(non_positive(&subject, field, resource, value))
                    }
                    Supplied::Missing => missing.push(Violation {
                        policy: Policy::Resources,
                        subject: subject.clone(),
                        field_path: field_path(&subject, field, resource),
                        problem: Problem::MissingResource {
                            field,
                            resource: resource.to_owned(),
                        },
                    }),
                }
            }
        }
        violations.extend(missing);
        violations.extend(non_positive_ones);
    }
    violations
}

/// The full path of a request or limit, e.g. `spec.containers[0].resources.limits.cpu` or
/// `spec.resources.limits.cpu`.
fn field_path(subject: &Subject, field: ResourceField, resource: &str) -> String {
    match subject {
        Subject::Container { path, .. } => {
            format!("{path}.resources.{}.{resource}", field.as_str())
        }
        Subject::PodResources { path } => format!("{path}.{}.{resource}", field.as_str()),
        // This policy only ever names containers and pod-level resources; these two have
        // no resource fields.
        Subject::Volume { path, .. } => path.clone(),
        Subject::Object => String::new(),
    }
}

fn non_positive(
    subject: &Subject,
    field: ResourceField,
    resource: &str,
    value: &Quantity,
) -> Violation {
    Violation {
        policy: Policy::Resources,
        subject: subject.clone(),
        field_path: field_path(subject, field, resource),
        problem: Problem::NonPositiveResource {
            field,
            resource: resource.to_owned(),
            value: value.0.clone(),
        },
    }
}

/// The required resources in configured order, each once, without empty names that no
/// container could ever set.
pub(crate) fn dedup(required: &[String]) -> impl Iterator<Item = &str> {
    required
        .iter()
        .enumerate()
        .filter(|(i, r)| !r.is_empty() && !required[..*i].contains(r))
        .map(|(_, r)| r.as_str())
}

/// What a container will have for one required request or limit.
enum Supplied<'a> {
    Positive,
    /// Set, or defaulted from a limit, to this quantity, which is not positive.
    NonPositive(&'a Quantity),
    Missing,
}

fn quantity<'a>(
    requirements: Option<&'a ResourceRequirements>,
    field: ResourceField,
    resource: &str,
) -> Option<&'a Quantity> {
    requirements
        .and_then(|r| match field {
            ResourceField::Requests => r.requests.as_ref(),
            ResourceField::Limits => r.limits.as_ref(),
        })
        .and_then(|list| list.get(resource))
}

fn judged(value: &Quantity) -> Supplied<'_> {
    if is_positive(&value.0) {
        Supplied::Positive
    } else {
        Supplied::NonPositive(value)
    }
}

fn supplied<'a>(
    field: ResourceField,
    resource: &str,
    container: &'a Container,
    pod_level: Option<&ResourceRequirements>,
    origin: SpecOrigin,
    defaults: &ContainerDefaults,
) -> Supplied<'a> {
    let own = container.resources.as_ref();
    // What the container sets counts first: a zero of its own is refused even under
    // positive pod-level resources.
    if let Some(value) = quantity(own, field, resource) {
        return judged(value);
    }
    // Pod-level resources satisfy a resource for every container; their own zeros are
    // reported once, by `pod_level_non_positive`.
    if quantity(pod_level, field, resource).is_some() {
        return Supplied::Positive;
    }
    if field == ResourceField::Requests {
        // SetDefaults_Pod: a limit without a request becomes the request too, zero or not
        // (a Pod has been defaulted already, so this is for templates), for the container's
        // own resources and for pod-level ones.
        if let Some(limit) = quantity(own, ResourceField::Limits, resource) {
            return judged(limit);
        }
        if quantity(pod_level, ResourceField::Limits, resource).is_some()
            && pod_level_requests_default(resource)
        {
            return Supplied::Positive;
        }
    }
    if origin == SpecOrigin::Template && defaults.gives(field, resource) {
        Supplied::Positive
    } else {
        Supplied::Missing
    }
}

/// A pod-level request or limit of `resource` that is set, or will be defaulted from a
/// pod-level limit, to a quantity that is not positive.
fn pod_level_non_positive<'a>(
    field: ResourceField,
    resource: &str,
    requirements: &'a ResourceRequirements,
) -> Option<&'a Quantity> {
    let value = quantity(Some(requirements), field, resource).or_else(|| {
        (field == ResourceField::Requests && pod_level_requests_default(resource))
            .then(|| quantity(Some(requirements), ResourceField::Limits, resource))
            .flatten()
    })?;
    (!is_positive(&value.0)).then_some(value)
}

/// The resources whose pod-level requests default from pod-level limits
/// (`IsSupportedPodLevelResource`).
fn pod_level_requests_default(resource: &str) -> bool {
    resource == "cpu" || resource == "memory" || resource.starts_with("hugepages-")
}

#[cfg(test)]
mod tests {
    use super::super::object::raw;
    use serde_json::{Value, json};

    use super::super::WorkloadKind;
    use super::super::pod_specs::extract_pod_spec;
    use super::*;

    fn required() -> Vec<String> {
        vec!["cpu".to_owned(), "memory".to_owned()]
    }

    fn full() -> Value {
        json!({"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "1", "memory": "128Mi"}})
    }

    fn check_with(kind: WorkloadKind, object: Value, defaults: &ContainerDefaults) -> Vec<String> {
        let pod = extract_pod_spec(kind, &raw(&object)).expect("fixture parses");
        let required = required();
        let rules = ResourceRules {
            required: &required,
            defaults,
        };
        check_pod_spec(&pod, rules)
            .into_iter()
            .map(|v| v.field_path)
            .collect()
    }

    fn check(kind: WorkloadKind, object: Value) -> Vec<String> {
        check_with(kind, object, &ContainerDefaults::default())
    }

    fn pod(spec: Value) -> Value {
        json!({"metadata": {"name": "web"}, "spec": spec})
    }

    fn deployment(spec: Value) -> Value {
        json!({"metadata": {"name": "web"}, "spec": {"template": {"spec": spec}}})
    }

    fn limit_range(limits: Value) -> ContainerDefaults {
        let lr: LimitRange = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "LimitRange",
            "metadata": {"name": "canopy-limits"},
            "spec": {"limits": limits}
        }))
        .expect("fixture parses");
        ContainerDefaults::from_limit_ranges(&[lr])
    }

    #[test]
    fn complete_containers_pass() {
        let found = check(
            WorkloadKind::Pod,
            pod(json!({"containers": [{"name": "app", "resources": full()}]})),
        );
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn every_missing_field_is_reported_in_order() {
        let found = check(
            WorkloadKind::Deployment,
            deployment(json!({"containers": [
                {"name": "ok", "resources": full()},
                {"name": "bare"},
                {"name": "half", "resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1"}}},
            ]})),
        );
        assert_eq!(
            found,
            [
                "spec.template.spec.containers[1].resources.requests.cpu",
                "spec.template.spec.containers[1].resources.limits.cpu",
                "spec.template.spec.containers[1].resources.requests.memory",
                "spec.template.spec.containers[1].resources.limits.memory",
                "spec.template.spec.containers[2].resources.limits.memory",
            ]
        );
    }

    #[test]
    fn init_containers_and_sidecars_are_checked() {
        let object = pod(json!({
            "initContainers": [
                {"name": "setup", "resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1"}}},
                {"name": "proxy", "restartPolicy": "Always", "resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "1Gi"}}},
            ],
            "containers": [{"name": "app", "resources": full()}],
        }));
        let pod = extract_pod_spec(WorkloadKind::Pod, &raw(&object)).expect("fixture parses");
        let required = required();
        let defaults = ContainerDefaults::default();
        let found = check_pod_spec(
            &pod,
            ResourceRules {
                required: &required,
                defaults: &defaults,
            },
        );
        let summary: Vec<_> = found
            .iter()
            .map(|v| match &v.subject {
                Subject::Container { role, name, .. } => {
                    (*role, name.as_str(), v.field_path.as_str())
                }
                other => panic!("unexpected subject {other:?}"),
            })
            .collect();
        assert_eq!(
            summary,
            [
                (
                    ContainerRole::InitContainer,
                    "setup",
                    "spec.initContainers[0].resources.limits.memory"
                ),
                (
                    ContainerRole::Sidecar,
                    "proxy",
                    "spec.initContainers[1].resources.limits.cpu"
                ),
            ]
        );
    }

    #[test]
    fn ephemeral_containers_are_exempt() {
        let found = check(
            WorkloadKind::Pod,
            pod(json!({
                "containers": [{"name": "app", "resources": full()}],
                "ephemeralContainers": [{"name": "debugger", "image": "busybox"}],
            })),
        );
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn pod_level_resources_satisfy_every_container() {
        let found = check(
            WorkloadKind::Pod,
            pod(json!({
                "resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "2Gi"}},
                "containers": [{"name": "app", "resources": {"limits": {"cpu": "1"}}}, {"name": "log"}],
                "initContainers": [{"name": "setup"}],
            })),
        );
        // cpu limits are per container here; the pod level only limits memory.
        assert_eq!(
            found,
            [
                "spec.containers[1].resources.limits.cpu",
                "spec.initContainers[0].resources.limits.cpu"
            ]
        );
    }

    #[test]
    fn pod_level_limits_become_requests() {
        let found = check(
            WorkloadKind::Deployment,
            deployment(json!({
                "resources": {"limits": {"cpu": "2", "memory": "2Gi"}},
                "containers": [{"name": "app"}],
            })),
        );
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn container_limit_becomes_its_request_in_templates_too() {
        let found = check(
            WorkloadKind::Deployment,
            deployment(
                json!({"containers": [{"name": "app", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]}),
            ),
        );
        assert!(found.is_empty(), "{found:?}");
        // ...but a request never becomes a limit.
        let found = check(
            WorkloadKind::Deployment,
            deployment(
                json!({"containers": [{"name": "app", "resources": {"requests": {"cpu": "1", "memory": "1Gi"}}}]}),
            ),
        );
        assert_eq!(
            found,
            [
                "spec.template.spec.containers[0].resources.limits.cpu",
                "spec.template.spec.containers[0].resources.limits.memory"
            ]
        );
    }

    #[test]
    fn limit_range_defaults_count_for_templates_only() {
        let defaults = limit_range(json!([{
            "type": "Container",
            "default": {"cpu": "500m", "memory": "512Mi"},
            "defaultRequest": {"cpu": "100m", "memory": "128Mi"},
        }]));
        let bare = json!({"containers": [{"name": "app"}], "initContainers": [{"name": "setup"}]});
        assert!(
            check_with(
                WorkloadKind::Deployment,
                deployment(bare.clone()),
                &defaults
            )
            .is_empty()
        );
        let cron = json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": bare.clone()}}}}});
        assert!(check_with(WorkloadKind::CronJob, cron, &defaults).is_empty());
        let template = json!({"template": {"spec": bare.clone()}});
        assert!(check_with(WorkloadKind::PodTemplate, template, &defaults).is_empty());
        // A Pod has had LimitRanger already: what it lacks now, it will keep lacking.
        assert_eq!(check_with(WorkloadKind::Pod, pod(bare), &defaults).len(), 8);
    }

    #[test]
    fn limit_range_default_limit_also_defaults_the_request() {
        let defaults = limit_range(json!([{"type": "Container", "default": {"memory": "512Mi"}}]));
        let found = check_with(
            WorkloadKind::Deployment,
            deployment(json!({"containers": [{"name": "app"}]})),
            &defaults,
        );
        assert_eq!(
            found,
            [
                "spec.template.spec.containers[0].resources.requests.cpu",
                "spec.template.spec.containers[0].resources.limits.cpu"
            ]
        );
    }

    #[test]
    fn limit_range_max_and_min_default_as_the_apiserver_does() {
        // max -> default limit -> default request; min -> default request only.
        let defaults = limit_range(json!([
            {"type": "Container", "max": {"cpu": "2"}, "min": {"memory": "64Mi"}},
            {"type": "Pod", "max": {"memory": "4Gi"}},
        ]));
        assert!(defaults.gives(ResourceField::Limits, "cpu"));
        assert!(defaults.gives(ResourceField::Requests, "cpu"));
        assert!(defaults.gives(ResourceField::Requests, "memory"));
        assert!(!defaults.gives(ResourceField::Limits, "memory"));
    }

    #[test]
    fn limit_range_default_request_alone_gives_no_limit() {
        let defaults = limit_range(
            json!([{"type": "Container", "defaultRequest": {"cpu": "100m", "memory": "128Mi"}}]),
        );
        let found = check_with(
            WorkloadKind::Deployment,
            deployment(json!({"containers": [{"name": "app"}]})),
            &defaults,
        );
        assert_eq!(
            found,
            [
                "spec.template.spec.containers[0].resources.limits.cpu",
                "spec.template.spec.containers[0].resources.limits.memory"
            ]
        );
    }

    #[test]
    fn required_resources_are_configurable() {
        let object = pod(json!({"containers": [{"name": "app", "resources": full()}]}));
        let pod = extract_pod_spec(WorkloadKind::Pod, &raw(&object)).expect("fixture parses");
        let defaults = ContainerDefaults::default();
        let required = vec![
            "memory".to_owned(),
            "ephemeral-storage".to_owned(),
            "memory".to_owned(),
            String::new(),
        ];
        let found: Vec<_> = check_pod_spec(
            &pod,
            ResourceRules {
                required: &required,
                defaults: &defaults,
            },
        )
        .into_iter()
        .map(|v| v.field_path)
        .collect();
        assert_eq!(
            found,
            [
                "spec.containers[0].resources.requests.ephemeral-storage",
                "spec.containers[0].resources.limits.ephemeral-storage"
            ]
        );
        let none: Vec<String> = Vec::new();
        let rules = ResourceRules {
            required: &none,
            defaults: &defaults,
        };
        assert!(check_pod_spec(&pod, rules).is_empty());
    }

    fn problems(kind: WorkloadKind, object: Value) -> Vec<(String, Problem)> {
        let pod = extract_pod_spec(kind, &raw(&object)).expect("fixture parses");
        let required = required();
        let defaults = ContainerDefaults::default();
        check_pod_spec(
            &pod,
            ResourceRules {
                required: &required,
                defaults: &defaults,
            },
        )
        .into_iter()
        .map(|v| (v.field_path, v.problem))
        .collect()
    }

    fn zero(field: ResourceField, resource: &str, value: &str) -> Problem {
        Problem::NonPositiveResource {
            field,
            resource: resource.to_owned(),
            value: value.to_owned(),
        }
    }

    #[test]
    fn zero_requests_and_limits_are_refused_in_any_spelling() {
        for value in ["0", "0m", "0Gi", "0.0", "0e3", "-1", "-100m"] {
            let found = problems(
                WorkloadKind::Pod,
                pod(json!({"containers": [{"name": "app", "resources": {
                    "requests": {"cpu": value, "memory": "64Mi"},
                    "limits": {"cpu": "1", "memory": value},
                }}]})),
            );
            assert_eq!(
                found,
                [
                    (
                        "spec.containers[0].resources.requests.cpu".to_owned(),
                        zero(ResourceField::Requests, "cpu", value)
                    ),
                    (
                        "spec.containers[0].resources.limits.memory".to_owned(),
                        zero(ResourceField::Limits, "memory", value)
                    ),
                ],
                "{value}"
            );
        }
    }

    #[test]
    fn only_required_resources_must_be_positive() {
        let found = check(
            WorkloadKind::Pod,
            pod(json!({"containers": [{"name": "app", "resources": {
                "requests": {"cpu": "1", "memory": "1Gi", "ephemeral-storage": "0"},
                "limits": {"cpu": "1", "memory": "1Gi", "nvidia.com/gpu": "0"},
            }}]})),
        );
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn a_zero_limit_without_a_request_is_a_zero_request_too() {
        // A template: its Pods will get the request from the limit.
        let found = problems(
            WorkloadKind::Deployment,
            deployment(json!({"containers": [{"name": "app", "resources": {
                "limits": {"cpu": "0", "memory": "1Gi"},
            }}]})),
        );
        assert_eq!(
            found,
            [
                (
                    "spec.template.spec.containers[0].resources.requests.cpu".to_owned(),
                    zero(ResourceField::Requests, "cpu", "0")
                ),
                (
                    "spec.template.spec.containers[0].resources.limits.cpu".to_owned(),
                    zero(ResourceField::Limits, "cpu", "0")
                ),
            ]
        );
        // A positive request next to a zero limit: only the limit is wrong.
        let found = check(
            WorkloadKind::Deployment,
            deployment(json!({"containers": [{"name": "app", "resources": {
                "requests": {"cpu": "100m", "memory": "1Gi"},
                "limits": {"cpu": "0", "memory": "1Gi"},
            }}]})),
        );
        assert_eq!(
            found,
            ["spec.template.spec.containers[0].resources.limits.cpu"]
        );
    }

    #[test]
    fn missing_fields_come_before_zero_ones_of_the_same_container() {
        let found = check(
            WorkloadKind::Pod,
            pod(json!({"containers": [{"name": "app", "resources": {
                "requests": {"cpu": "0"},
                "limits": {"cpu": "0"},
            }}]})),
        );
        assert_eq!(
            found,
            [
                "spec.containers[0].resources.requests.memory",
                "spec.containers[0].resources.limits.memory",
                "spec.containers[0].resources.requests.cpu",
                "spec.containers[0].resources.limits.cpu",
            ]
        );
    }

    #[test]
    fn pod_level_zeros_are_refused_once() {
        let found = problems(
            WorkloadKind::Pod,
            pod(json!({
                "resources": {"requests": {"cpu": "1", "memory": "0"}, "limits": {"memory": "0Gi"}},
                "containers": [{"name": "app", "resources": {"limits": {"cpu": "1"}}}, {"name": "log", "resources": {"limits": {"cpu": "1"}}}],
            })),
        );
        assert_eq!(
            found,
            [
                (
                    "spec.resources.requests.memory".to_owned(),
                    zero(ResourceField::Requests, "memory", "0")
                ),
                (
                    "spec.resources.limits.memory".to_owned(),
                    zero(ResourceField::Limits, "memory", "0Gi")
                ),
            ]
        );
        // A zero pod-level limit without a request is a zero request too (cpu, memory and
        // hugepages are defaulted so), and a container's own zero counts even under
        // positive pod-level resources.
        let found = check(
            WorkloadKind::Deployment,
            deployment(json!({
                "resources": {"limits": {"cpu": "0", "memory": "1Gi"}},
                "containers": [{"name": "app", "resources": {"limits": {"memory": "0"}}}],
            })),
        );
        assert_eq!(
            found,
            [
                "spec.template.spec.resources.requests.cpu",
                "spec.template.spec.resources.limits.cpu",
                "spec.template.spec.containers[0].resources.requests.memory",
                "spec.template.spec.containers[0].resources.limits.memory",
            ]
        );
    }

    #[test]
    fn zero_limit_range_defaults_give_nothing() {
        let defaults = limit_range(json!([{
            "type": "Container",
            "default": {"cpu": "0", "memory": "512Mi"},
            "max": {"cpu": "2"},
            "defaultRequest": {"memory": "0"},
            "min": {"memory": "64Mi"},
        }]));
        // default cpu is 0 (max does not replace a default that is set), so no cpu limit and
        // no cpu request (defaultRequest <- default); defaultRequest memory is 0 (default
        // and min do not replace it).
        assert!(!defaults.gives(ResourceField::Limits, "cpu"));
        assert!(!defaults.gives(ResourceField::Requests, "cpu"));
        assert!(defaults.gives(ResourceField::Limits, "memory"));
        assert!(!defaults.gives(ResourceField::Requests, "memory"));
    }
}
