//! Deciding, for one kind and one namespace, which copies to write and which to delete.
//! Pure: reads the Forest and the kind's index.

use std::collections::BTreeMap;
use std::sync::Arc;

use kube::core::{ApiResource, DynamicObject};
use serde_json::Value;

use super::copy::{Prepared, PreparedCopies, Strip};
use crate::api::{PropagationMode, never_propagated};
use crate::controllers::ops::Op;
use crate::controllers::writer::WriteError;
use crate::forest::Forest;
use crate::forest::propagated::{Exceptions, KindIndex};

/// A copy to write.
#[derive(Clone, Debug, PartialEq)]
pub struct Write {
    pub name: String,
    pub source_namespace: String,
    pub object: Value,
}

/// A source that could not be copied into a namespace, because an object of that name
/// there is not a copy.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Conflict {
    pub source_namespace: String,
    pub name: String,
    pub namespace: String,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    pub writes: Vec<Write>,
    pub deletes: Vec<String>,
    pub conflicts: Vec<Conflict>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty() && self.deletes.is_empty()
    }
}

/// The copies of `resource` that `namespace` should hold and the difference from what
/// it holds. `prepared` only saves work: the plan is what it would be without it.
pub fn plan_namespace(
    forest: &Forest,
    resource: &ApiResource,
    mode: PropagationMode,
    index: &KindIndex,
    namespace: &str,
    strip: &Strip,
    prepared: &PreparedCopies,
) -> Plan {
    let mut plan = Plan::default();
    if mode == PropagationMode::Remove {
        plan.deletes = index.copies_in(namespace).map(|(n, _)| n.clone()).collect();
        return plan;
    }
    let Some(sources) = wanted_sources(forest, resource, mode, index, namespace) else {
        return plan;
    };
    let desired: BTreeMap<&str, (&str, Arc<Prepared>)> = sources
        .into_iter()
        .map(|(name, (ancestor, source))| {
            (
                name,
                (ancestor, prepared.get(resource, ancestor, source, strip)),
            )
        })
        .collect();

    plan.deletes = index
        .copies_in(namespace)
        .filter(|(name, _)| !desired.contains_key(name.as_str()))
        .map(|(name, _)| name.clone())
        .collect();
    for (name, (source_namespace, copy)) in desired {
        if index.source(namespace, name).is_some() {
            plan.conflicts.push(Conflict {
                source_namespace: source_namespace.to_owned(),
                name: name.to_owned(),
                namespace: namespace.to_owned(),
            });
            continue;
        }
        let converged = index.copy(namespace, name).is_some_and(|c| {
            c.clean
                && c.inherited_from == source_namespace
                && c.hash.as_deref() == Some(copy.hash.as_str())
        });
        if !converged {
            plan.writes.push(Write {
                name: name.to_owned(),
                source_namespace: source_namespace.to_owned(),
                object: copy.placed_in(namespace),
            });
        }
    }
    plan
}

/// The sources `namespace` should hold copies of, by name, with the namespace each comes
/// from; `None` when it is left as it is (mode `Ignore` or `Remove`, a namespace that does
/// not exist, is excluded or is halted: keep what is there, add nothing, delete nothing).
fn wanted_sources<'a>(
    forest: &'a Forest,
    resource: &ApiResource,
    mode: PropagationMode,
    index: &'a KindIndex,
    namespace: &str,
) -> Option<BTreeMap<&'a str, (&'a str, &'a Arc<DynamicObject>)>> {
    match mode {
        PropagationMode::Ignore | PropagationMode::Remove => return None,
        PropagationMode::Propagate | PropagationMode::AllowPropagate => {}
    }
    if !forest.exists(namespace)
        || forest.is_excluded(namespace)
        || forest.halted(namespace).is_some()
    {
        return None;
    }
    let mut wanted: BTreeMap<&str, (&str, &Arc<DynamicObject>)> = BTreeMap::new();
    for ancestor in forest.ancestors(namespace) {
        if forest.is_excluded(ancestor) {
            break;
        }
        for (name, source) in index.sources_in(ancestor) {
            // The nearest ancestor's object of a name wins: the more specific policy.
            if wanted.contains_key(name.as_str()) || never_propagated(resource, source).is_some() {
                continue;
            }
            let no_annotations = BTreeMap::new();
            let annotations = source.metadata.annotations.as_ref();
            let Ok(exceptions) = Exceptions::parse(annotations.unwrap_or(&no_annotations)) else {
                continue; // the webhook refuses these; one admitted earlier waits for a fix
            };
            if mode == PropagationMode::AllowPropagate && !exceptions.opted_in() {
                continue;
            }
            if !exceptions.admits(forest, namespace) {
                continue;
            }
            wanted.insert(name.as_str(), (ancestor, source));
        }
    }
    Some(wanted)
}

/// The conflicts `plan_namespace` reports for `namespace`, without building any copy:
/// what the index alone says, so they are known as soon as the kind has listed.
pub fn conflicts_in(
    forest: &Forest,
    resource: &ApiResource,
    mode: PropagationMode,
    index: &KindIndex,
    namespace: &str,
) -> Vec<Conflict> {
    wanted_sources(forest, resource, mode, index, namespace)
        .unwrap_or_default()
        .into_iter()
        .filter(|(name, _)| index.source(namespace, name).is_some())
        .map(|(name, (source_namespace, _))| Conflict {
            source_namespace: source_namespace.to_owned(),
            name: name.to_owned(),
            namespace: namespace.to_owned(),
        })
        .collect()
}

/// The writes of `plan` for `namespace`: its copies, then its deletions. Pure.
pub fn copy_ops(resource: &ApiResource, namespace: &str, plan: Plan) -> Vec<Op> {
    let writes = plan.writes.into_iter().map(|w| Op::ApplyCopy {
        resource: resource.clone(),
        namespace: namespace.to_owned(),
        name: w.name,
        body: w.object,
    });
    let deletes = plan.deletes.into_iter().map(|name| Op::DeleteCopy {
        resource: resource.clone(),
        namespace: namespace.to_owned(),
        name,
    });
    writes.chain(deletes).collect()
}

/// How a write of a copy failed, as far as deciding what next is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The namespace is gone or terminating.
    NamespaceGone,
    /// The apiserver refused the content (422).
    Invalid,
    Other,
}

impl Failure {
    pub fn of(err: &WriteError) -> Self {
        if err.is_namespace_gone() {
            Self::NamespaceGone
        } else if err.is_invalid() {
            Self::Invalid
        } else {
            Self::Other
        }
    }
}

/// What to do after `op` failed.
#[derive(Clone, Debug, PartialEq)]
pub enum Recovery {
    /// Nothing more to write in a namespace that is going away: done.
    NamespaceGone,
    /// An immutable field (a RoleBinding's roleRef) changed in the source: delete the
    /// copy now, and retry, which writes it anew. HNC replaces such copies the same way.
    Replace(Box<Op>),
    /// Retry the namespace later, with backoff.
    Retry,
}

/// What a failed write of one copy means for its namespace. Pure.
pub fn after_failure(op: Op, failure: Failure) -> Recovery {
    match (failure, op) {
        (Failure::NamespaceGone, _) => Recovery::NamespaceGone,
        (
            Failure::Invalid,
            Op::ApplyCopy {
                resource,
                namespace,
                name,
                ..
            },
        ) => Recovery::Replace(Box::new(Op::DeleteCopy {
            resource,
            namespace,
            name,
        })),
        _ => Recovery::Retry,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::api::rbac::v1::RoleBinding;
    use kube::core::DynamicObject;
    use serde_json::json;

    use super::*;
    use crate::forest::propagated::CopyState;

    fn forest() -> Forest {
        crate::forest::testing::tree("acme > acme-dev > acme-dev-ci")
    }

    fn rb(ns: &str, name: &str, role: &str, annotations: serde_json::Value) -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": name, "namespace": ns, "annotations": annotations},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": []
        }))
        .expect("valid")
    }

    fn ar() -> ApiResource {
        ApiResource::erase::<RoleBinding>(&())
    }

    thread_local! {
        // One per test (each test runs on its own thread), kept across its plans as the
        // controller keeps one per kind: every test here also checks that a changed,
        // moved or deleted source is never planned from a stale prepared copy.
        static PREPARED: PreparedCopies = PreparedCopies::default();
    }

    fn plan(f: &Forest, index: &KindIndex, ns: &str, mode: PropagationMode) -> Plan {
        PREPARED
            .with(|prepared| plan_namespace(f, &ar(), mode, index, ns, &Strip::default(), prepared))
    }

    /// Records the plan's writes as converged copies, as the copy watch would.
    fn converge(index: &mut KindIndex, ns: &str, p: &Plan) {
        for w in &p.writes {
            let meta: kube::core::ObjectMeta =
                serde_json::from_value(w.object["metadata"].clone()).expect("metadata");
            index.set_copy(ns, &w.name, CopyState::from_meta(&meta).expect("a copy"));
        }
        for d in &p.deletes {
            index.remove_copy(ns, d);
        }
    }

    #[test]
    fn a_root_source_reaches_every_descendant_once() {
        let f = forest();
        let mut index = KindIndex::default();
        index.set_source("acme", rb("acme", "devs", "edit", json!({})));
        for ns in ["acme-dev", "acme-dev-ci"] {
            let p = plan(&f, &index, ns, PropagationMode::Propagate);
            assert_eq!(p.writes.len(), 1, "{ns}");
            assert_eq!(
                p.writes[0].object["metadata"]["labels"]["canopy.dev/inherited-from"],
                "acme"
            );
            converge(&mut index, ns, &p);
            assert!(
                plan(&f, &index, ns, PropagationMode::Propagate).is_empty(),
                "converged: no write"
            );
        }
        assert!(
            plan(&f, &index, "acme", PropagationMode::Propagate).is_empty(),
            "no copy at the source"
        );
    }

    #[test]
    fn updates_deletes_and_moves_converge() {
        let mut f = forest();
        let mut index = KindIndex::default();
        index.set_source("acme", rb("acme", "devs", "edit", json!({})));
        let p = plan(&f, &index, "acme-dev-ci", PropagationMode::Propagate);
        converge(&mut index, "acme-dev-ci", &p);

        index.set_source("acme", rb("acme", "devs", "admin", json!({})));
        let p = plan(&f, &index, "acme-dev-ci", PropagationMode::Propagate);
        assert_eq!(p.writes[0].object["roleRef"]["name"], "admin");
        converge(&mut index, "acme-dev-ci", &p);

        f.set_namespace("other", BTreeMap::new(), false);
        f.set_hierarchy("acme-dev", Some("other"), false);
        let p = plan(&f, &index, "acme-dev-ci", PropagationMode::Propagate);
        assert_eq!(
            p.deletes,
            vec!["devs".to_owned()],
            "moved out of acme's tree"
        );

        f.set_hierarchy("acme-dev", Some("acme"), false);
        index.remove_source("acme", "devs");
        let p = plan(&f, &index, "acme-dev-ci", PropagationMode::Propagate);
        assert_eq!(p.deletes, vec!["devs".to_owned()], "source deleted");
    }

    #[test]
    fn the_nearest_ancestor_wins_and_local_objects_conflict() {
        let f = forest();
        let mut index = KindIndex::default();
        index.set_source("acme", rb("acme", "devs", "view", json!({})));
        index.set_source("acme-dev", rb("acme-dev", "devs", "edit", json!({})));
        let p = plan(&f, &index, "acme-dev-ci", PropagationMode::Propagate);
        assert_eq!(p.writes[0].source_namespace, "acme-dev");
        // acme-dev's own object blocks acme's copy there.
        let p = plan(&f, &index, "acme-dev", PropagationMode::Propagate);
        assert!(p.writes.is_empty());
        assert_eq!(
            p.conflicts,
            vec![Conflict {
                source_namespace: "acme".into(),
                name: "devs".into(),
                namespace: "acme-dev".into()
            }]
        );
    }

    #[test]
    fn conflicts_from_the_index_alone_are_the_plans_conflicts() {
        let mut f = forest();
        let mut index = KindIndex::default();
        index.set_source("acme", rb("acme", "devs", "view", json!({})));
        index.set_source("acme", rb("acme", "ops", "view", json!({})));
        index.set_source(
            "acme",
            rb(
                "acme",
                "spared",
                "view",
                json!({"propagate.canopy.dev/treeSelect": "!acme-dev"}),
            ),
        );
        for name in ["devs", "spared"] {
            index.set_source("acme-dev", rb("acme-dev", name, "edit", json!({})));
        }
        index.set_source("acme-dev-ci", rb("acme-dev-ci", "ops", "edit", json!({})));
        let check = |f: &Forest, index: &KindIndex| {
            for ns in ["acme", "acme-dev", "acme-dev-ci"] {
                for mode in [
                    PropagationMode::Propagate,
                    PropagationMode::AllowPropagate,
                    PropagationMode::Ignore,
                    PropagationMode::Remove,
                ] {
                    assert_eq!(
                        conflicts_in(f, &ar(), mode, index, ns),
                        plan(f, index, ns, mode).conflicts,
                        "{ns} {mode:?}"
                    );
                }
            }
        };
        check(&f, &index);
        assert_eq!(
            conflicts_in(&f, &ar(), PropagationMode::Propagate, &index, "acme-dev").len(),
            1,
            "devs conflicts in acme-dev, spared does not"
        );
        // A halted namespace reports nothing, in both.
        f.set_hierarchy("acme-dev", Some("nowhere"), false);
        check(&f, &index);
    }

    #[test]
    fn exceptions_and_modes_hold() {
        let f = forest();
        let mut index = KindIndex::default();
        index.set_source(
            "acme",
            rb(
                "acme",
                "quiet",
                "view",
                json!({"propagate.canopy.dev/none": "true"}),
            ),
        );
        index.set_source(
            "acme",
            rb(
                "acme",
                "ci-only",
                "view",
                json!({"propagate.canopy.dev/treeSelect": "acme-dev-ci"}),
            ),
        );
        let dev = plan(&f, &index, "acme-dev", PropagationMode::Propagate);
        assert!(dev.writes.is_empty());
        let ci = plan(&f, &index, "acme-dev-ci", PropagationMode::Propagate);
        assert_eq!(
            ci.writes
                .iter()
                .map(|w| w.name.as_str())
                .collect::<Vec<_>>(),
            ["ci-only"]
        );
        assert!(plan(&f, &index, "acme-dev-ci", PropagationMode::Ignore).is_empty());

        let mut opt_in = KindIndex::default();
        opt_in.set_source("acme", rb("acme", "plain", "view", json!({})));
        opt_in.set_source(
            "acme",
            rb(
                "acme",
                "wanted",
                "view",
                json!({"propagate.canopy.dev/all": "true"}),
            ),
        );
        let p = plan(&f, &opt_in, "acme-dev", PropagationMode::AllowPropagate);
        assert_eq!(
            p.writes.iter().map(|w| w.name.as_str()).collect::<Vec<_>>(),
            ["wanted"]
        );

        converge(&mut opt_in, "acme-dev", &p);
        let removed = plan(&f, &opt_in, "acme-dev", PropagationMode::Remove);
        assert_eq!(removed.deletes, vec!["wanted".to_owned()]);
    }

    #[test]
    fn a_halted_namespace_keeps_what_it_has() {
        let mut f = forest();
        let mut index = KindIndex::default();
        index.set_source("acme", rb("acme", "devs", "edit", json!({})));
        let p = plan(&f, &index, "acme-dev", PropagationMode::Propagate);
        converge(&mut index, "acme-dev", &p);
        index.remove_source("acme", "devs");
        f.set_hierarchy("acme-dev", Some("gone"), false);
        assert!(plan(&f, &index, "acme-dev", PropagationMode::Propagate).is_empty());
    }

    #[test]
    fn an_edited_copy_is_rewritten() {
        let f = forest();
        let mut index = KindIndex::default();
        index.set_source("acme", rb("acme", "devs", "edit", json!({})));
        let p = plan(&f, &index, "acme-dev", PropagationMode::Propagate);
        converge(&mut index, "acme-dev", &p);
        let mut state = index.copy("acme-dev", "devs").expect("copy").clone();
        state.clean = false;
        index.set_copy("acme-dev", "devs", state);
        assert_eq!(
            plan(&f, &index, "acme-dev", PropagationMode::Propagate)
                .writes
                .len(),
            1
        );
    }
}

#[cfg(test)]
mod recovery_tests {
    use k8s_openapi::api::rbac::v1::RoleBinding;

    use super::*;

    fn write(name: &str) -> Op {
        Op::ApplyCopy {
            resource: ApiResource::erase::<RoleBinding>(&()),
            namespace: "acme-dev".into(),
            name: name.into(),
            body: serde_json::json!({}),
        }
    }

    #[test]
    fn a_refused_copy_is_replaced_and_a_gone_namespace_ends_the_plan() {
        assert_eq!(
            after_failure(write("devs"), Failure::Invalid),
            Recovery::Replace(Box::new(Op::DeleteCopy {
                resource: ApiResource::erase::<RoleBinding>(&()),
                namespace: "acme-dev".into(),
                name: "devs".into(),
            }))
        );
        assert_eq!(
            after_failure(write("devs"), Failure::NamespaceGone),
            Recovery::NamespaceGone
        );
        assert_eq!(
            after_failure(write("devs"), Failure::Other),
            Recovery::Retry
        );
        // A deletion the apiserver refuses is retried, never "replaced".
        let delete = Op::DeleteCopy {
            resource: ApiResource::erase::<RoleBinding>(&()),
            namespace: "acme-dev".into(),
            name: "devs".into(),
        };
        assert_eq!(after_failure(delete, Failure::Invalid), Recovery::Retry);
    }

    #[test]
    fn copies_are_written_before_stale_ones_are_deleted() {
        let plan = Plan {
            writes: vec![Write {
                name: "new".into(),
                source_namespace: "acme".into(),
                object: serde_json::json!({}),
            }],
            deletes: vec!["old".into()],
            conflicts: Vec::new(),
        };
        let ops = copy_ops(&ApiResource::erase::<RoleBinding>(&()), "acme-dev", plan);
        assert!(
            matches!(&ops[..], [Op::ApplyCopy { name: a, .. }, Op::DeleteCopy { name: d, .. }] if a == "new" && d == "old"),
            "{ops:?}"
        );
    }
}
