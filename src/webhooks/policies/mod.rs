//! Admission policies: pure functions from an object to its violations.
//!
//! The webhook server turns an AdmissionRequest into a [`PolicyInput`], calls
//! [`evaluate`], and answers with the [`PolicyOutcome`]: a denial with its message, or an
//! admission with warnings. Nothing here does I/O; the namespace's tenant, its LimitRanges
//! and the configuration are looked up by the caller.
//!
//! - hostPath ([`host_path`]): no hostPath volume in a pod or pod template, no hostPath
//!   PersistentVolume;
//! - resources ([`resources`]): every container requests and limits the required resources,
//!   each with a positive quantity ([`quantity`]);
//! - reclaimPolicy ([`reclaim`]): PersistentVolumes and StorageClasses use `Delete`;
//! - guardrails ([`guardrails`]): in a tenant's namespaces, Pods, pod templates,
//!   PersistentVolumeClaims and Services keep to what the Tenant allows (runtime and
//!   storage classes, nodes, Service types and external IPs, image registries, priority
//!   classes).
//!
//! [`mode`] decides which of them apply to a request and how, [`message`] renders the one
//! message that lists every violation.

mod breach;
mod error;
pub mod guardrails;
pub mod host_path;
mod kind;
pub mod message;
pub mod mode;
mod object;
pub mod pod_specs;
pub mod quantity;
pub mod reclaim;
pub mod resources;
mod violation;

#[cfg(test)]
mod tests;

use k8s_openapi::api::core::v1::{PersistentVolumeClaimSpec, PersistentVolumeSpec, ServiceSpec};
use serde_json::value::RawValue;

pub use error::PolicyError;
pub use guardrails::Guardrails;
pub use kind::{ObjectKind, WorkloadKind};
pub use message::{ObjectRef, ReasonContext, Tone, render_message};
pub use mode::{
    EffectiveMode, EffectiveModes, ModeSource, NamespaceContext, Requester, TenantContext,
    resolve_modes,
};
pub use pod_specs::{ExtractedPodSpec, SpecOrigin, extract_pod_spec};
pub use resources::{ContainerDefaults, ResourceRules};
pub use violation::{
    ContainerRole, Policy, Problem, ReclaimObject, ResourceField, Subject, Violation,
};

use crate::api::{PolicyConfig, PolicyMode};
use object::{object_name, optional_field, required_field};
use pod_specs::{parse_pod_spec, pod_spec_text};

/// The operation of an AdmissionRequest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    Create,
    Update,
    Delete,
    Connect,
}

impl From<&kube::core::admission::Operation> for Operation {
    fn from(operation: &kube::core::admission::Operation) -> Self {
        use kube::core::admission::Operation as Kube;
        match operation {
            Kube::Create => Operation::Create,
            Kube::Update => Operation::Update,
            Kube::Delete => Operation::Delete,
            Kube::Connect => Operation::Connect,
        }
    }
}

/// Everything the policies need to judge one request.
#[derive(Clone, Copy, Debug)]
pub struct PolicyInput<'a> {
    /// `request.kind.group`; empty for the core group.
    pub group: &'a str,
    /// `request.kind.kind`.
    pub kind: &'a str,
    /// `request.subResource`, e.g. `ephemeralcontainers`; `None` or empty for the resource
    /// itself.
    pub subresource: Option<&'a str>,
    pub operation: Operation,
    /// `request.object`.
    pub object: Option<&'a RawValue>,
    /// `request.oldObject`, present on updates.
    pub old_object: Option<&'a RawValue>,
    /// The request's namespace; `None` for cluster-scoped objects.
    pub namespace: Option<NamespaceContext<'a>>,
    pub requester: Requester<'a>,
    pub config: &'a PolicyConfig,
}

/// What one policy found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckResult {
    /// Its mode is Off for this request (see the report's mode source for why).
    Skipped,
    /// An update that leaves the policy's verdict as it was: the pod spec did not change,
    /// or the old object already broke the rule in the same field. Checking it would
    /// refuse `kubectl scale`, label changes and finalizer removal on objects that predate
    /// the policy.
    Unchanged,
    Passed,
    Violated(Vec<Violation>),
}

impl CheckResult {
    /// A label for metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            CheckResult::Skipped => "skipped",
            CheckResult::Unchanged => "unchanged",
            CheckResult::Passed => "passed",
            CheckResult::Violated(_) => "violated",
        }
    }
}

/// One policy that covers the request: its mode and what it found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyReport {
    pub policy: Policy,
    pub mode: EffectiveMode,
    pub result: CheckResult,
}

impl PolicyReport {
    pub fn violations(&self) -> &[Violation] {
        match &self.result {
            CheckResult::Violated(violations) => violations,
            _ => &[],
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny { message: String },
}

/// The answer to a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyOutcome {
    /// Deny when an Enforce policy found violations; the message lists them all.
    pub decision: Decision,
    /// The message for the violations of Warn policies; sent with a denial too, so that a
    /// refused user sees everything at once.
    pub warnings: Vec<String>,
    /// One report per policy that covers the kind and operation, in [`Policy::ALL`] order;
    /// empty when none does.
    pub reports: Vec<PolicyReport>,
}

impl PolicyOutcome {
    fn allow() -> Self {
        Self {
            decision: Decision::Allow,
            warnings: Vec::new(),
            reports: Vec::new(),
        }
    }

    pub fn is_allowed(&self) -> bool {
        self.decision == Decision::Allow
    }

    pub fn denial_message(&self) -> Option<&str> {
        match &self.decision {
            Decision::Allow => None,
            Decision::Deny { message } => Some(message),
        }
    }
}

const EPHEMERAL_CONTAINERS: &str = "ephemeralcontainers";
const RESIZE: &str = "resize";

/// The policies that judge this kind, subresource and operation. Deletes and connects
/// change nothing a policy checks. Of the subresources, only `pods/ephemeralcontainers`
/// and `pods/resize` can change anything a policy cares about; `status`, `scale`,
/// `binding` and the others are written by controllers and must never be refused for the
/// object's spec. `pods/ephemeralcontainers` gets hostPath only: it changes nothing but
/// ephemeral containers, which the resources policy exempts. `pods/resize` gets resources
/// only: it changes nothing but containers' resources, and the apiserver lets it set a
/// request and limit to zero (keeping a Burstable Pod Burstable), which would undo the
/// check at creation.
fn covering_policies(
    kind: ObjectKind,
    subresource: Option<&str>,
    operation: Operation,
) -> &'static [Policy] {
    if !matches!(operation, Operation::Create | Operation::Update) {
        return &[];
    }
    match (kind, subresource) {
        (ObjectKind::Workload(_), None) => &[Policy::HostPath, Policy::Resources],
        (ObjectKind::Workload(WorkloadKind::Pod), Some(EPHEMERAL_CONTAINERS)) => {
            &[Policy::HostPath]
        }
        (ObjectKind::Workload(WorkloadKind::Pod), Some(RESIZE)) => &[Policy::Resources],
        (ObjectKind::PersistentVolume, None) => &[Policy::HostPath, Policy::ReclaimPolicy],
        (ObjectKind::StorageClass, None) => &[Policy::ReclaimPolicy],
        _ => &[],
    }
}

/// Whether the tenant's guardrails judge this request: only in a tenant's namespace, and
/// only when the tenant has a guardrail for the kind (a tenant without any reports no
/// guardrails policy for its Pods). Every Service of a tenant is checked: external IPs
/// are refused unless the Tenant allows some. `pods/ephemeralcontainers` adds containers,
/// whose images are checked.
fn guardrails_cover(
    kind: ObjectKind,
    subresource: Option<&str>,
    operation: Operation,
    guardrails: Option<&Guardrails<'_>>,
) -> bool {
    let Some(rails) = guardrails else {
        return false;
    };
    if !matches!(operation, Operation::Create | Operation::Update) {
        return false;
    }
    match (kind, subresource) {
        (ObjectKind::Workload(_), None)
        | (ObjectKind::Workload(WorkloadKind::Pod), Some(EPHEMERAL_CONTAINERS)) => {
            rails.cover_pods()
        }
        (ObjectKind::Service, None) => true,
        (ObjectKind::PersistentVolumeClaim, None) => rails.cover_claims(),
        _ => false,
    }
}

/// Judges one request. An error means the object could not be read; the caller decides
/// what to answer (the apiserver never sends such objects, so refusing is safe).
pub fn evaluate(input: &PolicyInput<'_>) -> Result<PolicyOutcome, PolicyError> {
    let Some(kind) = ObjectKind::from_group_kind(input.group, input.kind) else {
        return Ok(PolicyOutcome::allow());
    };
    let subresource = input.subresource.filter(|s| !s.is_empty());
    let tenant_rails = input
        .namespace
        .as_ref()
        .and_then(|ns| ns.tenant)
        .map(|t| t.guardrails);
    let mut policies = covering_policies(kind, subresource, input.operation).to_vec();
    if guardrails_cover(kind, subresource, input.operation, tenant_rails.as_ref()) {
        policies.push(Policy::Guardrails);
    }
    let policies = policies;
    if policies.is_empty() {
        return Ok(PolicyOutcome::allow());
    }
    let namespace = match (kind.is_namespaced(), input.namespace.as_ref()) {
        (true, Some(namespace)) => Some(namespace),
        (true, None) => return Err(PolicyError::MissingNamespace { kind: kind.name() }),
        (false, _) => None,
    };
    let modes = resolve_modes(input.config, namespace, &input.requester);
    let active = |policy: Policy| modes.get(policy).mode != PolicyMode::Off;
    let report = |policy: Policy, result| PolicyReport {
        policy,
        mode: modes.get(policy),
        result,
    };
    if !policies.iter().any(|&p| active(p)) {
        return Ok(PolicyOutcome {
            reports: policies
                .iter()
                .map(|&p| report(p, CheckResult::Skipped))
                .collect(),
            ..PolicyOutcome::allow()
        });
    }

    let object = input
        .object
        .ok_or(PolicyError::MissingObject { kind: kind.name() })?;
    // Only an update has a before to compare with.
    let old = match input.operation {
        Operation::Update => input.old_object,
        _ => None,
    };
    let checked = Checked::read(kind, object, old)?;
    let ephemeral = subresource == Some(EPHEMERAL_CONTAINERS);
    let limit_ranges = namespace.map(|ns| ns.limit_ranges).unwrap_or_default();
    let defaults = ContainerDefaults::from_limit_ranges(limit_ranges);
    let rules = Rules {
        resources: ResourceRules {
            required: &input.config.required_resources,
            defaults: &defaults,
        },
        guardrails: tenant_rails.unwrap_or_default(),
        ephemeral,
    };
    let reports: Vec<PolicyReport> = policies
        .iter()
        .map(|&policy| {
            let result = if active(policy) {
                checked.check(policy, &rules)
            } else {
                CheckResult::Skipped
            };
            report(policy, result)
        })
        .collect();

    let context = ReasonContext {
        tenant: namespace.and_then(|ns| ns.tenant).map(|tenant| tenant.name),
        required_resources: &input.config.required_resources,
    };
    let in_mode = |mode: PolicyMode| -> Vec<Violation> {
        reports
            .iter()
            .filter(|r| r.mode.mode == mode)
            .flat_map(|r| r.violations().iter().cloned())
            .collect()
    };
    let refused = in_mode(PolicyMode::Enforce);
    let warned = in_mode(PolicyMode::Warn);
    // The name is only for messages, and finding it walks the whole object.
    let name = (!refused.is_empty() || !warned.is_empty())
        .then(|| object_name(object))
        .flatten();
    let object_ref = ObjectRef {
        kind: kind.name(),
        name: name.as_deref(),
    };
    let decision = if refused.is_empty() {
        Decision::Allow
    } else {
        Decision::Deny {
            message: render_message(object_ref, Tone::Refusal, &refused, context),
        }
    };
    let warnings = if warned.is_empty() {
        Vec::new()
    } else {
        vec![render_message(object_ref, Tone::Warning, &warned, context)]
    };
    Ok(PolicyOutcome {
        decision,
        warnings,
        reports,
    })
}

/// What the policies check against, besides the object.
struct Rules<'a> {
    resources: ResourceRules<'a>,
    guardrails: Guardrails<'a>,
    /// `pods/ephemeralcontainers`: only what the new ephemeral containers bring counts.
    ephemeral: bool,
}

/// The object of a request, read once for all the policies that check it. It lives for one
/// request on the stack of `evaluate`, so the size difference of its variants costs nothing.
#[allow(clippy::large_enum_variant)]
enum Checked {
    Workload {
        pod: ExtractedPodSpec,
        /// An update that leaves the pod spec as it was.
        unchanged: bool,
        /// The old object's pod spec, on an update.
        old: Option<ExtractedPodSpec>,
        /// A StatefulSet's `volumeClaimTemplates`: the claims it will make, judged here
        /// rather than when the controller creates them.
        claim_templates: Vec<PersistentVolumeClaimSpec>,
    },
    Service {
        spec: ServiceSpec,
        old: Option<ServiceSpec>,
    },
    Claim {
        spec: PersistentVolumeClaimSpec,
        old: Option<PersistentVolumeClaimSpec>,
    },
    PersistentVolume {
        spec: PersistentVolumeSpec,
        old: Option<PersistentVolumeSpec>,
    },
    StorageClass {
        reclaim_policy: Option<String>,
        /// `Some` on an update: the old object's reclaim policy, itself optional.
        old: Option<Option<String>>,
    },
}

impl Checked {
    /// An old object that cannot be read excuses nothing: the new one is judged as if
    /// created.
    fn read(
        kind: ObjectKind,
        object: &RawValue,
        old: Option<&RawValue>,
    ) -> Result<Self, PolicyError> {
        Ok(match kind {
            ObjectKind::Workload(workload) => {
                let (pod, old, unchanged) = match old {
                    // A create (most reviews): one walk through the object.
                    None => (extract_pod_spec(workload, object)?, None, false),
                    Some(old) => {
                        let text = pod_spec_text(workload, object)?;
                        let old_text = pod_spec_text(workload, old).ok();
                        (
                            parse_pod_spec(workload, text)?,
                            old_text.and_then(|old| parse_pod_spec(workload, old).ok()),
                            // The whole spec as the apiserver wrote it, not only what the
                            // policies read: any change to it is judged as new.
                            old_text.is_some_and(|old| old.get() == text.get()),
                        )
                    }
                };
                let claim_templates = match workload {
                    WorkloadKind::StatefulSet => claim_templates(object)?,
                    _ => Vec::new(),
                };
                Checked::Workload {
                    pod,
                    unchanged,
                    old,
                    claim_templates,
                }
            }
            ObjectKind::Service => Checked::Service {
                spec: service_spec(object)?,
                old: old.and_then(|old| service_spec(old).ok()),
            },
            ObjectKind::PersistentVolumeClaim => Checked::Claim {
                spec: claim_spec(object)?,
                old: old.and_then(|old| claim_spec(old).ok()),
            },
            ObjectKind::PersistentVolume => Checked::PersistentVolume {
                spec: persistent_volume_spec(object)?,
                old: old.and_then(|old| persistent_volume_spec(old).ok()),
            },
            ObjectKind::StorageClass => Checked::StorageClass {
                reclaim_policy: reclaim::storage_class_reclaim_policy(object)?,
                old: old.and_then(|old| reclaim::storage_class_reclaim_policy(old).ok()),
            },
        })
    }

    fn check(&self, policy: Policy, rules: &Rules<'_>) -> CheckResult {
        match (self, policy) {
            // A workload is judged whole whenever its pod spec changes, as Pod Security
            // Admission does: an edited template must be fixed, not only the edited part.
            (
                Checked::Workload {
                    unchanged: true, ..
                },
                _,
            ) => CheckResult::Unchanged,
            (Checked::Workload { pod, .. }, Policy::HostPath) => {
                violated(host_path::check_pod_spec(pod))
            }
            (Checked::Workload { pod, .. }, Policy::Resources) => {
                violated(resources::check_pod_spec(pod, rules.resources))
            }
            // An ephemeral container is added to a running Pod: what the Pod already
            // was (say, from before the guardrail) is not the debugger's to fix.
            (Checked::Workload { pod, old, .. }, Policy::Guardrails) if rules.ephemeral => {
                only_new_fields(
                    guardrails::check_pod_spec(pod, &rules.guardrails),
                    old.as_ref()
                        .map(|old| guardrails::check_pod_spec(old, &rules.guardrails)),
                )
            }
            (
                Checked::Workload {
                    pod,
                    claim_templates,
                    ..
                },
                Policy::Guardrails,
            ) => {
                let mut found = guardrails::check_pod_spec(pod, &rules.guardrails);
                found.extend(guardrails::check_claim_templates(
                    claim_templates,
                    &rules.guardrails,
                ));
                violated(found)
            }
            // Services and claims are edited in place (labels, ports, a resize): a field
            // that already broke a guardrail before does not block the edit.
            (Checked::Service { spec, old }, Policy::Guardrails) => only_new_fields(
                guardrails::check_service(spec, &rules.guardrails),
                old.as_ref()
                    .map(|old| guardrails::check_service(old, &rules.guardrails)),
            ),
            (Checked::Claim { spec, old }, Policy::Guardrails) => only_new_fields(
                guardrails::check_claim(spec, &rules.guardrails),
                old.as_ref()
                    .map(|old| guardrails::check_claim(old, &rules.guardrails)),
            ),
            (Checked::PersistentVolume { spec, old }, Policy::HostPath) => only_new(
                host_path::check_persistent_volume(spec),
                old.as_ref().and_then(host_path::check_persistent_volume),
            ),
            (Checked::PersistentVolume { spec, old }, Policy::ReclaimPolicy) => only_new(
                reclaim::check_persistent_volume(spec),
                old.as_ref().and_then(reclaim::check_persistent_volume),
            ),
            (
                Checked::StorageClass {
                    reclaim_policy,
                    old,
                },
                Policy::ReclaimPolicy,
            ) => only_new(
                reclaim::check_storage_class(reclaim_policy.as_deref()),
                old.as_ref()
                    .and_then(|old| reclaim::check_storage_class(old.as_deref())),
            ),
            // covering_policies never pairs these.
            (Checked::Workload { .. }, Policy::ReclaimPolicy)
            | (Checked::PersistentVolume { .. }, Policy::Resources | Policy::Guardrails)
            | (
                Checked::StorageClass { .. },
                Policy::HostPath | Policy::Resources | Policy::Guardrails,
            )
            | (
                Checked::Service { .. } | Checked::Claim { .. },
                Policy::HostPath | Policy::Resources | Policy::ReclaimPolicy,
            ) => CheckResult::Passed,
        }
    }
}

fn violated(violations: Vec<Violation>) -> CheckResult {
    if violations.is_empty() {
        CheckResult::Passed
    } else {
        CheckResult::Violated(violations)
    }
}

fn persistent_volume_spec(object: &RawValue) -> Result<PersistentVolumeSpec, PolicyError> {
    required_field("PersistentVolume", object, "/spec", "spec")
}

fn service_spec(object: &RawValue) -> Result<ServiceSpec, PolicyError> {
    Ok(optional_field("Service", object, "/spec", "spec")?.unwrap_or_default())
}

fn claim_spec(object: &RawValue) -> Result<PersistentVolumeClaimSpec, PolicyError> {
    required_field("PersistentVolumeClaim", object, "/spec", "spec")
}

/// The claim specs of a StatefulSet's `volumeClaimTemplates` (a template without a spec
/// asks for nothing a guardrail checks).
fn claim_templates(object: &RawValue) -> Result<Vec<PersistentVolumeClaimSpec>, PolicyError> {
    let templates: Option<Vec<k8s_openapi::api::core::v1::PersistentVolumeClaim>> = optional_field(
        "StatefulSet",
        object,
        "/spec/volumeClaimTemplates",
        "spec.volumeClaimTemplates",
    )?;
    Ok(templates
        .into_iter()
        .flatten()
        .map(|t| t.spec.unwrap_or_default())
        .collect())
}

/// The violations of `new` whose field the old object did not already break; `Unchanged`
/// when there were some and all were there before.
fn only_new_fields(new: Vec<Violation>, old: Option<Vec<Violation>>) -> CheckResult {
    let Some(old) = old else {
        return violated(new);
    };
    if new.is_empty() {
        return CheckResult::Passed;
    }
    let fresh: Vec<Violation> = new
        .into_iter()
        .filter(|v| !old.iter().any(|o| o.field_path == v.field_path))
        .collect();
    if fresh.is_empty() {
        CheckResult::Unchanged
    } else {
        CheckResult::Violated(fresh)
    }
}

/// A violation of a cluster-scoped object counts only if the old object did not already
/// have it in the same field: these objects are few, long-lived and admin-made, and a
/// policy switched on later must not block editing their labels or removing finalizers.
fn only_new(new: Option<Violation>, old: Option<Violation>) -> CheckResult {
    match (new, old) {
        (None, _) => CheckResult::Passed,
        (Some(new), Some(old)) if new.field_path == old.field_path => CheckResult::Unchanged,
        (Some(new), _) => CheckResult::Violated(vec![new]),
    }
}
