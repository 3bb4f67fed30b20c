//! `kubectl canopy set NS --parent P | --root | --allow-cascading-deletion |
//! --forbid-cascading-deletion`: writes NS's HierarchyConfiguration with server-side apply.

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde_json::json;

use super::error::{CliError, Request};
use super::snapshot::not_found;
use crate::api::errors;
use crate::api::{HIERARCHY_NAME, HierarchyConfiguration};

/// The field manager of the plugin's writes, so `managedFields` tells them from canopy's.
pub const FIELD_MANAGER: &str = "kubectl-canopy";

const RESOURCE: &str = "hierarchyconfigurations.canopy.dev";

#[derive(Debug, Clone, clap::Args)]
#[command(group(
    clap::ArgGroup::new("change")
        .required(true)
        .multiple(true)
        .args(["parent", "root", "allow_cascading_deletion", "forbid_cascading_deletion"])
))]
pub struct SetArgs {
    /// The namespace to change (default: -n, then the context's namespace).
    #[arg(value_name = "NAMESPACE")]
    pub name: Option<String>,
    /// Make PARENT the parent of the namespace.
    #[arg(long, value_name = "PARENT", conflicts_with = "root")]
    pub parent: Option<String>,
    /// Make the namespace a root: no parent.
    #[arg(long)]
    pub root: bool,
    /// Let deleting the namespace (or its anchor) delete its subnamespaces too.
    #[arg(long, conflicts_with = "forbid_cascading_deletion")]
    pub allow_cascading_deletion: bool,
    /// Refuse deleting the namespace while it has subnamespaces (the default).
    #[arg(long)]
    pub forbid_cascading_deletion: bool,
}

/// The two fields of a HierarchyConfiguration's spec.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hierarchy {
    pub parent: Option<String>,
    pub allow_cascading_deletion: bool,
}

impl SetArgs {
    /// `current` with the requested changes made.
    pub fn apply_to(&self, current: &Hierarchy) -> Hierarchy {
        let mut next = current.clone();
        if let Some(parent) = &self.parent {
            next.parent = Some(parent.clone());
        }
        if self.root {
            next.parent = None;
        }
        if self.allow_cascading_deletion {
            next.allow_cascading_deletion = true;
        }
        if self.forbid_cascading_deletion {
            next.allow_cascading_deletion = false;
        }
        next
    }
}

pub async fn run(client: &Client, namespace: &str, args: &SetArgs) -> Result<String, CliError> {
    if args.parent.as_deref() == Some(namespace) {
        return Err(CliError::new(format!(
            "{namespace:?} cannot be its own parent"
        )));
    }
    let api: Api<HierarchyConfiguration> = Api::namespaced(client.clone(), namespace);
    // None also when the namespace itself is missing; require_namespace tells them apart.
    let current = api
        .get_opt(HIERARCHY_NAME)
        .await
        .map_err(|e| Request::namespaced("get", RESOURCE, namespace).error(e))?;
    let has_hierarchy = current.is_some();
    let before = current
        .map(|hc| Hierarchy {
            parent: hc.spec.parent.filter(|p| !p.is_empty()),
            allow_cascading_deletion: hc.spec.allow_cascading_deletion,
        })
        .unwrap_or_default();
    if !has_hierarchy {
        require_namespace(client, namespace).await?;
    }
    let after = args.apply_to(&before);
    let report = describe_changes(namespace, args, &before, &after);
    if before == after {
        return Ok(report);
    }
    // Both fields every time: an apply that leaves out a field this manager set before
    // would delete it. An explicit null takes `parent` over even from another manager.
    let body = json!({
        "apiVersion": "canopy.dev/v1alpha1",
        "kind": "HierarchyConfiguration",
        "metadata": {"name": HIERARCHY_NAME, "namespace": namespace},
        "spec": {
            "parent": after.parent,
            "allowCascadingDeletion": after.allow_cascading_deletion,
        },
    });
    let params = PatchParams::apply(FIELD_MANAGER).force();
    match api
        .patch(HIERARCHY_NAME, &params, &Patch::Apply(&body))
        .await
    {
        Ok(_) => Ok(report),
        Err(e) if errors::is_not_found(&e) => Err(not_found(namespace)),
        Err(e) => Err(Request::namespaced("patch", RESOURCE, namespace).error(e)),
    }
}

/// Without a HierarchyConfiguration, "no change" would be reported for a namespace that
/// does not exist. A user allowed to edit the hierarchy may still lack `get` on the
/// cluster-scoped Namespace; then the apply itself finds out.
async fn require_namespace(client: &Client, namespace: &str) -> Result<(), CliError> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    match namespaces.get_opt(namespace).await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(not_found(namespace)),
        Err(e) if errors::is_forbidden(&e) => Ok(()),
        Err(e) => Err(Request::cluster("get", "namespaces").error(e)),
    }
}

/// One line per requested change, saying what it was before.
pub fn describe_changes(
    namespace: &str,
    args: &SetArgs,
    before: &Hierarchy,
    after: &Hierarchy,
) -> String {
    let mut lines = Vec::new();
    if args.parent.is_some() || args.root {
        lines.push(match (&before.parent, &after.parent) {
            (old, new) if old == new => match new {
                Some(p) => format!("The parent of {namespace:?} is already {p:?}; no change"),
                None => format!("{namespace:?} is already a root; no change"),
            },
            (None, Some(new)) => format!("Set the parent of {namespace:?} to {new:?}"),
            (Some(old), Some(new)) => {
                format!("Changed the parent of {namespace:?} from {old:?} to {new:?}")
            }
            (Some(old), None) => {
                format!("{namespace:?} is now a root (its parent was {old:?})")
            }
            (None, None) => format!("{namespace:?} is already a root; no change"),
        });
    }
    if args.allow_cascading_deletion || args.forbid_cascading_deletion {
        let verb = if after.allow_cascading_deletion {
            "allowed"
        } else {
            "forbidden"
        };
        lines.push(
            if before.allow_cascading_deletion == after.allow_cascading_deletion {
                format!("Cascading deletion is already {verb} in {namespace:?}; no change")
            } else if after.allow_cascading_deletion {
                format!("Allowed cascading deletion in {namespace:?}")
            } else {
                format!("Forbade cascading deletion in {namespace:?}")
            },
        );
    }
    lines.iter().map(|l| format!("{l}\n")).collect()
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        set: SetArgs,
    }

    fn args(argv: &[&str]) -> Result<SetArgs, clap::Error> {
        let mut full = vec!["set"];
        full.extend_from_slice(argv);
        Wrapper::try_parse_from(full).map(|w| w.set)
    }

    fn hierarchy(parent: Option<&str>, cascade: bool) -> Hierarchy {
        Hierarchy {
            parent: parent.map(str::to_owned),
            allow_cascading_deletion: cascade,
        }
    }

    fn changes(argv: &[&str], before: &Hierarchy) -> (Hierarchy, String) {
        let args = args(argv).expect("valid arguments");
        let after = args.apply_to(before);
        let report = describe_changes("ns", &args, before, &after);
        (after, report)
    }

    #[test]
    fn one_change_is_required_and_opposites_conflict() {
        assert!(args(&["ns"]).is_err());
        assert!(args(&["ns", "--parent", "p", "--root"]).is_err());
        assert!(
            args(&[
                "ns",
                "--allow-cascading-deletion",
                "--forbid-cascading-deletion"
            ])
            .is_err()
        );
        assert!(args(&["ns", "--parent", "p", "--allow-cascading-deletion"]).is_ok());
    }

    #[test]
    fn setting_and_changing_the_parent() {
        let (after, report) = changes(&["ns", "--parent", "p"], &Hierarchy::default());
        assert_eq!(after, hierarchy(Some("p"), false));
        assert_eq!(report, "Set the parent of \"ns\" to \"p\"\n");

        let (after, report) = changes(&["ns", "--parent", "q"], &hierarchy(Some("p"), true));
        assert_eq!(after, hierarchy(Some("q"), true), "the flag is kept");
        assert_eq!(report, "Changed the parent of \"ns\" from \"p\" to \"q\"\n");

        let (_, report) = changes(&["ns", "--parent", "p"], &hierarchy(Some("p"), false));
        assert_eq!(report, "The parent of \"ns\" is already \"p\"; no change\n");
    }

    #[test]
    fn making_a_root() {
        let (after, report) = changes(&["ns", "--root"], &hierarchy(Some("p"), true));
        assert_eq!(after, hierarchy(None, true));
        assert_eq!(report, "\"ns\" is now a root (its parent was \"p\")\n");
        let (_, report) = changes(&["ns", "--root"], &Hierarchy::default());
        assert_eq!(report, "\"ns\" is already a root; no change\n");
    }

    #[test]
    fn cascading_deletion() {
        let (after, report) = changes(
            &["ns", "--allow-cascading-deletion"],
            &hierarchy(Some("p"), false),
        );
        assert_eq!(after, hierarchy(Some("p"), true), "the parent is kept");
        assert_eq!(report, "Allowed cascading deletion in \"ns\"\n");
        let (after, report) = changes(&["ns", "--forbid-cascading-deletion"], &after);
        assert_eq!(after, hierarchy(Some("p"), false));
        assert_eq!(report, "Forbade cascading deletion in \"ns\"\n");
        let (_, report) = changes(&["ns", "--forbid-cascading-deletion"], &after);
        assert_eq!(
            report,
            "Cascading deletion is already forbidden in \"ns\"; no change\n"
        );
    }

    #[test]
    fn both_kinds_of_change_are_reported() {
        let (_, report) = changes(
            &["ns", "--root", "--allow-cascading-deletion"],
            &hierarchy(Some("p"), false),
        );
        assert_eq!(
            report,
            "\"ns\" is now a root (its parent was \"p\")\nAllowed cascading deletion in \"ns\"\n"
        );
    }
}
