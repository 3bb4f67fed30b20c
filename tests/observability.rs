//! Observability: the per-tenant series on a running manager's `/metrics`, and the lint of
//! what the chart ships for Prometheus and Grafana (helm/canopy/files/): every PromQL
//! expression parses, names only series canopy exports (or the few of the apiserver
//! that are named on purpose), alerts and recording rules follow Prometheus' naming
//! conventions and carry what an on-call needs; the dashboard passes a JSON Schema of the
//! part of Grafana's model it uses; the chart renders both unchanged.
//!
//! The lint runs as a function over a document, so the tests also show it failing on a
//! broken rule and a broken dashboard.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::helm::helm_ok;
use common::objects::make_subnamespace;
use common::tenants::create_tenant;
use common::{
    admin_port, apply, cluster_with_canopy, eventually, http_get, kubectl, kubectl_ok,
    kubectl_with_stdin, repo_path, unique,
};
use promql_parser::parser::{self, Expr};
use promql_parser::util::{ExprVisitor, walk_expr};
use serde_json::Value;

const RULES: &str = "helm/canopy/files/prometheus-rules.yaml";
const DASHBOARD: &str = "helm/canopy/files/grafana-dashboard.json";
const DASHBOARD_SCHEMA: &str = "tests/schemas/grafana-dashboard.schema.json";
const WAIT: Duration = Duration::from_secs(90);

/// Series of other components the rules name on purpose: the apiserver's count of calls to
/// a webhook that failed (canopy cannot count the calls that never reach it).
const EXTERNAL: [&str; 1] = ["apiserver_admission_webhook_rejection_count"];

// ---------------------------------------------------------------------------------------
// What canopy exports

/// The sample names canopy exports: its catalogue of families (`admin::FAMILIES`, which a
/// unit test keeps equal to the registry), a counter `x` sampled as `x_total`, a histogram
/// as `x_bucket`, `x_sum` and `x_count`.
fn exported_names() -> BTreeSet<String> {
    sample_names(canopy::admin::FAMILIES.iter().copied())
}

fn sample_names<'a>(families: impl Iterator<Item = (&'a str, &'a str)>) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (name, kind) in families {
        match kind {
            "counter" => {
                names.insert(format!("{name}_total"));
            }
            "histogram" => {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{suffix}"));
                }
            }
            _ => {
                names.insert(name.to_owned());
            }
        }
    }
    names
}

/// The families (`# TYPE` lines) of an exposition.
fn families_served(text: &str) -> BTreeSet<(String, String)> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .map(|(name, kind)| (name.to_owned(), kind.to_owned()))
        .collect()
}

/// Every metric name a PromQL expression selects.
fn selected_names(expr: &Expr) -> BTreeSet<String> {
    struct Names(BTreeSet<String>);
    impl ExprVisitor for Names {
        type Error = std::convert::Infallible;
        fn pre_visit(&mut self, expr: &Expr) -> Result<bool, Self::Error> {
            let selector = match expr {
                Expr::VectorSelector(vs) => Some(vs),
                Expr::MatrixSelector(ms) => Some(&ms.vs),
                _ => None,
            };
            if let Some(name) = selector.and_then(|vs| vs.name.clone()) {
                self.0.insert(name);
            }
            Ok(true)
        }
    }
    let mut names = Names(BTreeSet::new());
    let _ = walk_expr(&mut names, expr);
    names.0
}

/// Parses `expr` (`what` says where it is) and checks the names it selects against
/// `known`; the problems found go to `problems`.
fn check_expr(what: &str, expr: &str, known: &BTreeSet<String>, problems: &mut Vec<String>) {
    match parser::parse(expr) {
        Ok(parsed) => {
            for name in selected_names(&parsed) {
                if !known.contains(&name) && !EXTERNAL.contains(&name.as_str()) {
                    problems.push(format!("{what}: {name} is not a series canopy exports"));
                }
            }
        }
        Err(e) => problems.push(format!("{what}: {expr:?} does not parse: {e}")),
    }
}

// ---------------------------------------------------------------------------------------
// The rules

fn is_camel_case(name: &str) -> bool {
    name.starts_with("Canopy")
        && name.chars().all(|c| c.is_ascii_alphanumeric())
        && name.chars().nth(6).is_some_and(|c| c.is_ascii_uppercase())
}

/// `level:metric:operations`, the metric being one of canopy's.
fn is_recording_name(name: &str) -> bool {
    let parts: Vec<&str> = name.split(':').collect();
    let word = |p: &str| {
        !p.is_empty()
            && p.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    };
    parts.len() == 3 && parts.iter().all(|p| word(p)) && parts[1].starts_with("canopy_")
}

/// A Prometheus duration as `for:` takes it.
fn is_duration(text: &str) -> bool {
    promql_parser::util::parse_duration(text).is_ok_and(|d| !d.is_zero())
}

/// What promtool checks of a rule file (structure, expressions), and canopy's conventions
/// on top: every problem found, none when the rules are right. `known` is what canopy
/// exports; the rules' own recorded series are added to it.
fn lint_rules(doc: &Value, known: &BTreeSet<String>) -> Vec<String> {
    let mut problems = Vec::new();
    let Some(groups) = doc["groups"].as_array().filter(|g| !g.is_empty()) else {
        return vec!["no groups".to_owned()];
    };
    let rules: Vec<&Value> = groups
        .iter()
        .flat_map(|g| g["rules"].as_array().into_iter().flatten())
        .collect();
    let mut known = known.clone();
    known.extend(
        rules
            .iter()
            .filter_map(|r| r["record"].as_str())
            .map(str::to_owned),
    );
    let mut group_names = BTreeSet::new();
    for group in groups {
        let name = group["name"].as_str().unwrap_or_default();
        if name.is_empty() || !group_names.insert(name) {
            problems.push(format!("group {name:?}: missing or repeated name"));
        }
        if group["rules"].as_array().is_none_or(|r| r.is_empty()) {
            problems.push(format!("group {name:?}: no rules"));
        }
    }
    let mut alerts = BTreeSet::new();
    for rule in rules {
        let expr = rule["expr"].as_str().unwrap_or_default();
        match (rule["alert"].as_str(), rule["record"].as_str()) {
            (Some(alert), None) => {
                let what = format!("alert {alert}");
                if !is_camel_case(alert) {
                    problems.push(format!("{what}: not CamelCase starting with Canopy"));
                }
                if !alerts.insert(alert.to_owned()) {
                    problems.push(format!("{what}: defined twice"));
                }
                if !rule["for"].as_str().is_some_and(is_duration) {
                    problems.push(format!("{what}: no `for:` duration"));
                }
                let severity = rule["labels"]["severity"].as_str();
                if !matches!(severity, Some("critical" | "warning" | "info")) {
                    problems.push(format!(
                        "{what}: severity {severity:?} is not critical, warning or info"
                    ));
                }
                for annotation in ["summary", "description"] {
                    if rule["annotations"][annotation]
                        .as_str()
                        .is_none_or(|a| a.trim().is_empty())
                    {
                        problems.push(format!("{what}: no {annotation} annotation"));
                    }
                }
                check_expr(&what, expr, &known, &mut problems);
            }
            (None, Some(record)) => {
                let what = format!("record {record}");
                if !is_recording_name(record) {
                    problems.push(format!("{what}: not level:canopy_metric:operations"));
                }
                if !rule["for"].is_null() || !rule["annotations"].is_null() {
                    problems.push(format!("{what}: a recording rule takes no for/annotations"));
                }
                check_expr(&what, expr, &known, &mut problems);
            }
            _ => problems.push(format!("rule {rule}: exactly one of alert and record")),
        }
    }
    problems
}

fn read(relative: &str) -> String {
    let path = repo_path(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn rules() -> Value {
    serde_saphyr::from_str(&read(RULES)).unwrap_or_else(|e| panic!("{RULES}: {e}"))
}

#[test]
fn the_rules_parse_name_only_canopys_series_and_follow_the_conventions() {
    let known = exported_names();
    let doc = rules();
    let problems = lint_rules(&doc, &known);
    assert!(problems.is_empty(), "{RULES}:\n{}", problems.join("\n"));
    // What the issue asks for, by name.
    let alerts: BTreeSet<&str> = doc["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().into_iter().flatten())
        .filter_map(|r| r["alert"].as_str())
        .collect();
    for alert in [
        "CanopyLeaderAbsent",
        "CanopyWebhookCallsFailing",
        "CanopyWebhookErrors",
        "CanopyWebhookLatencyHigh",
        "CanopyReconcileErrors",
        "CanopyWebhookCertificateExpiringSoon",
        "CanopyWebhookCertificateExpiringCritical",
    ] {
        assert!(alerts.contains(alert), "{alert} missing from {RULES}");
    }
    // Each alert, and each family, is explained in the docs.
    let docs = read("docs/observability.md");
    for (family, _) in canopy::admin::FAMILIES {
        assert!(
            docs.contains(&format!("`{family}")),
            "docs/observability.md does not list {family}"
        );
    }
    for alert in alerts {
        assert!(
            docs.contains(alert),
            "docs/observability.md does not explain {alert}"
        );
    }
}

#[test]
fn the_rule_lint_finds_what_is_wrong() {
    let known = exported_names();
    let bad: Value = serde_saphyr::from_str(
        r#"
groups:
- name: broken
  rules:
  - alert: canopy_leader_gone
    expr: sum(canopy_leader) ==
  - alert: CanopyTypo
    expr: canopy_leaders == 0
    for: 5m
    labels: {severity: page}
    annotations: {summary: x, description: y}
  - record: canopy_leader_sum
    expr: sum(canopy_leader)
"#,
    )
    .expect("YAML");
    let problems = lint_rules(&bad, &known).join("\n");
    for expected in [
        "alert canopy_leader_gone: not CamelCase",
        "alert canopy_leader_gone: no `for:` duration",
        "alert canopy_leader_gone: severity None",
        "alert canopy_leader_gone: no summary annotation",
        "does not parse",
        "alert CanopyTypo: canopy_leaders is not a series canopy exports",
        "alert CanopyTypo: severity Some(\"page\")",
        "record canopy_leader_sum: not level:canopy_metric:operations",
    ] {
        assert!(
            problems.contains(expected),
            "{expected:?} not found in:\n{problems}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// The dashboard

/// A panel's expression as Prometheus receives it: Grafana's variables replaced.
fn as_prometheus_sees_it(expr: &str) -> String {
    expr.replace("$__rate_interval", "5m")
        .replace("$__interval", "1m")
        .replace("$__range", "1h")
        .replace("$tenant", ".*")
}

/// Every problem of `dashboard`: against the schema, and in its expressions.
fn lint_dashboard(dashboard: &Value, known: &BTreeSet<String>) -> Vec<String> {
    let schema: Value = serde_json::from_str(&read(DASHBOARD_SCHEMA)).expect("the schema is JSON");
    let validator = jsonschema::validator_for(&schema).expect("the schema is a JSON Schema");
    let mut problems: Vec<String> = validator
        .iter_errors(dashboard)
        .map(|e| format!("schema: {} at {}", e, e.instance_path()))
        .collect();
    let mut ids = BTreeSet::new();
    for panel in dashboard["panels"].as_array().into_iter().flatten() {
        let title = panel["title"].as_str().unwrap_or_default();
        if !ids.insert(panel["id"].to_string()) {
            problems.push(format!("panel {title:?}: repeated id {}", panel["id"]));
        }
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap_or_default();
            check_expr(
                &format!("panel {title:?}"),
                &as_prometheus_sees_it(expr),
                known,
                &mut problems,
            );
        }
    }
    // `label_values(metric, label)` of the query variables names a series too.
    for variable in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let Some(query) = variable["query"]["query"].as_str() else {
            continue;
        };
        let metric = query
            .strip_prefix("label_values(")
            .and_then(|rest| rest.split(',').next())
            .map(str::trim);
        match metric {
            Some(metric) if known.contains(metric) => {}
            _ => problems.push(format!(
                "variable {}: {query:?} is not label_values of a series canopy exports",
                variable["name"]
            )),
        }
    }
    problems
}

fn dashboard() -> Value {
    serde_json::from_str(&read(DASHBOARD)).unwrap_or_else(|e| panic!("{DASHBOARD}: {e}"))
}

#[test]
fn the_dashboard_follows_the_schema_and_its_queries_name_canopys_series() {
    let known = exported_names();
    let dashboard = dashboard();
    let problems = lint_dashboard(&dashboard, &known);
    assert!(problems.is_empty(), "{DASHBOARD}:\n{}", problems.join("\n"));
    // Every per-tenant series is on it.
    let text = dashboard.to_string();
    for family in [
        "canopy_tenant_namespaces",
        "canopy_tenant_namespaces_max",
        "canopy_tenant_propagated_copies",
        "canopy_tenant_policy_refusals_total",
        "canopy_tenant_quota_used",
        "canopy_tenant_quota_hard",
        "canopy_leader",
    ] {
        assert!(text.contains(family), "{family} is on no panel");
    }
}

#[test]
fn the_dashboard_lint_finds_what_is_wrong() {
    let known = exported_names();
    let mut broken = dashboard();
    let panels = broken["panels"].as_array_mut().expect("panels");
    // A panel without its place, and one whose query names a series nobody exports.
    panels[1]
        .as_object_mut()
        .expect("a panel")
        .remove("gridPos");
    panels[2]["targets"][0]["expr"] = Value::from("sum(canopy_tenant_namespace)");
    panels[3]["targets"][0]["expr"] = Value::from("sum(rate(canopy_leader[5m])");
    let problems = lint_dashboard(&broken, &known).join("\n");
    for expected in [
        "\"gridPos\" is a required property",
        "canopy_tenant_namespace is not a series canopy exports",
        "does not parse",
    ] {
        assert!(
            problems.contains(expected),
            "{expected:?} not found in:\n{problems}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// The chart

fn helm_template(extra: &[&str]) -> Vec<Value> {
    let chart = repo_path("helm/canopy").display().to_string();
    let mut args = vec![
        "template",
        "canopy",
        chart.as_str(),
        "--namespace",
        "canopy-system",
    ];
    args.extend_from_slice(extra);
    let text = helm_ok(&args);
    serde_saphyr::from_multiple::<Value>(&text)
        .unwrap_or_else(|e| panic!("helm's output is not YAML: {e}\n{text}"))
        .into_iter()
        .filter(|v| !v.is_null())
        .collect()
}

fn find<'a>(objects: &'a [Value], kind: &str) -> Option<&'a Value> {
    objects.iter().find(|o| o["kind"] == kind)
}

#[test]
fn the_chart_ships_the_rules_and_the_dashboard_when_asked() {
    let off = helm_template(&[]);
    assert!(
        find(&off, "PrometheusRule").is_none(),
        "rendered by default"
    );
    assert!(
        !off.iter()
            .any(|o| o["metadata"]["name"] == "canopy-grafana-dashboard"),
        "the dashboard is rendered by default"
    );

    let on = helm_template(&[
        "--set",
        "prometheusRule.enabled=true",
        "--set",
        "prometheusRule.labels.release=monitoring",
        "--set",
        "grafanaDashboard.enabled=true",
        "--set",
        "grafanaDashboard.namespace=grafana",
    ]);
    let rule = find(&on, "PrometheusRule").expect("a PrometheusRule");
    assert_eq!(rule["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(rule["metadata"]["namespace"], "canopy-system");
    assert_eq!(rule["metadata"]["labels"]["release"], "monitoring");
    assert_eq!(
        rule["spec"],
        rules(),
        "the PrometheusRule's spec is {RULES}"
    );

    let config_map = on
        .iter()
        .find(|o| o["kind"] == "ConfigMap" && o["metadata"]["name"] == "canopy-grafana-dashboard")
        .expect("the dashboard's ConfigMap");
    assert_eq!(config_map["metadata"]["namespace"], "grafana");
    assert_eq!(config_map["metadata"]["labels"]["grafana_dashboard"], "1");
    let shipped: Value = config_map["data"]["canopy.json"]
        .as_str()
        .and_then(|text| serde_json::from_str(text).ok())
        .expect("canopy.json holds JSON");
    assert_eq!(shipped, dashboard(), "the ConfigMap holds {DASHBOARD}");
}

/// config/prometheus, for kustomize, renders the same rules and dashboard (copies made by
/// hack/sync-manifests.sh).
#[test]
fn kustomize_ships_the_same_rules_and_dashboard() {
    // kubectl comes with the control plane; the one this binary starts anyway.
    cluster_with_canopy();
    let path = repo_path("config/prometheus").display().to_string();
    let rendered: Vec<Value> =
        serde_saphyr::from_multiple::<Value>(&kubectl_ok(&["kustomize", &path]))
            .expect("kustomize renders YAML")
            .into_iter()
            .filter(|v| !v.is_null())
            .collect();
    let rule = find(&rendered, "PrometheusRule").expect("a PrometheusRule");
    assert_eq!(rule["metadata"]["namespace"], "canopy-system");
    assert_eq!(
        rule["spec"],
        rules(),
        "config/prometheus/prometheusrule.yaml is {RULES}: run hack/sync-manifests.sh"
    );
    let config_map = find(&rendered, "ConfigMap").expect("the dashboard's ConfigMap");
    assert_eq!(config_map["metadata"]["name"], "canopy-grafana-dashboard");
    assert_eq!(config_map["metadata"]["labels"]["grafana_dashboard"], "1");
    let shipped: Value = config_map["data"]["canopy.json"]
        .as_str()
        .and_then(|text| serde_json::from_str(text).ok())
        .expect("canopy.json holds JSON");
    assert_eq!(
        shipped,
        dashboard(),
        "config/prometheus/grafana-dashboard.json is {DASHBOARD}: run hack/sync-manifests.sh"
    );
}

// ---------------------------------------------------------------------------------------
// A running manager

fn scrape() -> String {
    let (status, body) = http_get(admin_port(), "/metrics");
    assert_eq!(status, 200, "{body}");
    body
}

/// The value of the sample `series` (name and labels, as exposed), if there is one.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        value.split_whitespace().next()?.parse().ok()
    })
}

/// Copies canopy keeps in `namespaces`, as the apiserver lists them, for the default kinds.
fn copies_listed(namespaces: &[&str]) -> usize {
    let kinds: Vec<String> = canopy::forest::propagated::kinds::default_kinds()
        .iter()
        .map(|r| match r.group.as_str() {
            "" => r.plural.clone(),
            group => format!("{}.{group}", r.plural),
        })
        .collect();
    let kinds = kinds.join(",");
    namespaces
        .iter()
        .map(|ns| {
            kubectl_ok(&[
                "get",
                &kinds,
                "-n",
                ns,
                "-l",
                "canopy.dev/inherited-from",
                "-o",
                "name",
            ])
            .lines()
            .filter(|l| !l.trim().is_empty())
            .count()
        })
        .sum()
}

#[test]
fn a_tenants_series_follow_its_namespaces_copies_quota_and_refusals_and_go_with_it() {
    cluster_with_canopy();
    let tenant = unique("obs");
    let child = format!("{tenant}-dev");
    create_tenant(&tenant, 5, "  quota: {pods: \"10\", services: \"0\"}\n");
    make_subnamespace(&tenant, &child, WAIT);
    let series = |name: &str| format!("{name}{{tenant=\"{tenant}\"}}");

    // Namespaces, their limit and the tenant quota, from the model.
    eventually(
        "the tenant's namespaces and quota on /metrics",
        WAIT,
        || {
            let text = scrape();
            (sample(&text, &series("canopy_tenant_namespaces")) == Some(2.0)
                && sample(&text, &series("canopy_tenant_namespaces_max")) == Some(5.0)
                && sample(
                    &text,
                    &format!("canopy_tenant_quota_hard{{tenant=\"{tenant}\",resource=\"pods\"}}"),
                ) == Some(10.0)
                && sample(
                    &text,
                    &format!("canopy_tenant_quota_used{{tenant=\"{tenant}\",resource=\"pods\"}}"),
                ) == Some(0.0))
            .then_some(())
        },
    );

    // Copies: what the apiserver holds, before and after a Role propagates.
    let copies_agree = || {
        eventually("the tenant's copies on /metrics", WAIT, || {
            let listed = copies_listed(&[&tenant, &child]);
            let exported = sample(&scrape(), &series("canopy_tenant_propagated_copies"))?;
            (exported == listed as f64).then_some(listed)
        })
    };
    let before = copies_agree();
    let role = format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {{name: obs-reader, \
         namespace: {tenant}}}\nrules:\n- {{apiGroups: [\"\"], resources: [pods], verbs: [get]}}\n"
    );
    let out = apply(&role);
    assert!(out.success, "{}", out.stderr);
    eventually("the Role's copy", WAIT, || {
        kubectl(&["get", "role", "obs-reader", "-n", &child])
            .success
            .then_some(())
    });
    let after = copies_agree();
    assert_eq!(after, before + 1, "the Role's copy is counted once");

    // A Pod refused by the resources policy in the child is the tenant's refusal. (Not a
    // hostPath Pod: Pod Security Admission, at the tenant's baseline level, refuses that
    // before any webhook is called.)
    let pod = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: obs-unbounded, namespace: {child}}}\n\
         spec:\n  containers:\n  - {{name: c, image: registry.k8s.io/pause:3.10}}\n"
    );
    let refused = kubectl_with_stdin(&["create", "-f", "-"], Some(&pod));
    assert!(!refused.success, "a Pod without resources was admitted");
    assert!(
        refused.stderr.contains("refused by canopy"),
        "{}",
        refused.stderr
    );
    let refusals =
        format!("canopy_tenant_policy_refusals_total{{tenant=\"{tenant}\",policy=\"resources\"}}");
    eventually("the refusal on /metrics", WAIT, || {
        (sample(&scrape(), &refusals) == Some(1.0)).then_some(())
    });

    // A Service beyond the tenant quota is the tenant's `quota` refusal.
    let service = format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: obs-web, namespace: {child}}}\n\
         spec:\n  ports: [{{port: 80}}]\n"
    );
    let refused = kubectl_with_stdin(&["create", "-f", "-"], Some(&service));
    assert!(!refused.success, "a Service beyond the quota was admitted");
    let quota_refusals =
        format!("canopy_tenant_policy_refusals_total{{tenant=\"{tenant}\",policy=\"quota\"}}");
    eventually("the quota refusal on /metrics", WAIT, || {
        (sample(&scrape(), &quota_refusals) == Some(1.0)).then_some(())
    });

    // The process-wide series the alerts read are there too.
    let text = scrape();
    assert_eq!(sample(&text, "canopy_leader"), Some(1.0), "{text}");
    let expires = sample(
        &text,
        "canopy_webhook_certificate_expiration_timestamp_seconds",
    )
    .expect("the certificate's expiry is served");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64();
    assert!(expires > now, "the served certificate expired at {expires}");
    // Every family served is in the catalogue the lint and the docs use.
    for (name, kind) in families_served(&text) {
        assert!(
            canopy::admin::FAMILIES.contains(&(name.as_str(), kind.as_str())),
            "{name} ({kind}) is served but not in admin::FAMILIES"
        );
    }

    // The Tenant goes: so do its series, the refusal counter's included.
    kubectl_ok(&["delete", "tenant", &tenant, "--wait=true", "--timeout=90s"]);
    eventually("the tenant's series gone", WAIT, || {
        let text = scrape();
        let needle = format!("tenant=\"{tenant}\"");
        (!text.contains(&needle)).then_some(())
    });
}
