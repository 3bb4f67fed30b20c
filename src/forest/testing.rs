//! A one-line tree language for tests of the Forest and of the decisions that read it,
//! in the spirit of HNC's `foresttest`:
//!
//! ```text
//! tree("acme > acme-dev > acme-dev-ci, acme > acme-prod, other")
//! tree("team >> team-dev")        // team-dev is a subnamespace of team (anchor + label)
//! tree("acme* > acme-dev")        // acme is the root of Tenant "acme"
//! ```
//!
//! Chains are separated by commas; `a > b` makes `b` a child of `a`, `a >> b` makes it
//! a subnamespace (the anchor `b` in `a`, the `canopy.dev/subnamespace-of` label on `b`),
//! and a trailing `*` makes a namespace the root of a Tenant of the same name. Every
//! namespace named exists; a namespace first named at the start of a chain is a root.

use std::collections::BTreeMap;

use super::Forest;
use crate::api::keys;

/// The Forest the description says.
pub fn tree(description: &str) -> Forest {
    let mut forest = Forest::new();
    for chain in description
        .split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty())
    {
        let mut parent: Option<String> = None;
        let mut rest = chain;
        let mut anchored = false;
        loop {
            let (token, next, next_anchored) = match (rest.find(">>"), rest.find('>')) {
                (Some(i), Some(j)) if i == j => (&rest[..i], Some(&rest[i + 2..]), true),
                (_, Some(j)) => (&rest[..j], Some(&rest[j + 1..]), false),
                _ => (rest, None, false),
            };
            let token = token.trim();
            let (name, tenant_root) = match token.strip_suffix('*') {
                Some(name) => (name, true),
                None => (token, false),
            };
            add(&mut forest, name, parent.as_deref(), anchored);
            if tenant_root {
                forest.set_tenant_root(name, name);
            }
            parent = Some(name.to_owned());
            anchored = next_anchored;
            match next {
                Some(next) => rest = next,
                None => break,
            }
        }
    }
    forest
}

fn add(forest: &mut Forest, name: &str, parent: Option<&str>, anchored: bool) {
    let mut labels = forest
        .get(name)
        .filter(|s| s.exists)
        .map(|s| s.labels.clone())
        .unwrap_or_default();
    if let (true, Some(parent)) = (anchored, parent) {
        labels.insert(keys::SUBNAMESPACE_OF.to_owned(), parent.to_owned());
        forest.add_anchor(parent, name);
    }
    forest.set_namespace(name, labels, false);
    if let Some(parent) = parent {
        forest.set_hierarchy(name, Some(parent), false);
    }
}

/// Labels from `key=value` pairs, for namespaces and objects in tests.
pub fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chains_children_subnamespaces_and_tenants() {
        let f = tree("acme* > acme-dev >> acme-dev-ci, acme > acme-prod, other");
        assert_eq!(f.parent("acme-dev"), Some("acme"));
        assert_eq!(f.parent("acme-dev-ci"), Some("acme-dev"));
        assert_eq!(f.parent("acme-prod"), Some("acme"));
        assert_eq!(f.parent("other"), None);
        assert!(f.exists("other"));
        assert!(
            f.get("acme-dev")
                .is_some_and(|s| s.anchors.contains("acme-dev-ci"))
        );
        assert_eq!(
            f.get("acme-dev-ci")
                .and_then(|s| s.subnamespace_of.as_deref()),
            Some("acme-dev")
        );
        assert_eq!(
            f.get("acme-prod")
                .and_then(|s| s.subnamespace_of.as_deref()),
            None
        );
        assert_eq!(f.tenant_root("acme"), Some("acme"));
        assert_eq!(f.tenant_for("acme-dev-ci"), Some("acme"));
        assert_eq!(f.tenant_for("other"), None);
    }
}
