//! The cluster's hierarchy as the plugin sees it, however it was read: listed at once
//! (`cluster`) or walked namespace by namespace (`walk`). Both build one of these, so it
//! sits below both.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Namespace;
use kube::api::PartialObjectMeta;

use super::error::CliError;
use crate::api::{Condition, HIERARCHY_NAME, HierarchyConfiguration};
use crate::forest::Forest;

/// The cluster's hierarchy as the plugin sees it: the Forest, and the conditions each
/// namespace's HierarchyConfiguration reports (the Forest does not keep those).
#[derive(Debug, Default)]
pub struct Snapshot {
    pub forest: Forest,
    pub conditions: BTreeMap<String, Vec<Condition>>,
    /// HierarchicalResourceQuota usage per namespace (filled by `tree` and `describe`).
    pub quotas: super::quota::Quotas,
}

impl Snapshot {
    /// Builds the Forest from listed objects; pure, so it is tested without a cluster.
    pub fn build(
        namespaces: impl IntoIterator<Item = PartialObjectMeta<Namespace>>,
        hierarchies: impl IntoIterator<Item = HierarchyConfiguration>,
    ) -> Self {
        let mut snapshot = Self::default();
        for ns in namespaces {
            let Some(name) = ns.metadata.name.as_deref() else {
                continue;
            };
            let labels = ns.metadata.labels.clone().unwrap_or_default();
            let deleting = ns.metadata.deletion_timestamp.is_some();
            snapshot.forest.set_namespace(name, labels, deleting);
        }
        for hc in hierarchies {
            // The CRD refuses other names; skip them anyway rather than trust a stale schema.
            if hc.metadata.name.as_deref() != Some(HIERARCHY_NAME) {
                continue;
            }
            let Some(ns) = hc.metadata.namespace.as_deref() else {
                continue;
            };
            snapshot.forest.set_hierarchy(
                ns,
                hc.spec.parent.as_deref(),
                hc.spec.allow_cascading_deletion,
            );
            if let Some(status) = hc.status {
                snapshot.conditions.insert(ns.to_owned(), status.conditions);
            }
        }
        snapshot
    }

    /// The conditions reported for `name` (none when it has no HierarchyConfiguration).
    pub fn conditions(&self, name: &str) -> &[Condition] {
        self.conditions.get(name).map_or(&[], Vec::as_slice)
    }

    /// Existing namespaces, sorted.
    pub fn namespaces(&self) -> BTreeSet<&str> {
        self.forest.namespaces().collect()
    }

    /// An error unless `name` exists, for commands about one namespace.
    pub fn require(&self, name: &str) -> Result<(), CliError> {
        if self.forest.exists(name) {
            Ok(())
        } else {
            Err(not_found(name))
        }
    }
}

pub fn not_found(namespace: &str) -> CliError {
    CliError::new(format!("namespace {namespace:?} not found"))
}

#[cfg(test)]
pub(super) mod fixtures {
    //! Objects as the apiserver would list them, for the unit tests of every command.

    use std::collections::BTreeMap;

    use k8s_openapi::api::core::v1::Namespace;
    use kube::api::{ObjectMeta, PartialObjectMeta};

    use crate::api::{
        Condition, HierarchyConfiguration, HierarchyConfigurationSpec,
        HierarchyConfigurationStatus, keys,
    };

    pub fn namespace(name: &str, labels: &[(&str, &str)]) -> PartialObjectMeta<Namespace> {
        PartialObjectMeta {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect::<BTreeMap<_, _>>(),
                ),
                ..ObjectMeta::default()
            },
            ..PartialObjectMeta::default()
        }
    }

    pub fn subnamespace(name: &str, parent: &str) -> PartialObjectMeta<Namespace> {
        namespace(name, &[(keys::SUBNAMESPACE_OF, parent)])
    }

    pub fn hierarchy(namespace: &str, parent: Option<&str>) -> HierarchyConfiguration {
        let mut hc = HierarchyConfiguration::new(
            "hierarchy",
            HierarchyConfigurationSpec {
                parent: parent.map(str::to_owned),
                allow_cascading_deletion: false,
            },
        );
        hc.metadata.namespace = Some(namespace.to_owned());
        hc
    }

    pub fn condition(type_: &str, reason: &str, message: &str) -> Condition {
        Condition {
            type_: type_.to_owned(),
            status: "True".to_owned(),
            reason: reason.to_owned(),
            message: message.to_owned(),
            last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                Default::default(),
            ),
            observed_generation: None,
        }
    }

    pub fn with_conditions(
        mut hc: HierarchyConfiguration,
        conditions: Vec<Condition>,
    ) -> HierarchyConfiguration {
        hc.status = Some(HierarchyConfigurationStatus {
            children: Vec::new(),
            conditions,
        });
        hc
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;

    #[test]
    fn builds_the_forest_from_namespaces_and_hierarchies() {
        let snapshot = Snapshot::build(
            [
                namespace("acme", &[("canopy.dev/tenant", "acme")]),
                subnamespace("acme-dev", "acme"),
            ],
            [
                hierarchy("acme-dev", Some("acme")),
                with_conditions(
                    hierarchy("acme", None),
                    vec![condition("BadConfiguration", "Whatever", "msg")],
                ),
            ],
        );
        let forest = &snapshot.forest;
        assert_eq!(forest.parent("acme-dev"), Some("acme"));
        assert_eq!(forest.children("acme").collect::<Vec<_>>(), ["acme-dev"]);
        assert_eq!(
            forest.get("acme").and_then(|s| s.tenant.as_deref()),
            Some("acme")
        );
        assert_eq!(snapshot.conditions("acme").len(), 1);
        assert!(snapshot.conditions("acme-dev").is_empty());
        assert!(snapshot.require("acme").is_ok());
        assert_eq!(
            snapshot.require("nope").map_err(|e| e.to_string()),
            Err("namespace \"nope\" not found".to_owned())
        );
    }

    #[test]
    fn ignores_hierarchies_with_another_name() {
        let mut odd = hierarchy("b", Some("a"));
        odd.metadata.name = Some("other".to_owned());
        let snapshot = Snapshot::build([namespace("a", &[]), namespace("b", &[])], [odd]);
        assert_eq!(snapshot.forest.parent("b"), None);
    }
}
