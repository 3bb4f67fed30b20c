//! The Tenant reconciler: the root namespace, the four root objects that propagation then
//! carries down the tree, the owners' read access to their Tenant, status, and deletion.

use k8s_openapi::api::core::v1::{LimitRange, ResourceQuota};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, RoleBinding};
use k8s_openapi::jiff::Timestamp;
use kube::core::ApiResource;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};
use tracing::{debug, instrument};

use super::conditions::{self, DesiredCondition};
use super::namespace_labels::new_root_labels;
use super::ops::{Event, Op};
use super::queue::Outcome;
use super::writer::Writer;
use crate::api::{
    DeletionPolicy, HierarchicalResourceQuota, ISOLATION, LIMITS, OWNERS_BINDING, Owner, OwnerKind,
    PodSecurityLevel, QUOTA, READY, TENANT_QUOTA, Tenant, TenantStatus, events, keys,
    owner_access_name, reasons,
};
use crate::forest::Forest;
use crate::forest::watch::ClusterState;

/// An object in the root namespace: written when `Some`, deleted when `None`.
#[derive(Clone, Debug, PartialEq)]
pub struct RootObject {
    pub resource: ApiResource,
    pub name: &'static str,
    pub body: Option<Value>,
}

/// Everything a Tenant should have, decided from the Tenant and the Forest. Pure.
#[derive(Clone, Debug, PartialEq)]
pub enum TenantPlan {
    /// Being deleted: carry out the deletion policy, then let it go.
    Delete {
        namespaces_to_delete: Vec<String>,
        has_finalizer: bool,
    },
    Converge {
        add_finalizer: bool,
        /// Create the root namespace first.
        create_root: bool,
        /// Why the root cannot be used, if it cannot.
        blocked: Option<(&'static str, String)>,
        objects: Vec<RootObject>,
        owner_access: Option<(Value, Value)>,
        status: Option<TenantStatus>,
    },
}

pub fn plan_tenant(tenant: &Tenant, forest: &Forest, now: Timestamp) -> TenantPlan {
    let name = tenant.name_any();
    let root = tenant.root_namespace();
    let has_finalizer = tenant
        .finalizers()
        .iter()
        .any(|f| f == keys::TENANT_FINALIZER);
    if tenant.metadata.deletion_timestamp.is_some() {
        let namespaces_to_delete = match tenant.spec.deletion_policy {
            DeletionPolicy::Cascade if forest.exists(&root) => {
                let mut all: Vec<String> = forest
                    .subtree(&root)
                    .into_iter()
                    .map(str::to_owned)
                    .collect();
                all.retain(|ns| forest.exists(ns) && !forest.get(ns).is_some_and(|s| s.deleting));
                all
            }
            _ => Vec::new(),
        };
        return TenantPlan::Delete {
            namespaces_to_delete,
            has_finalizer,
        };
    }

    let root_state = forest.get(&root).filter(|s| s.exists);
    let blocked = if forest.is_excluded(&root) {
        Some((
            reasons::ROOT_EXCLUDED,
            format!("root namespace {root:?} is excluded from canopy; choose another"),
        ))
    } else if let Some(other) = root_state
        .and_then(|s| s.tenant.as_deref())
        .filter(|t| *t != name)
    {
        Some((
            reasons::ROOT_CLAIMED,
            format!("namespace {root:?} belongs to tenant {other:?}; choose another root"),
        ))
    } else if forest.tenant_for(&root).is_some_and(|t| t != name) {
        Some((
            reasons::ROOT_INSIDE_ANOTHER_TENANT,
            format!("namespace {root:?} is inside another tenant's tree"),
        ))
    } else {
        None
    };
    let create_root = root_state.is_none() && blocked.is_none();
    let objects = if blocked.is_none() {
        root_objects(tenant, forest)
    } else {
        Vec::new()
    };

    let namespaces: Vec<String> = if root_state.is_some() && blocked.is_none() {
        let mut all: Vec<String> = forest
            .subtree(&root)
            .into_iter()
            .filter(|ns| forest.exists(ns) && forest.tenant_for(ns) == Some(name.as_str()))
            .map(str::to_owned)
            .collect();
        all.sort();
        all
    } else {
        Vec::new()
    };
    let ready = match (&blocked, root_state) {
        (Some((reason, message)), _) => DesiredCondition {
            type_: READY,
            status: false,
            reason: (*reason).to_owned(),
            message: message.clone(),
        },
        (None, None) => DesiredCondition {
            type_: READY,
            status: false,
            reason: reasons::ROOT_NAMESPACE_MISSING.to_owned(),
            message: format!("creating root namespace {root:?}"),
        },
        (None, Some(_)) => DesiredCondition {
            type_: READY,
            status: true,
            reason: reasons::READY.to_owned(),
            message: format!(
                "{} namespace(s); owners bound to {}",
                namespaces.len(),
                tenant.spec.owner_role
            ),
        },
    };
    let current = tenant.status.clone().unwrap_or_default();
    let status = TenantStatus {
        root_namespace: Some(root.clone()),
        namespace_count: u32::try_from(namespaces.len()).unwrap_or(u32::MAX),
        namespaces,
        conditions: conditions::merge(
            &current.conditions,
            &[ready],
            tenant.metadata.generation,
            now,
        ),
    };
    TenantPlan::Converge {
        add_finalizer: !has_finalizer,
        create_root,
        blocked,
        objects,
        owner_access: owner_access(tenant),
        status: (status != current).then_some(status),
    }
}

fn subject(owner: &Owner) -> Value {
    match owner.kind {
        OwnerKind::ServiceAccount => json!({
            "kind": "ServiceAccount", "name": owner.name,
            "namespace": owner.namespace.clone().unwrap_or_default(),
        }),
        OwnerKind::User => {
            json!({"kind": "User", "name": owner.name, "apiGroup": "rbac.authorization.k8s.io"})
        }
        OwnerKind::Group => {
            json!({"kind": "Group", "name": owner.name, "apiGroup": "rbac.authorization.k8s.io"})
        }
    }
}

fn root_objects(tenant: &Tenant, forest: &Forest) -> Vec<RootObject> {
    let spec = &tenant.spec;
    let name = tenant.name_any();
    let object = |resource: ApiResource, name: &'static str, body: Option<Value>| RootObject {
        resource,
        name,
        body,
    };
    let owners = (!spec.owners.is_empty()).then(|| {
        json!({
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": spec.owner_role},
            "subjects": spec.owners.iter().map(subject).collect::<Vec<_>>(),
        })
    });
    let quota = spec.namespace_quota.as_ref().map(|q| json!({"spec": q}));
    let limits = spec.limit_range.as_ref().map(|l| json!({"spec": l}));
    let tenant_quota = spec
        .quota
        .as_ref()
        .map(|hard| json!({"spec": {"hard": hard}}));
    let mut excluded: Vec<&str> = forest.excluded().collect();
    excluded.sort_unstable();
    // Ingress from the tenant's own namespaces, and from excluded (system) namespaces so
    // DNS, ingress controllers and monitoring keep working.
    let isolation = spec.network_isolation.then(|| {
        json!({"spec": {
            "podSelector": {},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [
                {"namespaceSelector": {"matchLabels": {keys::TENANT: name}}},
                {"namespaceSelector": {"matchExpressions": [
                    {"key": "kubernetes.io/metadata.name", "operator": "In", "values": excluded}
                ]}},
            ]}],
        }})
    });
    vec![
        object(
            ApiResource::erase::<RoleBinding>(&()),
            OWNERS_BINDING,
            owners,
        ),
        object(ApiResource::erase::<ResourceQuota>(&()), QUOTA, quota),
        object(ApiResource::erase::<LimitRange>(&()), LIMITS, limits),
        object(
            ApiResource::erase::<NetworkPolicy>(&()),
            ISOLATION,
            isolation,
        ),
        object(
            ApiResource::erase::<HierarchicalResourceQuota>(&()),
            TENANT_QUOTA,
            tenant_quota,
        ),
    ]
}

/// A ClusterRole that lets the owners `get` and `watch` their own Tenant (and nothing
/// else cluster-wide), with its binding; owned by the Tenant so they go with it.
fn owner_access(tenant: &Tenant) -> Option<(Value, Value)> {
    let name = tenant.name_any();
    let uid = tenant.uid()?;
    if tenant.spec.owners.is_empty() {
        return None;
    }
    let owner_ref = json!([{
        "apiVersion": Tenant::api_version(&()), "kind": Tenant::kind(&()),
        "name": name, "uid": uid, "blockOwnerDeletion": false,
    }]);
    let access = owner_access_name(&name);
    let role = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": access, "ownerReferences": owner_ref},
        "rules": [{"apiGroups": ["canopy.dev"], "resources": ["tenants"], "resourceNames": [name], "verbs": ["get", "list", "watch"]}],
    });
    let binding = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": access, "ownerReferences": owner_ref},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": access},
        "subjects": tenant.spec.owners.iter().map(subject).collect::<Vec<_>>(),
    });
    Some((role, binding))
}

/// Reconciles one Tenant.
#[instrument(skip(state, writer, name), fields(tenant = %name))]
pub async fn reconcile_tenant(state: &ClusterState, writer: &Writer, name: String) -> Outcome {
    let Some(tenant) = state.tenants.get(&ObjectRef::new(&name)) else {
        return Outcome::Success;
    };
    let plan = plan_tenant(&tenant, &state.forest(), Timestamp::now());
    if let TenantPlan::Converge {
        blocked: Some((reason, message)),
        ..
    } = &plan
    {
        debug!(%reason, %message, "root namespace unusable");
    }
    let level = state.pod_security_for(&name);
    Outcome::of_writes(writer.execute_all(tenant_ops(&tenant, plan, level)).await)
}

/// The writes that carry out `plan` for `tenant`, in order. Pure.
pub fn tenant_ops(tenant: &Tenant, plan: TenantPlan, level: PodSecurityLevel) -> Vec<Op> {
    let name = tenant.name_any();
    let root = tenant.root_namespace();
    let finalizers = |finalizers: Vec<String>| Op::SetFinalizers {
        resource: ApiResource::erase::<Tenant>(&()),
        namespace: None,
        name: name.clone(),
        finalizers,
        resource_version: tenant.resource_version().unwrap_or_default(),
    };
    let delete = |resource: ApiResource, namespace: Option<&str>, object: &str| Op::Delete {
        resource,
        namespace: namespace.map(str::to_owned),
        name: object.to_owned(),
    };
    let access = owner_access_name(&name);
    let mut ops = Vec::new();
    match plan {
        TenantPlan::Delete {
            namespaces_to_delete,
            has_finalizer,
        } => {
            // deletionPolicy Cascade: the subtree goes (Orphan leaves the list empty).
            ops.extend(
                namespaces_to_delete
                    .into_iter()
                    .map(|name| Op::DeleteNamespace { name }),
            );
            if tenant.spec.deletion_policy == DeletionPolicy::Orphan {
                // The owners lose their rights; the isolation policy admits by a tenant
                // label that no namespace carries any more, so it goes too. Quota and
                // limits stay: they are still good defaults for the namespaces.
                ops.push(delete(
                    ApiResource::erase::<RoleBinding>(&()),
                    Some(&root),
                    OWNERS_BINDING,
                ));
                ops.push(delete(
                    ApiResource::erase::<NetworkPolicy>(&()),
                    Some(&root),
                    ISOLATION,
                ));
            }
            ops.push(delete(
                ApiResource::erase::<ClusterRoleBinding>(&()),
                None,
                &access,
            ));
            ops.push(delete(
                ApiResource::erase::<ClusterRole>(&()),
                None,
                &access,
            ));
            if has_finalizer {
                ops.push(finalizers(
                    tenant
                        .finalizers()
                        .iter()
                        .filter(|f| *f != keys::TENANT_FINALIZER)
                        .cloned()
                        .collect(),
                ));
            }
        }
        TenantPlan::Converge {
            add_finalizer,
            create_root,
            blocked,
            objects,
            owner_access,
            status,
        } => {
            if add_finalizer {
                let mut with_ours = tenant.finalizers().to_vec();
                with_ours.push(keys::TENANT_FINALIZER.to_owned());
                ops.push(finalizers(with_ours));
            }
            if create_root {
                // Created with the labels it keeps: no request finds it unprotected.
                ops.push(Op::CreateNamespace {
                    name: root.clone(),
                    labels: new_root_labels(&name, level),
                    annotations: Default::default(),
                    created: Some(
                        Event::new(
                            tenant.object_ref(&()),
                            false,
                            events::ROOT_NAMESPACE_CREATED,
                            format!("created root namespace {root:?}"),
                        )
                        .in_namespace(&root),
                    ),
                    replan_if_exists: false,
                });
            }
            if let Some(event) = blocked_event(tenant, &root, blocked.as_ref()) {
                ops.push(Op::Event(event));
            }
            if blocked.is_none() {
                ops.extend(objects.into_iter().map(|o| root_object_op(&root, o)));
                if let Some((role, binding)) = owner_access {
                    for (resource, body) in [
                        (ApiResource::erase::<ClusterRole>(&()), role),
                        (ApiResource::erase::<ClusterRoleBinding>(&()), binding),
                    ] {
                        ops.push(Op::Apply {
                            resource,
                            namespace: None,
                            name: access.clone(),
                            body,
                        });
                    }
                }
            }
            if let Some(status) = status {
                ops.push(Op::ApplyStatus {
                    resource: ApiResource::erase::<Tenant>(&()),
                    namespace: None,
                    name: name.clone(),
                    status: json!(status),
                    field_manager: keys::FIELD_MANAGER,
                });
            }
        }
    }
    ops
}

/// A Warning Event when the Tenant's root has just become unusable (its `Ready`
/// condition does not say so yet), so `kubectl describe tenant` shows it. Also recorded
/// in the root namespace when that is where the problem is (an excluded namespace, which
/// only admins read), but not when the root is another tenant's: that tenant's owners
/// must not learn of this Tenant.
fn blocked_event(tenant: &Tenant, root: &str, blocked: Option<&(&str, String)>) -> Option<Event> {
    let (reason, message) = blocked?;
    let reported = tenant.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == READY && c.reason == *reason)
    });
    if reported {
        return None;
    }
    let event = Event::new(tenant.object_ref(&()), true, reason, message.clone());
    Some(if *reason == reasons::ROOT_EXCLUDED {
        event.in_namespace(root)
    } else {
        event
    })
}

/// Writes a root object, or deletes it when the Tenant no longer asks for it.
fn root_object_op(root: &str, object: RootObject) -> Op {
    let Some(mut body) = object.body else {
        return Op::Delete {
            resource: object.resource,
            namespace: Some(root.to_owned()),
            name: object.name.to_owned(),
        };
    };
    if let Value::Object(map) = &mut body {
        map.insert("apiVersion".into(), json!(object.resource.api_version));
        map.insert("kind".into(), json!(object.resource.kind));
        map.insert(
            "metadata".into(),
            json!({"name": object.name, "namespace": root}),
        );
    }
    Op::Apply {
        resource: object.resource,
        namespace: Some(root.to_owned()),
        name: object.name.to_owned(),
        body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forest::testing::tree;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn tenant(spec: serde_json::Value) -> Tenant {
        let spec = serde_json::from_value(spec).expect("valid spec");
        let mut t = Tenant::new("acme", spec);
        t.metadata.uid = Some("uid-1".into());
        t.metadata.resource_version = Some("7".into());
        t.metadata.generation = Some(1);
        t
    }

    fn with_finalizer(mut t: Tenant) -> Tenant {
        t.metadata.finalizers = Some(vec![keys::TENANT_FINALIZER.into()]);
        t
    }

    fn deleted(mut t: Tenant) -> Tenant {
        t.metadata.deletion_timestamp = Some(Time(Timestamp::UNIX_EPOCH));
        t
    }

    fn now() -> Timestamp {
        Timestamp::from_second(1_700_000_000).expect("valid")
    }

    /// The ops as `verb kind namespace/name`, for comparing plans at a glance.
    fn summary(ops: &[Op]) -> Vec<String> {
        ops.iter()
            .map(|op| match op {
                Op::Apply {
                    resource,
                    namespace,
                    name,
                    ..
                } => format!(
                    "apply {} {}/{name}",
                    resource.kind,
                    namespace.as_deref().unwrap_or("")
                ),
                Op::Delete {
                    resource,
                    namespace,
                    name,
                } => format!(
                    "delete {} {}/{name}",
                    resource.kind,
                    namespace.as_deref().unwrap_or("")
                ),
                Op::DeleteNamespace { name } => format!("delete Namespace {name}"),
                Op::CreateNamespace { name, .. } => format!("create Namespace {name}"),
                Op::SetFinalizers { finalizers, .. } => format!("finalizers {finalizers:?}"),
                Op::ApplyStatus { .. } => "status".to_owned(),
                Op::Event(e) => format!(
                    "event {} {} in {}",
                    if e.warning { "Warning" } else { "Normal" },
                    e.reason,
                    e.namespace.as_deref().unwrap_or("")
                ),
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn a_new_tenant_gets_its_finalizer_root_objects_access_and_status() {
        let t = tenant(serde_json::json!({
            "owners": [{"kind": "User", "name": "alice"}],
            "namespaceQuota": {"hard": {"pods": "10"}},
            "networkIsolation": true,
        }));
        let plan = plan_tenant(&t, &tree("other"), now());
        let ops = tenant_ops(&t, plan, PodSecurityLevel::Baseline);
        assert_eq!(
            summary(&ops),
            [
                "finalizers [\"canopy.dev/tenant\"]",
                "create Namespace acme",
                "apply RoleBinding acme/canopy-owners",
                "apply ResourceQuota acme/canopy-quota",
                "delete LimitRange acme/canopy-limits",
                "apply NetworkPolicy acme/canopy-isolation",
                "delete HierarchicalResourceQuota acme/canopy-tenant-quota",
                "apply ClusterRole /canopy-tenant-acme",
                "apply ClusterRoleBinding /canopy-tenant-acme",
                "status",
            ]
        );
        let Op::CreateNamespace {
            labels, created, ..
        } = &ops[1]
        else {
            panic!("{:?}", ops[1]);
        };
        assert_eq!(labels[keys::TENANT], "acme");
        assert!(
            created
                .as_ref()
                .is_some_and(|e| e.reason == events::ROOT_NAMESPACE_CREATED)
        );
    }

    #[test]
    fn a_tenant_quota_becomes_the_hrq_in_the_root() {
        let t = tenant(serde_json::json!({"quota": {"pods": "5", "requests.cpu": "1"}}));
        let plan = plan_tenant(&t, &tree("other"), now());
        let ops = tenant_ops(&t, plan, PodSecurityLevel::Baseline);
        let body = ops
            .iter()
            .find_map(|op| match op {
                Op::Apply { name, body, .. } if name == TENANT_QUOTA => Some(body.clone()),
                _ => None,
            })
            .expect("the tenant quota is applied");
        assert_eq!(body["kind"], "HierarchicalResourceQuota");
        assert_eq!(body["metadata"]["namespace"], "acme");
        assert_eq!(body["spec"]["hard"]["pods"], "5");
        assert_eq!(body["spec"]["hard"]["requests.cpu"], "1");
    }

    #[test]
    fn a_root_that_belongs_elsewhere_blocks_every_write_but_the_status() {
        let t = with_finalizer(tenant(serde_json::json!({"rootNamespace": "shared"})));
        let mut forest = tree("shared");
        forest.set_tenant_root("other", "shared");
        let plan = plan_tenant(&t, &forest, now());
        let TenantPlan::Converge {
            blocked, status, ..
        } = &plan
        else {
            panic!("{plan:?}");
        };
        assert_eq!(
            blocked.as_ref().map(|b| b.0),
            Some(reasons::ROOT_INSIDE_ANOTHER_TENANT)
        );
        let ready = &status.as_ref().expect("status").conditions[0];
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", reasons::ROOT_INSIDE_ANOTHER_TENANT)
        );
        // A Warning Event says so once, on the Tenant only: the root is another tenant's,
        // whose owners must not read about this one.
        assert_eq!(
            summary(&tenant_ops(&t, plan.clone(), PodSecurityLevel::Baseline)),
            [
                "event Warning RootInsideAnotherTenant in ".to_owned(),
                "status".to_owned()
            ]
        );
        let mut reported = t.clone();
        reported.status = status.clone();
        assert_eq!(
            summary(&tenant_ops(&reported, plan, PodSecurityLevel::Baseline)),
            ["status"]
        );
    }

    #[test]
    fn an_excluded_root_is_reported_in_that_namespace_and_a_created_root_in_itself() {
        let t = with_finalizer(tenant(serde_json::json!({"rootNamespace": "kube-system"})));
        let mut forest = tree("kube-system");
        forest.set_excluded(["kube-system".to_owned()]);
        let plan = plan_tenant(&t, &forest, now());
        assert_eq!(
            summary(&tenant_ops(&t, plan, PodSecurityLevel::Baseline))[0],
            "event Warning RootExcluded in kube-system"
        );
        let fresh = with_finalizer(tenant(serde_json::json!({})));
        let plan = plan_tenant(&fresh, &crate::forest::Forest::default(), now());
        let ops = tenant_ops(&fresh, plan, PodSecurityLevel::Baseline);
        let Some(Op::CreateNamespace {
            created: Some(event),
            ..
        }) = ops.first()
        else {
            panic!("{ops:?}");
        };
        assert_eq!(event.namespace.as_deref(), Some("acme"));
    }

    #[test]
    fn a_converged_tenant_rewrites_nothing_but_its_objects() {
        let t = with_finalizer(tenant(serde_json::json!({})));
        let forest = tree("acme* > acme-dev");
        let first = plan_tenant(&t, &forest, now());
        let TenantPlan::Converge {
            status: Some(status),
            ..
        } = first
        else {
            panic!("{first:?}");
        };
        assert_eq!(status.namespaces, ["acme", "acme-dev"]);
        let mut converged = t.clone();
        converged.status = Some(status);
        let again = plan_tenant(&converged, &forest, now());
        let ops = tenant_ops(&converged, again, PodSecurityLevel::Baseline);
        assert!(
            !summary(&ops)
                .iter()
                .any(|s| s == "status" || s.starts_with("finalizers")),
            "{ops:?}"
        );
    }

    #[test]
    fn cascade_deletes_the_tree_and_orphan_keeps_it_but_revokes_the_owners() {
        let forest = tree("acme* > acme-dev > acme-dev-ci, other");
        let cascade = deleted(with_finalizer(tenant(
            serde_json::json!({"deletionPolicy": "Cascade"}),
        )));
        let ops = tenant_ops(
            &cascade,
            plan_tenant(&cascade, &forest, now()),
            PodSecurityLevel::Baseline,
        );
        assert_eq!(
            summary(&ops),
            [
                "delete Namespace acme",
                "delete Namespace acme-dev",
                "delete Namespace acme-dev-ci",
                "delete ClusterRoleBinding /canopy-tenant-acme",
                "delete ClusterRole /canopy-tenant-acme",
                "finalizers []",
            ]
        );
        let orphan = deleted(with_finalizer(tenant(
            serde_json::json!({"deletionPolicy": "Orphan"}),
        )));
        let ops = tenant_ops(
            &orphan,
            plan_tenant(&orphan, &forest, now()),
            PodSecurityLevel::Baseline,
        );
        assert_eq!(
            summary(&ops),
            [
                "delete RoleBinding acme/canopy-owners",
                "delete NetworkPolicy acme/canopy-isolation",
                "delete ClusterRoleBinding /canopy-tenant-acme",
                "delete ClusterRole /canopy-tenant-acme",
                "finalizers []",
            ]
        );
        // The finalizer is removed with the resourceVersion read, never blindly.
        let Some(Op::SetFinalizers {
            resource_version, ..
        }) = ops.last()
        else {
            panic!("{ops:?}");
        };
        assert_eq!(resource_version, "7");
    }
}
