//! `maxNamespaces` under concurrency: the leader's reservations of namespaces it is
//! creating and has not yet seen come back through the namespace watch.
//!
//! The anchor webhook counts what it knows and gives the fast answer; with anchors posted
//! at the same instant, or to two webhook replicas, it can admit more than fit. The
//! controller runs on one leader only and creates every subnamespace, so it is the
//! authority: before each create it reserves a place here, counting the tenant's
//! namespaces in the Forest plus the creates still in flight, under one lock.

use std::collections::{BTreeSet, HashMap};

use parking_lot::Mutex;

use super::{NamespaceLimit, Reason};

/// Per tenant, the subnamespaces being created that the Forest does not count yet.
#[derive(Debug, Default)]
pub struct NamespaceBudget {
    in_flight: Mutex<HashMap<String, BTreeSet<String>>>,
}

impl NamespaceBudget {
    pub fn new() -> Self {
        Self::default()
    }

    /// Reserves a place for `child` in `limit.tenant`, whose namespaces the Forest counts
    /// as `counted`; refuses when the tenant is full.
    pub fn reserve(
        &self,
        limit: &NamespaceLimit,
        child: &str,
        counted: &BTreeSet<String>,
    ) -> Result<(), Reason> {
        let mut in_flight = self.in_flight.lock();
        let pending = in_flight.entry(limit.tenant.clone()).or_default();
        // Creates the Forest has caught up with are counted there now.
        pending.retain(|ns| !counted.contains(ns));
        if counted.contains(child) || pending.contains(child) {
            return Ok(());
        }
        let count = counted.len() + pending.len();
        if count >= limit.max as usize {
            return Err(limit.refusal(count));
        }
        pending.insert(child.to_owned());
        Ok(())
    }

    /// Gives back the place of a create that did not happen.
    pub fn release(&self, tenant: &str, child: &str) {
        let mut in_flight = self.in_flight.lock();
        if let Some(pending) = in_flight.get_mut(tenant) {
            pending.remove(child);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(max: u32) -> NamespaceLimit {
        NamespaceLimit {
            tenant: "acme".to_owned(),
            max,
        }
    }

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn creates_in_flight_count_until_the_forest_sees_them() {
        let budget = NamespaceBudget::new();
        let forest = set(&["acme"]);
        assert_eq!(budget.reserve(&limit(3), "a", &forest), Ok(()));
        assert_eq!(budget.reserve(&limit(3), "b", &forest), Ok(()));
        let refused = budget.reserve(&limit(3), "c", &forest).expect_err("full");
        assert!(refused.message.contains("at most 3"), "{}", refused.message);
        // Reserving again for the same child is not a second place.
        assert_eq!(budget.reserve(&limit(3), "a", &forest), Ok(()));
        // The Forest caught up with a; b's create failed: room for c.
        budget.release("acme", "b");
        assert_eq!(budget.reserve(&limit(3), "c", &set(&["acme", "a"])), Ok(()));
        assert!(
            budget
                .reserve(&limit(3), "d", &set(&["acme", "a"]))
                .is_err()
        );
    }

    #[test]
    fn concurrent_reservations_never_exceed_the_limit() {
        let budget = std::sync::Arc::new(NamespaceBudget::new());
        let granted: usize = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..20)
                .map(|i| {
                    let budget = budget.clone();
                    scope.spawn(move || {
                        budget
                            .reserve(&limit(5), &format!("ns-{i}"), &set(&["acme"]))
                            .is_ok()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or(false))
                .filter(|ok| *ok)
                .count()
        });
        assert_eq!(granted, 4, "the root and four more");
    }
}
