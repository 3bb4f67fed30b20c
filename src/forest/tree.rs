use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use super::HaltReason;
use crate::api::keys;

/// What the Forest knows of one namespace.
///
/// A namespace can be known before it exists (a HierarchyConfiguration names it as parent)
/// and keeps its place until nothing refers to it any more.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NamespaceState {
    /// The Namespace object exists.
    pub exists: bool,
    /// It has a deletionTimestamp.
    pub deleting: bool,
    /// `spec.parent` of its HierarchyConfiguration; `None` for a root.
    pub parent: Option<String>,
    /// `spec.allowCascadingDeletion` of its HierarchyConfiguration.
    pub allow_cascading_deletion: bool,
    /// Its `canopy.dev/tenant` label.
    pub tenant: Option<String>,
    /// Its `canopy.dev/subnamespace-of` label.
    pub subnamespace_of: Option<String>,
    /// Its labels, as last seen (tree labels included).
    pub labels: BTreeMap<String, String>,
    /// Names of the SubnamespaceAnchors in it.
    pub anchors: BTreeSet<String>,
    /// Namespaces whose parent is this one.
    children: BTreeSet<String>,
}

impl NamespaceState {
    pub fn children(&self) -> &BTreeSet<String> {
        &self.children
    }

    fn is_unreferenced(&self) -> bool {
        !self.exists && self.parent.is_none() && self.children.is_empty() && self.anchors.is_empty()
    }
}

/// Every namespace and how they hang together.
#[derive(Clone, Debug, Default)]
pub struct Forest {
    namespaces: HashMap<String, NamespaceState>,
    excluded: HashSet<String>,
    /// Root namespace -> the Tenant that declares it.
    tenant_roots: HashMap<String, String>,
    /// Child name -> the namespaces holding an anchor of that name: what a namespace will
    /// be before the apiserver has even created it.
    anchored_in: HashMap<String, BTreeSet<String>>,
}

impl Forest {
    pub fn new() -> Self {
        Self::default()
    }

    // ---- updates (from watchers) ----

    /// Records that the Namespace object exists, with its labels.
    pub fn set_namespace(&mut self, name: &str, labels: BTreeMap<String, String>, deleting: bool) {
        let ns = self.entry(name);
        ns.exists = true;
        ns.deleting = deleting;
        ns.tenant = labels.get(keys::TENANT).cloned();
        ns.subnamespace_of = labels.get(keys::SUBNAMESPACE_OF).cloned();
        ns.labels = labels;
    }

    /// Records that the Namespace object is gone. Its HierarchyConfiguration went with it.
    pub fn remove_namespace(&mut self, name: &str) {
        self.set_parent(name, None);
        if let Some(ns) = self.namespaces.get_mut(name) {
            ns.exists = false;
            ns.deleting = false;
            ns.tenant = None;
            ns.subnamespace_of = None;
            ns.labels.clear();
            ns.allow_cascading_deletion = false;
            let anchors = std::mem::take(&mut ns.anchors);
            for anchor in anchors {
                self.forget_anchor(name, &anchor);
            }
        }
        self.forget_if_unreferenced(name);
    }

    /// Records a namespace's HierarchyConfiguration (`None` parent: a root).
    pub fn set_hierarchy(
        &mut self,
        name: &str,
        parent: Option<&str>,
        allow_cascading_deletion: bool,
    ) {
        let parent = parent.filter(|p| !p.is_empty());
        self.set_parent(name, parent);
        self.entry(name).allow_cascading_deletion = allow_cascading_deletion;
        self.forget_if_unreferenced(name);
    }

    /// Records that a namespace has no HierarchyConfiguration: it is a root.
    pub fn remove_hierarchy(&mut self, name: &str) {
        self.set_hierarchy(name, None, false);
    }

    /// Records the SubnamespaceAnchor `anchor` in `namespace`.
    pub fn add_anchor(&mut self, namespace: &str, anchor: &str) {
        self.entry(namespace).anchors.insert(anchor.to_owned());
        self.anchored_in
            .entry(anchor.to_owned())
            .or_default()
            .insert(namespace.to_owned());
    }

    pub fn remove_anchor(&mut self, namespace: &str, anchor: &str) {
        if let Some(ns) = self.namespaces.get_mut(namespace) {
            ns.anchors.remove(anchor);
        }
        self.forget_anchor(namespace, anchor);
        self.forget_if_unreferenced(namespace);
    }

    fn forget_anchor(&mut self, namespace: &str, anchor: &str) {
        if let Some(parents) = self.anchored_in.get_mut(anchor) {
            parents.remove(namespace);
            if parents.is_empty() {
                self.anchored_in.remove(anchor);
            }
        }
    }

    /// Replaces the set of excluded namespaces (from the CanopyConfiguration).
    pub fn set_excluded(&mut self, excluded: impl IntoIterator<Item = String>) {
        self.excluded = excluded.into_iter().collect();
    }

    /// Records that Tenant `tenant` has its root at `root` (replacing an earlier root).
    pub fn set_tenant_root(&mut self, tenant: &str, root: &str) {
        self.tenant_roots.retain(|_, t| t != tenant);
        self.tenant_roots.insert(root.to_owned(), tenant.to_owned());
    }

    /// Forgets Tenant `tenant`; returns the root it had.
    pub fn remove_tenant(&mut self, tenant: &str) -> Option<String> {
        let root = self
            .tenant_roots
            .iter()
            .find(|(_, t)| *t == tenant)
            .map(|(r, _)| r.clone())?;
        self.tenant_roots.remove(&root);
        Some(root)
    }

    // ---- queries ----

    /// Names of the Tenants with a root.
    pub fn tenants(&self) -> impl Iterator<Item = &str> {
        self.tenant_roots.values().map(String::as_str)
    }

    /// The Tenant whose root is `name` itself.
    pub fn tenant_rooted_at(&self, name: &str) -> Option<&str> {
        self.tenant_roots.get(name).map(String::as_str)
    }

    /// The root namespace of Tenant `tenant`.
    pub fn tenant_root(&self, tenant: &str) -> Option<&str> {
        self.tenant_roots
            .iter()
            .find(|(_, t)| *t == tenant)
            .map(|(r, _)| r.as_str())
    }

    /// The Tenant `name` belongs to: the nearest tenant root among itself and its
    /// ancestors. Excluded namespaces belong to none.
    ///
    /// A subnamespace canopy created is its tenant's from its first instant: until its
    /// parent is set, the top of its chain is taken to hang under the anchor's namespace.
    pub fn tenant_for(&self, name: &str) -> Option<&str> {
        if self.is_excluded(name) {
            return None;
        }
        let in_chain = |start: &str| {
            std::iter::once(start)
                .chain(self.ancestors(start))
                .find_map(|ns| self.tenant_rooted_at(ns))
        };
        in_chain(name).or_else(|| {
            let top = self.root(name);
            self.awaiting_anchor_parent(top)
                .filter(|p| !self.is_excluded(p))
                .and_then(in_chain)
        })
    }

    /// The Tenant a request in namespace `name` must be judged for, failing closed: where
    /// it sits in a tenant's tree; else the tenant its `canopy.dev/tenant` label names;
    /// else, for a subnamespace whose parent is not set yet (or that the namespace watch
    /// has not even delivered), the tenant of a namespace holding its anchor.
    pub fn tenant_of(&self, name: &str) -> Option<&str> {
        if self.is_excluded(name) {
            return None;
        }
        let state = self.namespaces.get(name);
        self.tenant_for(name)
            .or_else(|| state.and_then(|s| s.tenant.as_deref()))
            .or_else(|| {
                let anchored_in = self.anchored_in.get(name)?;
                // The parent named by the namespace's own label first, then any other.
                let labelled = state.and_then(|s| s.subnamespace_of.as_deref());
                labelled
                    .into_iter()
                    .filter(|p| anchored_in.contains(*p))
                    .chain(anchored_in.iter().map(String::as_str))
                    .find_map(|parent| self.tenant_for(parent))
            })
    }

    /// For the child of an anchor, created by canopy (it carries
    /// `canopy.dev/subnamespace-of: <parent>`) and whose parent is not set yet: the
    /// namespace holding the anchor, which is about to become its parent.
    pub fn awaiting_anchor_parent(&self, name: &str) -> Option<&str> {
        let state = self.namespaces.get(name)?;
        if state.parent.is_some() {
            return None;
        }
        state
            .subnamespace_of
            .as_deref()
            .filter(|p| self.get(p).is_some_and(|p| p.anchors.contains(name)))
    }

    /// The existing namespaces of Tenant `tenant`: its root's subtree, and subnamespaces
    /// of it whose parent is not set yet. What `maxNamespaces` counts.
    pub fn tenant_namespaces(&self, tenant: &str) -> BTreeSet<String> {
        let Some(root) = self.tenant_root(tenant) else {
            return BTreeSet::new();
        };
        let mut all: BTreeSet<String> = self
            .subtree(root)
            .into_iter()
            .filter(|ns| self.exists(ns) && self.tenant_for(ns) == Some(tenant))
            .map(str::to_owned)
            .collect();
        let pending: Vec<String> = all
            .iter()
            .flat_map(|ns| self.get(ns).into_iter().flat_map(|s| s.anchors.iter()))
            .filter(|child| self.exists(child) && self.awaiting_anchor_parent(child).is_some())
            .cloned()
            .collect();
        all.extend(pending);
        all
    }

    pub fn get(&self, name: &str) -> Option<&NamespaceState> {
        self.namespaces.get(name)
    }

    /// The namespace exists in the cluster.
    pub fn exists(&self, name: &str) -> bool {
        self.namespaces.get(name).is_some_and(|ns| ns.exists)
    }

    /// The excluded namespaces' names.
    pub fn excluded(&self) -> impl Iterator<Item = &str> {
        self.excluded.iter().map(String::as_str)
    }

    pub fn is_excluded(&self, name: &str) -> bool {
        self.excluded.contains(name)
    }

    /// Names of all existing namespaces.
    pub fn namespaces(&self) -> impl Iterator<Item = &str> {
        self.namespaces
            .iter()
            .filter(|(_, ns)| ns.exists)
            .map(|(name, _)| name.as_str())
    }

    pub fn parent(&self, name: &str) -> Option<&str> {
        self.namespaces.get(name)?.parent.as_deref()
    }

    /// Namespaces whose declared parent is `name`, sorted.
    pub fn children(&self, name: &str) -> impl Iterator<Item = &str> {
        self.namespaces
            .get(name)
            .into_iter()
            .flat_map(|ns| ns.children.iter().map(String::as_str))
    }

    /// Ancestors from the parent upwards. Stops before repeating itself, so a cycle
    /// yields each of its members once.
    pub fn ancestors(&self, name: &str) -> Vec<&str> {
        let mut seen = HashSet::from([name]);
        let mut chain = Vec::new();
        let mut current = name;
        while let Some(parent) = self.parent(current) {
            if !seen.insert(parent) {
                break;
            }
            chain.push(parent);
            current = parent;
        }
        chain
    }

    /// The members of the cycle `name` is part of, starting with `name`, if it is in one.
    pub fn cycle(&self, name: &str) -> Option<Vec<&str>> {
        let mut path = vec![self.namespaces.get_key_value(name)?.0.as_str()];
        // A set beside the path: `path.contains` made this O(depth²).
        let mut seen = HashSet::from([name]);
        let mut current = name;
        while let Some(parent) = self.parent(current) {
            if parent == name {
                return Some(path);
            }
            if !seen.insert(parent) {
                return None; // a cycle above us, not through us
            }
            path.push(parent);
            current = parent;
        }
        None
    }

    /// The topmost ancestor (`name` itself for a root). In a cycle, `name`.
    pub fn root<'a>(&'a self, name: &'a str) -> &'a str {
        if self.cycle(name).is_some() {
            return name;
        }
        self.ancestors(name).last().copied().unwrap_or(name)
    }

    /// Every descendant, breadth first, nearest first; never `name` itself, even in a cycle.
    pub fn descendants(&self, name: &str) -> Vec<&str> {
        let mut seen = HashSet::from([name]);
        let mut out = Vec::new();
        let mut next = 0;
        out.extend(self.children(name).filter(|c| seen.insert(c)));
        while next < out.len() {
            let current = out[next];
            next += 1;
            for child in self.children(current) {
                if seen.insert(child) {
                    out.push(child);
                }
            }
        }
        out
    }

    /// `name` and every descendant.
    pub fn subtree<'a>(&'a self, name: &'a str) -> Vec<&'a str> {
        let mut all = vec![name];
        all.extend(self.descendants(name));
        all
    }

    /// Whether `candidate` is a strict ancestor of `name`.
    pub fn is_ancestor(&self, candidate: &str, name: &str) -> bool {
        self.ancestors(name).contains(&candidate)
    }

    /// If making `new_parent` the parent of `name` would close a cycle, the cycle it would
    /// make: `name`, then the chain from `new_parent` back up to `name`.
    pub fn cycle_if_parent(&self, name: &str, new_parent: &str) -> Option<Vec<String>> {
        if new_parent == name {
            return Some(vec![name.to_owned(), name.to_owned()]);
        }
        let mut chain = vec![name.to_owned(), new_parent.to_owned()];
        for ancestor in self.ancestors(new_parent) {
            chain.push(ancestor.to_owned());
            if ancestor == name {
                return Some(chain);
            }
        }
        None
    }

    /// The deepest namespace that both `a` and `b` are in the subtree of (either may be it).
    pub fn common_ancestor<'a>(&'a self, a: &'a str, b: &'a str) -> Option<&'a str> {
        let mut of_a: Vec<&str> = vec![a];
        of_a.extend(self.ancestors(a));
        let mut of_b = HashSet::from([b]);
        of_b.extend(self.ancestors(b));
        of_a.into_iter().find(|ns| of_b.contains(ns))
    }

    /// Why nothing may be propagated into or out of `name`, if anything.
    pub fn halted(&self, name: &str) -> Option<HaltReason> {
        let ancestors = self.ancestors(name);
        // The walk up stops at a root, or where it would repeat itself. If it reached a
        // root, no namespace on it is in a cycle, and looking for one from each ancestor
        // (O(depth) each) would make this O(depth²) per namespace.
        let top = ancestors.last().copied().unwrap_or(name);
        let may_cycle = self.parent(top).is_some();
        self.own_halt_in(name, may_cycle).or_else(|| {
            ancestors
                .into_iter()
                .find(|a| self.own_halt_in(a, may_cycle).is_some())
                .map(|a| HaltReason::AncestorHalted {
                    ancestor: a.to_owned(),
                })
        })
    }

    /// The halt that `name` causes itself, ignoring its ancestors; cycles are looked for
    /// only if `may_cycle`.
    fn own_halt_in(&self, name: &str, may_cycle: bool) -> Option<HaltReason> {
        let ns = self.namespaces.get(name)?;
        if let Some(members) = may_cycle.then(|| self.cycle(name)).flatten() {
            return Some(HaltReason::InCycle {
                members: members.into_iter().map(str::to_owned).collect(),
            });
        }
        if let Some(parent) = ns.parent.as_deref() {
            if self.is_excluded(parent) || self.is_excluded(name) {
                return Some(HaltReason::IllegalParent {
                    parent: parent.to_owned(),
                });
            }
            if !self.exists(parent) {
                return Some(HaltReason::ParentMissing {
                    parent: parent.to_owned(),
                });
            }
        }
        if ns.deleting {
            return Some(HaltReason::Deleting);
        }
        None
    }

    /// The `<ancestor>.tree.canopy.dev/depth` labels `name` should carry: itself at 0 and
    /// each existing ancestor at its distance. Excluded namespaces carry none; a namespace
    /// in a cycle carries only its own (its ancestry has no top).
    ///
    /// A subnamespace whose parent is not set yet gets the labels it will have under its
    /// anchor's namespace, the ones canopy created it with.
    pub fn tree_labels(&self, name: &str) -> BTreeMap<String, String> {
        if let Some(parent) = self.awaiting_anchor_parent(name) {
            return self.tree_labels_as_child(name, parent);
        }
        let mut labels = BTreeMap::new();
        if self.is_excluded(name) {
            return labels;
        }
        labels.insert(keys::tree_depth_label(name), "0".to_owned());
        if self.cycle(name).is_some() {
            return labels;
        }
        self.add_ancestor_labels(&mut labels, self.ancestors(name));
        labels
    }

    /// The tree labels `name` will carry once it is a child of `parent`: what canopy
    /// creates a subnamespace with, so that it is in its tree from its first instant.
    pub fn tree_labels_as_child(&self, name: &str, parent: &str) -> BTreeMap<String, String> {
        let mut labels = BTreeMap::from([(keys::tree_depth_label(name), "0".to_owned())]);
        if self.is_excluded(name) {
            return BTreeMap::new();
        }
        if self.cycle(parent).is_some() || self.is_ancestor(name, parent) {
            return labels;
        }
        let mut chain = vec![parent];
        chain.extend(self.ancestors(parent));
        self.add_ancestor_labels(&mut labels, chain);
        labels
    }

    /// Depth labels for `chain` (parent first), stopping at a missing or excluded one.
    fn add_ancestor_labels(&self, labels: &mut BTreeMap<String, String>, chain: Vec<&str>) {
        for (depth, ancestor) in chain.into_iter().enumerate() {
            if !self.exists(ancestor) || self.is_excluded(ancestor) {
                break;
            }
            labels.insert(keys::tree_depth_label(ancestor), (depth + 1).to_string());
        }
    }

    /// Whether deleting `name` may delete its subnamespaces: set on it or an ancestor.
    pub fn allows_cascading_deletion(&self, name: &str) -> bool {
        std::iter::once(name).chain(self.ancestors(name)).any(|ns| {
            self.namespaces
                .get(ns)
                .is_some_and(|s| s.allow_cascading_deletion)
        })
    }

    /// How many namespaces are known (existing or referenced).
    pub fn len(&self) -> usize {
        self.namespaces.len()
    }

    pub fn is_empty(&self) -> bool {
        self.namespaces.is_empty()
    }

    // ---- internals ----

    fn entry(&mut self, name: &str) -> &mut NamespaceState {
        self.namespaces.entry(name.to_owned()).or_default()
    }

    fn set_parent(&mut self, name: &str, parent: Option<&str>) {
        let old = self.namespaces.get(name).and_then(|ns| ns.parent.clone());
        if old.as_deref() == parent {
            return;
        }
        if let Some(old) = old {
            if let Some(old_parent) = self.namespaces.get_mut(&old) {
                old_parent.children.remove(name);
            }
            self.forget_if_unreferenced(&old);
        }
        if let Some(parent) = parent {
            self.entry(parent).children.insert(name.to_owned());
        }
        self.entry(name).parent = parent.map(str::to_owned);
    }

    fn forget_if_unreferenced(&mut self, name: &str) {
        if self
            .namespaces
            .get(name)
            .is_some_and(NamespaceState::is_unreferenced)
        {
            self.namespaces.remove(name);
        }
    }
}
