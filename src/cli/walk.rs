//! The hierarchy around one namespace for a user who may not list cluster-wide, as a
//! tenant owner usually cannot: read HierarchyConfigurations one namespace at a time,
//! down through `status.children` and up through `spec.parent`, as `kubectl hns tree`
//! does. Whatever the user may not read ends the walk there.

use std::collections::{BTreeMap, HashSet, VecDeque};

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{ListParams, ObjectMeta, PartialObjectMeta};
use kube::{Api, Client};

use super::error::{CliError, Request};
use super::snapshot::{Snapshot, not_found};
use crate::api::errors;
use crate::api::{HIERARCHY_NAME, HierarchyConfiguration, SubnamespaceAnchor, keys};

/// What could be read of one namespace.
#[derive(Debug, Default)]
pub struct Visit {
    /// The Namespace object; `None` when the user may not get it.
    pub namespace: Option<PartialObjectMeta<Namespace>>,
    pub hierarchy: Option<HierarchyConfiguration>,
    /// Names of the anchors in it; empty when the user may not list them.
    pub anchors: Vec<String>,
}

/// Walks from `start`; an error only when `start` itself is missing or unreadable.
pub async fn walk(client: &Client, start: &str) -> Result<Snapshot, CliError> {
    let mut visits: BTreeMap<String, Visit> = BTreeMap::new();
    collect(client, start, &mut visits).await?;
    Ok(assemble(visits))
}

/// Walks from `start` into `visits` (which may hold other walks' namespaces: those are
/// not read again); an error only when `start` itself is missing or unreadable.
pub async fn collect(
    client: &Client,
    start: &str,
    visits: &mut BTreeMap<String, Visit>,
) -> Result<(), CliError> {
    if visits.contains_key(start) {
        return Ok(());
    }
    let first = visit(client, start)
        .await?
        .ok_or_else(|| not_found(start))?;
    // Each with the namespace whose status listed it as a child.
    let mut queue: VecDeque<(String, String)> = children(start, &first).into();
    let mut up = parent(&first);
    visits.insert(start.to_owned(), first);

    while let Some((ns, listed_by)) = queue.pop_front() {
        if visits.contains_key(&ns) {
            continue;
        }
        match visit(client, &ns).await {
            Ok(Some(found)) => {
                queue.extend(children(&ns, &found));
                visits.insert(ns, found);
            }
            Ok(None) => {}
            // Its parent says it is there: show it, without what only it could tell.
            Err(_) => {
                let mut hc = HierarchyConfiguration::new(HIERARCHY_NAME, Default::default());
                hc.metadata.namespace = Some(ns.clone());
                hc.spec.parent = Some(listed_by);
                let unreadable = Visit {
                    hierarchy: Some(hc),
                    ..Visit::default()
                };
                visits.insert(ns, unreadable);
            }
        }
    }
    while let Some(ns) = up.take() {
        if visits.contains_key(&ns) {
            break;
        }
        let Ok(Some(found)) = visit(client, &ns).await else {
            break;
        };
        up = parent(&found);
        visits.insert(ns, found);
    }
    Ok(())
}

/// A Snapshot from what the walk read. A namespace whose Namespace object could not be
/// read is taken to exist (its HierarchyConfiguration or an anchor named it), and is
/// marked as a subnamespace when its parent holds an anchor of its name.
pub fn assemble(visits: BTreeMap<String, Visit>) -> Snapshot {
    let anchored: HashSet<(String, String)> = visits
        .iter()
        .flat_map(|(ns, v)| v.anchors.iter().map(move |a| (ns.clone(), a.clone())))
        .collect();
    let mut namespaces = Vec::new();
    let mut hierarchies = Vec::new();
    for (name, visit) in visits {
        let parent = visit
            .hierarchy
            .as_ref()
            .and_then(|hc| hc.spec.parent.clone());
        namespaces.push(visit.namespace.unwrap_or_else(|| {
            let mut labels = BTreeMap::new();
            if let Some(parent) = parent.filter(|p| anchored.contains(&(p.clone(), name.clone()))) {
                labels.insert(keys::SUBNAMESPACE_OF.to_owned(), parent);
            }
            PartialObjectMeta {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    labels: Some(labels),
                    ..ObjectMeta::default()
                },
                ..PartialObjectMeta::default()
            }
        }));
        hierarchies.extend(visit.hierarchy);
    }
    Snapshot::build(namespaces, hierarchies)
}

fn children(name: &str, visit: &Visit) -> Vec<(String, String)> {
    visit
        .hierarchy
        .as_ref()
        .and_then(|hc| hc.status.as_ref())
        .map(|s| {
            s.children
                .iter()
                .map(|c| (c.clone(), name.to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

fn parent(visit: &Visit) -> Option<String> {
    visit
        .hierarchy
        .as_ref()
        .and_then(|hc| hc.spec.parent.clone())
        .filter(|p| !p.is_empty())
}

/// `None` when the namespace does not exist. Reading its HierarchyConfiguration is the
/// one thing required; the Namespace object and the anchors are extras for the marks.
async fn visit(client: &Client, ns: &str) -> Result<Option<Visit>, CliError> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespace = match namespaces.get_metadata_opt(ns).await {
        Ok(None) => return Ok(None),
        Ok(found) => found,
        Err(e) if errors::is_forbidden(&e) => None,
        Err(e) => return Err(Request::cluster("get", "namespaces").error(e)),
    };
    let hierarchies: Api<HierarchyConfiguration> = Api::namespaced(client.clone(), ns);
    let hierarchy = hierarchies.get_opt(HIERARCHY_NAME).await.map_err(|e| {
        Request::namespaced("get", "hierarchyconfigurations.canopy.dev", ns).error(e)
    })?;
    let anchors: Api<SubnamespaceAnchor> = Api::namespaced(client.clone(), ns);
    let anchors = match anchors.list_metadata(&ListParams::default()).await {
        Ok(list) => list
            .items
            .into_iter()
            .filter_map(|a| a.metadata.name)
            .collect(),
        Err(_) => Vec::new(),
    };
    Ok(Some(Visit {
        namespace,
        hierarchy,
        anchors,
    }))
}

#[cfg(test)]
mod tests {
    use super::super::snapshot::fixtures::*;
    use super::*;
    use crate::api::HierarchyConfigurationStatus;

    fn with_children(mut hc: HierarchyConfiguration, children: &[&str]) -> HierarchyConfiguration {
        hc.status = Some(HierarchyConfigurationStatus {
            children: children.iter().map(|c| (*c).to_owned()).collect(),
            conditions: Vec::new(),
        });
        hc
    }

    #[test]
    fn unreadable_namespaces_are_marked_from_their_parents_anchors() {
        let visits = BTreeMap::from([
            (
                "team".to_owned(),
                Visit {
                    namespace: None,
                    hierarchy: Some(with_children(
                        hierarchy("team", None),
                        &["team-a", "team-b"],
                    )),
                    anchors: vec!["team-a".to_owned()],
                },
            ),
            (
                "team-a".to_owned(),
                Visit {
                    namespace: None,
                    hierarchy: Some(hierarchy("team-a", Some("team"))),
                    anchors: Vec::new(),
                },
            ),
            (
                "team-b".to_owned(),
                Visit {
                    namespace: Some(namespace("team-b", &[("canopy.dev/tenant", "t")])),
                    hierarchy: Some(hierarchy("team-b", Some("team"))),
                    anchors: Vec::new(),
                },
            ),
        ]);
        let snapshot = assemble(visits);
        let forest = &snapshot.forest;
        assert!(forest.exists("team"));
        assert_eq!(
            forest.children("team").collect::<Vec<_>>(),
            ["team-a", "team-b"]
        );
        assert_eq!(
            forest
                .get("team-a")
                .and_then(|s| s.subnamespace_of.as_deref()),
            Some("team")
        );
        assert_eq!(
            forest.get("team-b").and_then(|s| s.tenant.as_deref()),
            Some("t")
        );
        assert_eq!(
            forest
                .get("team-b")
                .and_then(|s| s.subnamespace_of.as_deref()),
            None
        );
    }
}
