//! canopy's promises on a real node (src/dev/node): real Pods, real traffic, NetworkPolicy
//! enforced by kube-router, quota and limits applied to running Pods, admission refusals
//! that prevent something real. canopy's manager runs in this process as its own
//! ServiceAccount (tests/node_chart.rs runs it in-cluster from its chart).
//!
//! Needs root (the node does); without it every test says it was skipped.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::node::{
    RESOURCES, Reach, client_yaml, pod_yaml, probe, require_node, server_yaml, wait_running,
};
use common::tenants::{WAIT, create_tenant, owner_subnamespace};
use common::{apply, eventually, json, kubectl, kubectl_ok, unique};

/// Pods start in seconds on the node; a loaded CI machine gets more.
const POD_WAIT: Duration = Duration::from_secs(120);
/// Policy changes reach kube-router's iptables within seconds; this is the bound.
const POLICY_WAIT: Duration = Duration::from_secs(180);

fn must(out: common::Kubectl, what: &str) {
    assert!(out.success, "{what}: {}", out.stderr);
}

/// A namespace with a server and a client Pod.
struct Place {
    ns: String,
    ip: String,
}

fn place(ns: &str) -> Place {
    must(apply(&server_yaml(ns)), &format!("server in {ns}"));
    must(apply(&client_yaml(ns)), &format!("client in {ns}"));
    let ip = wait_running(ns, "server", POD_WAIT);
    wait_running(ns, "client", POD_WAIT);
    Place {
        ns: ns.to_owned(),
        ip,
    }
}

/// Probes every (client, server) pair until each gives its expected answer, then prints the
/// matrix measured. A cell that never settles fails the test with the whole matrix.
fn check_matrix(
    title: &str,
    clients: &[&Place],
    servers: &[&Place],
    expected: impl Fn(&str, &str) -> Reach,
) {
    let start = Instant::now();
    let mut measured: BTreeMap<(String, String), Option<Reach>> = BTreeMap::new();
    let mut rounds = 0;
    let mut probes = 0;
    loop {
        rounds += 1;
        let mut settled = true;
        for c in clients {
            for s in servers {
                let want = expected(&c.ns, &s.ns);
                let key = (c.ns.clone(), s.ns.clone());
                if measured.get(&key) == Some(&Some(want)) {
                    continue;
                }
                let got = probe(&c.ns, &s.ip, &s.ns);
                probes += 1;
                measured.insert(key, got);
                if got != Some(want) {
                    settled = false;
                }
            }
        }
        if settled {
            break;
        }
        if start.elapsed() > POLICY_WAIT {
            panic!(
                "{title}: the matrix did not settle in {POLICY_WAIT:?}:\n{}",
                render(clients, servers, &measured, &expected)
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    // Once settled, every cell again, so a cell that flips back is caught.
    for c in clients {
        for s in servers {
            let want = expected(&c.ns, &s.ns);
            let got = probe(&c.ns, &s.ip, &s.ns);
            measured.insert((c.ns.clone(), s.ns.clone()), got);
            assert_eq!(
                got,
                Some(want),
                "{title}: {} -> {} flipped after settling",
                c.ns,
                s.ns
            );
        }
    }
    eprintln!(
        "{title} ({probes} probes in {:.1} s, {rounds} round(s) until every cell was as \
         expected; rows: client namespace, columns: server namespace; refused = \
         connection refused, by kube-router's REJECT)\n{}",
        start.elapsed().as_secs_f64(),
        render(clients, servers, &measured, &expected)
    );
}

fn render(
    clients: &[&Place],
    servers: &[&Place],
    measured: &BTreeMap<(String, String), Option<Reach>>,
    expected: &impl Fn(&str, &str) -> Reach,
) -> String {
    let width = servers
        .iter()
        .map(|s| s.ns.len())
        .chain(clients.iter().map(|c| c.ns.len()))
        .max()
        .unwrap_or(8)
        + 2;
    let mut out = format!("{:width$}", "");
    for s in servers {
        out.push_str(&format!("{:width$}", s.ns));
    }
    out.push('\n');
    for c in clients {
        out.push_str(&format!("{:width$}", c.ns));
        for s in servers {
            let got = measured
                .get(&(c.ns.clone(), s.ns.clone()))
                .copied()
                .flatten();
            let want = expected(&c.ns, &s.ns);
            let cell = match got {
                Some(r) if r == want => r.to_string(),
                Some(r) => format!("{r}(!{want})"),
                None => format!("?(!{want})"),
            };
            out.push_str(&format!("{cell:width$}"));
        }
        out.push('\n');
    }
    out
}

#[test]
fn network_isolation_matrix_with_real_traffic() {
    if !require_node(true, "network_isolation_matrix_with_real_traffic") {
        return;
    }
    let a = unique("neta");
    let b = unique("netb");
    create_tenant(&a, 10, "  networkIsolation: true\n");
    create_tenant(&b, 10, "  networkIsolation: true\n");
    let (a_sub, b_sub) = (format!("{a}-sub"), format!("{b}-sub"));
    owner_subnamespace(&a, &a, &a_sub);
    owner_subnamespace(&b, &b, &b_sub);
    let outside = unique("outside");
    kubectl_ok(&["create", "namespace", &outside]);

    let pa = place(&a);
    let pa_sub = place(&a_sub);
    let pb = place(&b);
    let pb_sub = place(&b_sub);
    let po = place(&outside);
    let tenant_of = |ns: &str| -> Option<String> {
        [&a, &b]
            .into_iter()
            .find(|t| ns == t.as_str() || ns.starts_with(&format!("{t}-")))
            .cloned()
    };
    let clients = [&pa, &pa_sub, &pb, &pb_sub, &po];
    let servers = [&pa, &pa_sub, &pb, &pb_sub, &po];

    // Isolation on for both: a tenant's servers answer its own namespaces only; the
    // namespace outside every tenant has no policy and answers everyone.
    check_matrix(
        "isolation on for both tenants",
        &clients,
        &servers,
        |c, s| match tenant_of(s) {
            None => Reach::Open,
            Some(t) if tenant_of(c).as_deref() == Some(t.as_str()) => Reach::Open,
            Some(_) => Reach::Refused,
        },
    );

    // Isolation off for tenant a: canopy removes canopy-isolation from a's root and its
    // copies, and a's servers answer everyone; b stays isolated.
    must(
        kubectl(&[
            "patch",
            "tenant",
            &a,
            "--type=merge",
            "-p",
            r#"{"spec":{"networkIsolation":false}}"#,
        ]),
        "turning isolation off",
    );
    check_matrix(
        "isolation off for the first tenant",
        &clients,
        &servers,
        |c, s| match tenant_of(s) {
            Some(t) if t == b && tenant_of(c).as_deref() != Some(b.as_str()) => Reach::Refused,
            _ => Reach::Open,
        },
    );

    // A NetworkPolicy in a's subnamespace admitting `<a-sub>.tree.canopy.dev/depth`:
    // canopy propagates it to a-sub's own subnamespace, and the two answer exactly that
    // subtree, not a's root above it, nor anyone else.
    let leaf = format!("{a_sub}-leaf");
    owner_subnamespace(&a, &a_sub, &leaf);
    let pleaf = place(&leaf);
    let policy = format!(
        "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: subtree-only, namespace: {a_sub}}}
spec:
  podSelector: {{}}
  policyTypes: [Ingress]
  ingress:
  - from:
    - namespaceSelector:
        matchExpressions:
        - {{key: {a_sub}.tree.canopy.dev/depth, operator: Exists}}
"
    );
    must(apply(&policy), "the subtree policy");
    eventually("the subtree policy's copy in the leaf", WAIT, || {
        json(&[
            "get",
            "networkpolicy",
            "subtree-only",
            "-n",
            &leaf,
            "-o",
            "json",
        ])
    });
    let subtree = [a_sub.clone(), leaf.clone()];
    let clients = [&pa, &pa_sub, &pleaf, &pb, &po];
    let servers = [&pa, &pa_sub, &pleaf, &pb];
    check_matrix(
        "a propagated policy admitting the subtree of the first tenant's subnamespace",
        &clients,
        &servers,
        |c, s| {
            let (c, s) = (c.to_owned(), s.to_owned());
            if subtree.contains(&s) {
                if subtree.contains(&c) {
                    Reach::Open
                } else {
                    Reach::Refused
                }
            } else if s == b {
                if tenant_of(&c).as_deref() == Some(b.as_str()) {
                    Reach::Open
                } else {
                    Reach::Refused
                }
            } else {
                Reach::Open
            }
        },
    );
}

/// The quota's error once the apiserver counts the first Pod; `None` while the quota's
/// usage is not computed yet (the apiserver then refuses every Pod).
fn second_pod_refusal(ns: &str) -> Option<String> {
    let out = apply(&pod_yaml(
        ns,
        "second",
        "exec sleep 86400",
        Some("{requests: {cpu: 10m, memory: 48Mi}, limits: {cpu: 100m, memory: 48Mi}}"),
    ));
    assert!(!out.success, "a second 48Mi Pod fits a 64Mi quota in {ns}");
    out.stderr.contains("exceeded quota").then_some(out.stderr)
}

#[test]
fn a_propagated_quota_stops_the_pod_that_exceeds_it_in_every_descendant() {
    if !require_node(
        true,
        "a_propagated_quota_stops_the_pod_that_exceeds_it_in_every_descendant",
    ) {
        return;
    }
    let t = unique("quota");
    create_tenant(
        &t,
        10,
        "  namespaceQuota:\n    hard: {limits.memory: 64Mi}\n",
    );
    let sub = format!("{t}-sub");
    owner_subnamespace(&t, &t, &sub);
    let leaf = format!("{sub}-leaf");
    owner_subnamespace(&t, &sub, &leaf);
    for ns in [&t, &sub, &leaf] {
        eventually(&format!("the quota's copy in {ns}"), WAIT, || {
            let q = json(&[
                "get",
                "resourcequota",
                "canopy-quota",
                "-n",
                ns,
                "-o",
                "json",
            ])?;
            q["status"]["hard"]["limits.memory"].as_str().map(|_| ())
        });
        // The first Pod (48Mi of 64Mi) runs for real.
        eventually(
            &format!("the first Pod in {ns} to be admitted"),
            WAIT,
            || {
                apply(&pod_yaml(
                    ns,
                    "first",
                    "exec sleep 86400",
                    Some("{requests: {cpu: 10m, memory: 48Mi}, limits: {cpu: 100m, memory: 48Mi}}"),
                ))
                .success
                .then_some(())
            },
        );
        wait_running(ns, "first", POD_WAIT);
        // The second does not fit, and is refused by the propagated quota.
        let refusal = eventually(
            &format!("the second Pod in {ns} to be refused by the quota"),
            WAIT,
            || second_pod_refusal(ns),
        );
        assert!(refusal.contains("canopy-quota"), "{refusal}");
        eprintln!(
            "{ns}: first Pod Running; second refused: {}",
            refusal.trim()
        );
    }
}

/// `status.used[resource]` of the tenant's HierarchicalResourceQuota.
fn tenant_quota_used(tenant: &str, resource: &str) -> Option<String> {
    let hrq = json(&[
        "get",
        "hrq",
        "canopy-tenant-quota",
        "-n",
        tenant,
        "-o",
        "json",
    ])?;
    hrq["status"]["used"][resource].as_str().map(str::to_owned)
}

#[test]
fn a_tenant_quota_counts_running_pods_across_the_tree_and_frees_finished_ones() {
    if !require_node(
        true,
        "a_tenant_quota_counts_running_pods_across_the_tree_and_frees_finished_ones",
    ) {
        return;
    }
    let t = unique("hrq");
    create_tenant(&t, 10, "  quota: {pods: \"2\"}\n");
    let sub = format!("{t}-sub");
    owner_subnamespace(&t, &t, &sub);
    eventually("the tenant quota to be counted", WAIT, || {
        (tenant_quota_used(&t, "pods")? == "0").then_some(())
    });
    let sleeper = |ns: &str, name: &str| pod_yaml(ns, name, "exec sleep 86400", Some(RESOURCES));
    // One Pod runs in the root; one in the subnamespace runs to completion.
    must(apply(&sleeper(&t, "a")), "the first Pod");
    let finishing = pod_yaml(&sub, "b", "exit 0", Some(RESOURCES))
        .replace("spec:\n", "spec:\n  restartPolicy: Never\n");
    must(apply(&finishing), "the Pod that finishes");
    wait_running(&t, "a", POD_WAIT);
    // Both count while b has not finished; then, like the apiserver's quota, a finished
    // Pod counts nothing, and its place is free while it still exists.
    eventually("the finished Pod to stop counting", POD_WAIT, || {
        let b = json(&["get", "pod", "b", "-n", &sub, "-o", "json"])?;
        (b["status"]["phase"] == "Succeeded" && tenant_quota_used(&t, "pods")? == "1").then_some(())
    });
    must(apply(&sleeper(&sub, "c")), "a Pod in the freed place");
    wait_running(&sub, "c", POD_WAIT);
    // Two running Pods across the tree: a third is refused in either namespace.
    for ns in [&t, &sub] {
        let out = apply(&sleeper(ns, "d"));
        assert!(!out.success, "a third running Pod was admitted in {ns}");
        assert!(
            out.stderr.contains("pods: requested 1, used 2, hard 2"),
            "{}",
            out.stderr
        );
    }
    // Deleting a running Pod frees its place for a Pod that then runs.
    kubectl_ok(&["delete", "pod", "a", "-n", &t, "--wait=true"]);
    eventually("the deleted Pod's place to be free", WAIT, || {
        apply(&sleeper(&sub, "d")).success.then_some(())
    });
    wait_running(&sub, "d", POD_WAIT);
    eprintln!(
        "{t}: 2 running Pods under pods: 2, the third refused; a finished and a deleted Pod freed their places"
    );
}

#[test]
fn a_pod_without_resources_runs_with_the_tenant_limit_range_defaults() {
    if !require_node(
        true,
        "a_pod_without_resources_runs_with_the_tenant_limit_range_defaults",
    ) {
        return;
    }
    let t = unique("limits");
    create_tenant(
        &t,
        10,
        "  limitRange:\n    limits:\n    - type: Container\n      \
         default: {cpu: 200m, memory: 40Mi}\n      defaultRequest: {cpu: 20m, memory: 24Mi}\n",
    );
    let sub = format!("{t}-sub");
    owner_subnamespace(&t, &t, &sub);
    eventually("the LimitRange's copy in the subnamespace", WAIT, || {
        json(&[
            "get",
            "limitrange",
            "canopy-limits",
            "-n",
            &sub,
            "-o",
            "json",
        ])
    });
    // Admitted once canopy's webhook has seen the LimitRange, which supplies what the Pod
    // lacks.
    let pod = pod_yaml(&sub, "bare", "exec sleep 86400", None);
    eventually("a Pod without resources to be admitted", WAIT, || {
        apply(&pod).success.then_some(())
    });
    wait_running(&sub, "bare", POD_WAIT);
    let spec = json(&["get", "pod", "bare", "-n", &sub, "-o", "json"]).expect("the Pod");
    let resources = &spec["spec"]["containers"][0]["resources"];
    assert_eq!(resources["limits"]["memory"], "40Mi", "{resources}");
    assert_eq!(resources["limits"]["cpu"], "200m", "{resources}");
    assert_eq!(resources["requests"]["memory"], "24Mi", "{resources}");
    assert_eq!(resources["requests"]["cpu"], "20m", "{resources}");
    // The limit is real: the container's memory cgroup says 40Mi (cgroup v1, else v2).
    let limit = kubectl_ok(&[
        "exec",
        "-n",
        &sub,
        "bare",
        "--",
        "sh",
        "-c",
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max",
    ]);
    assert_eq!(limit.trim(), (40u64 * 1024 * 1024).to_string());
    eprintln!("Pod without resources runs with {resources}; its memory cgroup limit is {limit}");
}

#[test]
fn host_path_is_refused_at_apply_and_where_it_is_off_the_pod_reads_the_node_file() {
    if !require_node(
        true,
        "host_path_is_refused_at_apply_and_where_it_is_off_the_pod_reads_the_node_file",
    ) {
        return;
    }
    // A file on the node (this machine) that only this test knows.
    let secret = unique("node-secret");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let file = dir.path().join("secret.txt");
    std::fs::write(&file, &secret).expect("write the node file");
    let deployment = |ns: &str| {
        format!(
            "apiVersion: apps/v1
kind: Deployment
metadata: {{name: reader, namespace: {ns}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: reader}}}}
  template:
    metadata: {{labels: {{app: reader}}}}
    spec:
      terminationGracePeriodSeconds: 0
      containers:
      - name: main
        image: {toolbox}
        imagePullPolicy: Never
        command: [sh, -c, 'cat /node/secret.txt; echo; exec sleep 86400']
        resources: {RESOURCES}
        volumeMounts: [{{name: node, mountPath: /node, readOnly: true}}]
      volumes:
      - name: node
        hostPath: {{path: {dir}, type: Directory}}
",
            toolbox = common::node::TOOLBOX,
            dir = dir.path().display(),
        )
    };

    let enforced = unique("hp-on");
    create_tenant(&enforced, 10, "  podSecurity: privileged\n");
    let out = apply(&deployment(&enforced));
    assert!(!out.success, "a Deployment with hostPath was admitted");
    assert!(out.stderr.contains("uses hostPath"), "{}", out.stderr);
    assert!(
        json(&["get", "deployment", "reader", "-n", &enforced, "-o", "json"]).is_none(),
        "the refused Deployment exists"
    );

    // Where the policy is Off (and Pod Security allows it), the same Deployment runs and
    // its Pod reads the node's file: what the refusal prevents.
    let off = unique("hp-off");
    create_tenant(
        &off,
        10,
        "  podSecurity: privileged\n  policies: {hostPath: \"Off\"}\n",
    );
    eventually(
        "the Deployment to be admitted where hostPath is Off",
        WAIT,
        || apply(&deployment(&off)).success.then_some(()),
    );
    let pod = eventually("the reader Pod", POD_WAIT, || {
        let pods = json(&["get", "pods", "-n", &off, "-l", "app=reader", "-o", "json"])?;
        pods["items"][0]["metadata"]["name"]
            .as_str()
            .map(str::to_owned)
    });
    wait_running(&off, &pod, POD_WAIT);
    let read = kubectl_ok(&["exec", "-n", &off, &pod, "--", "cat", "/node/secret.txt"]);
    assert_eq!(read.trim(), secret, "kubectl exec");
    let logs = eventually("the reader's log", WAIT, || {
        let out = kubectl(&["logs", "-n", &off, &pod]);
        (out.success && out.stdout.contains(&secret)).then_some(out.stdout)
    });
    eprintln!(
        "hostPath: refused in {enforced}; in {off} the Pod read the node's file \
         (kubectl exec and kubectl logs): {}",
        logs.trim()
    );
}
