//! What a copy of a source looks like.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Weak};

use kube::core::{ApiResource, DynamicObject};
use parking_lot::Mutex;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::api::keys::{self, SOURCE_HASH};

/// The labels and annotations copies never carry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Strip {
    pub labels: Vec<String>,
    pub annotations: Vec<String>,
}

/// The copy of `source` (living in `source_namespace`) that belongs in `namespace`, and
/// its digest.
pub fn desired_copy(
    resource: &ApiResource,
    source: &DynamicObject,
    source_namespace: &str,
    namespace: &str,
    strip: &Strip,
) -> (Value, String) {
    let prepared = Prepared::new(resource, source, source_namespace, strip);
    (prepared.placed_in(namespace), prepared.hash)
}

/// A source's copy before it is placed in a namespace: the whole body but
/// `metadata.namespace`, and its digest (which does not depend on the namespace).
#[derive(Debug)]
pub struct Prepared {
    body: Value,
    pub hash: String,
}

impl Prepared {
    pub fn new(
        resource: &ApiResource,
        source: &DynamicObject,
        source_namespace: &str,
        strip: &Strip,
    ) -> Self {
        let name = source.metadata.name.clone().unwrap_or_default();
        let mut labels: BTreeMap<String, String> =
            source.metadata.labels.clone().unwrap_or_default();
        labels.retain(|k, _| !strip.labels.contains(k));
        labels.insert(keys::INHERITED_FROM.to_owned(), source_namespace.to_owned());
        let mut annotations: BTreeMap<String, String> =
            source.metadata.annotations.clone().unwrap_or_default();
        annotations.retain(|k, _| !strip.annotations.contains(k) && k != SOURCE_HASH);

        let mut data = Map::new();
        if let Value::Object(fields) = &source.data {
            for (key, value) in fields {
                // Status belongs to each copy's own controllers (quota usage, for one).
                if key != "status" {
                    data.insert(key.clone(), value.clone());
                }
            }
        }
        let hash = digest(&labels, &annotations, &data);
        annotations.insert(SOURCE_HASH.to_owned(), hash.clone());
        let mut body = json!({
            "apiVersion": resource.api_version,
            "kind": resource.kind,
            "metadata": {
                "name": name,
                "labels": labels,
                "annotations": annotations,
            },
        });
        if let Value::Object(obj) = &mut body {
            obj.extend(data);
        }
        Self { body, hash }
    }

    /// The copy that belongs in `namespace`.
    pub fn placed_in(&self, namespace: &str) -> Value {
        let mut copy = self.body.clone();
        if let Some(metadata) = copy.get_mut("metadata").and_then(Value::as_object_mut) {
            metadata.insert("namespace".to_owned(), namespace.into());
        }
        copy
    }
}

/// The prepared copies of one kind's sources, each made once per version of its source
/// rather than once per namespace and plan: a namespace is planned again whenever any
/// source above it changes, and preparing clones and hashes the whole source.
///
/// Entries are keyed by the address of the source's `Arc` in the kind's index, which a
/// new version of the source replaces; the entry's `Weak` keeps that address from being
/// reused while the entry exists. Entries of replaced or deleted sources are dropped as
/// the map grows.
#[derive(Debug, Default)]
pub struct PreparedCopies {
    entries: Mutex<PreparedEntries>,
}

#[derive(Debug, Default)]
struct PreparedEntries {
    by_source: HashMap<usize, PreparedEntry>,
    prune_at: usize,
}

#[derive(Debug)]
struct PreparedEntry {
    source: Weak<DynamicObject>,
    strip: Strip,
    prepared: Arc<Prepared>,
}

/// Entries kept before the first pruning.
const PRUNE_FLOOR: usize = 1024;

impl PreparedCopies {
    /// The prepared copy of `source`, from `source_namespace`.
    pub fn get(
        &self,
        resource: &ApiResource,
        source_namespace: &str,
        source: &Arc<DynamicObject>,
        strip: &Strip,
    ) -> Arc<Prepared> {
        let key = Arc::as_ptr(source) as usize;
        let mut entries = self.entries.lock();
        if let Some(entry) = entries.by_source.get(&key)
            && entry.strip == *strip
        {
            return entry.prepared.clone();
        }
        let prepared = Arc::new(Prepared::new(resource, source, source_namespace, strip));
        if entries.by_source.len() >= entries.prune_at.max(PRUNE_FLOOR) {
            entries.by_source.retain(|_, e| e.source.strong_count() > 0);
            entries.prune_at = entries.by_source.len() * 2;
        }
        entries.by_source.insert(
            key,
            PreparedEntry {
                source: Arc::downgrade(source),
                strip: strip.clone(),
                prepared: prepared.clone(),
            },
        );
        prepared
    }

    /// Entries held (for tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.lock().by_source.len()
    }
}

fn digest(
    labels: &BTreeMap<String, String>,
    annotations: &BTreeMap<String, String>,
    data: &Map<String, Value>,
) -> String {
    let mut hasher = Sha256::new();
    // serde_json writes maps in a fixed order for a given input, so equal sources give
    // equal digests.
    for part in [
        serde_json::to_vec(labels),
        serde_json::to_vec(annotations),
        serde_json::to_vec(data),
    ] {
        hasher.update(part.unwrap_or_default());
        hasher.update([0]);
    }
    hasher
        .finalize()
        .iter()
        .take(12)
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{ConfigMap, Secret};
    use k8s_openapi::api::rbac::v1::RoleBinding;

    use super::*;
    use crate::api::never_propagated;

    fn role_binding() -> (ApiResource, DynamicObject) {
        let ar = ApiResource::erase::<RoleBinding>(&());
        let obj: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "devs", "namespace": "acme", "resourceVersion": "7",
                "labels": {"team": "a", "argocd.argoproj.io/instance": "acme"},
                "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}", "note": "x"}},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
            "subjects": [{"kind": "Group", "name": "devs", "apiGroup": "rbac.authorization.k8s.io"}]
        }))
        .expect("valid");
        (ar, obj)
    }

    #[test]
    fn a_copy_carries_content_and_origin_but_not_tracking_metadata() {
        let (ar, rb) = role_binding();
        let strip = Strip {
            labels: vec!["argocd.argoproj.io/instance".into()],
            annotations: vec!["kubectl.kubernetes.io/last-applied-configuration".into()],
        };
        let (copy, hash) = desired_copy(&ar, &rb, "acme", "acme-dev", &strip);
        assert_eq!(copy["metadata"]["namespace"], "acme-dev");
        assert_eq!(
            copy["metadata"]["labels"]["canopy.dev/inherited-from"],
            "acme"
        );
        assert_eq!(copy["metadata"]["labels"]["team"], "a");
        assert!(
            copy["metadata"]["labels"]
                .get("argocd.argoproj.io/instance")
                .is_none()
        );
        assert!(
            copy["metadata"]["annotations"]
                .get("kubectl.kubernetes.io/last-applied-configuration")
                .is_none()
        );
        assert_eq!(copy["metadata"]["annotations"][SOURCE_HASH], hash.as_str());
        assert_eq!(copy["roleRef"]["name"], "edit");
        assert!(copy["metadata"].get("resourceVersion").is_none());

        let (_, same) = desired_copy(&ar, &rb, "acme", "acme-prod", &strip);
        assert_eq!(
            hash, same,
            "the digest does not depend on the target namespace"
        );
        let mut changed = rb.clone();
        changed.data["roleRef"]["name"] = json!("admin");
        assert_ne!(
            desired_copy(&ar, &changed, "acme", "acme-dev", &strip).1,
            hash
        );
    }

    #[test]
    fn a_prepared_copy_is_made_once_per_version_of_its_source_and_strip() {
        let (ar, rb) = role_binding();
        let copies = PreparedCopies::default();
        let strip = Strip::default();
        let v1 = Arc::new(rb.clone());
        let first = copies.get(&ar, "acme", &v1, &strip);
        assert!(Arc::ptr_eq(&first, &copies.get(&ar, "acme", &v1, &strip)));
        assert_eq!(
            (first.placed_in("acme-dev"), first.hash.clone()),
            desired_copy(&ar, &rb, "acme", "acme-dev", &strip)
        );

        // A new version of the source is a new Arc in the index.
        let mut changed = rb.clone();
        changed.data["roleRef"]["name"] = json!("admin");
        let v2 = Arc::new(changed);
        let second = copies.get(&ar, "acme", &v2, &strip);
        assert_ne!(second.hash, first.hash);
        assert_eq!(second.placed_in("acme-dev")["roleRef"]["name"], "admin");

        // Another strip is another copy.
        let stripping = Strip {
            labels: vec!["team".into()],
            annotations: Vec::new(),
        };
        let stripped = copies.get(&ar, "acme", &v2, &stripping);
        assert!(
            stripped.placed_in("x")["metadata"]["labels"]
                .get("team")
                .is_none()
        );
        assert_ne!(stripped.hash, second.hash);

        // Entries of sources no longer held go when the map grows.
        drop((v1, v2));
        let live: Vec<Arc<DynamicObject>> =
            (0..PRUNE_FLOOR).map(|_| Arc::new(rb.clone())).collect();
        for source in &live {
            copies.get(&ar, "acme", source, &strip);
        }
        assert_eq!(
            copies.len(),
            PRUNE_FLOOR,
            "the two dead entries were pruned"
        );
    }

    #[test]
    fn some_objects_never_propagate() {
        let (ar, mut rb) = role_binding();
        assert_eq!(never_propagated(&ar, &rb), None);
        rb.metadata.finalizers = Some(vec!["x".into()]);
        assert!(never_propagated(&ar, &rb).is_some());

        let secrets = ApiResource::erase::<Secret>(&());
        let token: DynamicObject =
            serde_json::from_value(json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "t"}, "type": "kubernetes.io/service-account-token"}))
            .expect("valid");
        assert!(never_propagated(&secrets, &token).is_some());
        let configmaps = ApiResource::erase::<ConfigMap>(&());
        let root_ca: DynamicObject =
            serde_json::from_value(json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "kube-root-ca.crt"}}))
            .expect("valid");
        assert!(never_propagated(&configmaps, &root_ca).is_some());
    }
}
