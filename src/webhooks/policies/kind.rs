//! The kinds the policies know, recognised by API group and kind.

/// A kind that carries a pod spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WorkloadKind {
    Pod,
    Deployment,
    ReplicaSet,
    StatefulSet,
    DaemonSet,
    Job,
    CronJob,
    ReplicationController,
    PodTemplate,
}

/// A kind some policy checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ObjectKind {
    Workload(WorkloadKind),
    PersistentVolume,
    StorageClass,
    /// Checked by the guardrails only (type, external IPs).
    Service,
    /// Checked by the guardrails only (storage class).
    PersistentVolumeClaim,
}

impl ObjectKind {
    /// Recognises a kind by group and kind alone: the policies read fields that are the same
    /// in every served version, so the version does not matter.
    pub fn from_group_kind(group: &str, kind: &str) -> Option<Self> {
        use WorkloadKind::*;
        let workload = |w| Some(ObjectKind::Workload(w));
        match (group, kind) {
            ("", "Pod") => workload(Pod),
            ("", "ReplicationController") => workload(ReplicationController),
            ("", "PodTemplate") => workload(PodTemplate),
            ("apps", "Deployment") => workload(Deployment),
            ("apps", "ReplicaSet") => workload(ReplicaSet),
            ("apps", "StatefulSet") => workload(StatefulSet),
            ("apps", "DaemonSet") => workload(DaemonSet),
            ("batch", "Job") => workload(Job),
            ("batch", "CronJob") => workload(CronJob),
            ("", "PersistentVolume") => Some(ObjectKind::PersistentVolume),
            ("storage.k8s.io", "StorageClass") => Some(ObjectKind::StorageClass),
            ("", "Service") => Some(ObjectKind::Service),
            ("", "PersistentVolumeClaim") => Some(ObjectKind::PersistentVolumeClaim),
            _ => None,
        }
    }

    /// The kind as the API spells it, for messages.
    pub fn name(self) -> &'static str {
        match self {
            ObjectKind::Workload(w) => w.name(),
            ObjectKind::PersistentVolume => "PersistentVolume",
            ObjectKind::StorageClass => "StorageClass",
            ObjectKind::Service => "Service",
            ObjectKind::PersistentVolumeClaim => "PersistentVolumeClaim",
        }
    }

    pub fn is_namespaced(self) -> bool {
        matches!(
            self,
            ObjectKind::Workload(_) | ObjectKind::Service | ObjectKind::PersistentVolumeClaim
        )
    }
}

impl WorkloadKind {
    pub fn name(self) -> &'static str {
        match self {
            WorkloadKind::Pod => "Pod",
            WorkloadKind::Deployment => "Deployment",
            WorkloadKind::ReplicaSet => "ReplicaSet",
            WorkloadKind::StatefulSet => "StatefulSet",
            WorkloadKind::DaemonSet => "DaemonSet",
            WorkloadKind::Job => "Job",
            WorkloadKind::CronJob => "CronJob",
            WorkloadKind::ReplicationController => "ReplicationController",
            WorkloadKind::PodTemplate => "PodTemplate",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_kinds_by_group() {
        assert_eq!(
            ObjectKind::from_group_kind("apps", "Deployment"),
            Some(ObjectKind::Workload(WorkloadKind::Deployment))
        );
        assert_eq!(
            ObjectKind::from_group_kind("batch", "CronJob"),
            Some(ObjectKind::Workload(WorkloadKind::CronJob))
        );
        assert_eq!(
            ObjectKind::from_group_kind("storage.k8s.io", "StorageClass"),
            Some(ObjectKind::StorageClass)
        );
        // Same kind name in another group is someone else's type.
        assert_eq!(
            ObjectKind::from_group_kind("example.com", "Deployment"),
            None
        );
        assert_eq!(ObjectKind::from_group_kind("apps", "Pod"), None);
        assert_eq!(ObjectKind::from_group_kind("", "ConfigMap"), None);
    }

    #[test]
    fn cluster_kinds_are_not_namespaced() {
        assert!(ObjectKind::Workload(WorkloadKind::Pod).is_namespaced());
        assert!(!ObjectKind::PersistentVolume.is_namespaced());
        assert!(!ObjectKind::StorageClass.is_namespaced());
        assert!(ObjectKind::Service.is_namespaced());
        assert!(ObjectKind::PersistentVolumeClaim.is_namespaced());
    }
}
