//! reclaimPolicy: storage must be deleted with its claim.
//!
//! A volume that outlives its claim keeps a tenant's data on the cluster after the tenant
//! let go of it, where an admin may later bind it to someone else's claim. So
//! PersistentVolumes and StorageClasses must use `Delete`.

use k8s_openapi::api::core::v1::PersistentVolumeSpec;
use serde_json::value::RawValue;

use super::PolicyError;
use super::object::optional_field;
use super::violation::{Policy, Problem, ReclaimObject, Subject, Violation};

const DELETE: &str = "Delete";

/// A non-`Delete` PersistentVolume reclaim policy. Unset means `Retain`: the apiserver
/// defaults it so (`SetDefaults_PersistentVolume`).
pub fn check_persistent_volume(spec: &PersistentVolumeSpec) -> Option<Violation> {
    check(
        ReclaimObject::PersistentVolume,
        spec.persistent_volume_reclaim_policy.as_deref(),
    )
}

/// A StorageClass `reclaimPolicy` set to anything but `Delete`. Unset is fine: the
/// apiserver defaults it to `Delete`.
pub fn check_storage_class(reclaim_policy: Option<&str>) -> Option<Violation> {
    check(ReclaimObject::StorageClass, reclaim_policy)
}

/// A StorageClass's top-level `reclaimPolicy`. The rest of the object is not read, so a
/// StorageClass is never refused for a field this policy does not care about.
pub fn storage_class_reclaim_policy(object: &RawValue) -> Result<Option<String>, PolicyError> {
    optional_field("StorageClass", object, "/reclaimPolicy", "reclaimPolicy")
}

fn check(object: ReclaimObject, value: Option<&str>) -> Option<Violation> {
    let is_delete = match (object, value) {
        (_, Some(value)) => value == DELETE,
        (ReclaimObject::PersistentVolume, None) => false,
        (ReclaimObject::StorageClass, None) => true,
    };
    (!is_delete).then(|| Violation {
        policy: Policy::ReclaimPolicy,
        subject: Subject::Object,
        field_path: object.field_path().to_owned(),
        problem: Problem::ReclaimPolicy {
            object,
            value: value.map(str::to_owned),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::super::object::raw;
    use serde_json::json;

    use super::*;

    fn pv(reclaim: Option<&str>) -> PersistentVolumeSpec {
        PersistentVolumeSpec {
            persistent_volume_reclaim_policy: reclaim.map(str::to_owned),
            ..Default::default()
        }
    }

    #[test]
    fn persistent_volume_must_delete() {
        assert_eq!(check_persistent_volume(&pv(Some("Delete"))), None);
        let retain = check_persistent_volume(&pv(Some("Retain"))).expect("violation");
        assert_eq!(retain.field_path, "spec.persistentVolumeReclaimPolicy");
        assert_eq!(retain.problem_text(), "is Retain");
        assert_eq!(
            retain.fix(),
            "set spec.persistentVolumeReclaimPolicy to Delete"
        );
        let unset = check_persistent_volume(&pv(None)).expect("unset means Retain");
        assert_eq!(unset.problem_text(), "is unset, which means Retain");
        assert!(check_persistent_volume(&pv(Some("Recycle"))).is_some());
    }

    #[test]
    fn storage_class_must_delete_but_defaults_to_it() {
        assert_eq!(check_storage_class(None), None);
        assert_eq!(check_storage_class(Some("Delete")), None);
        let retain = check_storage_class(Some("Retain")).expect("violation");
        assert_eq!(retain.field_path, "reclaimPolicy");
        assert_eq!(retain.fix(), "set reclaimPolicy to Delete");
        // Case matters to the API, so it matters here.
        assert!(check_storage_class(Some("delete")).is_some());
    }

    #[test]
    fn storage_class_field_is_read_alone() {
        let sc = json!({"metadata": {"name": "fast"}, "provisioner": 7, "reclaimPolicy": "Retain"});
        assert_eq!(
            storage_class_reclaim_policy(&raw(&sc))
                .expect("reads")
                .as_deref(),
            Some("Retain")
        );
        assert_eq!(
            storage_class_reclaim_policy(&raw(&json!({"provisioner": "x"}))).expect("reads"),
            None
        );
        assert!(storage_class_reclaim_policy(&raw(&json!({"reclaimPolicy": ["Delete"]}))).is_err());
    }
}
