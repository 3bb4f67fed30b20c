//! hostPath: no workload may mount a directory of the node.
//!
//! A hostPath volume escapes every boundary a tenant has (a writable `/` or the container
//! runtime's socket is the node), so it is refused in pods and pod templates alike, and in
//! PersistentVolumes, through which a claim could mount one. A `local` PersistentVolume is
//! the same thing by another name (a directory or disk of one node; with path `/`, the
//! node's root filesystem), so it is refused too. Exemptions apply as for every policy:
//! a local-volume provisioner's identity listed in them can still create local volumes.

use k8s_openapi::api::core::v1::PersistentVolumeSpec;

use super::pod_specs::ExtractedPodSpec;
use super::violation::{Policy, Problem, Subject, Violation};

/// Every hostPath volume of a pod spec. Ephemeral containers can only mount volumes the
/// spec already declares, so the volumes list covers them too.
pub fn check_pod_spec(pod: &ExtractedPodSpec) -> Vec<Violation> {
    pod.spec
        .volumes
        .iter()
        .flatten()
        .enumerate()
        .filter(|(_, volume)| volume.host_path.is_some())
        .map(|(index, volume)| {
            let path = format!("{}.volumes[{index}]", pod.path);
            Violation {
                policy: Policy::HostPath,
                subject: Subject::Volume {
                    name: volume.name.clone(),
                    path: path.clone(),
                },
                field_path: path,
                problem: Problem::HostPathVolume,
            }
        })
        .collect()
}

/// A PersistentVolume backed by a node's storage: `spec.hostPath` or `spec.local` (the API
/// allows one source per volume).
pub fn check_persistent_volume(spec: &PersistentVolumeSpec) -> Option<Violation> {
    let (field_path, problem) = if spec.host_path.is_some() {
        ("spec.hostPath", Problem::HostPathPersistentVolume)
    } else if spec.local.is_some() {
        ("spec.local", Problem::LocalPersistentVolume)
    } else {
        return None;
    };
    Some(Violation {
        policy: Policy::HostPath,
        subject: Subject::Object,
        field_path: field_path.to_owned(),
        problem,
    })
}

#[cfg(test)]
mod tests {
    use super::super::object::raw;
    use serde_json::{Value, json};

    use super::super::WorkloadKind;
    use super::super::pod_specs::extract_pod_spec;
    use super::*;

    fn violations(kind: WorkloadKind, object: Value) -> Vec<Violation> {
        check_pod_spec(&extract_pod_spec(kind, &raw(&object)).expect("fixture parses"))
    }

    fn volumes() -> Value {
        json!([
            {"name": "scratch", "emptyDir": {}},
            {"name": "data", "hostPath": {"path": "/var/lib/data"}},
            {"name": "docker", "hostPath": {"path": "/var/run/docker.sock", "type": "Socket"}},
        ])
    }

    #[test]
    fn finds_every_host_path_volume_of_a_pod() {
        let found = violations(
            WorkloadKind::Pod,
            json!({"spec": {"containers": [{"name": "app"}], "volumes": volumes()}}),
        );
        let names: Vec<_> = found
            .iter()
            .map(|v| (v.subject_name(), v.field_path.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                (Some("data"), "spec.volumes[1]"),
                (Some("docker"), "spec.volumes[2]")
            ]
        );
        assert!(found.iter().all(|v| v.problem == Problem::HostPathVolume));
    }

    #[test]
    fn paths_follow_the_template() {
        let found = violations(
            WorkloadKind::CronJob,
            json!({"spec": {"jobTemplate": {"spec": {"template": {"spec":
                {"containers": [{"name": "app"}], "volumes": volumes()}}}}}}),
        );
        assert_eq!(
            found[0].field_path,
            "spec.jobTemplate.spec.template.spec.volumes[1]"
        );
        let found = violations(
            WorkloadKind::Deployment,
            json!({"spec": {"template": {"spec": {"containers": [{"name": "app"}], "volumes": volumes()}}}}),
        );
        assert_eq!(found[0].field_path, "spec.template.spec.volumes[1]");
    }

    #[test]
    fn other_volumes_pass() {
        let found = violations(
            WorkloadKind::Pod,
            json!({"spec": {"containers": [{"name": "app"}], "volumes": [
                {"name": "claim", "persistentVolumeClaim": {"claimName": "data"}},
                {"name": "config", "configMap": {"name": "app"}},
            ]}}),
        );
        assert!(found.is_empty());
        let found = violations(WorkloadKind::Pod, json!({"spec": {"containers": []}}));
        assert!(found.is_empty());
    }

    #[test]
    fn persistent_volume_with_host_path() {
        let spec: PersistentVolumeSpec = serde_json::from_value(
            json!({"hostPath": {"path": "/mnt"}, "capacity": {"storage": "1Gi"}}),
        )
        .expect("fixture parses");
        let found = check_persistent_volume(&spec).expect("violation");
        assert_eq!(found.field_path, "spec.hostPath");
        assert_eq!(found.subject, Subject::Object);

        let spec: PersistentVolumeSpec =
            serde_json::from_value(json!({"csi": {"driver": "d", "volumeHandle": "h"}}))
                .expect("fixture parses");
        assert_eq!(check_persistent_volume(&spec), None);
        let spec: PersistentVolumeSpec =
            serde_json::from_value(json!({"nfs": {"server": "nfs.example.com", "path": "/"}}))
                .expect("fixture parses");
        assert_eq!(check_persistent_volume(&spec), None);
    }

    #[test]
    fn local_persistent_volume_is_node_storage_too() {
        let spec: PersistentVolumeSpec = serde_json::from_value(json!({
            "local": {"path": "/"},
            "capacity": {"storage": "1Gi"},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": ["node-1"]}]}]}},
        }))
        .expect("fixture parses");
        let found = check_persistent_volume(&spec).expect("violation");
        assert_eq!(found.field_path, "spec.local");
        assert_eq!(found.problem, Problem::LocalPersistentVolume);
        assert_eq!(found.policy, Policy::HostPath);
        assert_eq!(found.problem_text(), "is node storage");
        // The fix recommends neither hostPath nor local volumes.
        let fix = found.fix();
        assert!(
            fix.contains("StorageClass with a dynamic provisioner"),
            "{fix}"
        );
        assert!(fix.contains("spec.policies.exemptions"), "{fix}");
        assert!(!fix.contains("local") && !fix.contains("hostPath"), "{fix}");
    }
}
