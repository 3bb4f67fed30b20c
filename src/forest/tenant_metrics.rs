//! Per-tenant series, `canopy_tenant_*`: what an operator watches per tenant (its
//! namespaces and their limit, the copies canopy keeps in them, its quota, what canopy's
//! webhooks refused it), computed from the model rather than asked of the apiserver.
//!
//! The gauges are set by the leader (`controllers::tenant_metrics`, every 2 s);
//! followers export none, so `sum by (tenant)` over the replicas is the figure and a
//! dashboard needs no deduplication. The refusal counter is incremented by whichever
//! replica's webhook refused. A Tenant that goes loses every series, the counter's
//! included, on every replica.
//!
//! Cardinality is bounded by what canopy chooses: one series per Tenant (and per quota
//! resource it names, per policy), never per namespace or object.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::AtomicU64;

use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::Forest;
use super::propagated::KindIndex;

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
struct TenantLabels {
    tenant: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
struct ResourceLabels {
    tenant: String,
    resource: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
struct RefusalLabels {
    tenant: String,
    policy: &'static str,
}

/// One Tenant's figures, from the model.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TenantFigures {
    /// Its existing namespaces, root included: what `maxNamespaces` counts.
    pub namespaces: usize,
    /// `spec.maxNamespaces`; `None` when unlimited.
    pub max_namespaces: Option<u32>,
    /// Copies canopy keeps in its namespaces, over every propagated kind.
    pub propagated_copies: usize,
    /// Its tenant quota (`spec.quota`, the HRQ `canopy-tenant-quota`): `(resource, hard,
    /// used)` in units (cores, bytes, objects). Empty without one.
    pub quota: Vec<(String, f64, f64)>,
}

/// The figures of every Tenant, counted in two steps so that no two of the model's locks
/// are held at once: `new` reads the Forest, `count_copies` one kind's index at a time.
pub struct Tally {
    figures: BTreeMap<String, TenantFigures>,
    /// Each namespace's tenant, so the copies are counted in one pass per kind.
    tenant_of: HashMap<String, String>,
}

impl Tally {
    /// The namespaces of every Tenant in `tenants` (name and `maxNamespaces`). Pure.
    pub fn new<'a>(
        forest: &Forest,
        tenants: impl IntoIterator<Item = (&'a str, Option<u32>)>,
    ) -> Self {
        let mut figures = BTreeMap::new();
        let mut tenant_of = HashMap::new();
        for (tenant, max_namespaces) in tenants {
            let namespaces = forest.tenant_namespaces(tenant);
            figures.insert(
                tenant.to_owned(),
                TenantFigures {
                    namespaces: namespaces.len(),
                    max_namespaces,
                    ..TenantFigures::default()
                },
            );
            for ns in namespaces {
                tenant_of.insert(ns, tenant.to_owned());
            }
        }
        Self { figures, tenant_of }
    }

    /// Adds the copies of one propagated kind in each Tenant's namespaces.
    pub fn count_copies(&mut self, index: &KindIndex) {
        for ns in index.copy_namespaces() {
            let Some(tenant) = self.tenant_of.get(ns.as_str()) else {
                continue;
            };
            if let Some(figures) = self.figures.get_mut(tenant) {
                figures.propagated_copies += index.copies_in(ns).count();
            }
        }
    }

    /// The figures; `quota` is left empty (the caller counts it).
    pub fn into_figures(self) -> BTreeMap<String, TenantFigures> {
        self.figures
    }
}

/// What the series held at the last `set`, so a Tenant (or a quota resource) that went
/// loses its series.
#[derive(Default)]
struct Known {
    tenants: BTreeSet<TenantLabels>,
    limited: BTreeSet<TenantLabels>,
    resources: BTreeSet<ResourceLabels>,
    refusals: BTreeSet<RefusalLabels>,
}

#[derive(Default)]
pub struct TenantMetrics {
    namespaces: Family<TenantLabels, Gauge>,
    namespaces_max: Family<TenantLabels, Gauge>,
    propagated_copies: Family<TenantLabels, Gauge>,
    quota_hard: Family<ResourceLabels, Gauge<f64, AtomicU64>>,
    quota_used: Family<ResourceLabels, Gauge<f64, AtomicU64>>,
    refusals: Family<RefusalLabels, Counter>,
    known: Mutex<Known>,
}

fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl TenantMetrics {
    /// Adds the series to `registry` (under its prefix, `canopy_tenant` in the manager's).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "namespaces",
            "Namespaces of each Tenant, root included (what maxNamespaces counts); set by the leader",
            self.namespaces.clone(),
        );
        registry.register(
            "namespaces_max",
            "spec.maxNamespaces of each Tenant; no series for a Tenant without a limit",
            self.namespaces_max.clone(),
        );
        registry.register(
            "propagated_copies",
            "Copies canopy keeps in each Tenant's namespaces, over every propagated kind",
            self.propagated_copies.clone(),
        );
        registry.register(
            "quota_hard",
            "The tenant quota (spec.quota) of each Tenant, by resource, in units (cores, bytes, objects)",
            self.quota_hard.clone(),
        );
        registry.register(
            "quota_used",
            "Usage over each Tenant's tree against its tenant quota, by resource, in units",
            self.quota_used.clone(),
        );
        registry.register(
            "policy_refusals",
            "Requests in a Tenant's namespaces refused by canopy's webhooks, by policy \
             (hostPath, resources, reclaimPolicy, guardrails, quota)",
            self.refusals.clone(),
        );
    }

    /// Sets the gauges of every Tenant in `all`, and drops those of Tenants (and quota
    /// resources, and limits) no longer there.
    pub fn set(&self, all: &BTreeMap<String, TenantFigures>) {
        let mut tenants = BTreeSet::new();
        let mut limited = BTreeSet::new();
        let mut resources = BTreeSet::new();
        for (tenant, figures) in all {
            let labels = TenantLabels {
                tenant: tenant.clone(),
            };
            self.namespaces
                .get_or_create(&labels)
                .set(count(figures.namespaces));
            self.propagated_copies
                .get_or_create(&labels)
                .set(count(figures.propagated_copies));
            if let Some(max) = figures.max_namespaces {
                self.namespaces_max
                    .get_or_create(&labels)
                    .set(i64::from(max));
                limited.insert(labels.clone());
            }
            tenants.insert(labels);
            for (resource, hard, used) in &figures.quota {
                let labels = ResourceLabels {
                    tenant: tenant.clone(),
                    resource: resource.clone(),
                };
                self.quota_hard.get_or_create(&labels).set(*hard);
                self.quota_used.get_or_create(&labels).set(*used);
                resources.insert(labels);
            }
        }
        let mut known = self.known.lock();
        for gone in known.tenants.difference(&tenants) {
            self.namespaces.remove(gone);
            self.propagated_copies.remove(gone);
        }
        for gone in known.limited.difference(&limited) {
            self.namespaces_max.remove(gone);
        }
        for gone in known.resources.difference(&resources) {
            self.quota_hard.remove(gone);
            self.quota_used.remove(gone);
        }
        known.tenants = tenants;
        known.limited = limited;
        known.resources = resources;
    }

    /// Counts one request refused by `policy` in a namespace of `tenant`.
    pub fn record_refusal(&self, tenant: &str, policy: &'static str) {
        let labels = RefusalLabels {
            tenant: tenant.to_owned(),
            policy,
        };
        self.refusals.get_or_create(&labels).inc();
        self.known.lock().refusals.insert(labels);
    }

    /// Drops the refusal counters of Tenants not in `tenants` (every replica calls it:
    /// each counts its own webhooks' refusals).
    pub fn retain_refusals(&self, tenants: &BTreeSet<String>) {
        let mut known = self.known.lock();
        known.refusals.retain(|labels| {
            let keep = tenants.contains(&labels.tenant);
            if !keep {
                self.refusals.remove(labels);
            }
            keep
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forest::propagated::CopyState;
    use crate::forest::testing::tree;

    fn copy() -> CopyState {
        CopyState {
            inherited_from: "acme".to_owned(),
            hash: None,
            clean: true,
        }
    }

    fn encoded(metrics: &TenantMetrics) -> String {
        let mut registry = Registry::default();
        metrics.register(registry.sub_registry_with_prefix("canopy_tenant"));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encodes");
        text
    }

    #[test]
    fn figures_count_each_tenants_namespaces_and_the_copies_in_them() {
        let forest = tree("acme* > acme-dev > acme-dev-ci, acme > acme-prod, beta*, other");
        let mut roles = KindIndex::default();
        for ns in ["acme-dev", "acme-dev-ci", "acme-prod", "other"] {
            roles.set_copy(ns, "reader", copy());
        }
        let mut bindings = KindIndex::default();
        bindings.set_copy("acme-dev", "owners", copy());
        let mut tally = Tally::new(
            &forest,
            [("acme", Some(5)), ("beta", None), ("gone", Some(2))],
        );
        tally.count_copies(&roles);
        tally.count_copies(&bindings);
        let all = tally.into_figures();
        assert_eq!(
            all["acme"],
            TenantFigures {
                namespaces: 4,
                max_namespaces: Some(5),
                // `other` belongs to no tenant: its copy is nobody's.
                propagated_copies: 4,
                quota: Vec::new(),
            }
        );
        assert_eq!(all["beta"].namespaces, 1);
        assert_eq!(all["beta"].propagated_copies, 0);
        // A Tenant whose root is not in the Forest (not created yet) has nothing.
        assert_eq!(all["gone"].namespaces, 0);
        assert_eq!(all.len(), 3);
    }

    #[test]
    fn series_follow_the_tenants_and_an_unlimited_tenant_has_no_max() {
        let metrics = TenantMetrics::default();
        let acme = TenantFigures {
            namespaces: 3,
            max_namespaces: Some(5),
            propagated_copies: 2,
            quota: vec![("pods".to_owned(), 10.0, 4.0)],
        };
        let beta = TenantFigures {
            namespaces: 1,
            ..TenantFigures::default()
        };
        metrics.set(&BTreeMap::from([
            ("acme".to_owned(), acme.clone()),
            ("beta".to_owned(), beta),
        ]));
        metrics.record_refusal("beta", "hostPath");
        metrics.record_refusal("beta", "hostPath");
        let text = encoded(&metrics);
        for series in [
            r#"canopy_tenant_namespaces{tenant="acme"} 3"#,
            r#"canopy_tenant_namespaces_max{tenant="acme"} 5"#,
            r#"canopy_tenant_propagated_copies{tenant="acme"} 2"#,
            r#"canopy_tenant_quota_hard{tenant="acme",resource="pods"} 10.0"#,
            r#"canopy_tenant_quota_used{tenant="acme",resource="pods"} 4.0"#,
            r#"canopy_tenant_namespaces{tenant="beta"} 1"#,
            r#"canopy_tenant_policy_refusals_total{tenant="beta",policy="hostPath"} 2"#,
        ] {
            assert!(text.contains(series), "{series} missing from:\n{text}");
        }
        assert!(
            !text.contains(r#"canopy_tenant_namespaces_max{tenant="beta"}"#),
            "{text}"
        );
        // beta goes, and acme loses its limit and its quota.
        metrics.set(&BTreeMap::from([(
            "acme".to_owned(),
            TenantFigures {
                max_namespaces: None,
                quota: Vec::new(),
                ..acme
            },
        )]));
        metrics.retain_refusals(&BTreeSet::from(["acme".to_owned()]));
        let text = encoded(&metrics);
        assert!(!text.contains("beta"), "{text}");
        assert!(!text.contains("canopy_tenant_namespaces_max{"), "{text}");
        assert!(!text.contains("canopy_tenant_quota_used{"), "{text}");
        assert!(
            text.contains(r#"canopy_tenant_namespaces{tenant="acme"} 3"#),
            "{text}"
        );
    }
}
