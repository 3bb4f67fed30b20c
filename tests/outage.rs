//! What a canopy outage blocks. The webhooks fail closed, so while no replica answers,
//! every request they are called for is refused; with `policies.scope: Tenants` (the
//! default) the workloads webhook is called only for namespaces of a tenant, so Pods of
//! infrastructure outside every tenant (a CNI's, cert-manager's) are still admitted.

mod common;

use std::time::Duration;

use common::managers::{start_manager, stop_manager};
use common::tenants::{WAIT, create_tenant};
use common::{CUSTOM, eventually, kubectl_ok, kubectl_with_stdin, start_plane, unique};

fn setup() {
    CUSTOM.get_or_init(|| {
        start_plane(|plane| async move {
            let prepared = canopy::dev::canopy::prepare(&plane).await?;
            start_manager(
                prepared.manager_kubeconfig.clone(),
                "only",
                canopy::manager::Listeners::webhooks(prepared.webhooks),
            );
            canopy::dev::canopy::wait_for_webhooks(&plane.client().await?, Duration::from_secs(60))
                .await?;
            Ok(plane)
        })
    });
}

fn pod(namespace: &str, name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec:\n  \
         containers:\n  - name: app\n    image: localhost/canopy-toolbox:latest\n    \
         resources: {{requests: {{cpu: 10m, memory: 16Mi}}, limits: {{cpu: 10m, memory: 16Mi}}}}\n"
    )
}

fn create(yaml: &str) -> common::Kubectl {
    kubectl_with_stdin(&["create", "-f", "-"], Some(yaml))
}

#[test]
fn an_outage_blocks_tenants_not_the_infrastructure() {
    setup();
    let tenant = unique("out");
    create_tenant(&tenant, 5, "");
    let infra = unique("infra");
    kubectl_ok(&["create", "namespace", &infra]);
    // While canopy answers: both admitted (a compliant Pod).
    let out = create(&pod(&tenant, "before"));
    assert!(out.success, "{}", out.stderr);
    let out = create(&pod(&infra, "before"));
    assert!(out.success, "{}", out.stderr);

    stop_manager("only");
    eventually("the webhooks to stop answering", WAIT, || {
        let out = create(&pod(&tenant, &unique("probe")));
        (!out.success && out.stderr.contains("failed calling webhook")).then_some(())
    });
    // The tenant's Pods wait for canopy (fail closed); the infrastructure's do not.
    let out = create(&pod(&tenant, "during"));
    // Validating webhooks are called in parallel: the refusal names whichever of
    // canopy's fail-closed webhooks for a tenant's Pods (workloads, quota) answered first.
    assert!(
        !out.success
            && ["workloads.canopy.dev", "quota.canopy.dev"]
                .iter()
                .any(|w| out
                    .stderr
                    .contains(&format!("failed calling webhook \"{w}\""))),
        "a tenant's Pod during the outage: {}",
        out.stderr
    );
    let out = create(&pod(&infra, "during"));
    assert!(
        out.success,
        "a Pod outside every tenant during the outage: {}",
        out.stderr
    );
}
