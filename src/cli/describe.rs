//! `kubectl canopy describe NS`: where a namespace stands in its tree, its anchors and
//! its HierarchyConfiguration's conditions.

use std::fmt::Write as _;

use kube::api::ListParams;
use kube::{Api, Client};

use super::cluster;
use super::error::{CliError, Request};
use super::snapshot::Snapshot;
use crate::api::{AnchorState, SubnamespaceAnchor};

/// An anchor in the described namespace and the state canopy reported for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    pub name: String,
    pub state: Option<AnchorState>,
}

pub async fn run(client: &Client, namespace: &str) -> Result<String, CliError> {
    let mut snapshot = cluster::load_around(client, namespace).await?;
    snapshot.require(namespace)?;
    let chain: Vec<String> = std::iter::once(namespace)
        .chain(snapshot.forest.ancestors(namespace))
        .map(str::to_owned)
        .collect();
    let chain: Vec<&str> = chain.iter().map(String::as_str).collect();
    snapshot.quotas = super::quota::load(client, &chain).await;
    let api: Api<SubnamespaceAnchor> = Api::namespaced(client.clone(), namespace);
    let anchors = api
        .list(&ListParams::default())
        .await
        .map_err(|e| {
            Request::namespaced("list", "subnamespaceanchors.canopy.dev", namespace).error(e)
        })?
        .items
        .into_iter()
        .filter_map(|a| {
            Some(Anchor {
                state: a.status.as_ref().and_then(|s| s.status),
                name: a.metadata.name?,
            })
        })
        .collect::<Vec<_>>();
    Ok(render(&snapshot, namespace, &anchors))
}

/// The description of `name`; pure, so every line is unit tested.
pub fn render(snapshot: &Snapshot, name: &str, anchors: &[Anchor]) -> String {
    let forest = &snapshot.forest;
    let state = forest.get(name).cloned().unwrap_or_default();
    let cycle = forest.cycle(name);
    let mut out = String::new();

    field(&mut out, "Namespace", name);
    let parent = match forest.parent(name) {
        None => "none (a root)".to_owned(),
        Some(p) if !forest.exists(p) => format!("{p} (does not exist)"),
        Some(p) => p.to_owned(),
    };
    field(&mut out, "Parent", &parent);

    // Root first, like a path, ending with the namespace itself.
    let mut chain: Vec<&str> = forest.ancestors(name);
    chain.reverse();
    chain.push(name);
    let mut ancestry = chain.join(" > ");
    if let Some(members) = &cycle {
        let mut loop_path = members.clone();
        loop_path.push(name);
        let _ = write!(ancestry, " (in a cycle: {})", loop_path.join(" -> "));
    }
    field(&mut out, "Ancestors", &ancestry);

    field(
        &mut out,
        "Tenant",
        state.tenant.as_deref().unwrap_or("none"),
    );
    field(
        &mut out,
        "Subnamespace of",
        state
            .subnamespace_of
            .as_deref()
            .unwrap_or("none (not a subnamespace)"),
    );
    let cascade = std::iter::once(name)
        .chain(forest.ancestors(name))
        .find(|ns| forest.get(ns).is_some_and(|s| s.allow_cascading_deletion));
    let cascade = match cascade {
        Some(ns) if ns == name => "true".to_owned(),
        Some(ns) => format!("true (inherited from {ns})"),
        None => "false".to_owned(),
    };
    field(&mut out, "Allow cascading deletion", &cascade);

    let children: Vec<&str> = forest.children(name).collect();
    if children.is_empty() {
        field(&mut out, "Children", "none");
    } else {
        let _ = writeln!(out, "Children:");
        for child in children {
            let sub = forest
                .get(child)
                .is_some_and(|s| s.subnamespace_of.is_some());
            let _ = writeln!(out, "  - {}{child}", if sub { "[s] " } else { "" });
        }
    }

    if anchors.is_empty() {
        field(&mut out, "Anchors", "none");
    } else {
        let _ = writeln!(out, "Anchors:");
        let mut sorted: Vec<&Anchor> = anchors.iter().collect();
        sorted.sort_by(|a, b| a.name.cmp(&b.name));
        for anchor in sorted {
            let state = anchor
                .state
                .map_or_else(|| "no status yet".to_owned(), |s| format!("{s:?}"));
            let _ = writeln!(out, "  - {}: {state}", anchor.name);
        }
    }

    // Every HRQ that applies here: its own and its ancestors', top of the tree first.
    let mut chain: Vec<&str> = forest.ancestors(name);
    chain.reverse();
    chain.push(name);
    let quotas: Vec<String> = chain
        .iter()
        .flat_map(|ns| {
            snapshot
                .quotas
                .get(*ns)
                .into_iter()
                .flatten()
                .map(move |q| format!("{ns}/{q}"))
        })
        .collect();
    if quotas.is_empty() {
        field(&mut out, "Hierarchical quotas", "none");
    } else {
        let _ = writeln!(out, "Hierarchical quotas:");
        for quota in quotas {
            let _ = writeln!(out, "  - {quota}");
        }
    }

    let conditions = snapshot.conditions(name);
    if conditions.is_empty() {
        field(&mut out, "Conditions", "none reported");
    } else {
        let _ = writeln!(out, "Conditions:");
        for c in conditions {
            let _ = write!(out, "  - {}={}", c.type_, c.status);
            if !c.reason.is_empty() {
                let _ = write!(out, " ({})", c.reason);
            }
            if !c.message.is_empty() {
                let _ = write!(out, ": {}", c.message);
            }
            out.push('\n');
        }
    }
    out
}

/// `Key:` padded so that the values line up.
fn field(out: &mut String, key: &str, value: &str) {
    let _ = writeln!(out, "{:<26}{value}", format!("{key}:"));
}

#[cfg(test)]
mod tests {
    use super::super::snapshot::fixtures::*;
    use super::*;
    use crate::api::keys;

    fn lines(out: &str) -> Vec<&str> {
        out.lines().collect()
    }

    #[test]
    fn a_subnamespace_in_a_tenant() {
        let mut acme = hierarchy("acme", None);
        acme.spec.allow_cascading_deletion = true;
        let snapshot = Snapshot::build(
            [
                namespace("acme", &[(keys::TENANT, "acme")]),
                namespace(
                    "acme-dev",
                    &[(keys::TENANT, "acme"), (keys::SUBNAMESPACE_OF, "acme")],
                ),
                subnamespace("acme-dev-ci", "acme-dev"),
                namespace("acme-dev-web", &[]),
            ],
            [
                acme,
                with_conditions(
                    hierarchy("acme-dev", Some("acme")),
                    vec![condition("BadConfiguration", "Odd", "something is odd")],
                ),
                hierarchy("acme-dev-ci", Some("acme-dev")),
                hierarchy("acme-dev-web", Some("acme-dev")),
            ],
        );
        let anchors = [
            Anchor {
                name: "acme-dev-new".to_owned(),
                state: None,
            },
            Anchor {
                name: "acme-dev-ci".to_owned(),
                state: Some(AnchorState::Ok),
            },
        ];
        let mut snapshot = snapshot;
        snapshot.quotas.insert(
            "acme".to_owned(),
            vec!["canopy-tenant-quota: pods: 3/5".to_owned()],
        );
        snapshot.quotas.insert(
            "acme-dev-ci".to_owned(),
            vec!["below: pods: 0/1".to_owned()],
        );
        let out = render(&snapshot, "acme-dev", &anchors);
        assert_eq!(
            lines(&out),
            [
                "Namespace:                acme-dev",
                "Parent:                   acme",
                "Ancestors:                acme > acme-dev",
                "Tenant:                   acme",
                "Subnamespace of:          acme",
                "Allow cascading deletion: true (inherited from acme)",
                "Children:",
                "  - [s] acme-dev-ci",
                "  - acme-dev-web",
                "Anchors:",
                "  - acme-dev-ci: Ok",
                "  - acme-dev-new: no status yet",
                "Hierarchical quotas:",
                "  - acme/canopy-tenant-quota: pods: 3/5",
                "Conditions:",
                "  - BadConfiguration=True (Odd): something is odd",
            ]
        );
    }

    #[test]
    fn a_lone_root() {
        let snapshot = Snapshot::build([namespace("solo", &[])], []);
        let out = render(&snapshot, "solo", &[]);
        assert_eq!(
            lines(&out),
            [
                "Namespace:                solo",
                "Parent:                   none (a root)",
                "Ancestors:                solo",
                "Tenant:                   none",
                "Subnamespace of:          none (not a subnamespace)",
                "Allow cascading deletion: false",
                "Children:                 none",
                "Anchors:                  none",
                "Hierarchical quotas:      none",
                "Conditions:               none reported",
            ]
        );
    }

    #[test]
    fn a_missing_parent_and_a_cycle_are_called_out() {
        let snapshot = Snapshot::build(
            [
                namespace("orphan", &[]),
                namespace("a", &[]),
                namespace("b", &[]),
            ],
            [
                hierarchy("orphan", Some("gone")),
                hierarchy("a", Some("b")),
                hierarchy("b", Some("a")),
            ],
        );
        let out = render(&snapshot, "orphan", &[]);
        assert!(
            out.contains("Parent:                   gone (does not exist)\n"),
            "{out}"
        );
        let out = render(&snapshot, "a", &[]);
        assert!(
            out.contains("Ancestors:                b > a (in a cycle: a -> b -> a)\n"),
            "{out}"
        );
    }

    #[test]
    fn own_cascading_deletion() {
        let mut hc = hierarchy("x", None);
        hc.spec.allow_cascading_deletion = true;
        let snapshot = Snapshot::build([namespace("x", &[])], [hc]);
        assert!(render(&snapshot, "x", &[]).contains("Allow cascading deletion: true\n"));
    }
}
