//! The rules of the `propagated.canopy.dev` webhook follow the configuration.
//!
//! The webhook keeps copies read-only, but the apiserver only calls it for the kinds its
//! rules list, and a static manifest can only list the default kinds. So the leader keeps
//! the rules equal to the default kinds plus every kind propagation resolved from
//! `CanopyConfiguration.spec.resources` (as HNC's HNCConfiguration reconciler does for
//! its object webhook), and puts them back whenever someone else (a `helm upgrade`, a
//! `kubectl apply -k`) resets them. Only that webhook's `rules` are written: its
//! clientConfig, caBundle, selectors and every other webhook stay as they are.
//!
//! Likewise the `quota.canopy.dev` rules: as shipped, plus the creation of every kind a
//! HierarchicalResourceQuota counts generically (`count/configmaps`), which
//! `forest::quota_counts` publishes.
//!
//! The same loop keeps the `workloads.canopy.dev` webhook's `namespaceSelector` in step
//! with `policies.scope`: with `Tenants` it matches only namespaces labelled
//! `canopy.dev/tenant`, so a canopy outage cannot block Pods that the policies would not
//! check anyway (a CNI's, cert-manager's); with `AllNamespaces` that requirement goes.
//! Every other expression of the selector (the exempt system namespaces, an operator's
//! own) is kept.
//!
//! `plan_rules` and `plan_selector` are pure; `run` watches and hands the plans to the
//! Writer.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::admissionregistration::v1::{
    RuleWithOperations, ValidatingWebhookConfiguration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use kube::Client;
use kube::api::Api;
use kube::core::ApiResource;
use kube::runtime::watcher::{self, Event};
use tracing::{debug, info, instrument, warn};

use super::ops::Op;
use super::propagation::Propagation;
use super::writer::Writer;
use crate::api::{PolicyScope, keys};
use crate::forest::propagated::kinds::default_kinds;
use crate::forest::watch::ClusterState;

/// The webhook whose rules follow the configuration.
pub const PROPAGATED_WEBHOOK: &str = "propagated.canopy.dev";

/// What the webhook checks of every kind: creating a copy (forged label or conflicting
/// source), editing and deleting it.
const OPERATIONS: [&str; 3] = ["CREATE", "UPDATE", "DELETE"];

/// Copies exist only of namespaced kinds.
const SCOPE: &str = "Namespaced";

/// How often the rules are compared with the last known configuration even without an
/// event: retries a failed write, and repairs a change whose watch event was missed.
const RESYNC: Duration = Duration::from_secs(10);

/// The rules for the default kinds and `configured`: one rule per API group and version,
/// resources sorted, so the result does not depend on the order of the configuration.
/// The version is the one discovery prefers; the webhook's `matchPolicy` (`Equivalent`,
/// the default) sends requests made through any other version of the same resource too.
pub fn desired_rules(configured: &[ApiResource]) -> Vec<RuleWithOperations> {
    let kinds: Vec<ApiResource> = default_kinds().iter().chain(configured).cloned().collect();
    rules_for(&kinds, &OPERATIONS)
}

/// One rule per API group and version of `resources` (sorted, so the result does not
/// depend on their order), each for `operations` on namespaced objects.
fn rules_for(resources: &[ApiResource], operations: &[&str]) -> Vec<RuleWithOperations> {
    let mut by_group_version: std::collections::BTreeMap<(String, String), BTreeSet<String>> =
        std::collections::BTreeMap::new();
    for resource in resources {
        by_group_version
            .entry((resource.group.clone(), resource.version.clone()))
            .or_default()
            .insert(resource.plural.clone());
    }
    by_group_version
        .into_iter()
        .map(|((group, version), resources)| RuleWithOperations {
            api_groups: Some(vec![group]),
            api_versions: Some(vec![version]),
            operations: Some(operations.iter().map(|o| (*o).to_owned()).collect()),
            resources: Some(resources.into_iter().collect()),
            scope: Some(SCOPE.to_owned()),
        })
        .collect()
}

/// Everything a list of rules matches, one entry per (group, version, resource,
/// operation, scope), so rules that say the same thing differently compare equal (the
/// static manifest groups `roles` and `rolebindings` in one rule, for example).
fn coverage(rules: &[RuleWithOperations]) -> BTreeSet<[String; 5]> {
    let all = |v: &Option<Vec<String>>| v.clone().unwrap_or_default();
    let mut out = BTreeSet::new();
    for rule in rules {
        // The apiserver defaults an unset scope to "*".
        let scope = rule.scope.clone().unwrap_or_else(|| "*".to_owned());
        for group in all(&rule.api_groups) {
            for version in all(&rule.api_versions) {
                for resource in all(&rule.resources) {
                    for operation in all(&rule.operations) {
                        out.insert([
                            group.clone(),
                            version.clone(),
                            resource.clone(),
                            operation,
                            scope.clone(),
                        ]);
                    }
                }
            }
        }
    }
    out
}

/// What to do about the webhook configuration.
#[derive(Clone, Debug, PartialEq)]
pub enum RulesPlan {
    /// The webhook's rules already cover exactly the wanted kinds.
    UpToDate,
    /// The configuration has no such webhook: canopy does not add one
    /// (it would have to invent its clientConfig); the installation owns the webhooks.
    NoWebhook,
    /// Replace the webhook's rules with these.
    Set(Vec<RuleWithOperations>),
}

/// Compares the `propagated.canopy.dev` rules of `current` with the default kinds plus
/// `configured`. Rules that match more than that (a wildcard added by hand) or less are
/// replaced: canopy owns this webhook's rules.
pub fn plan_rules(
    current: &ValidatingWebhookConfiguration,
    configured: &[ApiResource],
) -> RulesPlan {
    plan_webhook_rules(current, PROPAGATED_WEBHOOK, desired_rules(configured))
}

/// The webhook that reserves quota usage (`src/webhooks/quota.rs`).
pub const QUOTA_WEBHOOK: &str = "quota.canopy.dev";

/// The `quota.canopy.dev` rules: creating and updating Pods (and resizing them), Services
/// and claims, as the static manifest ships them, plus creating an object of any kind an
/// HRQ counts generically (`count/configmaps`; `counted` from `forest::quota_counts`).
pub fn desired_quota_rules(counted: &[ApiResource]) -> Vec<RuleWithOperations> {
    let strings = |v: &[&str]| Some(v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>());
    let mut rules = vec![RuleWithOperations {
        api_groups: strings(&[""]),
        api_versions: strings(&["v1"]),
        operations: strings(&["CREATE", "UPDATE"]),
        resources: strings(&["pods", "pods/resize", "services", "persistentvolumeclaims"]),
        scope: Some(SCOPE.to_owned()),
    }];
    rules.extend(rules_for(counted, &["CREATE"]));
    rules
}

/// Compares the `quota.canopy.dev` rules of `current` with `desired_quota_rules`.
pub fn plan_quota_rules(
    current: &ValidatingWebhookConfiguration,
    counted: &[ApiResource],
) -> RulesPlan {
    plan_webhook_rules(current, QUOTA_WEBHOOK, desired_quota_rules(counted))
}

/// Compares the rules of the webhook `name` in `current` with `desired`, by what they
/// match.
fn plan_webhook_rules(
    current: &ValidatingWebhookConfiguration,
    name: &str,
    desired: Vec<RuleWithOperations>,
) -> RulesPlan {
    let Some(webhook) = current.webhooks.iter().flatten().find(|w| w.name == name) else {
        return RulesPlan::NoWebhook;
    };
    if coverage(webhook.rules.as_deref().unwrap_or_default()) == coverage(&desired) {
        RulesPlan::UpToDate
    } else {
        RulesPlan::Set(desired)
    }
}

/// The webhook whose namespace selector follows `policies.scope`.
pub const WORKLOADS_WEBHOOK: &str = "workloads.canopy.dev";

/// The selector requirement that limits a webhook to namespaces of a tenant.
fn in_a_tenant() -> LabelSelectorRequirement {
    LabelSelectorRequirement {
        key: keys::TENANT.to_owned(),
        operator: "Exists".to_owned(),
        values: None,
    }
}

/// What the workloads webhook's namespace selector needs.
#[derive(Clone, Debug, PartialEq)]
pub enum SelectorPlan {
    UpToDate,
    NoWebhook,
    Set(LabelSelector),
}

/// The `WORKLOADS_WEBHOOK` selector of `current` with the tenant requirement added
/// (`Tenants`) or removed (`AllNamespaces`), every other expression kept.
pub fn plan_selector(current: &ValidatingWebhookConfiguration, scope: PolicyScope) -> SelectorPlan {
    let Some(webhook) = current
        .webhooks
        .iter()
        .flatten()
        .find(|w| w.name == WORKLOADS_WEBHOOK)
    else {
        return SelectorPlan::NoWebhook;
    };
    let selector = webhook.namespace_selector.clone().unwrap_or_default();
    let mut expressions: Vec<LabelSelectorRequirement> = selector
        .match_expressions
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e.key != keys::TENANT)
        .collect();
    if scope == PolicyScope::Tenants {
        expressions.push(in_a_tenant());
    }
    let desired = LabelSelector {
        match_expressions: (!expressions.is_empty()).then_some(expressions),
        match_labels: selector.match_labels.clone(),
    };
    let normal = |s: &LabelSelector| {
        let mut e = s.match_expressions.clone().unwrap_or_default();
        e.sort_by(|a, b| (&a.key, &a.operator).cmp(&(&b.key, &b.operator)));
        (e, s.match_labels.clone().unwrap_or_default())
    };
    if normal(&selector) == normal(&desired) {
        SelectorPlan::UpToDate
    } else {
        SelectorPlan::Set(desired)
    }
}

/// Keeps the rules of `PROPAGATED_WEBHOOK` in the ValidatingWebhookConfiguration named
/// `configuration` in step with propagation's kinds, until the kinds channel closes.
/// Runs on the leader only, like every other writer: two replicas with a different idea
/// of the configuration for a moment would otherwise undo each other's rules.
#[instrument(skip_all, fields(configuration = %configuration))]
pub async fn run(
    client: Client,
    writer: Writer,
    state: ClusterState,
    propagation: Arc<Propagation>,
    configuration: String,
) {
    let mut kinds = propagation.resolved_kinds();
    let mut counted_kinds = state.counted_kinds.clone();
    // A watch of the one object by name (allowed by a ClusterRole rule limited with
    // resourceNames): a reset by a `helm upgrade` is repaired at once, not at a resync.
    let api: Api<ValidatingWebhookConfiguration> = Api::all(client);
    let config = watcher::Config::default().fields(&format!("metadata.name={configuration}"));
    let mut events = std::pin::pin!(crate::forest::watch_health::resilient(
        &state.health,
        "validatingwebhookconfiguration".to_owned(),
        watcher::watcher(api.clone(), config)
    ));
    let mut current: Option<ValidatingWebhookConfiguration> = None;
    let mut relist: Option<ValidatingWebhookConfiguration> = None;
    let mut listed = false;
    let mut polled = false;
    let mut tick = tokio::time::interval(RESYNC);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut reported_missing = false;
    loop {
        tokio::select! {
            changed = kinds.changed() => if changed.is_err() {
                return;
            },
            changed = counted_kinds.changed() => if changed.is_err() {
                return;
            },
            event = events.next() => match event {
                None => return,
                Some(Ok(Event::Apply(object))) => current = Some(object),
                Some(Ok(Event::Delete(_))) => current = None,
                Some(Ok(Event::Init)) => relist = None,
                Some(Ok(Event::InitApply(object))) => {
                    relist = Some(object);
                    continue;
                }
                Some(Ok(Event::InitDone)) => {
                    current = relist.take();
                    listed = true;
                }
                Some(Err(err)) => {
                    debug!(error = %err, "watching the webhook configuration failed; retrying");
                    continue;
                }
            },
            _ = tick.tick() => if !listed {
                // No watch (a ClusterRole from before list and watch were granted, say):
                // read it at every resync instead, slower to notice a reset but still kept.
                match api.get_opt(&configuration).await {
                    Ok(object) => {
                        current = object;
                        polled = true;
                    }
                    Err(err) => {
                        warn!(error = %err, "cannot read the webhook configuration");
                        continue;
                    }
                }
            },
        }
        // Nothing is decided before both the configuration and the webhook configuration
        // are known: an empty list of kinds read too early would drop configured rules.
        let Some(configured) = kinds.borrow().clone() else {
            continue;
        };
        if !listed && !polled {
            continue;
        }
        let Some(object) = current.as_ref() else {
            if !reported_missing {
                info!("no such ValidatingWebhookConfiguration; no webhook rules to keep");
                reported_missing = true;
            }
            continue;
        };
        reported_missing = false;
        let scope = state.config().policies.scope;
        if let SelectorPlan::Set(selector) = plan_selector(object, scope) {
            let op = Op::SetWebhookSelector {
                configuration: configuration.clone(),
                webhook: WORKLOADS_WEBHOOK,
                selector: selector.clone(),
            };
            match writer.execute(op).await {
                Ok(_) => {
                    for webhook in current
                        .iter_mut()
                        .flat_map(|c| c.webhooks.iter_mut().flatten())
                    {
                        if webhook.name == WORKLOADS_WEBHOOK {
                            webhook.namespace_selector = Some(selector.clone());
                        }
                    }
                    info!(
                        webhook = WORKLOADS_WEBHOOK,
                        ?scope,
                        "set the webhook's namespace selector to the policy scope"
                    );
                }
                Err(err) => warn!(error = %err, "cannot set the webhook's namespace selector"),
            }
        }
        let Some(object) = current.as_ref() else {
            continue;
        };
        let counted = counted_kinds.borrow().clone();
        let plans = [
            (
                PROPAGATED_WEBHOOK,
                plan_rules(object, &configured),
                configured.len(),
            ),
            (
                QUOTA_WEBHOOK,
                plan_quota_rules(object, &counted),
                counted.len(),
            ),
        ];
        for (name, plan, kinds) in plans {
            match plan {
                RulesPlan::UpToDate => {}
                RulesPlan::NoWebhook => {
                    debug!(webhook = name, "the configuration has no such webhook")
                }
                RulesPlan::Set(rules) => {
                    let op = Op::SetWebhookRules {
                        configuration: configuration.clone(),
                        webhook: name,
                        rules: rules.clone(),
                    };
                    match writer.execute(op).await {
                        Ok(_) => {
                            // Until the watch event arrives, remember what was written, so
                            // a resync in between does not write it again.
                            for webhook in current
                                .iter_mut()
                                .flat_map(|c| c.webhooks.iter_mut().flatten())
                            {
                                if webhook.name == name {
                                    webhook.rules = Some(rules.clone());
                                }
                            }
                            info!(
                                webhook = name,
                                kinds, "set the webhook's rules to its kinds"
                            )
                        }
                        // Retried at the next resync.
                        Err(err) => {
                            warn!(webhook = name, error = %err, "cannot set the webhook's rules")
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ConfigMap, Secret};

    /// The `propagated.canopy.dev` webhook as the static manifest ships it.
    fn shipped() -> ValidatingWebhookConfiguration {
        let manifest =
            include_str!("../../webhooks/validating-webhook-configuration.yaml").to_owned();
        serde_saphyr::from_str(&manifest).expect("the bundled webhook configuration parses")
    }

    fn with_rules(rules: Vec<RuleWithOperations>) -> ValidatingWebhookConfiguration {
        let mut config = shipped();
        for webhook in config.webhooks.iter_mut().flatten() {
            if webhook.name == PROPAGATED_WEBHOOK {
                webhook.rules = Some(rules.clone());
            }
        }
        config
    }

    fn covers(rules: &[RuleWithOperations], group: &str, version: &str, plural: &str) -> bool {
        OPERATIONS.iter().all(|op| {
            coverage(rules).contains(&[
                group.to_owned(),
                version.to_owned(),
                plural.to_owned(),
                (*op).to_owned(),
                SCOPE.to_owned(),
            ])
        })
    }

    fn custom(group: &str, version: &str, plural: &str) -> ApiResource {
        ApiResource {
            group: group.into(),
            version: version.into(),
            api_version: format!("{group}/{version}"),
            kind: "Widget".into(),
            plural: plural.into(),
        }
    }

    #[test]
    fn the_quota_webhook_is_called_for_the_creates_of_every_counted_kind() {
        assert_eq!(plan_quota_rules(&shipped(), &[]), RulesPlan::UpToDate);
        let configmaps = ApiResource::erase::<ConfigMap>(&());
        let deployments = ApiResource::erase::<k8s_openapi::api::apps::v1::Deployment>(&());
        let RulesPlan::Set(rules) =
            plan_quota_rules(&shipped(), &[configmaps.clone(), deployments])
        else {
            panic!("the rules must change");
        };
        let matches = |group: &str, plural: &str, op: &str| {
            coverage(&rules).contains(&[
                group.to_owned(),
                "v1".to_owned(),
                plural.to_owned(),
                op.to_owned(),
                SCOPE.to_owned(),
            ])
        };
        assert!(matches("", "configmaps", "CREATE"));
        assert!(matches("apps", "deployments", "CREATE"));
        // An update never adds an object.
        assert!(!matches("", "configmaps", "UPDATE"));
        // What the manifest ships stays.
        for plural in ["pods", "pods/resize", "services", "persistentvolumeclaims"] {
            assert!(
                matches("", plural, "CREATE") && matches("", plural, "UPDATE"),
                "{plural}"
            );
        }
        let mut written = shipped();
        for webhook in written.webhooks.iter_mut().flatten() {
            if webhook.name == QUOTA_WEBHOOK {
                webhook.rules = Some(rules.clone());
            }
        }
        assert_eq!(
            plan_quota_rules(
                &written,
                &[
                    configmaps,
                    ApiResource::erase::<k8s_openapi::api::apps::v1::Deployment>(&())
                ]
            ),
            RulesPlan::UpToDate
        );
        // The last HRQ counting them gone: back to what ships.
        assert_eq!(
            plan_quota_rules(&written, &[]),
            RulesPlan::Set(desired_quota_rules(&[]))
        );
    }

    #[test]
    fn the_shipped_rules_are_the_default_kinds() {
        assert_eq!(plan_rules(&shipped(), &[]), RulesPlan::UpToDate);
        // Propagation always resolves Roles and RoleBindings, and by default the rest.
        assert_eq!(
            plan_rules(&shipped(), &default_kinds()),
            RulesPlan::UpToDate
        );
    }

    #[test]
    fn a_configured_kind_is_added_next_to_the_defaults() {
        let secrets = ApiResource::erase::<Secret>(&());
        let widgets = custom("example.com", "v1beta1", "widgets");
        let RulesPlan::Set(rules) = plan_rules(&shipped(), &[secrets, widgets]) else {
            panic!("the rules must change");
        };
        assert!(covers(&rules, "", "v1", "secrets"));
        assert!(covers(&rules, "example.com", "v1beta1", "widgets"));
        for (group, plural) in [
            ("rbac.authorization.k8s.io", "roles"),
            ("rbac.authorization.k8s.io", "rolebindings"),
            ("", "resourcequotas"),
            ("", "limitranges"),
            ("networking.k8s.io", "networkpolicies"),
        ] {
            assert!(covers(&rules, group, "v1", plural), "{group}/{plural}");
        }
        // Secrets share the core group's rule with the default core kinds.
        assert_eq!(rules.len(), 4, "{rules:?}");
        // Written once, they are up to date, whatever the order of the configuration.
        let written = with_rules(rules);
        let again = [
            custom("example.com", "v1beta1", "widgets"),
            ApiResource::erase::<Secret>(&()),
        ];
        assert_eq!(plan_rules(&written, &again), RulesPlan::UpToDate);
    }

    #[test]
    fn a_reset_or_a_dropped_kind_is_put_right() {
        let configmaps = ApiResource::erase::<ConfigMap>(&());
        let RulesPlan::Set(rules) = plan_rules(&shipped(), std::slice::from_ref(&configmaps))
        else {
            panic!("the rules must change");
        };
        // A `helm upgrade` puts the static rules back: they are set again.
        assert_eq!(
            plan_rules(&shipped(), std::slice::from_ref(&configmaps)),
            RulesPlan::Set(rules.clone())
        );
        // A kind dropped from the configuration loses its rule.
        let RulesPlan::Set(fewer) = plan_rules(&with_rules(rules), &[]) else {
            panic!("the configmaps rule must go");
        };
        assert!(!covers(&fewer, "", "v1", "configmaps"));
        assert_eq!(plan_rules(&with_rules(fewer), &[]), RulesPlan::UpToDate);
    }

    #[test]
    fn rules_that_match_more_or_differently_are_replaced() {
        let wildcard = RuleWithOperations {
            api_groups: Some(vec!["*".into()]),
            api_versions: Some(vec!["*".into()]),
            operations: Some(vec!["*".into()]),
            resources: Some(vec!["*".into()]),
            scope: None,
        };
        let mut rules = desired_rules(&[]);
        rules.push(wildcard);
        assert!(matches!(
            plan_rules(&with_rules(rules), &[]),
            RulesPlan::Set(_)
        ));
        // Missing DELETE is a hole (a copy could be deleted): replaced.
        let mut no_delete = desired_rules(&[]);
        for rule in &mut no_delete {
            rule.operations = Some(vec!["CREATE".into(), "UPDATE".into()]);
        }
        assert!(matches!(
            plan_rules(&with_rules(no_delete), &[]),
            RulesPlan::Set(_)
        ));
    }

    fn workloads(selector: Option<LabelSelector>) -> ValidatingWebhookConfiguration {
        let mut config = shipped();
        for webhook in config.webhooks.iter_mut().flatten() {
            if webhook.name == WORKLOADS_WEBHOOK {
                webhook.namespace_selector = selector.clone();
            }
        }
        config
    }

    #[test]
    fn the_shipped_workloads_selector_is_the_tenants_scope() {
        assert_eq!(
            plan_selector(&shipped(), PolicyScope::Tenants),
            SelectorPlan::UpToDate
        );
    }

    #[test]
    fn the_workloads_selector_follows_the_scope_and_keeps_other_expressions() {
        let SelectorPlan::Set(all) = plan_selector(&shipped(), PolicyScope::AllNamespaces) else {
            panic!("AllNamespaces must drop the tenant requirement");
        };
        let expressions = all.match_expressions.clone().unwrap_or_default();
        assert!(expressions.iter().all(|e| e.key != keys::TENANT));
        assert!(
            expressions
                .iter()
                .any(|e| e.key == "kubernetes.io/metadata.name" && e.operator == "NotIn"),
            "the system namespaces stay exempt"
        );
        let back = workloads(Some(all));
        assert_eq!(
            plan_selector(&back, PolicyScope::AllNamespaces),
            SelectorPlan::UpToDate
        );
        let SelectorPlan::Set(tenants) = plan_selector(&back, PolicyScope::Tenants) else {
            panic!("Tenants must add it back");
        };
        assert!(
            tenants
                .match_expressions
                .unwrap_or_default()
                .contains(&in_a_tenant())
        );
        assert_eq!(
            plan_selector(&workloads(None), PolicyScope::AllNamespaces),
            SelectorPlan::UpToDate,
            "no selector at all already matches every namespace"
        );
    }

    #[test]
    fn only_the_propagated_webhook_counts() {
        // Another webhook's rules are not canopy's to keep.
        let mut config = shipped();
        for webhook in config.webhooks.iter_mut().flatten() {
            if webhook.name != PROPAGATED_WEBHOOK {
                webhook.rules = Some(Vec::new());
            }
        }
        assert_eq!(plan_rules(&config, &[]), RulesPlan::UpToDate);
        config
            .webhooks
            .get_or_insert_default()
            .retain(|w| w.name != PROPAGATED_WEBHOOK);
        assert_eq!(plan_rules(&config, &[]), RulesPlan::NoWebhook);
    }
}
