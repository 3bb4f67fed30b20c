//! The admission policies (hostPath, resources, reclaimPolicy, guardrails) as a webhook: gathers what
//! [`policies::evaluate`] needs from the cluster state, and turns its outcome into a verdict.

use kube::core::admission::AdmissionRequest;
use kube::runtime::reflector::ObjectRef;
use tracing::debug;

use super::Webhooks;
use super::policies::{
    self, Decision, Guardrails, NamespaceContext, Operation, PolicyInput, PolicyOutcome, Requester,
    TenantContext,
};
use super::review::{RawObject, Verdict};
use crate::api::Tenant;

/// The verdict of the policies on `request`, whose objects stay JSON text: each policy
/// deserializes only the fields it reads.
pub fn review(webhooks: &Webhooks, request: &AdmissionRequest<RawObject>) -> Verdict {
    let state = &webhooks.state;
    let object = request.object.as_ref().map(RawObject::json);
    let old_object = request.old_object.as_ref().map(RawObject::json);

    // Everything is looked up before the policies run, so no lock is held across them but
    // the configuration's, which only the configuration watcher ever waits for.
    let namespace = request.namespace.as_deref();
    let (excluded, tenant_name) = match namespace {
        Some(ns) => {
            let forest = state.forest();
            // Fail closed: a namespace canopy is creating for a tenant is that tenant's
            // before its labels or its parent reach the Forest.
            let tenant = forest.tenant_of(ns).map(str::to_owned);
            (forest.is_excluded(ns), tenant)
        }
        None => (false, None),
    };
    let tenant = tenant_name
        .as_deref()
        .and_then(|name| state.tenants.get(&ObjectRef::<Tenant>::new(name)));
    let limit_ranges = namespace.and_then(|ns| state.limit_ranges.in_namespace(ns));
    // Only a tenant with a storage guardrail needs the default class.
    let default_storage_class = tenant
        .as_ref()
        .filter(|t| t.spec.storage_classes.is_some())
        .and_then(|_| state.storage_classes.default_class());
    let namespace_context = namespace.map(|name| NamespaceContext {
        name,
        excluded,
        tenant: tenant_name.as_deref().map(|name| TenantContext {
            name,
            policies: tenant.as_ref().and_then(|t| t.spec.policies.as_ref()),
            guardrails: tenant
                .as_ref()
                .map(|t| Guardrails::of(&t.spec, default_storage_class.as_deref()))
                .unwrap_or_default(),
        }),
        limit_ranges: limit_ranges.as_deref().unwrap_or(&[]),
    });

    let no_groups = Vec::new();
    let config = state.config.read();
    let input = PolicyInput {
        group: &request.kind.group,
        kind: &request.kind.kind,
        subresource: request.sub_resource.as_deref(),
        operation: Operation::from(&request.operation),
        object,
        old_object,
        namespace: namespace_context,
        requester: Requester {
            username: request.user_info.username.as_deref().unwrap_or_default(),
            groups: request.user_info.groups.as_ref().unwrap_or(&no_groups),
        },
        config: &config.policies,
    };
    match policies::evaluate(&input) {
        Ok(outcome) => {
            webhooks.metrics.record_policies(&outcome.reports);
            if let (Decision::Deny { .. }, Some(tenant)) = (&outcome.decision, &tenant_name) {
                webhooks
                    .metrics
                    .record_policy_refusals(tenant, &outcome.reports);
            }
            verdict(outcome)
        }
        Err(err) => {
            webhooks.metrics.record_policy_error();
            debug!(uid = %request.uid, error = %err, "policy input unreadable");
            // The apiserver never sends such an object, so refusing it costs nothing; the
            // status code says that the request, not a policy, is at fault.
            Verdict::Deny(format!(
                "{} {:?} refused by canopy: {err}",
                request.kind.kind, request.name
            ))
        }
    }
}

fn verdict(outcome: PolicyOutcome) -> Verdict {
    match (outcome.decision, outcome.warnings.is_empty()) {
        (Decision::Allow, true) => Verdict::Allow,
        (Decision::Allow, false) => Verdict::Warn(outcome.warnings),
        (Decision::Deny { message }, true) => Verdict::Deny(message),
        (Decision::Deny { message }, false) => Verdict::DenyWithWarnings {
            message,
            warnings: outcome.warnings,
        },
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::api::core::v1::{LimitRange, LimitRangeItem, LimitRangeSpec};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use serde_json::{Value, json};

    use super::*;
    use crate::api::{CanopyConfigurationSpec, PolicyScope};
    use crate::forest::Forest;
    use crate::forest::watch::ClusterState;
    use crate::webhooks::review::decode;

    fn request(user: &str, namespace: &str, object: Value) -> AdmissionRequest<RawObject> {
        let review = json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {
                "uid": "u1", "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "name": "web", "namespace": namespace, "operation": "CREATE",
                "userInfo": {"username": user, "groups": ["system:authenticated"]},
                "object": object,
            }
        });
        decode(review.to_string().as_bytes()).expect("a valid review")
    }

    fn pod(resources: Value, volumes: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"},
            "spec": {"containers": [{"name": "app", "image": "x", "resources": resources}],
                     "volumes": volumes}})
    }

    fn webhooks(scope: PolicyScope) -> Webhooks {
        webhooks_exempting(scope, &[])
    }

    fn webhooks_exempting(scope: PolicyScope, groups: &[&str]) -> Webhooks {
        let mut forest = Forest::new();
        let tenant_label =
            BTreeMap::from([(crate::api::keys::TENANT.to_owned(), "acme".to_owned())]);
        forest.set_namespace("acme", tenant_label, false);
        forest.set_namespace("plain", BTreeMap::new(), false);
        let mut config = CanopyConfigurationSpec::default();
        config.policies.scope = scope;
        config.policies.exemptions.groups = groups.iter().map(|g| (*g).to_owned()).collect();
        Webhooks::detached(ClusterState::detached(forest, config), "canopy".into())
    }

    fn host_path() -> Value {
        json!([{"name": "root", "hostPath": {"path": "/"}}])
    }

    fn complete() -> Value {
        json!({"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}})
    }

    #[test]
    fn refuses_with_field_and_fix() {
        let webhooks = webhooks(PolicyScope::AllNamespaces);
        let verdict = review(
            &webhooks,
            &request("alice", "plain", pod(json!({}), host_path())),
        );
        let message = verdict.denial().expect("refused").to_owned();
        assert!(message.contains("spec.volumes[0]"), "{message}");
        assert!(message.contains("resources.limits.memory"), "{message}");
        let compliant = request("alice", "plain", pod(complete(), json!([])));
        assert_eq!(review(&webhooks, &compliant), Verdict::Allow);
    }

    #[test]
    fn scope_tenants_skips_namespaces_of_no_tenant() {
        let webhooks = webhooks(PolicyScope::Tenants);
        let bad = pod(json!({}), host_path());
        assert_eq!(
            review(&webhooks, &request("alice", "plain", bad.clone())),
            Verdict::Allow
        );
        assert!(
            review(&webhooks, &request("alice", "acme", bad))
                .denial()
                .is_some()
        );
    }

    #[test]
    fn tenant_override_warns_and_limit_ranges_supply_resources() {
        let webhooks = webhooks(PolicyScope::Tenants);
        let tenant: Tenant = serde_json::from_value(json!({
            "apiVersion": "canopy.dev/v1alpha1", "kind": "Tenant", "metadata": {"name": "acme"},
            "spec": {"policies": {"hostPath": "Warn"}}
        }))
        .expect("a valid Tenant");
        let (store, mut writer) = kube::runtime::reflector::store();
        writer.apply_watcher_event(&kube::runtime::watcher::Event::Apply(tenant));
        let mut state = webhooks.state.clone();
        state.tenants = store;
        let quantity = || Quantity("1".into());
        let mut limit_range = LimitRange::default();
        limit_range.metadata.namespace = Some("acme".into());
        limit_range.metadata.name = Some("defaults".into());
        limit_range.spec = Some(LimitRangeSpec {
            limits: vec![LimitRangeItem {
                type_: "Container".into(),
                default: Some(BTreeMap::from([
                    ("cpu".into(), quantity()),
                    ("memory".into(), quantity()),
                ])),
                ..LimitRangeItem::default()
            }],
        });
        state.limit_ranges.apply(limit_range);
        let webhooks = Webhooks::detached(state, "canopy".into());
        match review(
            &webhooks,
            &request("alice", "acme", pod(complete(), host_path())),
        ) {
            Verdict::Warn(warnings) => assert!(warnings[0].contains("hostPath"), "{warnings:?}"),
            other => panic!("expected a warning, got {other:?}"),
        }
        // A template gets the LimitRange's defaults; a Pod already has them (LimitRanger
        // runs before validating webhooks), so only templates count them.
        let mut deployment = request(
            "alice",
            "acme",
            json!({
                "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                "spec": {"template": {"spec": {"containers": [{"name": "app", "image": "x"}]}}}
            }),
        );
        deployment.kind.group = "apps".into();
        deployment.kind.kind = "Deployment".into();
        assert_eq!(review(&webhooks, &deployment), Verdict::Allow);
    }

    #[test]
    fn exempt_groups_are_not_checked_and_none_is_by_default() {
        let admin = || {
            let mut request = request("admin", "plain", pod(json!({}), host_path()));
            request.user_info.groups =
                Some(vec!["system:masters".into(), "canopy:break-glass".into()]);
            request
        };
        // By default no group is exempt, system:masters included.
        let webhooks = webhooks(PolicyScope::AllNamespaces);
        assert!(matches!(review(&webhooks, &admin()), Verdict::Deny(_)));
        let webhooks = webhooks_exempting(PolicyScope::AllNamespaces, &["canopy:break-glass"]);
        assert_eq!(review(&webhooks, &admin()), Verdict::Allow);
    }
}
