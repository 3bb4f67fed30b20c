//! What a policy finds wrong with an object, as data: the message is rendered from it, and
//! the server can count it.

use std::fmt;

pub use super::breach::Breach;

/// The admission policies of `CanopyConfiguration.spec.policies`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Policy {
    HostPath,
    Resources,
    ReclaimPolicy,
    /// The tenant's guardrails (`Tenant.spec.runtimeClasses`, `nodeSelector`, ...).
    Guardrails,
}

impl Policy {
    /// Every policy, in the order violations are reported.
    pub const ALL: [Policy; 4] = [
        Policy::HostPath,
        Policy::Resources,
        Policy::ReclaimPolicy,
        Policy::Guardrails,
    ];

    /// The policy's key in `spec.policies`, so metrics and logs use the names admins configure.
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::HostPath => "hostPath",
            Policy::Resources => "resources",
            Policy::ReclaimPolicy => "reclaimPolicy",
            Policy::Guardrails => "guardrails",
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a container is declared; sidecars are init containers with `restartPolicy: Always`,
/// named apart so the message points at what the user wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContainerRole {
    Container,
    InitContainer,
    Sidecar,
    Ephemeral,
}

impl ContainerRole {
    pub fn noun(self) -> &'static str {
        match self {
            ContainerRole::Container => "container",
            ContainerRole::InitContainer => "init container",
            ContainerRole::Sidecar => "sidecar container",
            ContainerRole::Ephemeral => "ephemeral container",
        }
    }
}

/// The named thing a violation is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Subject {
    /// A container of a pod spec; `path` is the container's own path, e.g.
    /// `spec.template.spec.containers[1]`.
    Container {
        role: ContainerRole,
        name: String,
        path: String,
    },
    /// A volume of a pod spec; `path` is e.g. `spec.volumes[0]`.
    Volume { name: String, path: String },
    /// The pod-level `resources` of a pod spec; `path` is e.g. `spec.template.spec.resources`.
    PodResources { path: String },
    /// A field of the object itself (PersistentVolume, StorageClass), named by the
    /// violation's field path.
    Object,
}

/// `resources.requests` or `resources.limits`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResourceField {
    Requests,
    Limits,
}

impl ResourceField {
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceField::Requests => "requests",
            ResourceField::Limits => "limits",
        }
    }
}

/// The objects that carry a reclaim policy, whose field names and defaults differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReclaimObject {
    PersistentVolume,
    StorageClass,
}

impl ReclaimObject {
    /// The field's path in the object.
    pub fn field_path(self) -> &'static str {
        match self {
            ReclaimObject::PersistentVolume => "spec.persistentVolumeReclaimPolicy",
            ReclaimObject::StorageClass => "reclaimPolicy",
        }
    }
}

/// What is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// A pod volume of type `hostPath`.
    HostPathVolume,
    /// A PersistentVolume whose source is `spec.hostPath`.
    HostPathPersistentVolume,
    /// A PersistentVolume whose source is `spec.local`: a node's directory or disk (a
    /// `local` PV with path `/` is the node's root filesystem), as dangerous as hostPath.
    LocalPersistentVolume,
    /// A container that neither sets nor will be given a required request or limit.
    MissingResource {
        field: ResourceField,
        resource: String,
    },
    /// A required request or limit set to zero or less (`value` as written), or a request
    /// that defaulting will copy from such a limit. At run time a zero limit is no limit,
    /// and a zero request or limit counts as nothing against a ResourceQuota.
    NonPositiveResource {
        field: ResourceField,
        resource: String,
        value: String,
    },
    /// A reclaim policy other than `Delete`; `value` is `None` when the field is unset and
    /// the apiserver's default is not `Delete` (PersistentVolumes default to `Retain`).
    ReclaimPolicy {
        object: ReclaimObject,
        value: Option<String>,
    },
    /// A guardrail of the tenant, with what it allows.
    Guardrail(Breach),
}

/// One thing a policy refuses, with enough to name it, explain it and say how to fix it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub policy: Policy,
    pub subject: Subject,
    /// The offending field, e.g. `spec.template.spec.containers[1].resources.limits.memory`
    /// or `spec.volumes[0]`.
    pub field_path: String,
    pub problem: Problem,
}

impl Violation {
    /// The container or volume name, if the violation is about one.
    pub fn subject_name(&self) -> Option<&str> {
        match &self.subject {
            Subject::Container { name, .. } | Subject::Volume { name, .. } => Some(name),
            Subject::PodResources { .. } | Subject::Object => None,
        }
    }

    /// What is wrong, phrased to follow the subject: `has no limits.memory`.
    pub fn problem_text(&self) -> String {
        match &self.problem {
            Problem::HostPathVolume => "uses hostPath".to_owned(),
            Problem::HostPathPersistentVolume | Problem::LocalPersistentVolume => {
                "is node storage".to_owned()
            }
            Problem::MissingResource { field, resource } => {
                format!("has no {}.{resource}", field.as_str())
            }
            Problem::NonPositiveResource {
                field,
                resource,
                value,
            } => format!("has {}.{resource} of {value:?}", field.as_str()),
            Problem::ReclaimPolicy { value: None, .. } => "is unset, which means Retain".to_owned(),
            Problem::ReclaimPolicy {
                value: Some(value), ..
            } => format!("is {}", value.escape_debug()),
            Problem::Guardrail(breach) => breach.text(),
        }
    }

    /// How to fix it, as an imperative: `set resources.limits.memory`.
    pub fn fix(&self) -> String {
        match &self.problem {
            Problem::HostPathVolume => {
                "remove it or use another volume type, such as persistentVolumeClaim or emptyDir"
                    .to_owned()
            }
            // Neither hostPath nor local is a way out: both are a node's storage. Storage
            // that a provisioner makes per claim is; a provisioner trusted to make node
            // storage (a local-volume provisioner) is exempted by its identity.
            Problem::HostPathPersistentVolume | Problem::LocalPersistentVolume => {
                "provision volumes through a StorageClass with a dynamic provisioner instead, \
                 or add the provisioner's identity to the CanopyConfiguration's \
                 spec.policies.exemptions"
                    .to_owned()
            }
            Problem::MissingResource { field, resource } => {
                format!("set {}", self.setting(*field, resource))
            }
            Problem::NonPositiveResource {
                field, resource, ..
            } => format!(
                "{POSITIVE_NEEDED}; set {} to a positive value",
                self.setting(*field, resource)
            ),
            Problem::ReclaimPolicy { object, .. } => {
                format!("set {} to Delete", object.field_path())
            }
            Problem::Guardrail(breach) => breach.fix(&self.field_path),
        }
    }

    /// The field a fix of a resource violation sets: relative to the container
    /// (`resources.limits.memory`), as users write it in a container; the full path for
    /// pod-level resources, which would otherwise read like a container's.
    pub(crate) fn setting(&self, field: ResourceField, resource: &str) -> String {
        match &self.subject {
            Subject::PodResources { path } => {
                format!("{path}.{}.{resource}", field.as_str())
            }
            _ => format!("resources.{}.{resource}", field.as_str()),
        }
    }
}

/// Why a zero is refused, said with every fix of one.
pub(crate) const POSITIVE_NEEDED: &str = "a required resource needs a positive quantity";
