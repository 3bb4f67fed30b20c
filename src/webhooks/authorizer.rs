//! Asking the apiserver whether the requester may do something (SubjectAccessReview).

use k8s_openapi::api::authentication::v1::UserInfo;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::Client;
use kube::api::{Api, PostParams};

/// Checks permissions as the user who made an admission request.
#[derive(Clone)]
pub struct Authorizer {
    /// `None` in a server without a cluster (benchmarks), where every check fails.
    client: Option<Client>,
}

impl Authorizer {
    pub fn new(client: Client) -> Self {
        Self {
            client: Some(client),
        }
    }

    /// An authorizer with no apiserver to ask: every check is an error.
    pub fn detached() -> Self {
        Self { client: None }
    }

    /// Whether `user` may `update` `hierarchyconfigurations` in `namespace`: the right that
    /// changing a tree needs in the namespaces it affects.
    pub async fn can_update_hierarchy(
        &self,
        user: &UserInfo,
        namespace: &str,
    ) -> Result<bool, kube::Error> {
        self.can(
            user,
            ResourceAttributes {
                namespace: Some(namespace.to_owned()),
                verb: Some("update".to_owned()),
                group: Some(crate::api::GROUP.to_owned()),
                resource: Some("hierarchyconfigurations".to_owned()),
                ..ResourceAttributes::default()
            },
        )
        .await
    }

    /// Whether `user` may `update` the Tenant `tenant`: what taking a namespace out of a
    /// tenant, or into another, needs (a cluster admin's right, never an owner's).
    pub async fn can_update_tenant(
        &self,
        user: &UserInfo,
        tenant: &str,
    ) -> Result<bool, kube::Error> {
        self.can(
            user,
            ResourceAttributes {
                verb: Some("update".to_owned()),
                group: Some(crate::api::GROUP.to_owned()),
                resource: Some("tenants".to_owned()),
                name: Some(tenant.to_owned()),
                ..ResourceAttributes::default()
            },
        )
        .await
    }

    async fn can(
        &self,
        user: &UserInfo,
        attributes: ResourceAttributes,
    ) -> Result<bool, kube::Error> {
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: user.username.clone(),
                groups: user.groups.clone(),
                uid: user.uid.clone(),
                extra: user.extra.clone(),
                resource_attributes: Some(attributes),
                ..SubjectAccessReviewSpec::default()
            },
            ..SubjectAccessReview::default()
        };
        let client = self.client.clone().ok_or_else(|| {
            kube::Error::Service("this webhook server has no apiserver to ask".into())
        })?;
        let answer = Api::<SubjectAccessReview>::all(client)
            .create(&PostParams::default(), &review)
            .await?;
        Ok(answer.status.is_some_and(|s| s.allowed))
    }
}
