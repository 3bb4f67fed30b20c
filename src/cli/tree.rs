//! `kubectl canopy tree`: a namespace and its subtree, or the whole forest, as an
//! indented tree with subnamespaces and conditions marked.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

use kube::Client;

use super::cluster;
use super::error::CliError;
use super::snapshot::Snapshot;
use crate::api::{ACTIVITIES_HALTED, BAD_CONFIGURATION, reasons};
use crate::forest::Forest;

/// Which trees `tree` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// `-A`: every tree, or for a user who may not list namespaces cluster-wide (a
    /// tenant owner), the trees of the Tenants they may read.
    All,
    /// A namespace named on the command line (argument or `-n`): its subtree.
    Named,
    /// Nothing named: the context namespace's subtree, or, when that cannot be read,
    /// the trees of the Tenants the user may read.
    Default,
}

/// Fetches the hierarchy and renders the subtree of `namespace`, or every tree.
pub async fn run(client: &Client, namespace: &str, scope: Scope) -> Result<String, CliError> {
    match scope {
        Scope::All => match cluster::load(client).await {
            Ok(mut snapshot) => {
                let names: Vec<String> = snapshot.forest.namespaces().map(str::to_owned).collect();
                let names: Vec<&str> = names.iter().map(String::as_str).collect();
                snapshot.quotas = super::quota::load(client, &names).await;
                Ok(render_all(&snapshot))
            }
            Err(e) if e.is_forbidden() => owned_trees(client, namespace, e).await,
            Err(e) => Err(e),
        },
        Scope::Named => one_tree(client, namespace).await,
        Scope::Default => match one_tree(client, namespace).await {
            Ok(out) => Ok(out),
            Err(e) => owned_trees(client, namespace, e).await,
        },
    }
}

/// The subtree of `namespace`.
async fn one_tree(client: &Client, namespace: &str) -> Result<String, CliError> {
    let mut snapshot = cluster::load_around(client, namespace).await?;
    snapshot.require(namespace)?;
    let names: Vec<String> = snapshot
        .forest
        .subtree(namespace)
        .into_iter()
        .map(str::to_owned)
        .collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    snapshot.quotas = super::quota::load(client, &names).await;
    Ok(render(&snapshot, &[namespace]))
}

/// The trees of the Tenants the user may read; `refused` (the error of what was asked
/// first) when there are none, with what to do instead.
async fn owned_trees(
    client: &Client,
    review_namespace: &str,
    refused: CliError,
) -> Result<String, CliError> {
    let roots = super::owned::tenant_roots(client, review_namespace).await;
    let walked = super::owned::walk_roots(client, &roots).await;
    let Some(mut snapshot) = walked else {
        return Err(CliError::new(format!(
            "{refused}; and you own no Tenant whose tree could be shown instead: name a \
             namespace you may read (kubectl canopy tree NAMESPACE), or ask a cluster admin \
             for list on namespaces and hierarchyconfigurations.canopy.dev at the cluster \
             scope"
        )));
    };
    let shown: Vec<&str> = roots
        .iter()
        .map(String::as_str)
        .filter(|root| snapshot.forest.exists(root))
        .collect();
    let names: Vec<String> = shown
        .iter()
        .flat_map(|root| snapshot.forest.subtree(root))
        .map(str::to_owned)
        .collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    snapshot.quotas = super::quota::load(client, &names).await;
    Ok(render(&snapshot, &shown))
}

/// What a namespace is marked with after its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mark {
    /// `ActivitiesHalted` with this reason.
    Halted(String),
    /// `BadConfiguration` with this reason.
    BadConfiguration(String),
}

impl Mark {
    fn text(&self) -> String {
        match self {
            Self::Halted(reason) => format!("(halted: {reason})"),
            Self::BadConfiguration(reason) => format!("(bad configuration: {reason})"),
        }
    }
}

/// The marks of `name`: the true ActivitiesHalted and BadConfiguration conditions its
/// HierarchyConfiguration reports, and `in_cycle` even before the controller reports it,
/// since the tree's shape itself depends on it.
pub fn marks(snapshot: &Snapshot, name: &str, in_cycle: bool) -> Vec<Mark> {
    let mut marks = Vec::new();
    for condition in snapshot.conditions(name) {
        if condition.status != "True" {
            continue;
        }
        let reason = if condition.reason.is_empty() {
            condition.type_.clone()
        } else {
            condition.reason.clone()
        };
        match condition.type_.as_str() {
            ACTIVITIES_HALTED => marks.push(Mark::Halted(reason)),
            BAD_CONFIGURATION => marks.push(Mark::BadConfiguration(reason)),
            _ => {}
        }
    }
    let reported_halt = marks.iter().any(|m| matches!(m, Mark::Halted(_)));
    if !reported_halt && in_cycle {
        marks.push(Mark::Halted(reasons::IN_CYCLE.to_owned()));
    }
    marks
}

/// Every namespace that is part of a cycle, in one pass over the parent links
/// (`Forest::cycle` per namespace would cost the square of the depth for each).
pub fn cycle_members(forest: &Forest) -> HashSet<&str> {
    let mut done: HashSet<&str> = HashSet::new();
    let mut members = HashSet::new();
    for start in forest.namespaces() {
        let mut path: Vec<&str> = Vec::new();
        let mut on_path: HashMap<&str, usize> = HashMap::new();
        let mut current = Some(start);
        while let Some(ns) = current {
            if done.contains(ns) {
                break;
            }
            if let Some(&at) = on_path.get(ns) {
                members.extend(path[at..].iter().copied());
                break;
            }
            on_path.insert(ns, path.len());
            path.push(ns);
            current = forest.parent(ns);
        }
        done.extend(path);
    }
    members
}

/// Every tree of the forest: first each root (a namespace without a parent, or whose
/// parent does not exist) with its subtree, then whatever hangs in or below a cycle,
/// which has no root, entered at its cycle's alphabetically first member.
pub fn render_all(snapshot: &Snapshot) -> String {
    let forest = &snapshot.forest;
    let namespaces = snapshot.namespaces();
    let roots: Vec<&str> = namespaces
        .iter()
        .copied()
        .filter(|ns| forest.parent(ns).is_none_or(|p| !forest.exists(p)))
        .collect();
    let mut renderer = Renderer::new(snapshot);
    for root in roots {
        renderer.subtree(root);
    }
    while let Some(left) = namespaces
        .iter()
        .copied()
        .find(|ns| !renderer.printed.contains(ns))
    {
        let entry = cycle_entry(forest, &renderer.cycles, left);
        // Every pass must print something, or this loop would never end.
        let entry = if renderer.printed.contains(entry) {
            left
        } else {
            entry
        };
        renderer.subtree(entry);
    }
    renderer.finish()
}

/// The subtrees of `roots`, in the order given.
pub fn render(snapshot: &Snapshot, roots: &[&str]) -> String {
    let mut renderer = Renderer::new(snapshot);
    for root in roots {
        renderer.subtree(root);
    }
    renderer.finish()
}

/// Where to enter the cycle that `name` is in or below: its alphabetically first member.
fn cycle_entry<'a>(forest: &'a Forest, cycles: &HashSet<&str>, name: &'a str) -> &'a str {
    let Some(member) = std::iter::once(name)
        .chain(forest.ancestors(name))
        .find(|ns| cycles.contains(ns))
    else {
        return name;
    };
    let mut first = member;
    let mut current = forest.parent(member);
    while let Some(ns) = current.filter(|ns| *ns != member) {
        first = first.min(ns);
        current = forest.parent(ns);
    }
    first
}

struct Renderer<'a> {
    snapshot: &'a Snapshot,
    out: String,
    printed: HashSet<&'a str>,
    cycles: HashSet<&'a str>,
    any_subnamespace: bool,
    any_halted: bool,
    any_bad_configuration: bool,
}

impl<'a> Renderer<'a> {
    fn new(snapshot: &'a Snapshot) -> Self {
        Self {
            snapshot,
            out: String::new(),
            printed: HashSet::new(),
            cycles: cycle_members(&snapshot.forest),
            any_subnamespace: false,
            any_halted: false,
            any_bad_configuration: false,
        }
    }

    /// Depth first, with an explicit stack so a very deep tree cannot overflow the call
    /// stack; a namespace already printed (a cycle closing) is skipped, so it terminates.
    fn subtree(&mut self, root: &'a str) {
        if !self.printed.insert(root) {
            return;
        }
        self.line("", root);
        // Each frame: the children still to print, and the indentation of their lines.
        let mut stack: Vec<(std::vec::IntoIter<&'a str>, String)> =
            vec![(self.unprinted_children(root).into_iter(), String::new())];
        while let Some((children, indent)) = stack.last_mut() {
            let Some(child) = children.next() else {
                stack.pop();
                continue;
            };
            let last = children.len() == 0;
            let (branch, extension) = if last {
                ("└── ", "    ")
            } else {
                ("├── ", "│   ")
            };
            let child_indent = format!("{indent}{extension}");
            let prefix = format!("{indent}{branch}");
            self.line(&prefix, child);
            let grandchildren = self.unprinted_children(child);
            stack.push((grandchildren.into_iter(), child_indent));
        }
    }

    /// Sorted (the Forest keeps them sorted), and claimed as printed right away so that
    /// no path can reach them twice.
    fn unprinted_children(&mut self, name: &str) -> Vec<&'a str> {
        let children: Vec<&'a str> = self
            .snapshot
            .forest
            .children(name)
            .filter(|c| !self.printed.contains(c))
            .collect();
        self.printed.extend(children.iter().copied());
        children
    }

    fn line(&mut self, prefix: &str, name: &str) {
        let subnamespace = self
            .snapshot
            .forest
            .get(name)
            .is_some_and(|ns| ns.subnamespace_of.is_some());
        let mut line = prefix.to_owned();
        if subnamespace {
            self.any_subnamespace = true;
            line.push_str("[s] ");
        }
        line.push_str(name);
        for mark in marks(self.snapshot, name, self.cycles.contains(name)) {
            match mark {
                Mark::Halted(_) => self.any_halted = true,
                Mark::BadConfiguration(_) => self.any_bad_configuration = true,
            }
            line.push(' ');
            line.push_str(&mark.text());
        }
        for quota in self.snapshot.quotas.get(name).into_iter().flatten() {
            let _ = write!(line, " [hrq {quota}]");
        }
        self.out.push_str(&line);
        self.out.push('\n');
    }

    fn finish(mut self) -> String {
        let mut legend = Vec::new();
        if self.any_subnamespace {
            legend.push("[s] indicates subnamespaces");
        }
        if self.any_halted {
            legend.push(
                "(halted: REASON) indicates ActivitiesHalted: nothing is propagated into or out of that namespace",
            );
        }
        if self.any_bad_configuration {
            legend.push(
                "(bad configuration: REASON) indicates BadConfiguration: its HierarchyConfiguration cannot be honoured as written",
            );
        }
        if !legend.is_empty() {
            self.out.push('\n');
            for line in &legend {
                let _ = writeln!(self.out, "{line}");
            }
            if self.any_halted || self.any_bad_configuration {
                let _ = writeln!(
                    self.out,
                    "Run `kubectl canopy describe NAMESPACE` for the details of a condition."
                );
            }
        }
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::super::snapshot::fixtures::*;
    use super::*;

    fn snapshot(edges: &[(&str, Option<&str>)]) -> Snapshot {
        Snapshot::build(
            edges.iter().map(|(name, _)| namespace(name, &[])),
            edges.iter().map(|(name, parent)| hierarchy(name, *parent)),
        )
    }

    #[test]
    fn children_are_sorted_and_indented() {
        let s = snapshot(&[
            ("acme", None),
            ("acme-prod", Some("acme")),
            ("acme-dev", Some("acme")),
            ("acme-dev-web", Some("acme-dev")),
            ("acme-dev-ci", Some("acme-dev")),
            ("acme-prod-eu", Some("acme-prod")),
        ]);
        assert_eq!(
            render(&s, &["acme"]),
            "\
acme
├── acme-dev
│   ├── acme-dev-ci
│   └── acme-dev-web
└── acme-prod
    └── acme-prod-eu
"
        );
        assert_eq!(
            render(&s, &["acme-dev"]),
            "acme-dev\n├── acme-dev-ci\n└── acme-dev-web\n"
        );
    }

    #[test]
    fn subnamespaces_are_marked_with_a_legend() {
        let s = Snapshot::build(
            [
                namespace("team", &[]),
                subnamespace("team-a", "team"),
                namespace("team-b", &[]),
            ],
            [
                hierarchy("team-a", Some("team")),
                hierarchy("team-b", Some("team")),
            ],
        );
        assert_eq!(
            render(&s, &["team"]),
            "\
team
├── [s] team-a
└── team-b

[s] indicates subnamespaces
"
        );
    }

    #[test]
    fn quota_usage_follows_the_namespace() {
        let mut s = snapshot(&[("acme", None), ("acme-dev", Some("acme"))]);
        s.quotas.insert(
            "acme".to_owned(),
            vec!["canopy-tenant-quota: pods: 3/5".to_owned()],
        );
        assert_eq!(
            render(&s, &["acme"]),
            "acme [hrq canopy-tenant-quota: pods: 3/5]\n└── acme-dev\n"
        );
    }

    #[test]
    fn no_legend_without_marks() {
        let s = snapshot(&[("solo", None)]);
        assert_eq!(render(&s, &["solo"]), "solo\n");
    }

    #[test]
    fn reported_conditions_are_marked() {
        let s = Snapshot::build(
            [namespace("a", &[]), namespace("b", &[])],
            [
                hierarchy("a", None),
                with_conditions(
                    hierarchy("b", Some("a")),
                    vec![
                        condition("ActivitiesHalted", "ParentMissing", "gone"),
                        condition("BadConfiguration", "Odd", "odd"),
                        condition("SomethingElse", "Ignored", ""),
                    ],
                ),
            ],
        );
        let out = render(&s, &["a"]);
        assert!(
            out.starts_with("a\n└── b (halted: ParentMissing) (bad configuration: Odd)\n\n"),
            "{out}"
        );
        assert!(out.contains("(halted: REASON) indicates ActivitiesHalted"));
        assert!(out.contains("(bad configuration: REASON) indicates BadConfiguration"));
        assert!(out.contains("kubectl canopy describe"));
    }

    #[test]
    fn false_conditions_are_not_marked() {
        let mut cond = condition("ActivitiesHalted", "InCycle", "");
        cond.status = "False".to_owned();
        let s = Snapshot::build(
            [namespace("a", &[])],
            [with_conditions(hierarchy("a", None), vec![cond])],
        );
        assert_eq!(render(&s, &["a"]), "a\n");
    }

    #[test]
    fn a_cycle_is_printed_once_and_marked() {
        let s = snapshot(&[
            ("a", Some("c")),
            ("b", Some("a")),
            ("c", Some("b")),
            ("d", Some("b")),
        ]);
        assert_eq!(
            render(&s, &["a"]),
            "\
a (halted: InCycle)
└── b (halted: InCycle)
    ├── c (halted: InCycle)
    └── d

(halted: REASON) indicates ActivitiesHalted: nothing is propagated into or out of that namespace
Run `kubectl canopy describe NAMESPACE` for the details of a condition.
"
        );
    }

    #[test]
    fn a_namespace_that_is_its_own_parent_terminates() {
        let s = snapshot(&[("self", Some("self"))]);
        assert!(render(&s, &["self"]).starts_with("self (halted: InCycle)\n\n"));
    }

    #[test]
    fn all_namespaces_prints_roots_orphans_and_cycles() {
        let s = snapshot(&[
            ("zeta", None),
            ("alpha", None),
            ("alpha-1", Some("alpha")),
            ("orphan", Some("gone")),
            ("x", Some("y")),
            ("y", Some("x")),
            ("below-cycle", Some("y")),
        ]);
        let out = render_all(&s);
        let tree: Vec<&str> = out.lines().take_while(|l| !l.is_empty()).collect();
        assert_eq!(
            tree,
            [
                "alpha",
                "└── alpha-1",
                "orphan",
                "zeta",
                "x (halted: InCycle)",
                "└── y (halted: InCycle)",
                "    └── below-cycle",
            ]
        );
    }

    #[test]
    fn deep_trees_do_not_overflow_and_indent_fully() {
        let names: Vec<String> = (0..2000).map(|i| format!("ns{i:04}")).collect();
        let edges: Vec<(&str, Option<&str>)> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), i.checked_sub(1).map(|p| names[p].as_str())))
            .collect();
        let s = snapshot(&edges);
        let out = render(&s, &["ns0000"]);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2000);
        assert_eq!(lines[1], "└── ns0001");
        assert_eq!(lines[2], "    └── ns0002");
        assert_eq!(lines[1999], format!("{}└── ns1999", "    ".repeat(1998)));
    }

    #[test]
    fn wide_trees_list_every_child_in_order() {
        let children: Vec<String> = (0..500).map(|i| format!("child-{i:03}")).collect();
        let mut edges: Vec<(&str, Option<&str>)> = vec![("wide", None)];
        edges.extend(children.iter().map(|c| (c.as_str(), Some("wide"))));
        let s = snapshot(&edges);
        let out = render(&s, &["wide"]);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 501);
        assert_eq!(lines[1], "├── child-000");
        assert_eq!(lines[499], "├── child-498");
        assert_eq!(lines[500], "└── child-499");
    }

    #[test]
    fn cycle_members_are_found_in_one_pass() {
        let s = snapshot(&[
            ("a", Some("b")),
            ("b", Some("a")),
            ("c", Some("a")),
            ("d", None),
            ("e", Some("e")),
            ("f", Some("g")),
            ("g", Some("h")),
            ("h", Some("g")),
        ]);
        let mut members: Vec<&str> = cycle_members(&s.forest).into_iter().collect();
        members.sort_unstable();
        assert_eq!(members, ["a", "b", "e", "g", "h"]);
        assert_eq!(marks(&s, "a", true), [Mark::Halted("InCycle".to_owned())]);
        assert!(marks(&s, "c", false).is_empty());
    }
}
