//! The trees a user who may not list namespaces cluster-wide can still see, as a tenant
//! owner usually cannot: the trees of the Tenants they may read. canopy gives each
//! Tenant's owners a ClusterRole allowing `get` on that Tenant by name; a
//! SelfSubjectRulesReview lists those names (RBAC cannot filter a plain list), each Tenant
//! names its root, and each root is walked as `tree NAMESPACE` walks it.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::authorization::v1::{
    ResourceRule, SelfSubjectRulesReview, SelfSubjectRulesReviewSpec,
};
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};

use super::snapshot::Snapshot;
use super::walk;
use crate::api::{GROUP, Tenant};

/// Which Tenants the rules let the user get.
#[derive(Debug, PartialEq, Eq)]
pub enum Gettable {
    /// Every Tenant (a rule without `resourceNames`): list them.
    All,
    /// Only these, by name.
    Named(BTreeSet<String>),
}

/// The Tenants `rules` (a SelfSubjectRulesReview's resource rules) allow getting. Pure.
pub fn gettable_tenants(rules: &[ResourceRule]) -> Gettable {
    let mut names = BTreeSet::new();
    for rule in rules {
        let matches =
            |values: &[String], wanted: &str| values.iter().any(|v| v == wanted || v == "*");
        if !matches(&rule.api_groups.clone().unwrap_or_default(), GROUP)
            || !matches(&rule.resources.clone().unwrap_or_default(), "tenants")
            || !matches(&rule.verbs, "get")
        {
            continue;
        }
        match rule.resource_names.as_deref() {
            None | Some([]) => return Gettable::All,
            Some(named) => names.extend(named.iter().cloned()),
        }
    }
    Gettable::Named(names)
}

/// The root namespaces of the Tenants the user may read, sorted; empty when there are
/// none or the question cannot be asked. `review_namespace` is any namespace (the review
/// needs one; the rules that matter are cluster-wide).
pub async fn tenant_roots(client: &Client, review_namespace: &str) -> Vec<String> {
    let reviews: Api<SelfSubjectRulesReview> = Api::all(client.clone());
    let review = SelfSubjectRulesReview {
        spec: SelfSubjectRulesReviewSpec {
            namespace: Some(if review_namespace.is_empty() {
                "default".to_owned()
            } else {
                review_namespace.to_owned()
            }),
        },
        ..SelfSubjectRulesReview::default()
    };
    let Ok(answer) = reviews.create(&PostParams::default(), &review).await else {
        return Vec::new();
    };
    let rules = answer.status.map(|s| s.resource_rules).unwrap_or_default();
    let tenants: Api<Tenant> = Api::all(client.clone());
    let found: Vec<Tenant> = match gettable_tenants(&rules) {
        Gettable::All => tenants
            .list(&ListParams::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default(),
        Gettable::Named(names) => {
            let mut found = Vec::new();
            for name in names {
                if let Ok(Some(tenant)) = tenants.get_opt(&name).await {
                    found.push(tenant);
                }
            }
            found
        }
    };
    let roots: BTreeSet<String> = found
        .iter()
        .map(|t| {
            t.status
                .as_ref()
                .and_then(|s| s.root_namespace.clone())
                .unwrap_or_else(|| t.root_namespace())
        })
        .collect();
    roots.into_iter().collect()
}

/// The trees below `roots` as far as the user may read them, in one Snapshot; `None`
/// when not one root could be read.
pub async fn walk_roots(client: &Client, roots: &[String]) -> Option<Snapshot> {
    let mut visits = BTreeMap::new();
    let mut any = false;
    for root in roots {
        any |= walk::collect(client, root, &mut visits).await.is_ok();
    }
    any.then(|| walk::assemble(visits))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(groups: &[&str], resources: &[&str], verbs: &[&str], names: &[&str]) -> ResourceRule {
        let strings = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        ResourceRule {
            api_groups: Some(strings(groups)),
            resources: Some(strings(resources)),
            verbs: strings(verbs),
            resource_names: (!names.is_empty()).then(|| strings(names)),
        }
    }

    #[test]
    fn an_owner_gets_the_tenants_named_in_their_rules() {
        let rules = [
            rule(&["canopy.dev"], &["tenants"], &["get", "watch"], &["acme"]),
            rule(&["canopy.dev"], &["tenants"], &["get"], &["globex"]),
            // Not get, or not tenants: no help.
            rule(&["canopy.dev"], &["tenants"], &["watch"], &["initech"]),
            rule(&["canopy.dev"], &["subnamespaceanchors"], &["get"], &[]),
            rule(&[""], &["namespaces"], &["get"], &["acme"]),
        ];
        assert_eq!(
            gettable_tenants(&rules),
            Gettable::Named(["acme".to_owned(), "globex".to_owned()].into())
        );
    }

    #[test]
    fn a_rule_without_names_or_with_wildcards_allows_every_tenant() {
        assert_eq!(
            gettable_tenants(&[rule(&["canopy.dev"], &["tenants"], &["get"], &[])]),
            Gettable::All
        );
        assert_eq!(
            gettable_tenants(&[rule(&["*"], &["*"], &["*"], &[])]),
            Gettable::All
        );
        assert_eq!(gettable_tenants(&[]), Gettable::Named(BTreeSet::new()));
    }
}
