//! Whether canopy's own identity may do what propagating a kind takes: a
//! SelfSubjectAccessReview per verb, cluster-wide (every namespace). A kind whose list is
//! refused shows up as a failing watch anyway; this also catches a kind canopy may read
//! but not write, whose copies would otherwise fail one namespace at a time.

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use kube::Client;
use kube::api::{Api, PostParams};
use kube::core::ApiResource;

use crate::forest::propagated::{KindKey, display};

/// The verbs propagation uses on a kind: read sources and copies, server-side apply
/// copies (a patch that may create), delete stale ones.
pub const VERBS: [&str; 6] = ["get", "list", "watch", "create", "patch", "delete"];

/// The label that makes a ClusterRole's rules part of canopy's manager ClusterRole
/// (its `aggregationRule` selects it).
pub const AGGREGATE_LABEL: &str = "canopy.dev/aggregate-to-manager";

/// The verbs of `VERBS` that canopy may not use on `resource` in every namespace.
pub async fn missing_verbs(
    client: &Client,
    resource: &ApiResource,
) -> Result<Vec<&'static str>, kube::Error> {
    let api: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    let mut missing = Vec::new();
    for verb in VERBS {
        let review = SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    group: Some(resource.group.clone()),
                    resource: Some(resource.plural.clone()),
                    verb: Some(verb.to_owned()),
                    ..ResourceAttributes::default()
                }),
                ..SelfSubjectAccessReviewSpec::default()
            },
            ..SelfSubjectAccessReview::default()
        };
        let answer = api.create(&PostParams::default(), &review).await?;
        if !answer.status.is_some_and(|s| s.allowed) {
            missing.push(verb);
        }
    }
    Ok(missing)
}

/// Why canopy cannot use `key`, and the one step that fixes it: a ClusterRole carrying
/// the aggregation label. Pure.
pub fn forbidden_message(key: &KindKey, missing: &[&str]) -> String {
    let (group, resource) = key;
    let name = format!("canopy-propagate-{}", display(key).replace('.', "-"));
    let resource_arg = if group.is_empty() {
        resource.clone()
    } else {
        format!("{resource}.{group}")
    };
    format!(
        "canopy's ServiceAccount may not {} it; grant it with \
         `kubectl create clusterrole {name} --verb={} --resource={resource_arg} && \
         kubectl label clusterrole {name} {AGGREGATE_LABEL}=true` \
         (its rules join canopy's ClusterRole canopy-manager)",
        missing.join(", "),
        VERBS.join(","),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_names_the_missing_verbs_and_the_clusterrole_that_grants_them() {
        let message = forbidden_message(
            &("example.com".to_owned(), "widgets".to_owned()),
            &["create", "patch"],
        );
        assert!(message.contains("may not create, patch it"), "{message}");
        assert!(
            message.contains(
                "kubectl create clusterrole canopy-propagate-widgets-example-com \
                 --verb=get,list,watch,create,patch,delete --resource=widgets.example.com"
            ),
            "{message}"
        );
        assert!(
            message.contains("canopy.dev/aggregate-to-manager=true"),
            "{message}"
        );
        let core = forbidden_message(&(String::new(), "secrets".to_owned()), &["list"]);
        assert!(core.contains("--resource=secrets "), "{core}");
    }
}
