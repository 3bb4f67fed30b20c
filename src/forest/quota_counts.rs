//! The watches behind generic object counts: an HRQ whose `spec.hard` names
//! `count/configmaps` or `count/deployments.apps` needs every object of that kind counted
//! per namespace, as the apiserver's generic quota evaluator counts them. This task starts
//! a watch of the kind's metadata (the count needs nothing else) when the first HRQ names
//! it, and stops it when the last one no longer does. Pods, Services and claims have
//! watches of their own (`watch.rs`).
//!
//! A kind that cannot be counted (no such kind, cluster-scoped, or canopy may not list
//! it) is recorded in the index with the reason, so the quota webhook refuses what it
//! cannot count with that reason instead of admitting it uncounted; it is tried again
//! every `RETRY`. Every kind that exists is published for the `quota.canopy.dev` rules
//! (`src/controllers/webhook_rules.rs`), counted or not: creating its objects must reach
//! the webhook either way.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kube::api::{Api, ListParams};
use kube::core::{ApiResource, DynamicObject, PartialObjectMeta};
use kube::discovery::{Scope, oneshot};
use kube::runtime::watcher;
use kube::{Client, Error};
use tokio::sync::watch;
use tracing::{info, warn};

use super::indexer;
use super::quota::{CountFeed, CountState, QuotaIndex};
use super::watch_health::{self, WatchHealth};
use crate::api::quota_usage;

/// How often a kind that could not be counted is tried again.
pub const RETRY: Duration = Duration::from_secs(10);

/// What discovery and one list say about a `count/...` name.
#[derive(Debug)]
enum Resolved {
    /// The kind exists and canopy may list it: watch it.
    Watch(ApiResource),
    /// The kind exists, but canopy cannot count it (the reason): its creates must still
    /// reach the webhook, to be refused.
    Refuse(ApiResource, String),
    /// No such namespaced kind (the reason): nothing can be created, nothing to count.
    Missing(String),
}

/// A running watch of one kind; dropping it stops the watch.
struct Running {
    resource: ApiResource,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Keeps a watch running for every generic object count an HRQ names, until dropped;
/// publishes the kinds that exist on `kinds`.
pub async fn run(
    client: Client,
    index: QuotaIndex,
    health: Arc<WatchHealth>,
    kinds: watch::Sender<Vec<ApiResource>>,
) {
    let mut running: BTreeMap<String, Running> = BTreeMap::new();
    let mut refused: BTreeMap<String, ApiResource> = BTreeMap::new();
    let mut tick = tokio::time::interval(RETRY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let wanted = index.generic_counts();
        running.retain(|name, _| wanted.contains(name));
        refused.retain(|name, _| wanted.contains(name));
        for name in index.count_names() {
            if !wanted.contains(&name) {
                index.forget_count(&name);
            }
        }
        for name in &wanted {
            if running.contains_key(name) {
                continue;
            }
            match resolve(&client, name).await {
                Resolved::Watch(resource) => {
                    refused.remove(name);
                    index.set_count_state(name, CountState::Listing);
                    info!(count = %name, kind = %resource.kind, "counting a kind for hierarchical quotas");
                    let task = tokio::spawn(watch_kind(
                        client.clone(),
                        resource.clone(),
                        CountFeed {
                            index: index.clone(),
                            name: name.clone(),
                        },
                        health.clone(),
                    ));
                    running.insert(name.clone(), Running { resource, task });
                }
                Resolved::Refuse(resource, why) => {
                    if index.count_problem(name).as_ref() != Some(&why) {
                        warn!(count = %name, reason = %why, "cannot count a kind for hierarchical quotas");
                    }
                    index.set_count_state(name, CountState::Unavailable(why));
                    refused.insert(name.clone(), resource);
                }
                Resolved::Missing(why) => {
                    index.set_count_state(name, CountState::Unavailable(why));
                }
            }
        }
        let mut published: Vec<ApiResource> = running
            .values()
            .map(|r| r.resource.clone())
            .chain(refused.values().cloned())
            .collect();
        published.sort_by(|a, b| (&a.group, &a.plural).cmp(&(&b.group, &b.plural)));
        kinds.send_if_modified(|current| {
            let same = current.len() == published.len()
                && current.iter().zip(&published).all(|(a, b)| {
                    (&a.group, &a.version, &a.plural) == (&b.group, &b.version, &b.plural)
                });
            if !same {
                *current = published;
            }
            !same
        });
        tokio::select! {
            () = index.hrqs_changed.notified() => {}
            _ = tick.tick() => {}
        }
    }
}

/// Feeds the metadata of every object of `resource` into `feed` until aborted.
async fn watch_kind(
    client: Client,
    resource: ApiResource,
    feed: CountFeed,
    health: Arc<WatchHealth>,
) {
    // `PartialObjectMeta` makes every request metadata-only.
    let api: Api<PartialObjectMeta<DynamicObject>> = Api::all_with(client, &resource);
    let events = watch_health::resilient(
        &health,
        format!("quota/{}", feed.name),
        watcher::watcher(api, watcher::Config::default().any_semantic()),
    );
    indexer::run(events, feed, |_| {}, || {}).await;
}

/// Finds the kind a `count/...` name counts, and whether canopy may list it.
async fn resolve(client: &Client, name: &str) -> Resolved {
    let Some((group, plural)) = quota_usage::counted_resource(name) else {
        return Resolved::Missing(format!("{name:?} is not an object count"));
    };
    let served = match oneshot::group(client, &group).await {
        Ok(served) => served,
        Err(Error::Discovery(_)) => {
            return Resolved::Missing(format!("the API group {group:?} is not served"));
        }
        Err(e) => return Resolved::Missing(format!("discovery failed: {e}")),
    };
    let Some((resource, capabilities)) = served
        .recommended_resources()
        .into_iter()
        .find(|(r, _)| r.plural == plural)
    else {
        return Resolved::Missing(format!(
            "the API group {group:?} serves no resource {plural:?}"
        ));
    };
    if capabilities.scope != Scope::Namespaced {
        return Resolved::Missing(format!(
            "{plural} are cluster-scoped; a hierarchical quota counts objects in namespaces"
        ));
    }
    let api: Api<PartialObjectMeta<DynamicObject>> = Api::all_with(client.clone(), &resource);
    match api.list(&ListParams::default().limit(1)).await {
        Ok(_) => Resolved::Watch(resource),
        Err(e) if crate::api::errors::is_forbidden(&e) => {
            let why = format!(
                "canopy may not list {plural}{}: grant get, list and watch on them in a \
                 ClusterRole labelled canopy.dev/aggregate-to-manager=true (docs/quota.md, \
                 \"Counting any kind\")",
                if group.is_empty() {
                    String::new()
                } else {
                    format!(".{group}")
                }
            );
            Resolved::Refuse(resource, why)
        }
        Err(e) => Resolved::Refuse(resource, format!("listing {plural} failed: {e}")),
    }
}
