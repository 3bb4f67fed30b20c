//! HierarchicalResourceQuota usage for `tree` and `describe`: fetched best effort (a user
//! who may not list HRQs somewhere, or a cluster without the CRD, just sees none), then
//! rendered by pure functions.

use std::collections::BTreeMap;

use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};

use crate::api::HierarchicalResourceQuota;

/// Per namespace, `name: used/hard, ...` of each HRQ in it.
pub type Quotas = BTreeMap<String, Vec<String>>;

/// One HRQ as a line: its name and usage (`pods: 3/5, requests.cpu: 300m/1`).
pub fn line(hrq: &HierarchicalResourceQuota) -> String {
    let status = hrq.status.clone().unwrap_or_default();
    let usage: Vec<String> = [status.requests_summary, status.limits_summary]
        .into_iter()
        .flatten()
        .filter(|s| !s.is_empty())
        .collect();
    if usage.is_empty() || status.hard != hrq.spec.hard {
        format!("{}: not counted yet", hrq.name_any())
    } else {
        format!("{}: {}", hrq.name_any(), usage.join(", "))
    }
}

/// The HRQs of `namespaces`: one cluster-wide list if allowed, else one list per
/// namespace; what cannot be read is left out.
pub async fn load(client: &Client, namespaces: &[&str]) -> Quotas {
    let mut quotas = Quotas::new();
    let all: Api<HierarchicalResourceQuota> = Api::all(client.clone());
    let items = match all.list(&ListParams::default()).await {
        Ok(list) => list.items,
        Err(_) => {
            let mut items = Vec::new();
            for ns in namespaces {
                let api: Api<HierarchicalResourceQuota> = Api::namespaced(client.clone(), ns);
                if let Ok(list) = api.list(&ListParams::default()).await {
                    items.extend(list.items);
                }
            }
            items
        }
    };
    for hrq in items {
        let Some(ns) = hrq.namespace() else { continue };
        if namespaces.contains(&ns.as_str()) {
            quotas.entry(ns).or_default().push(line(&hrq));
        }
    }
    quotas
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_shows_usage_or_that_it_is_not_counted() {
        let hrq: HierarchicalResourceQuota = serde_json::from_value(serde_json::json!({
            "apiVersion": "canopy.dev/v1alpha1", "kind": "HierarchicalResourceQuota",
            "metadata": {"name": "budget", "namespace": "acme"},
            "spec": {"hard": {"pods": "5", "limits.cpu": "2"}},
            "status": {"hard": {"pods": "5", "limits.cpu": "2"}, "requestsSummary": "pods: 3/5",
                       "limitsSummary": "limits.cpu: 1/2"}
        }))
        .expect("hrq");
        assert_eq!(line(&hrq), "budget: pods: 3/5, limits.cpu: 1/2");
        let mut fresh = hrq.clone();
        fresh.status = None;
        assert_eq!(line(&fresh), "budget: not counted yet");
    }
}
