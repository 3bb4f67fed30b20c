//! Tenants against the real apiserver, acting as the tenant owner through impersonation.

mod common;

use std::time::Duration;

use common::objects::{anchor, wait_for, wait_until_gone};
use common::tenants::{as_owner, as_owner_apply, wait_until_ready};
use common::{
    apply, cluster_with_canopy, eventually, json, kubectl, kubectl_ok, kubectl_with_stdin,
    repo_path, unique,
};

const WAIT: Duration = Duration::from_secs(30);

/// The sample Tenant, renamed: `acme` becomes `name` everywhere, with a higher limit.
fn sample_tenant(name: &str, max: u32, policy: &str) -> String {
    let sample = std::fs::read_to_string(repo_path("config/samples/tenant.yaml")).expect("sample");
    sample
        .replace("name: acme\n", &format!("name: {name}\n"))
        .replace("acme-admins", &format!("{name}-admins"))
        .replace("name: alice", &format!("name: {name}-alice"))
        .replace("maxNamespaces: 5", &format!("maxNamespaces: {max}"))
        .replace(
            "deletionPolicy: Orphan",
            &format!("deletionPolicy: {policy}"),
        )
}

fn create_tenant(name: &str, max: u32, policy: &str) {
    cluster_with_canopy();
    let out = apply(&sample_tenant(name, max, policy));
    assert!(out.success, "{}", out.stderr);
    wait_until_ready(name, WAIT);
}

#[test]
fn a_tenant_gets_its_root_objects_and_its_owner_a_working_subnamespace() {
    let t = unique("acme");
    create_tenant(&t, 10, "Orphan");
    let root = &t;
    let ns = json(&["get", "namespace", root, "-o", "json"]).expect("root created");
    assert_eq!(ns["metadata"]["labels"]["canopy.dev/tenant"], t.as_str());
    for (kind, name) in [
        ("rolebinding", "canopy-owners"),
        ("resourcequota", "canopy-quota"),
        ("limitrange", "canopy-limits"),
        ("networkpolicy", "canopy-isolation"),
    ] {
        wait_for(kind, root, name);
    }
    let owners = wait_for("rolebinding", root, "canopy-owners");
    assert_eq!(owners["roleRef"]["name"], "admin");

    // The owner reads their Tenant, and only theirs.
    eventually("the owner to read their Tenant", WAIT, || {
        as_owner(&t, &["get", "tenant", &t]).success.then_some(())
    });
    assert!(
        !as_owner(&t, &["get", "tenants"]).success,
        "owners cannot list every Tenant"
    );

    // The owner makes a subnamespace with nothing but the owner binding.
    let child = format!("{t}-dev");
    eventually("the owner to create an anchor", WAIT, || {
        as_owner_apply(&t, &anchor(root, &child))
            .success
            .then_some(())
    });
    eventually(
        "the subnamespace to join the tenant with all four copies",
        WAIT,
        || {
            let ns = json(&["get", "namespace", &child, "-o", "json"])?;
            (ns["metadata"]["labels"]["canopy.dev/tenant"] == t.as_str()).then_some(())?;
            for (kind, name) in [
                ("rolebinding", "canopy-owners"),
                ("resourcequota", "canopy-quota"),
                ("limitrange", "canopy-limits"),
                ("networkpolicy", "canopy-isolation"),
            ] {
                let copy = json(&["get", kind, name, "-n", &child, "-o", "json"])?;
                (copy["metadata"]["labels"]["canopy.dev/inherited-from"] == root.as_str())
                    .then_some(())?;
            }
            Some(())
        },
    );
    // The owner can run a Pod with resources there (the quota requires them).
    let pod = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: app, namespace: {child}}}\nspec:\n  containers:\n  - name: app\n    image: registry.example/app:1\n    resources: {{requests: {{cpu: 100m, memory: 64Mi}}, limits: {{cpu: 200m, memory: 128Mi}}}}\n"
    );
    let out = as_owner_apply(&t, &pod);
    assert!(out.success, "the owner's Pod: {}", out.stderr);

    // The root objects are canopy's: the owner (an admin there) cannot loosen them.
    let loosen = as_owner(
        &t,
        &["delete", "networkpolicy", "canopy-isolation", "-n", root],
    );
    assert!(
        !loosen.success && loosen.stderr.contains("change the Tenant's spec"),
        "{}",
        loosen.stderr
    );

    // The isolation policy admits the tenant's own namespaces.
    let policy = wait_for("networkpolicy", &child, "canopy-isolation");
    assert_eq!(
        policy["spec"]["ingress"][0]["from"][0]["namespaceSelector"]["matchLabels"]["canopy.dev/tenant"],
        t.as_str()
    );

    eventually("status to list both namespaces", WAIT, || {
        let tenant = json(&["get", "tenant", &t, "-o", "json"])?;
        (tenant["status"]["namespaceCount"] == 2
            && tenant["status"]["namespaces"] == serde_json::json!([root, child]))
        .then_some(())
    });
}

#[test]
fn non_owners_cannot_make_subnamespaces_and_the_limit_holds() {
    let t = unique("limit");
    create_tenant(&t, 2, "Orphan");
    let stranger = kubectl_with_stdin(
        &["--as", "mallory", "apply", "-f", "-"],
        Some(&anchor(&t, &format!("{t}-x"))),
    );
    assert!(
        !stranger.success && stranger.stderr.contains("forbidden"),
        "{}",
        stranger.stderr
    );

    eventually("the owner's first anchor", WAIT, || {
        as_owner_apply(&t, &anchor(&t, &format!("{t}-a")))
            .success
            .then_some(())
    });
    eventually("the tenant to count two namespaces", WAIT, || {
        let ns = json(&["get", "namespace", &format!("{t}-a"), "-o", "json"])?;
        (ns["metadata"]["labels"]["canopy.dev/tenant"] == t.as_str()).then_some(())
    });
    let over = as_owner_apply(&t, &anchor(&t, &format!("{t}-b")));
    assert!(!over.success, "a third namespace was admitted");
    assert!(over.stderr.contains("at most 2"), "{}", over.stderr);
}

#[test]
fn tenants_stay_apart() {
    let a = unique("tenant-a");
    let b = unique("tenant-b");
    create_tenant(&a, 10, "Orphan");
    create_tenant(&b, 10, "Orphan");
    let child = format!("{a}-c");
    eventually("a's subnamespace", WAIT, || {
        as_owner_apply(&a, &anchor(&a, &child))
            .success
            .then_some(())
    });
    wait_for("hc", &child, "hierarchy");

    // An owner cannot move a namespace into another tenant,
    let hc = |ns: &str, parent: &str| {
        format!(
            "apiVersion: canopy.dev/v1alpha1\nkind: HierarchyConfiguration\nmetadata: {{name: hierarchy, namespace: {ns}}}\nspec: {{parent: {parent}}}\n"
        )
    };
    let loose = unique("loose");
    kubectl_ok(&["create", "namespace", &loose]);
    let out = apply(&hc(&loose, &a));
    assert!(
        out.success,
        "an admin may put a namespace under a tenant: {}",
        out.stderr
    );
    eventually("the namespace to join tenant a", WAIT, || {
        let ns = json(&["get", "namespace", &loose, "-o", "json"])?;
        (ns["metadata"]["labels"]["canopy.dev/tenant"] == a.as_str()).then_some(())
    });
    let moved = as_owner_apply(&a, &hc(&loose, &b));
    assert!(!moved.success, "moved into another tenant");
    assert!(
        moved.stderr.contains(&format!("tenant \"{a}\"")),
        "{}",
        moved.stderr
    );
    // nor adopt a foreign namespace,
    let foreign = unique("foreign");
    kubectl_ok(&["create", "namespace", &foreign]);
    let adopted = as_owner_apply(&a, &hc(&foreign, &a));
    assert!(!adopted.success, "an owner adopted a foreign namespace");
    // nor forge tenant labels,
    let forged = as_owner(
        &a,
        &[
            "label",
            "namespace",
            &child,
            &format!("canopy.dev/tenant={b}"),
            "--overwrite",
        ],
    );
    assert!(!forged.success, "a tenant label was forged");
    // and two Tenants cannot claim one root.
    let clash = apply(&format!(
        "apiVersion: canopy.dev/v1alpha1\nkind: Tenant\nmetadata: {{name: {b}-2}}\nspec: {{rootNamespace: {a}}}\n"
    ));
    assert!(
        !clash.success && clash.stderr.contains("already the root"),
        "{}",
        clash.stderr
    );
    let system = apply(&format!(
        "apiVersion: canopy.dev/v1alpha1\nkind: Tenant\nmetadata: {{name: {b}-3}}\nspec: {{rootNamespace: kube-system}}\n"
    ));
    assert!(
        !system.success && system.stderr.contains("excluded"),
        "{}",
        system.stderr
    );
}

#[test]
fn reapplying_an_unchanged_tenant_writes_nothing() {
    let t = unique("gitops");
    create_tenant(&t, 10, "Orphan");
    let version = || {
        json(&["get", "tenant", &t, "-o", "json"])
            .and_then(|o| o["metadata"]["resourceVersion"].as_str().map(str::to_owned))
            .expect("the tenant")
    };
    // Settled: canopy has written its finalizer and status once.
    eventually("the Tenant to settle", WAIT, || {
        let v = version();
        std::thread::sleep(Duration::from_secs(2));
        (version() == v).then_some(())
    });
    let again = apply(&sample_tenant(&t, 10, "Orphan"));
    assert!(
        again.success && again.stdout.contains("unchanged"),
        "{}",
        again.stdout
    );
    let pipeline = || {
        kubectl_with_stdin(
            &[
                "apply",
                "--server-side",
                "--field-manager=argocd",
                "--force-conflicts",
                "-f",
                "-",
            ],
            Some(&sample_tenant(&t, 10, "Orphan")),
        )
    };
    assert!(pipeline().success);
    // The pipeline's first apply records it as a field manager; from then on nothing moves.
    let after_first_sync = version();
    assert!(pipeline().success);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        version(),
        after_first_sync,
        "a repeated sync or canopy wrote to an unchanged Tenant"
    );

    let dry_name = format!("{t}-dry");
    let dry = kubectl_with_stdin(
        &["apply", "--dry-run=server", "-f", "-"],
        Some(&sample_tenant(&dry_name, 10, "Orphan")),
    );
    assert!(dry.success, "{}", dry.stderr);
    assert!(
        json(&["get", "tenant", &dry_name, "-o", "json"]).is_none(),
        "a dry run created a Tenant"
    );
    assert!(
        json(&["get", "namespace", &dry_name, "-o", "json"]).is_none(),
        "a dry run created a namespace"
    );
}

#[test]
fn deletion_policies_do_what_they_say() {
    let orphan = unique("orphan");
    create_tenant(&orphan, 10, "Orphan");
    wait_for("rolebinding", &orphan, "canopy-owners");
    kubectl_ok(&["delete", "tenant", &orphan, "--wait=true", "--timeout=60s"]);
    let ns = json(&["get", "namespace", &orphan, "-o", "json"]).expect("Orphan keeps the root");
    eventually("the tenant label and owner binding to go", WAIT, || {
        let ns = json(&["get", "namespace", &orphan, "-o", "json"])?;
        let unlabelled = ns["metadata"]["labels"].get("canopy.dev/tenant").is_none();
        let unbound = !kubectl(&["get", "rolebinding", "canopy-owners", "-n", &orphan]).success;
        (unlabelled && unbound).then_some(())
    });
    let _ = ns;

    let cascade = unique("cascade");
    create_tenant(&cascade, 10, "Cascade");
    let child = format!("{cascade}-c");
    assert!(apply(&anchor(&cascade, &child)).success);
    wait_for("hc", &child, "hierarchy");
    kubectl_ok(&["delete", "tenant", &cascade, "--wait=true", "--timeout=60s"]);
    for ns in [&cascade, &child] {
        wait_until_gone("namespace", None, ns, Duration::from_secs(90));
    }
}

#[test]
fn a_volume_stays_with_its_tenant() {
    let a = unique("vol-a");
    let b = unique("vol-b");
    create_tenant(&a, 10, "Orphan");
    create_tenant(&b, 10, "Orphan");
    let pv = format!("{a}-pv");
    let out = apply(&format!(
        r#"
apiVersion: v1
kind: PersistentVolume
metadata: {{name: {pv}}}
spec:
  capacity: {{storage: 1Gi}}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Delete
  storageClassName: ""
  claimRef: {{namespace: {a}, name: data}}
  csi: {{driver: example.csi.canopy.dev, volumeHandle: {pv}}}
"#
    ));
    assert!(out.success, "{}", out.stderr);
    eventually("the volume to carry its claim's tenant", WAIT, || {
        let v = json(&["get", "pv", &pv, "-o", "json"])?;
        (v["metadata"]["labels"]["canopy.dev/tenant"] == a.as_str()).then_some(())
    });
    let claim = |ns: &str| {
        format!(
            "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {{name: stolen, namespace: {ns}}}\nspec:\n  accessModes: [ReadWriteOnce]\n  storageClassName: ''\n  volumeName: {pv}\n  resources: {{requests: {{storage: 1Gi}}}}\n"
        )
    };
    let stolen = as_owner_apply(&b, &claim(&b));
    assert!(!stolen.success, "another tenant claimed the volume");
    assert!(
        stolen
            .stderr
            .contains(&format!("belongs to tenant \"{a}\"")),
        "{}",
        stolen.stderr
    );
}
