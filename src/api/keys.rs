//! Label and annotation keys of the contract (design.md, "Labels and annotations").

/// On every propagated copy: the namespace its source lives in.
pub const INHERITED_FROM: &str = "canopy.dev/inherited-from";
/// Suffix of the per-ancestor depth label: `<ancestor>.tree.canopy.dev/depth`.
pub const TREE_DEPTH_SUFFIX: &str = ".tree.canopy.dev/depth";
/// On every namespace of a tenant.
pub const TENANT: &str = "canopy.dev/tenant";
/// On the child namespace of a SubnamespaceAnchor: the parent's name.
pub const SUBNAMESPACE_OF: &str = "canopy.dev/subnamespace-of";
/// On excluded namespaces; the webhooks skip them.
pub const EXCLUDED_NAMESPACE: &str = "canopy.dev/excluded-namespace";
/// The prefix of Pod Security Admission's namespace labels; in a tenant's namespaces
/// only canopy may set them.
pub const POD_SECURITY_PREFIX: &str = "pod-security.kubernetes.io/";
/// The Pod Security Admission modes canopy sets, each to the tenant's level.
pub const POD_SECURITY_MODES: [&str; 3] = [
    "pod-security.kubernetes.io/enforce",
    "pod-security.kubernetes.io/warn",
    "pod-security.kubernetes.io/audit",
];
/// On a source: do not propagate it.
pub const PROPAGATE_NONE: &str = "propagate.canopy.dev/none";
/// On a source: only to descendants whose labels match this selector.
pub const PROPAGATE_SELECT: &str = "propagate.canopy.dev/select";
/// On a source: only to these subtrees (`"team-a, !team-a-sandbox"`).
pub const PROPAGATE_TREE_SELECT: &str = "propagate.canopy.dev/treeSelect";
/// On a source of an `AllowPropagate` kind: opt in to every descendant.
pub const PROPAGATE_ALL: &str = "propagate.canopy.dev/all";

/// The field manager of every write canopy makes.
pub const FIELD_MANAGER: &str = "canopy";
/// The field manager of `CanopyConfiguration.status.resources` (counted by every kind's
/// propagation, apart from the rest of the status).
pub const PROPAGATION_FIELD_MANAGER: &str = "canopy-propagation";
/// On every copy: a digest of everything canopy wrote, so a converged copy is recognised
/// from its metadata alone (copies are watched metadata-only).
pub const SOURCE_HASH: &str = "canopy.dev/source-hash";

/// Keeps a SubnamespaceAnchor until canopy has deleted its child namespace.
pub const ANCHOR_FINALIZER: &str = "canopy.dev/subnamespace";
/// Keeps a Tenant until canopy has cleaned up after it.
pub const TENANT_FINALIZER: &str = "canopy.dev/tenant";

/// Whether `key` is a tree, tenant or subnamespace label: only canopy sets them.
pub fn is_protected_label(key: &str) -> bool {
    key == TENANT
        || key == SUBNAMESPACE_OF
        || key == EXCLUDED_NAMESPACE
        || ancestor_of_depth_label(key).is_some()
}

/// Keys in the `kubernetes.io` and `k8s.io` domains (and their subdomains): reserved for
/// Kubernetes itself, never copied from an anchor onto its namespace.
pub fn is_reserved_key(key: &str) -> bool {
    let Some((prefix, _)) = key.split_once('/') else {
        return false;
    };
    ["kubernetes.io", "k8s.io"]
        .iter()
        .any(|domain| prefix == *domain || prefix.ends_with(&format!(".{domain}")))
}

/// The depth label key that records `ancestor` in a namespace's tree.
pub fn tree_depth_label(ancestor: &str) -> String {
    format!("{ancestor}{TREE_DEPTH_SUFFIX}")
}

/// The ancestor named by a depth label key, if `key` is one.
pub fn ancestor_of_depth_label(key: &str) -> Option<&str> {
    key.strip_suffix(TREE_DEPTH_SUFFIX)
        .filter(|a| !a.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_label_round_trips() {
        let key = tree_depth_label("acme-dev");
        assert_eq!(key, "acme-dev.tree.canopy.dev/depth");
        assert_eq!(ancestor_of_depth_label(&key), Some("acme-dev"));
    }

    #[test]
    fn other_keys_are_not_depth_labels() {
        assert_eq!(ancestor_of_depth_label(TENANT), None);
        assert_eq!(ancestor_of_depth_label(".tree.canopy.dev/depth"), None);
        assert_eq!(ancestor_of_depth_label("x.tree.canopy.dev/depthx"), None);
    }
}
