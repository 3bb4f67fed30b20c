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
use tracing::{debug, info, instrument};

use super::conditions::{self, DesiredCondition};
use super::namespace_labels::new_root_labels;
use super::queue::Outcome;
use super::writer::{WriteError, Writer};
use crate::api::{
    DeletionPolicy, ISOLATION, LIMITS, OWNERS_BINDING, Owner, OwnerKind, PodSecurityLevel, QUOTA,
    READY, Tenant, TenantStatus, events, keys, owner_access_name, reasons,
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
        "rules": [{"apiGroups": ["canopy.dev"], "resources": ["tenants"], "resourceNames": [name], "verbs": ["get", "watch"]}],
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
#[instrument(skip(state, writer), fields(tenant = %name))]
pub async fn reconcile_tenant(state: &ClusterState, writer: &Writer, name: String) -> Outcome {
    let Some(tenant) = state.tenants.get(&ObjectRef::new(&name)) else {
        return Outcome::Success;
    };
    let plan = plan_tenant(&tenant, &state.forest(), Timestamp::now());
    let level = state.pod_security_for(&name);
    Outcome::of_writes(apply(writer, &tenant, plan, level).await)
}

async fn apply(
    writer: &Writer,
    tenant: &Tenant,
    plan: TenantPlan,
    level: PodSecurityLevel,
) -> Result<(), WriteError> {
    let name = tenant.name_any();
    let root = tenant.root_namespace();
    let resource_version = tenant.resource_version().unwrap_or_default();
    match plan {
        TenantPlan::Delete {
            namespaces_to_delete,
            has_finalizer,
        } => {
            for ns in &namespaces_to_delete {
                info!(namespace = %ns, "deleting (deletionPolicy: Cascade)");
                writer.delete_namespace(ns).await?;
            }
            if tenant.spec.deletion_policy == DeletionPolicy::Orphan {
                // The owners lose their rights; the isolation policy admits by a tenant
                // label that no namespace carries any more, so it goes too. Quota and
                // limits stay: they are still good defaults for the namespaces.
                let binding = ApiResource::erase::<RoleBinding>(&());
                writer
                    .delete_object(&binding, Some(&root), OWNERS_BINDING)
                    .await?;
                let policy = ApiResource::erase::<NetworkPolicy>(&());
                writer
                    .delete_object(&policy, Some(&root), ISOLATION)
                    .await?;
            }
            let access = owner_access_name(&name);
            writer
                .delete_object(
                    &ApiResource::erase::<ClusterRoleBinding>(&()),
                    None,
                    &access,
                )
                .await?;
            writer
                .delete_object(&ApiResource::erase::<ClusterRole>(&()), None, &access)
                .await?;
            if has_finalizer {
                let finalizers: Vec<String> = tenant
                    .finalizers()
                    .iter()
                    .filter(|f| *f != keys::TENANT_FINALIZER)
                    .cloned()
                    .collect();
                writer
                    .set_finalizers::<Tenant>(None, &name, &finalizers, &resource_version)
                    .await?;
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
                let mut finalizers = tenant.finalizers().to_vec();
                finalizers.push(keys::TENANT_FINALIZER.to_owned());
                writer
                    .set_finalizers::<Tenant>(None, &name, &finalizers, &resource_version)
                    .await?;
            }
            if let Some((reason, message)) = &blocked {
                debug!(%reason, %message, "root namespace unusable");
            }
            if create_root {
                // Created with the labels it keeps: no request finds it unprotected.
                let labels = new_root_labels(&name, level);
                if writer
                    .create_namespace(&root, labels, Default::default())
                    .await?
                {
                    info!(namespace = %root, "created root namespace");
                    let note = format!("created root namespace {root:?}");
                    writer
                        .event(
                            tenant.object_ref(&()),
                            false,
                            events::ROOT_NAMESPACE_CREATED,
                            note,
                        )
                        .await;
                }
            }
            if blocked.is_none() {
                for object in objects {
                    write_root_object(writer, &root, object).await?;
                }
                if let Some((role, binding)) = owner_access {
                    let access = owner_access_name(&name);
                    writer
                        .apply_object(
                            &ApiResource::erase::<ClusterRole>(&()),
                            None,
                            &access,
                            &role,
                        )
                        .await?;
                    writer
                        .apply_object(
                            &ApiResource::erase::<ClusterRoleBinding>(&()),
                            None,
                            &access,
                            &binding,
                        )
                        .await?;
                }
            }
            if let Some(status) = status {
                writer
                    .apply_status::<Tenant>(None, &name, &json!(status))
                    .await?;
            }
        }
    }
    Ok(())
}

async fn write_root_object(
    writer: &Writer,
    root: &str,
    object: RootObject,
) -> Result<(), WriteError> {
    let Some(mut body) = object.body else {
        return writer
            .delete_object(&object.resource, Some(root), object.name)
            .await;
    };
    if let Value::Object(map) = &mut body {
        map.insert("apiVersion".into(), json!(object.resource.api_version));
        map.insert("kind".into(), json!(object.resource.kind));
        map.insert(
            "metadata".into(),
            json!({"name": object.name, "namespace": root}),
        );
    }
    writer
        .apply_object(&object.resource, Some(root), object.name, &body)
        .await
}
