//! The pod spec inside each workload kind, read into what the policies check.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, EphemeralVolumeSource, HostPathVolumeSource, ResourceRequirements,
};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::object::required_field;
use super::{PolicyError, WorkloadKind};

/// Whether a pod spec is a Pod's or a template for Pods created later.
///
/// The difference matters to the resources policy: a Pod reaching a validating webhook has
/// already been through the apiserver's defaulting and its LimitRanger admission plugin,
/// while a template's Pods get the namespace's LimitRange defaults only when they are
/// created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpecOrigin {
    Pod,
    Template,
}

/// What the policies read of a pod spec, under the API's field names; everything else is
/// skipped while parsing, unbuilt. A 10-container Deployment took 35 µs to review with
/// k8s-openapi's whole `PodSpec`, most of it building containers' ports, env, probes and
/// mounts that no policy reads. The apiserver has validated the rest.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PodSpec {
    pub containers: Vec<Container>,
    pub init_containers: Option<Vec<Container>>,
    /// The API forbids resources on ephemeral containers; their images still count.
    pub ephemeral_containers: Option<Vec<Container>>,
    pub volumes: Option<Vec<Volume>>,
    /// Pod-level resources (`PodLevelResources`).
    pub resources: Option<ResourceRequirements>,
    pub runtime_class_name: Option<String>,
    pub priority_class_name: Option<String>,
    pub node_selector: Option<BTreeMap<String, String>>,
    pub affinity: Option<Affinity>,
}

/// A container, init container or ephemeral container, as far as the policies look.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    pub name: String,
    pub image: Option<String>,
    pub resources: Option<ResourceRequirements>,
    /// `Always` on an init container makes it a sidecar.
    pub restart_policy: Option<String>,
}

/// A volume, as far as the policies look: its name and the sources they refuse or check.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Volume {
    pub name: String,
    pub host_path: Option<HostPathVolumeSource>,
    pub ephemeral: Option<EphemeralVolumeSource>,
}

/// A pod spec with where it was found.
#[derive(Clone, Debug, PartialEq)]
pub struct ExtractedPodSpec {
    /// The spec's field path in the object, e.g. `spec.template.spec`.
    pub path: &'static str,
    pub origin: SpecOrigin,
    pub spec: PodSpec,
}

impl WorkloadKind {
    /// Where the pod spec lives, as a JSON pointer and as a field path.
    fn pod_spec_location(self) -> (&'static str, &'static str) {
        match self {
            WorkloadKind::Pod => ("/spec", "spec"),
            WorkloadKind::Deployment
            | WorkloadKind::ReplicaSet
            | WorkloadKind::StatefulSet
            | WorkloadKind::DaemonSet
            | WorkloadKind::Job
            | WorkloadKind::ReplicationController => ("/spec/template/spec", "spec.template.spec"),
            WorkloadKind::CronJob => (
                "/spec/jobTemplate/spec/template/spec",
                "spec.jobTemplate.spec.template.spec",
            ),
            WorkloadKind::PodTemplate => ("/template/spec", "template.spec"),
        }
    }

    pub fn spec_origin(self) -> SpecOrigin {
        match self {
            WorkloadKind::Pod => SpecOrigin::Pod,
            _ => SpecOrigin::Template,
        }
    }
}

/// The pod spec of a workload object. Every kind has exactly one, and the API requires it,
/// so a missing one is an error rather than nothing to check.
pub fn extract_pod_spec(
    kind: WorkloadKind,
    object: &RawValue,
) -> Result<ExtractedPodSpec, PolicyError> {
    let (pointer, path) = kind.pod_spec_location();
    Ok(ExtractedPodSpec {
        path,
        origin: kind.spec_origin(),
        spec: required_field(kind.name(), object, pointer, path)?,
    })
}

/// The JSON text of a workload object's pod spec, borrowed from the object: for comparing
/// an update's old and new specs whole before parsing them (`parse_pod_spec`).
pub(super) fn pod_spec_text(
    kind: WorkloadKind,
    object: &RawValue,
) -> Result<&RawValue, PolicyError> {
    let (pointer, path) = kind.pod_spec_location();
    required_field(kind.name(), object, pointer, path)
}

/// The pod spec of `kind` from its JSON text (`pod_spec_text`).
pub(super) fn parse_pod_spec(
    kind: WorkloadKind,
    text: &RawValue,
) -> Result<ExtractedPodSpec, PolicyError> {
    let (_, path) = kind.pod_spec_location();
    let spec = serde_json::from_str(text.get()).map_err(|source| PolicyError::Malformed {
        kind: kind.name(),
        path,
        source,
    })?;
    Ok(ExtractedPodSpec {
        path,
        origin: kind.spec_origin(),
        spec,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::super::object::raw;

    use super::*;

    fn containers() -> Value {
        json!({"containers": [{"name": "app", "image": "nginx"}]})
    }

    #[test]
    fn finds_the_spec_of_every_kind() {
        let template = json!({"spec": {"template": {"spec": containers()}}});
        let cases = [
            (WorkloadKind::Pod, json!({"spec": containers()}), "spec"),
            (
                WorkloadKind::Deployment,
                template.clone(),
                "spec.template.spec",
            ),
            (
                WorkloadKind::ReplicaSet,
                template.clone(),
                "spec.template.spec",
            ),
            (
                WorkloadKind::StatefulSet,
                template.clone(),
                "spec.template.spec",
            ),
            (
                WorkloadKind::DaemonSet,
                template.clone(),
                "spec.template.spec",
            ),
            (WorkloadKind::Job, template.clone(), "spec.template.spec"),
            (
                WorkloadKind::ReplicationController,
                template.clone(),
                "spec.template.spec",
            ),
            (
                WorkloadKind::CronJob,
                json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": containers()}}}}}),
                "spec.jobTemplate.spec.template.spec",
            ),
            (
                WorkloadKind::PodTemplate,
                json!({"template": {"spec": containers()}}),
                "template.spec",
            ),
        ];
        for (kind, object, path) in cases {
            let found =
                extract_pod_spec(kind, &raw(&object)).unwrap_or_else(|e| panic!("{kind:?}: {e}"));
            assert_eq!(found.path, path);
            assert_eq!(found.spec.containers[0].name, "app");
            let expected = if kind == WorkloadKind::Pod {
                SpecOrigin::Pod
            } else {
                SpecOrigin::Template
            };
            assert_eq!(found.origin, expected);
        }
    }

    #[test]
    fn missing_spec_is_an_error() {
        let err =
            extract_pod_spec(WorkloadKind::Deployment, &raw(&json!({"spec": {}}))).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the Deployment object has no spec.template.spec"
        );
    }

    #[test]
    fn malformed_spec_is_an_error() {
        let err = extract_pod_spec(
            WorkloadKind::Pod,
            &raw(&json!({"spec": {"containers": "app"}})),
        )
        .unwrap_err();
        assert!(
            matches!(err, PolicyError::Malformed { path: "spec", .. }),
            "{err}"
        );
        let err = extract_pod_spec(
            WorkloadKind::Pod,
            &raw(&json!({"spec": {"containers": [{"name": 1}]}})),
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("the Pod object's spec is malformed"),
            "{err}"
        );
        let err = extract_pod_spec(WorkloadKind::CronJob, &raw(&json!(null))).unwrap_err();
        assert!(matches!(err, PolicyError::NotAnObject { kind: "CronJob" }));
    }
}
