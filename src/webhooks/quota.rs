//! HierarchicalResourceQuota admission: the one webhook that writes.
//!
//! A Pod, Service or PersistentVolumeClaim created (or grown: a Pod resize, a claim
//! expansion), or an object of a kind an HRQ counts (`count/configmaps`), created in a
//! namespace under one or more HRQs is admitted only after its usage has
//! been **reserved** on every one of them: the webhook reads the HRQ from the apiserver,
//! refuses the object when `status.used` plus the request would exceed `spec.hard`, and
//! otherwise replaces the HRQ's status with the usage added and a reservation recorded,
//! on the resourceVersion it read (a compare-and-swap, retried on conflict a bounded
//! number of times). This is what the apiserver's own ResourceQuota admission does
//! (`checkQuotas` in `k8s.io/apiserver/pkg/admission/plugin/resourcequota`), and why the
//! limit holds with concurrent creates in many namespaces and with several replicas. The
//! recount controller (`src/controllers/quota/`) releases reservations whose object was
//! counted or never appeared.
//!
//! The same path checks HRQs themselves: only canopy may write a tenant's
//! `canopy-tenant-quota`, and `spec.hard` may name only what canopy counts.

use std::time::{Duration, Instant};

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Client;
use kube::ResourceExt;
use kube::api::{Api, PostParams};
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, Operation};

use super::Webhooks;
use super::review::Verdict;
use crate::api::MOVE_RESOURCE;
use crate::api::keys::FIELD_MANAGER;
use crate::api::quota_usage::{self, Amounts};
use crate::api::{
    GROUP, HierarchicalResourceQuota, HierarchicalResourceQuotaStatus, QuotaReservation,
    TENANT_QUOTA,
};

/// How long a reservation holds without its object appearing.
pub const RESERVATION_TTL: SignedDuration = SignedDuration::from_secs(30);
/// Compare-and-swap attempts per HRQ before giving up (failing closed).
const MAX_ATTEMPTS: u32 = 40;
/// All reservations of one request must be done by then (the webhook's timeout is 10 s).
const DEADLINE: Duration = Duration::from_secs(8);

/// Writes reservations; without a client (benchmarks, tests) every reservation fails.
#[derive(Clone)]
pub struct QuotaWriter {
    client: Option<Client>,
}

impl QuotaWriter {
    pub fn new(client: Client) -> Self {
        Self {
            client: Some(client),
        }
    }

    pub fn detached() -> Self {
        Self { client: None }
    }
}

/// What one HRQ says about a request.
#[derive(Debug, PartialEq)]
pub enum Decision {
    /// The HRQ counts none of what the object adds.
    NotConcerned,
    /// Refused, with the message.
    Refuse(String),
    /// Admissible: the HRQ's status with the usage added and the reservation recorded.
    Reserve(Box<HierarchicalResourceQuotaStatus>),
}

/// Decides one HRQ for an object that adds `increase` and will use `usage`.
pub fn decide(
    hrq: &HierarchicalResourceQuota,
    what: &str,
    increase: &Amounts,
    usage: &Amounts,
    mut reservation: QuotaReservation,
) -> Decision {
    let namespace = hrq.namespace().unwrap_or_default();
    let name = hrq.name_any();
    let Ok(hard) = quota_usage::parse_list(&hrq.spec.hard) else {
        return Decision::Refuse(format!(
            "{what} refused by canopy: HierarchicalResourceQuota {name:?} in namespace \
             {namespace:?} has a spec.hard that is not a list of quantities; ask its owner to fix it"
        ));
    };
    let requested = quota_usage::restrict(increase, &hard);
    if requested.is_empty() {
        return Decision::NotConcerned;
    }
    let status = hrq.status.clone().unwrap_or_default();
    let used = quota_usage::parse_list(&status.used).unwrap_or_default();
    if status.hard != hrq.spec.hard || requested.keys().any(|r| !used.contains_key(r)) {
        return Decision::Refuse(format!(
            "{what} refused by canopy: HierarchicalResourceQuota {name:?} in namespace \
             {namespace:?} has not been counted yet (it is new or its spec.hard changed); \
             retry in a moment"
        ));
    }
    let over: Vec<String> = requested
        .iter()
        .filter_map(|(resource, more)| {
            let have = used.get(resource).copied().unwrap_or(0);
            let limit = hard.get(resource).copied().unwrap_or(0);
            (have + more > limit).then(|| {
                format!(
                    "{resource}: requested {}, used {}, hard {}",
                    quota_usage::format_milli(*more),
                    quota_usage::format_milli(have),
                    quota_usage::format_milli(limit)
                )
            })
        })
        .collect();
    if !over.is_empty() {
        return Decision::Refuse(format!(
            "{what} refused by canopy: exceeded hierarchical quota {name:?} in namespace \
             {namespace:?} ({}); free some of it in that namespace's subtree or ask for a larger quota",
            over.join("; ")
        ));
    }
    let mut used = used;
    quota_usage::add(&mut used, &requested);
    reservation.usage = quota_usage::format_list(&quota_usage::restrict(usage, &hard));
    let mut status = status;
    status.reservations.retain(|r| r.uid != reservation.uid);
    status.reservations.push(reservation);
    status.used = quota_usage::format_list(&used);
    let (requests, limits) = quota_usage::summaries(&used, &hard);
    status.requests_summary = (!requests.is_empty()).then_some(requests);
    status.limits_summary = (!limits.is_empty()).then_some(limits);
    Decision::Reserve(Box::new(status))
}

/// The admission review of the `quota.canopy.dev` webhook.
pub async fn review(webhooks: &Webhooks, request: &AdmissionRequest<DynamicObject>) -> Verdict {
    if request.resource.group == GROUP && request.resource.resource == "hierarchicalresourcequotas"
    {
        return review_hrq(webhooks, request);
    }
    let verdict = review_usage(webhooks, request).await;
    if matches!(verdict, Verdict::Deny(_))
        && let Some(namespace) = request.namespace.as_deref()
    {
        let tenant = webhooks
            .state
            .forest()
            .tenant_of(namespace)
            .map(str::to_owned);
        if let Some(tenant) = tenant {
            webhooks.metrics.record_quota_refusal(&tenant);
        }
    }
    verdict
}

/// Only canopy writes a tenant's quota; `spec.hard` names only what canopy counts.
fn review_hrq(webhooks: &Webhooks, request: &AdmissionRequest<DynamicObject>) -> Verdict {
    let namespace = request.namespace.as_deref().unwrap_or_default();
    let name = &request.name;
    if webhooks.is_canopy(&request.user_info) {
        return Verdict::Allow;
    }
    if name == TENANT_QUOTA {
        let forest = webhooks.state.forest();
        let going = forest.get(namespace).is_none_or(|s| s.deleting);
        if let Some(tenant) = forest.tenant_rooted_at(namespace)
            && !(request.operation == Operation::Delete && going)
        {
            return Verdict::Deny(format!(
                "HierarchicalResourceQuota {namespace}/{name} is the quota of Tenant {tenant:?} \
                 and is written by canopy from its spec.quota; change the Tenant instead (a \
                 team may add HierarchicalResourceQuotas of its own in its namespaces)"
            ));
        }
    }
    if !matches!(request.operation, Operation::Create | Operation::Update) {
        return Verdict::Allow;
    }
    if request.operation == Operation::Create
        && webhooks.state.forest().tenant_for(namespace).is_none()
    {
        return Verdict::Deny(format!(
            "HierarchicalResourceQuota {namespace}/{name}: namespace {namespace:?} belongs to \
             no tenant; HierarchicalResourceQuotas are enforced in tenants' namespaces only (the \
             quota webhook is called only there, so that a canopy outage never blocks Pods \
             outside every tenant); create it in a tenant's namespace"
        ));
    }
    let hrq = match request
        .object
        .clone()
        .map(|o| o.try_parse::<HierarchicalResourceQuota>())
    {
        Some(Ok(hrq)) => hrq,
        Some(Err(e)) => {
            return Verdict::Deny(format!(
                "HierarchicalResourceQuota {namespace}/{name} is malformed: {e}"
            ));
        }
        None => return Verdict::Allow,
    };
    let mut problems = Vec::new();
    for (resource, quantity) in &hrq.spec.hard {
        if !quota_usage::is_supported(resource) {
            problems.push(format!(
                "{resource:?} is not counted by canopy (it counts pods, services, \
                 persistentvolumeclaims, count/<resource>[.<group>] of any namespaced kind, \
                 requests.*, limits.*, cpu, memory, ephemeral-storage, requests.storage and \
                 per-storage-class claims)"
            ));
        }
        match quota_usage::parse_milli(&quantity.0) {
            None => problems.push(format!("{resource}: {:?} is not a quantity", quantity.0)),
            Some(v) if v < 0 => problems.push(format!("{resource}: must not be negative")),
            Some(_) => {}
        }
    }
    if problems.is_empty() {
        Verdict::Allow
    } else {
        Verdict::Deny(format!(
            "HierarchicalResourceQuota {namespace}/{name}: spec.hard: {}",
            problems.join("; ")
        ))
    }
}

/// Reserves what a Pod, Service or PersistentVolumeClaim adds on every HRQ above it.
async fn review_usage(webhooks: &Webhooks, request: &AdmissionRequest<DynamicObject>) -> Verdict {
    if !matches!(request.operation, Operation::Create | Operation::Update) {
        return Verdict::Allow;
    }
    let subresource = request.sub_resource.as_deref().unwrap_or_default();
    if !(subresource.is_empty() || subresource == "resize") {
        return Verdict::Allow;
    }
    let (Some(namespace), Some(object)) = (request.namespace.as_deref(), request.object.as_ref())
    else {
        return Verdict::Allow;
    };
    let resource = request.resource.resource.as_str();
    let hrqs = {
        let forest = webhooks.state.forest();
        if forest.is_excluded(namespace) {
            return Verdict::Allow;
        }
        webhooks.state.quota.over(&forest, namespace)
    };
    if hrqs.is_empty() {
        return Verdict::Allow;
    }
    let kind = request.kind.kind.as_str();
    let name = object.metadata.name.clone().unwrap_or(request.name.clone());
    let what = format!("{kind} {namespace}/{name}");
    let group = request.resource.group.as_str();
    let usage_of = |o: &DynamicObject| match serde_json::to_value(o) {
        // Pods, Services and claims of the core group have evaluators of their own.
        Ok(v) if group.is_empty() => quota_usage::usage_of(resource, v),
        Ok(_) => None,
        Err(e) => Some(Err(e.to_string())),
    };
    let usage = match usage_of(object) {
        Some(Ok(usage)) => usage,
        Some(Err(e)) => return Verdict::Deny(format!("{what} is malformed: {e}")),
        // Any other kind counts one object, when it is created (`count/<resource>`).
        None if request.operation == Operation::Create && subresource.is_empty() => {
            quota_usage::object_count(group, resource)
        }
        None => return Verdict::Allow,
    };
    if let Some(refusal) = uncountable(webhooks, &hrqs, &usage, &what) {
        return Verdict::Deny(refusal);
    }
    let old = match (
        &request.operation,
        request.old_object.as_ref().map(usage_of),
    ) {
        (Operation::Update, Some(Some(Ok(old)))) => old,
        _ => Amounts::new(),
    };
    let increase = quota_usage::increase(&old, &usage);
    if increase.is_empty() {
        return Verdict::Allow;
    }
    let reservation = QuotaReservation {
        // Set before validating admission; without one (never from the apiserver) the
        // reservation simply lapses.
        uid: object.metadata.uid.clone().unwrap_or(request.uid.clone()),
        namespace: namespace.to_owned(),
        name: name.clone(),
        resource: resource.to_owned(),
        usage: Default::default(),
        expires: (Timestamp::now() + RESERVATION_TTL).to_string(),
    };
    match reserve_all(
        webhooks,
        &hrqs,
        &what,
        &increase,
        &usage,
        &reservation,
        request.dry_run,
    )
    .await
    {
        Ok(()) => Verdict::Allow,
        Err(message) => Verdict::Deny(message),
    }
}

/// Reserves `usage` (which adds `increase`) on every HRQ of `hrqs` concerned by it; on a
/// refusal by one, releases what was reserved on the others.
async fn reserve_all(
    webhooks: &Webhooks,
    hrqs: &[std::sync::Arc<HierarchicalResourceQuota>],
    what: &str,
    increase: &Amounts,
    usage: &Amounts,
    reservation: &QuotaReservation,
    dry_run: bool,
) -> Result<(), String> {
    let started = Instant::now();
    let mut reserved: Vec<(String, String)> = Vec::new();
    for hrq in hrqs {
        let (ns, hrq_name) = (hrq.namespace().unwrap_or_default(), hrq.name_any());
        // The model's copy decides cheaply whether this HRQ is concerned at all.
        if decide(hrq, what, increase, usage, reservation.clone()) == Decision::NotConcerned {
            continue;
        }
        let outcome = reserve(
            &webhooks.quota,
            &ns,
            &hrq_name,
            what,
            increase,
            usage,
            reservation,
            dry_run,
            started,
        )
        .await;
        match outcome {
            Ok(true) => reserved.push((ns, hrq_name)),
            Ok(false) => {}
            Err(message) => {
                for (ns, hrq_name) in &reserved {
                    release(&webhooks.quota, ns, hrq_name, &reservation.uid).await;
                }
                return Err(message);
            }
        }
    }
    Ok(())
}

/// A refusal when an HRQ over the object counts something of it that canopy cannot count
/// (a kind it may not list, say): admitting it uncounted would let the quota overshoot.
fn uncountable(
    webhooks: &Webhooks,
    hrqs: &[std::sync::Arc<HierarchicalResourceQuota>],
    usage: &Amounts,
    what: &str,
) -> Option<String> {
    usage.keys().find_map(|name| {
        let why = webhooks.state.quota.count_problem(name)?;
        let hrq = hrqs.iter().find(|h| h.spec.hard.contains_key(name))?;
        Some(format!(
            "{what} refused by canopy: HierarchicalResourceQuota {:?} in namespace {:?} \
             limits {name}, which canopy cannot count ({why})",
            hrq.name_any(),
            hrq.namespace().unwrap_or_default()
        ))
    })
}

/// What moving a subtree under a new parent brings under HRQs it was not under yet.
pub struct Move {
    /// The HRQs above the new parent that do not cover the namespace already.
    pub hrqs: Vec<std::sync::Arc<HierarchicalResourceQuota>>,
    /// The subtree's usage, from the model.
    pub usage: Amounts,
}

/// What moving `namespace` (with its subtree) under `new_parent` brings under new HRQs;
/// `None` when it comes under none.
pub fn move_of(
    webhooks: &Webhooks,
    forest: &crate::forest::Forest,
    namespace: &str,
    new_parent: Option<&str>,
) -> Option<Move> {
    let new_parent = new_parent?;
    let quota = &webhooks.state.quota;
    if quota.is_empty() {
        return None;
    }
    let key = |h: &HierarchicalResourceQuota| (h.namespace(), h.name_any());
    let current: Vec<_> = forest
        .ancestors(namespace)
        .into_iter()
        .flat_map(|ns| quota.in_namespace(ns))
        .map(|h| key(&h))
        .collect();
    let hrqs: Vec<_> = quota
        .over(forest, new_parent)
        .into_iter()
        .filter(|h| !current.contains(&key(h)))
        .collect();
    (!hrqs.is_empty()).then(|| Move {
        hrqs,
        usage: quota.subtree_usage(forest, namespace),
    })
}

/// Why moving `namespace` under `new_parent` would take an HRQ above the new parent past
/// its `hard`, if it would, against the model's `status.used` (the message a user reads;
/// `reserve_move` then makes it exact).
pub fn move_refusal(namespace: &str, new_parent: &str, plan: &Move) -> Option<String> {
    let mut refusals = Vec::new();
    for hrq in &plan.hrqs {
        let Ok(hard) = quota_usage::parse_list(&hrq.spec.hard) else {
            continue;
        };
        let used = hrq
            .status
            .as_ref()
            .and_then(|s| quota_usage::parse_list(&s.used).ok())
            .unwrap_or_default();
        let over: Vec<String> = quota_usage::restrict(&plan.usage, &hard)
            .iter()
            .filter_map(|(resource, more)| {
                let have = used.get(resource).copied().unwrap_or(0);
                let limit = hard.get(resource).copied().unwrap_or(0);
                (*more > 0 && have + more > limit).then(|| {
                    format!(
                        "{resource}: the subtree uses {}, used {}, hard {}",
                        quota_usage::format_milli(*more),
                        quota_usage::format_milli(have),
                        quota_usage::format_milli(limit)
                    )
                })
            })
            .collect();
        if !over.is_empty() {
            refusals.push(format!(
                "it would exceed hierarchical quota {:?} in namespace {:?} ({})",
                hrq.name_any(),
                hrq.namespace().unwrap_or_default(),
                over.join("; ")
            ));
        }
    }
    (!refusals.is_empty()).then(|| {
        format!(
            "namespace {namespace:?} cannot move under {new_parent:?}: {}; free some of it first or ask for a larger quota",
            refusals.join("; ")
        )
    })
}

/// The uid under which a move's reservation is recorded: one per namespace, so moving it
/// again replaces the reservation.
pub fn move_reservation_uid(namespace: &str) -> String {
    format!("namespace/{namespace}")
}

/// Reserves the moving subtree's usage on the HRQs it comes under, as creating it there
/// would: a compare-and-swap on each, so a Pod created under the same HRQ at the same
/// instant cannot take it past `hard` together with the move. The recount releases the
/// reservation once the model has the namespace in the HRQ's subtree (and counts its
/// objects), or when it expires (the move did not happen).
pub async fn reserve_move(
    webhooks: &Webhooks,
    namespace: &str,
    new_parent: &str,
    plan: &Move,
    dry_run: bool,
) -> Result<(), String> {
    let reservation = QuotaReservation {
        uid: move_reservation_uid(namespace),
        namespace: namespace.to_owned(),
        name: namespace.to_owned(),
        resource: MOVE_RESOURCE.to_owned(),
        usage: Default::default(),
        expires: (Timestamp::now() + RESERVATION_TTL).to_string(),
    };
    let what = format!("moving namespace {namespace:?} under {new_parent:?}");
    reserve_all(
        webhooks,
        &plan.hrqs,
        &what,
        &plan.usage,
        &plan.usage,
        &reservation,
        dry_run,
    )
    .await
}

/// Reserves on one HRQ: `Ok(true)` when written, `Ok(false)` when nothing was needed (a
/// dry run, the HRQ gone or not concerned), `Err` with the refusal.
#[allow(clippy::too_many_arguments)]
async fn reserve(
    writer: &QuotaWriter,
    namespace: &str,
    name: &str,
    what: &str,
    increase: &Amounts,
    usage: &Amounts,
    reservation: &QuotaReservation,
    dry_run: bool,
    started: Instant,
) -> Result<bool, String> {
    let fail = |why: String| {
        format!(
            "{what} refused by canopy: cannot reserve its usage on HierarchicalResourceQuota \
             {name:?} in namespace {namespace:?} ({why}); retry"
        )
    };
    let Some(client) = writer.client.clone() else {
        return Err(fail("no connection to the apiserver".to_owned()));
    };
    let api: Api<HierarchicalResourceQuota> = Api::namespaced(client, namespace);
    for attempt in 0..MAX_ATTEMPTS {
        if started.elapsed() > DEADLINE {
            return Err(fail(format!(
                "gave up after {attempt} conflicting updates in {} ms",
                started.elapsed().as_millis()
            )));
        }
        let hrq = match api.get_opt(name).await {
            Ok(Some(hrq)) => hrq,
            Ok(None) => return Ok(false),
            Err(e) => return Err(fail(e.to_string())),
        };
        let status = match decide(&hrq, what, increase, usage, reservation.clone()) {
            Decision::NotConcerned => return Ok(false),
            Decision::Refuse(message) => return Err(message),
            Decision::Reserve(status) => status,
        };
        if dry_run {
            return Ok(false);
        }
        match write_status(&api, hrq, *status).await {
            Ok(()) => return Ok(true),
            Err(e) if crate::api::errors::is_conflict(&e) => {
                tokio::time::sleep(jitter(attempt, &reservation.uid)).await;
            }
            Err(e) => return Err(fail(e.to_string())),
        }
    }
    Err(fail(format!("{MAX_ATTEMPTS} conflicting updates in a row")))
}

/// Removes a reservation made for a request that was then refused by another HRQ
/// (best effort: one that stays lapses after `RESERVATION_TTL`).
async fn release(writer: &QuotaWriter, namespace: &str, name: &str, uid: &str) {
    let Some(client) = writer.client.clone() else {
        return;
    };
    let api: Api<HierarchicalResourceQuota> = Api::namespaced(client, namespace);
    for attempt in 0..MAX_ATTEMPTS / 4 {
        let Ok(Some(hrq)) = api.get_opt(name).await else {
            return;
        };
        let mut status = hrq.status.clone().unwrap_or_default();
        let Some(at) = status.reservations.iter().position(|r| r.uid == uid) else {
            return;
        };
        let gone = status.reservations.remove(at);
        let mut used = quota_usage::parse_list(&status.used).unwrap_or_default();
        quota_usage::subtract(
            &mut used,
            &quota_usage::parse_list(&gone.usage).unwrap_or_default(),
        );
        status.used = quota_usage::format_list(&used);
        match write_status(&api, hrq, status).await {
            Err(e) if crate::api::errors::is_conflict(&e) => {
                tokio::time::sleep(jitter(attempt, uid)).await;
            }
            _ => return,
        }
    }
}

async fn write_status(
    api: &Api<HierarchicalResourceQuota>,
    mut hrq: HierarchicalResourceQuota,
    status: HierarchicalResourceQuotaStatus,
) -> Result<(), kube::Error> {
    hrq.status = Some(status);
    hrq.metadata.managed_fields = None;
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PostParams::default()
    };
    api.replace_status(&hrq.name_any(), &params, &hrq)
        .await
        .map(|_| ())
}

/// A few milliseconds, more with each attempt, different per request, so racing
/// replicas spread out.
fn jitter(attempt: u32, seed: &str) -> Duration {
    let spread = seed.bytes().fold(u64::from(attempt), |h, b| {
        h.wrapping_mul(31).wrapping_add(u64::from(b))
    });
    let nanos = u64::from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0),
    );
    let ceiling = 2 + u64::from(attempt.min(5)) * 4;
    Duration::from_millis((spread ^ nanos) % ceiling + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn hrq(status: serde_json::Value) -> HierarchicalResourceQuota {
        serde_json::from_value(json!({
            "apiVersion": "canopy.dev/v1alpha1", "kind": "HierarchicalResourceQuota",
            "metadata": {"name": "canopy-tenant-quota", "namespace": "acme", "resourceVersion": "3"},
            "spec": {"hard": {"pods": "5", "requests.cpu": "1"}},
            "status": status,
        }))
        .expect("hrq")
    }

    fn counted(pods: &str, cpu: &str) -> serde_json::Value {
        json!({"hard": {"pods": "5", "requests.cpu": "1"}, "used": {"pods": pods, "requests.cpu": cpu}})
    }

    fn pod(cpu: i128) -> Amounts {
        Amounts::from([
            ("pods".into(), 1000),
            ("requests.cpu".into(), cpu),
            ("limits.cpu".into(), cpu),
        ])
    }

    fn reservation() -> QuotaReservation {
        QuotaReservation {
            uid: "u1".into(),
            namespace: "acme-dev".into(),
            name: "web".into(),
            resource: "pods".into(),
            usage: Default::default(),
            expires: "2030-01-01T00:00:00Z".into(),
        }
    }

    #[test]
    fn within_the_quota_the_usage_is_added_and_reserved() {
        let Decision::Reserve(status) = decide(
            &hrq(counted("4", "800m")),
            "Pod acme-dev/web",
            &pod(200),
            &pod(200),
            reservation(),
        ) else {
            panic!("reserved");
        };
        assert_eq!(status.used["pods"].0, "5");
        assert_eq!(status.used["requests.cpu"].0, "1");
        assert_eq!(status.reservations.len(), 1);
        // Only what the HRQ counts is recorded.
        assert!(!status.reservations[0].usage.contains_key("limits.cpu"));
    }

    #[test]
    fn beyond_it_the_refusal_names_the_hrq_namespace_resource_and_amounts() {
        let Decision::Refuse(message) = decide(
            &hrq(counted("5", "500m")),
            "Pod acme-dev/web",
            &pod(600),
            &pod(600),
            reservation(),
        ) else {
            panic!("refused");
        };
        assert!(message.starts_with("Pod acme-dev/web refused by canopy: exceeded hierarchical quota \"canopy-tenant-quota\" in namespace \"acme\""), "{message}");
        assert!(
            message.contains("pods: requested 1, used 5, hard 5"),
            "{message}"
        );
        assert!(
            message.contains("requests.cpu: requested 600m, used 500m, hard 1"),
            "{message}"
        );
    }

    #[test]
    fn an_uncounted_hrq_fails_closed_and_an_unconcerned_one_is_skipped() {
        assert!(matches!(
            decide(&hrq(json!({})), "Pod x/y", &pod(1), &pod(1), reservation()),
            Decision::Refuse(m) if m.contains("has not been counted yet")
        ));
        let services = Amounts::from([("services".into(), 1000)]);
        assert_eq!(
            decide(
                &hrq(json!({})),
                "Service x/y",
                &services,
                &services,
                reservation()
            ),
            Decision::NotConcerned
        );
    }

    #[test]
    fn a_second_reservation_of_the_same_object_replaces_the_first() {
        let mut status = counted("1", "200m");
        status["reservations"] = json!([{"uid": "u1", "namespace": "acme-dev", "name": "web",
            "resource": "pods", "usage": {"pods": "1", "requests.cpu": "200m"}, "expires": "2030-01-01T00:00:00Z"}]);
        let Decision::Reserve(status) = decide(
            &hrq(status),
            "Pod acme-dev/web",
            &Amounts::from([("requests.cpu".into(), 300)]),
            &pod(500),
            reservation(),
        ) else {
            panic!("reserved");
        };
        assert_eq!(status.reservations.len(), 1);
        assert_eq!(status.reservations[0].usage["requests.cpu"].0, "500m");
        assert_eq!(status.used["requests.cpu"].0, "500m");
    }
}
