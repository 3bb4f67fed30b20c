//! The one message that lists every violation of a request.
//!
//! Shape: `<Kind> "<name>" refused by canopy: <clause>; <clause>...`, each clause
//! `<subject> <problem> (<reason>); <fix>`, where the subject names the container or volume
//! and its field path. The reason is said once per policy, at its first clause, so a pod
//! with five bare containers does not repeat it five times. The missing resources of one
//! container make one clause. The message stays on one line because it is also an
//! admission warning, which travels in an HTTP header.

use super::resources::dedup;
use super::violation::{POSITIVE_NEEDED, Policy, Problem, Subject, Violation};

/// Whether the message refuses the request or, in Warn mode, accompanies its admission.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tone {
    Refusal,
    Warning,
}

/// The object a message is about.
#[derive(Clone, Copy, Debug)]
pub struct ObjectRef<'a> {
    /// As the API spells it: `Pod`, `Deployment`.
    pub kind: &'a str,
    /// `None` when the object has neither name nor generateName.
    pub name: Option<&'a str>,
}

/// What the reasons quote: who requires it, and what.
#[derive(Clone, Copy, Debug)]
pub struct ReasonContext<'a> {
    /// The tenant of the object's namespace; `None` for cluster-scoped objects and
    /// namespaces of no tenant, whose rules are the cluster's.
    pub tenant: Option<&'a str>,
    pub required_resources: &'a [String],
}

/// Renders the message for `violations`, in their order.
pub fn render_message(
    object: ObjectRef<'_>,
    tone: Tone,
    violations: &[Violation],
    context: ReasonContext<'_>,
) -> String {
    let mut message = object.kind.to_owned();
    if let Some(name) = object.name {
        message.push_str(&format!(" {name:?}"));
    }
    message.push_str(match tone {
        Tone::Refusal => " refused by canopy: ",
        Tone::Warning => " would be refused by canopy: ",
    });
    // Each reason once: a policy's reason is the same for all its violations, but each
    // guardrail has its own (what the tenant allows).
    let mut reasons_given: Vec<String> = Vec::new();
    let clauses = group(violations).into_iter().map(|group| {
        let first = group[0];
        let why = reason(first, context);
        let reason = if reasons_given.contains(&why) {
            String::new()
        } else {
            let text = format!(" ({why})");
            reasons_given.push(why);
            text
        };
        format!(
            "{} {}{reason}; {}",
            subject(first),
            problems(&group),
            fixes(&group)
        )
    });
    message.push_str(&clauses.collect::<Vec<_>>().join("; "));
    message
}

/// Consecutive violations of the same kind about the same container (or the same pod-level
/// resources), which become one clause: its missing requests and limits, or its zero ones.
/// Others stand alone.
fn group(violations: &[Violation]) -> Vec<Vec<&Violation>> {
    let mut groups: Vec<Vec<&Violation>> = Vec::new();
    for violation in violations {
        match groups.last_mut() {
            Some(last)
                if matches!(
                    violation.subject,
                    Subject::Container { .. } | Subject::PodResources { .. }
                ) && last[0].policy == violation.policy
                    && last[0].subject == violation.subject
                    && resource_class(&last[0].problem).is_some()
                    && resource_class(&last[0].problem) == resource_class(&violation.problem) =>
            {
                last.push(violation)
            }
            _ => groups.push(vec![violation]),
        }
    }
    groups
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ResourceClass {
    Missing,
    NonPositive,
}

fn resource_class(problem: &Problem) -> Option<ResourceClass> {
    match problem {
        Problem::MissingResource { .. } => Some(ResourceClass::Missing),
        Problem::NonPositiveResource { .. } => Some(ResourceClass::NonPositive),
        _ => None,
    }
}

fn subject(violation: &Violation) -> String {
    match &violation.subject {
        Subject::Container { role, name, path } => format!("{} {name:?} at {path}", role.noun()),
        Subject::Volume { name, path } => format!("volume {name:?} at {path}"),
        Subject::PodResources { path } => format!("pod-level resources at {path}"),
        Subject::Object => violation.field_path.clone(),
    }
}

/// `has no requests.cpu, limits.memory` for a group of missing resources,
/// `has limits.cpu of "0", limits.memory of "0"` for a group of zero ones, the problem
/// itself otherwise.
fn problems(group: &[&Violation]) -> String {
    let listed: Vec<String> = group
        .iter()
        .filter_map(|v| match &v.problem {
            Problem::MissingResource { field, resource } => {
                Some(format!("{}.{resource}", field.as_str()))
            }
            Problem::NonPositiveResource {
                field,
                resource,
                value,
            } => Some(format!("{}.{resource} of {value:?}", field.as_str())),
            _ => None,
        })
        .collect();
    match resource_class(&group[0].problem) {
        Some(ResourceClass::Missing) => format!("has no {}", listed.join(", ")),
        Some(ResourceClass::NonPositive) => format!("has {}", listed.join(", ")),
        None => group[0].problem_text(),
    }
}

fn fixes(group: &[&Violation]) -> String {
    let settings: Vec<String> = group
        .iter()
        .filter_map(|v| match &v.problem {
            Problem::MissingResource { field, resource }
            | Problem::NonPositiveResource {
                field, resource, ..
            } => Some(v.setting(*field, resource)),
            _ => None,
        })
        .collect();
    match resource_class(&group[0].problem) {
        Some(ResourceClass::Missing) => format!("set {}", settings.join(", ")),
        Some(ResourceClass::NonPositive) if settings.len() > 1 => format!(
            "{POSITIVE_NEEDED}; set {} to positive values",
            settings.join(", ")
        ),
        _ => group[0].fix(),
    }
}

fn reason(violation: &Violation, context: ReasonContext<'_>) -> String {
    match violation.policy {
        Policy::HostPath => match context.tenant {
            Some(tenant) => format!("forbidden in tenant {tenant}"),
            None => "forbidden by cluster policy".to_owned(),
        },
        Policy::Resources => {
            let who = match context.tenant {
                Some(tenant) => format!("tenant {tenant}"),
                None => "cluster policy".to_owned(),
            };
            let required: Vec<&str> = dedup(context.required_resources).collect();
            format!(
                "{who} requires requests and limits for {}",
                required.join(", ")
            )
        }
        Policy::ReclaimPolicy => "cluster policy requires Delete".to_owned(),
        Policy::Guardrails => match &violation.problem {
            Problem::Guardrail(breach) => breach.reason(context.tenant),
            _ => "forbidden by the tenant's guardrails".to_owned(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::super::violation::{ContainerRole, ReclaimObject, ResourceField};
    use super::*;

    fn missing(
        role: ContainerRole,
        name: &str,
        path: &str,
        field: ResourceField,
        resource: &str,
    ) -> Violation {
        Violation {
            policy: Policy::Resources,
            subject: Subject::Container {
                role,
                name: name.to_owned(),
                path: path.to_owned(),
            },
            field_path: format!("{path}.resources.{}.{resource}", field.as_str()),
            problem: Problem::MissingResource {
                field,
                resource: resource.to_owned(),
            },
        }
    }

    fn host_path(name: &str, path: &str) -> Violation {
        Violation {
            policy: Policy::HostPath,
            subject: Subject::Volume {
                name: name.to_owned(),
                path: path.to_owned(),
            },
            field_path: path.to_owned(),
            problem: Problem::HostPathVolume,
        }
    }

    fn required() -> Vec<String> {
        vec!["cpu".to_owned(), "memory".to_owned()]
    }

    #[test]
    fn one_missing_limit() {
        let required = required();
        let message = render_message(
            ObjectRef {
                kind: "Pod",
                name: Some("web"),
            },
            Tone::Refusal,
            &[missing(
                ContainerRole::Container,
                "app",
                "spec.containers[0]",
                ResourceField::Limits,
                "memory",
            )],
            ReasonContext {
                tenant: Some("acme"),
                required_resources: &required,
            },
        );
        assert_eq!(
            message,
            "Pod \"web\" refused by canopy: container \"app\" at spec.containers[0] has no limits.memory \
             (tenant acme requires requests and limits for cpu, memory); set resources.limits.memory"
        );
    }

    #[test]
    fn several_violations_one_message() {
        let required = required();
        let violations = [
            host_path("data", "spec.template.spec.volumes[0]"),
            missing(
                ContainerRole::Container,
                "app",
                "spec.template.spec.containers[0]",
                ResourceField::Requests,
                "cpu",
            ),
            missing(
                ContainerRole::Container,
                "app",
                "spec.template.spec.containers[0]",
                ResourceField::Limits,
                "memory",
            ),
            missing(
                ContainerRole::Sidecar,
                "proxy",
                "spec.template.spec.initContainers[0]",
                ResourceField::Limits,
                "cpu",
            ),
        ];
        let message = render_message(
            ObjectRef {
                kind: "Deployment",
                name: Some("web"),
            },
            Tone::Warning,
            &violations,
            ReasonContext {
                tenant: Some("acme"),
                required_resources: &required,
            },
        );
        assert_eq!(
            message,
            "Deployment \"web\" would be refused by canopy: \
             volume \"data\" at spec.template.spec.volumes[0] uses hostPath (forbidden in tenant acme); \
             remove it or use another volume type, such as persistentVolumeClaim or emptyDir; \
             container \"app\" at spec.template.spec.containers[0] has no requests.cpu, limits.memory \
             (tenant acme requires requests and limits for cpu, memory); \
             set resources.requests.cpu, resources.limits.memory; \
             sidecar container \"proxy\" at spec.template.spec.initContainers[0] has no limits.cpu; \
             set resources.limits.cpu"
        );
    }

    #[test]
    fn cluster_objects_name_the_field() {
        let violations = [
            Violation {
                policy: Policy::HostPath,
                subject: Subject::Object,
                field_path: "spec.hostPath".to_owned(),
                problem: Problem::HostPathPersistentVolume,
            },
            Violation {
                policy: Policy::ReclaimPolicy,
                subject: Subject::Object,
                field_path: "spec.persistentVolumeReclaimPolicy".to_owned(),
                problem: Problem::ReclaimPolicy {
                    object: ReclaimObject::PersistentVolume,
                    value: None,
                },
            },
        ];
        let message = render_message(
            ObjectRef {
                kind: "PersistentVolume",
                name: Some("pv-1"),
            },
            Tone::Refusal,
            &violations,
            ReasonContext {
                tenant: None,
                required_resources: &[],
            },
        );
        assert_eq!(
            message,
            "PersistentVolume \"pv-1\" refused by canopy: spec.hostPath is node storage (forbidden by cluster policy); \
             provision volumes through a StorageClass with a dynamic provisioner instead, \
             or add the provisioner's identity to the CanopyConfiguration's spec.policies.exemptions; \
             spec.persistentVolumeReclaimPolicy is unset, which means Retain (cluster policy requires Delete); \
             set spec.persistentVolumeReclaimPolicy to Delete"
        );
    }

    #[test]
    fn unnamed_objects_and_odd_names_stay_on_one_line() {
        let required = required();
        let message = render_message(
            ObjectRef {
                kind: "Pod",
                name: None,
            },
            Tone::Refusal,
            &[missing(
                ContainerRole::InitContainer,
                "a\nb",
                "spec.initContainers[0]",
                ResourceField::Requests,
                "cpu",
            )],
            ReasonContext {
                tenant: None,
                required_resources: &required,
            },
        );
        assert_eq!(
            message,
            "Pod refused by canopy: init container \"a\\nb\" at spec.initContainers[0] has no requests.cpu \
             (cluster policy requires requests and limits for cpu, memory); set resources.requests.cpu"
        );
    }

    fn zero(name: &str, path: &str, field: ResourceField, resource: &str) -> Violation {
        Violation {
            policy: Policy::Resources,
            subject: Subject::Container {
                role: ContainerRole::Container,
                name: name.to_owned(),
                path: path.to_owned(),
            },
            field_path: format!("{path}.resources.{}.{resource}", field.as_str()),
            problem: Problem::NonPositiveResource {
                field,
                resource: resource.to_owned(),
                value: "0".to_owned(),
            },
        }
    }

    #[test]
    fn zero_quantities_name_the_field_and_the_fix() {
        let required = required();
        let context = ReasonContext {
            tenant: Some("acme"),
            required_resources: &required,
        };
        let pod = ObjectRef {
            kind: "Pod",
            name: Some("web"),
        };
        let message = render_message(
            pod,
            Tone::Refusal,
            &[zero(
                "app",
                "spec.containers[0]",
                ResourceField::Limits,
                "memory",
            )],
            context,
        );
        assert_eq!(
            message,
            "Pod \"web\" refused by canopy: container \"app\" at spec.containers[0] has limits.memory of \"0\" \
             (tenant acme requires requests and limits for cpu, memory); \
             a required resource needs a positive quantity; set resources.limits.memory to a positive value"
        );
        // A container's missing fields and its zero ones are two clauses; several zeros one.
        let message = render_message(
            pod,
            Tone::Refusal,
            &[
                missing(
                    ContainerRole::Container,
                    "app",
                    "spec.containers[0]",
                    ResourceField::Requests,
                    "memory",
                ),
                zero("app", "spec.containers[0]", ResourceField::Requests, "cpu"),
                zero("app", "spec.containers[0]", ResourceField::Limits, "cpu"),
                Violation {
                    policy: Policy::Resources,
                    subject: Subject::PodResources {
                        path: "spec.resources".to_owned(),
                    },
                    field_path: "spec.resources.limits.memory".to_owned(),
                    problem: Problem::NonPositiveResource {
                        field: ResourceField::Limits,
                        resource: "memory".to_owned(),
                        value: "0Gi".to_owned(),
                    },
                },
            ],
            context,
        );
        assert_eq!(
            message,
            "Pod \"web\" refused by canopy: container \"app\" at spec.containers[0] has no requests.memory \
             (tenant acme requires requests and limits for cpu, memory); set resources.requests.memory; \
             container \"app\" at spec.containers[0] has requests.cpu of \"0\", limits.cpu of \"0\"; \
             a required resource needs a positive quantity; \
             set resources.requests.cpu, resources.limits.cpu to positive values; \
             pod-level resources at spec.resources has limits.memory of \"0Gi\"; \
             a required resource needs a positive quantity; set spec.resources.limits.memory to a positive value"
        );
    }
}
