//! How objects count against a `HierarchicalResourceQuota`: the rules of the apiserver's
//! own quota evaluators (`pkg/quota/v1/evaluator/core`) for Pods, Services and
//! PersistentVolumeClaims, the object count `count/<resource>[.<group>]` of any other
//! namespaced kind (the apiserver's generic evaluator), and exact quantity arithmetic.
//!
//! Amounts are kept in thousandths (`i128`), as `Quantity.MilliValue` does: a fraction
//! below a thousandth is rounded up, so usage is never undercounted.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, PersistentVolumeClaim, Pod, ResourceRequirements, Service,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// Usage or limits per resource name, in thousandths.
pub type Amounts = BTreeMap<String, i128>;

/// The resources (as `request.resource` names) whose objects canopy counts.
pub const COUNTED: [&str; 3] = ["pods", "services", "persistentvolumeclaims"];

const STORAGE_CLASS_SUFFIX: &str = ".storageclass.storage.k8s.io/";

/// The object count of a resource as `spec.hard` names it: `count/<plural>` for the core
/// group, `count/<plural>.<group>` otherwise (as the apiserver's ResourceQuota does).
pub fn count_name(group: &str, plural: &str) -> String {
    if group.is_empty() {
        format!("count/{plural}")
    } else {
        format!("count/{plural}.{group}")
    }
}

/// The `(group, plural)` that a `count/...` name counts; `None` for any other name or a
/// malformed one. A plural has no dot, so the first dot starts the group.
pub fn counted_resource(name: &str) -> Option<(String, String)> {
    let rest = name.strip_prefix("count/")?;
    let (plural, group) = match rest.split_once('.') {
        Some((_, "")) => return None,
        Some(split) => split,
        None => (rest, ""),
    };
    let dns = |s: &str| {
        !s.is_empty()
            && s.len() <= 253
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
            && !s.starts_with(['-', '.'])
            && !s.ends_with(['-', '.'])
    };
    (dns(plural) && !plural.contains('.') && (group.is_empty() || dns(group)))
        .then(|| (group.to_owned(), plural.to_owned()))
}

/// Whether `name` is an object count of a kind other than the three whose evaluators
/// canopy runs itself (those are counted from their own watches): one that needs a
/// watch of its kind's metadata.
pub fn is_generic_count(name: &str) -> bool {
    counted_resource(name)
        .is_some_and(|(group, plural)| !(group.is_empty() && COUNTED.contains(&plural.as_str())))
}

/// The usage of one object of a generically counted kind: one of it.
pub fn object_count(group: &str, plural: &str) -> Amounts {
    Amounts::from([(count_name(group, plural), ONE)])
}

/// Whether canopy counts the resource name `name` in `spec.hard`.
pub fn is_supported(name: &str) -> bool {
    counted_resource(name).is_some()
        || matches!(
            name,
            "pods"
                | "services"
                | "services.loadbalancers"
                | "services.nodeports"
                | "persistentvolumeclaims"
                | "requests.storage"
                | "cpu"
                | "memory"
                | "ephemeral-storage"
        )
        || name
            .strip_prefix("requests.")
            .is_some_and(|r| !r.is_empty())
        || name.strip_prefix("limits.").is_some_and(|r| !r.is_empty())
        || name
            .split_once(STORAGE_CLASS_SUFFIX)
            .is_some_and(|(class, what)| {
                !class.is_empty() && matches!(what, "requests.storage" | "persistentvolumeclaims")
            })
}

/// A quantity in thousandths; `None` when it is not a quantity (or absurdly large).
pub fn parse_milli(quantity: &str) -> Option<i128> {
    let s = quantity.trim();
    let (sign, s) = match s.strip_prefix('-') {
        Some(rest) => (-1, rest),
        None => (1, s.strip_prefix('+').unwrap_or(s)),
    };
    let number_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(number_end);
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    if int.is_empty() && frac.is_empty() || frac.contains('.') {
        return None;
    }
    let digits = format!("{int}{frac}");
    if digits.len() > 30 {
        return None;
    }
    let mantissa: i128 = digits.parse().ok()?;
    let (binary_power, decimal_exponent): (u32, i32) = match suffix {
        "" => (0, 0),
        "Ki" => (1, 0),
        "Mi" => (2, 0),
        "Gi" => (3, 0),
        "Ti" => (4, 0),
        "Pi" => (5, 0),
        "Ei" => (6, 0),
        "n" => (0, -9),
        "u" => (0, -6),
        "m" => (0, -3),
        "k" => (0, 3),
        "M" => (0, 6),
        "G" => (0, 9),
        "T" => (0, 12),
        "P" => (0, 15),
        "E" => (0, 18),
        exp => {
            let exp = exp.strip_prefix(['e', 'E'])?;
            (0, exp.parse::<i32>().ok().filter(|e| e.abs() <= 30)?)
        }
    };
    let binary = 1024i128.checked_pow(binary_power)?;
    let scaled = mantissa.checked_mul(binary)?;
    // thousandths: 10^(exponent - fraction digits + 3)
    let exponent = decimal_exponent - frac.len() as i32 + 3;
    let value = if exponent >= 0 {
        scaled.checked_mul(10i128.checked_pow(exponent as u32)?)?
    } else {
        let divisor = 10i128.checked_pow((-exponent) as u32)?;
        (scaled + divisor - 1) / divisor
    };
    Some(sign * value)
}

/// Thousandths written as a quantity: whole numbers plainly (`Mi`/`Gi` when exact and
/// large), else in `m`.
pub fn format_milli(milli: i128) -> String {
    if milli % 1000 != 0 {
        return format!("{milli}m");
    }
    let whole = milli / 1000;
    const MI: i128 = 1 << 20;
    const GI: i128 = 1 << 30;
    if whole != 0 && whole % GI == 0 {
        format!("{}Gi", whole / GI)
    } else if whole != 0 && whole % MI == 0 {
        format!("{}Mi", whole / MI)
    } else {
        whole.to_string()
    }
}

/// Reads a list of quantities; `Err` names the first one that is not a quantity.
pub fn parse_list(list: &BTreeMap<String, Quantity>) -> Result<Amounts, String> {
    list.iter()
        .map(|(name, q)| {
            parse_milli(&q.0)
                .map(|v| (name.clone(), v))
                .ok_or_else(|| format!("{name}: {:?} is not a quantity", q.0))
        })
        .collect()
}

/// Writes amounts as quantities.
pub fn format_list(amounts: &Amounts) -> BTreeMap<String, Quantity> {
    amounts
        .iter()
        .map(|(name, v)| (name.clone(), Quantity(format_milli(*v))))
        .collect()
}

/// `amounts` restricted to the names in `hard`.
pub fn restrict(amounts: &Amounts, hard: &Amounts) -> Amounts {
    amounts
        .iter()
        .filter(|(name, _)| hard.contains_key(*name))
        .map(|(name, v)| (name.clone(), *v))
        .collect()
}

/// Adds `other` into `into`.
pub fn add(into: &mut Amounts, other: &Amounts) {
    for (name, v) in other {
        *into.entry(name.clone()).or_insert(0) += v;
    }
}

/// Subtracts `other` from `from`, never below zero, dropping zeros.
pub fn subtract(from: &mut Amounts, other: &Amounts) {
    for (name, v) in other {
        if let Some(have) = from.get_mut(name) {
            *have = (*have - v).max(0);
        }
    }
}

/// What `new` adds to `old`: the positive differences only (a decrease is given back by
/// the controller's recount, not at admission).
pub fn increase(old: &Amounts, new: &Amounts) -> Amounts {
    new.iter()
        .filter_map(|(name, v)| {
            let more = v - old.get(name).copied().unwrap_or(0);
            (more > 0).then(|| (name.clone(), more))
        })
        .collect()
}

const ONE: i128 = 1000;

/// A Pod's usage, as the apiserver's pod evaluator counts it; nothing for a Pod that has
/// finished (`Succeeded`, `Failed`).
pub fn pod_usage(pod: &Pod) -> Amounts {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    if matches!(phase, Some("Succeeded" | "Failed")) {
        return Amounts::new();
    }
    let mut usage = Amounts::from([("pods".to_owned(), ONE), ("count/pods".to_owned(), ONE)]);
    let Some(spec) = pod.spec.as_ref() else {
        return usage;
    };
    let requirements = |c: &Container, limits: bool| -> Amounts {
        let list = c.resources.as_ref().and_then(|r| {
            if limits {
                r.limits.as_ref()
            } else {
                r.requests.as_ref()
            }
        });
        list.map(quantities).unwrap_or_default()
    };
    for limits in [false, true] {
        let pod_level = spec
            .resources
            .as_ref()
            .and_then(|r: &ResourceRequirements| {
                if limits {
                    r.limits.as_ref()
                } else {
                    r.requests.as_ref()
                }
            });
        let mut total = Amounts::new();
        // Regular containers and sidecars (restartable init containers) run together;
        // each other init container runs alone, next to the sidecars started before it.
        for c in &spec.containers {
            add(&mut total, &requirements(c, limits));
        }
        let mut sidecars = Amounts::new();
        let mut peak = Amounts::new();
        for c in spec.init_containers.iter().flatten() {
            let own = requirements(c, limits);
            if c.restart_policy.as_deref() == Some("Always") {
                add(&mut sidecars, &own);
            } else {
                let mut alone = own;
                add(&mut alone, &sidecars);
                for (name, v) in alone {
                    let p = peak.entry(name).or_insert(0);
                    *p = (*p).max(v);
                }
            }
        }
        add(&mut total, &sidecars);
        for (name, v) in peak {
            let t = total.entry(name).or_insert(0);
            *t = (*t).max(v);
        }
        // Pod-level resources, where set, are the Pod's for those resources.
        if let Some(list) = pod_level {
            total.extend(quantities(list));
        }
        if let Some(overhead) = spec.overhead.as_ref() {
            add(&mut total, &quantities(overhead));
        }
        let prefix = if limits { "limits." } else { "requests." };
        for (name, v) in total {
            if !limits && matches!(name.as_str(), "cpu" | "memory" | "ephemeral-storage") {
                usage.insert(name.clone(), v);
            }
            usage.insert(format!("{prefix}{name}"), v);
        }
    }
    usage
}

/// A Service's usage: one service, one load balancer if it is one, and its node ports.
pub fn service_usage(service: &Service) -> Amounts {
    let mut usage = Amounts::from([
        ("services".to_owned(), ONE),
        ("count/services".to_owned(), ONE),
    ]);
    let Some(spec) = service.spec.as_ref() else {
        return usage;
    };
    let ports = spec.ports.as_ref().map_or(0, Vec::len) as i128;
    match spec.type_.as_deref() {
        Some("NodePort") => {
            usage.insert("services.nodeports".to_owned(), ports * ONE);
        }
        Some("LoadBalancer") => {
            usage.insert("services.loadbalancers".to_owned(), ONE);
            if spec.allocate_load_balancer_node_ports != Some(false) {
                usage.insert("services.nodeports".to_owned(), ports * ONE);
            }
        }
        _ => {}
    }
    usage
}

/// A PersistentVolumeClaim's usage: one claim and its requested storage, also per
/// storage class.
pub fn claim_usage(claim: &PersistentVolumeClaim) -> Amounts {
    let mut usage = Amounts::from([
        ("persistentvolumeclaims".to_owned(), ONE),
        ("count/persistentvolumeclaims".to_owned(), ONE),
    ]);
    let spec = claim.spec.as_ref();
    let storage = spec
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .and_then(|q| parse_milli(&q.0))
        .unwrap_or(0);
    usage.insert("requests.storage".to_owned(), storage);
    if let Some(class) = spec
        .and_then(|s| s.storage_class_name.as_deref())
        .filter(|c| !c.is_empty())
    {
        usage.insert(
            format!("{class}{STORAGE_CLASS_SUFFIX}persistentvolumeclaims"),
            ONE,
        );
        usage.insert(
            format!("{class}{STORAGE_CLASS_SUFFIX}requests.storage"),
            storage,
        );
    }
    usage
}

/// The usage of an object of `resource` given as JSON; `None` for a resource canopy does
/// not count, `Err` when the object cannot be read as its kind.
pub fn usage_of(resource: &str, object: serde_json::Value) -> Option<Result<Amounts, String>> {
    let read = |e: serde_json::Error| e.to_string();
    Some(match resource {
        "pods" => serde_json::from_value(object)
            .map(|p| pod_usage(&p))
            .map_err(read),
        "services" => serde_json::from_value(object)
            .map(|s| service_usage(&s))
            .map_err(read),
        "persistentvolumeclaims" => serde_json::from_value(object)
            .map(|c| claim_usage(&c))
            .map_err(read),
        _ => return None,
    })
}

/// The `used/hard` summaries of HNC's printer columns: every resource that is not a
/// limit, and every `limits.*` resource.
pub fn summaries(used: &Amounts, hard: &Amounts) -> (String, String) {
    let cell = |name: &str, h: &i128| {
        format!(
            "{name}: {}/{}",
            format_milli(used.get(name).copied().unwrap_or(0)),
            format_milli(*h)
        )
    };
    let requests: Vec<String> = hard
        .iter()
        .filter(|(n, _)| !n.starts_with("limits."))
        .map(|(n, h)| cell(n, h))
        .collect();
    let limits: Vec<String> = hard
        .iter()
        .filter(|(n, _)| n.starts_with("limits."))
        .map(|(n, h)| cell(n, h))
        .collect();
    (requests.join(", "), limits.join(", "))
}

fn quantities(list: &BTreeMap<String, Quantity>) -> Amounts {
    list.iter()
        .filter_map(|(name, q)| parse_milli(&q.0).map(|v| (name.clone(), v)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn quantities_are_exact_thousandths() {
        for (q, milli) in [
            ("1", 1000),
            ("100m", 100),
            ("1.5", 1500),
            ("0.0001", 1),
            ("1Ki", 1_024_000),
            ("1Gi", 1_073_741_824_000),
            ("1k", 1_000_000),
            ("1e3", 1_000_000),
            ("2M", 2_000_000_000),
            ("-1", -1000),
            ("1n", 1),
        ] {
            assert_eq!(parse_milli(q), Some(milli), "{q}");
        }
        for bad in ["", "x", "1x", "1..2", "."] {
            assert_eq!(parse_milli(bad), None, "{bad}");
        }
        assert_eq!(format_milli(1500), "1500m");
        assert_eq!(format_milli(5000), "5");
        assert_eq!(format_milli(1_073_741_824_000), "1Gi");
        assert_eq!(format_milli(256 * 1_048_576_000), "256Mi");
    }

    #[test]
    fn a_pod_counts_its_containers_sidecars_init_containers_and_overhead() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p"},
            "spec": {
                "containers": [
                    {"name": "a", "resources": {"requests": {"cpu": "100m"}, "limits": {"cpu": "200m", "memory": "1Gi"}}},
                    {"name": "b", "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}
                ],
                "initContainers": [
                    {"name": "side", "restartPolicy": "Always", "resources": {"requests": {"cpu": "50m"}}},
                    {"name": "big", "resources": {"requests": {"cpu": "2"}}}
                ],
                "overhead": {"cpu": "10m"}
            }
        }))
        .expect("pod");
        let usage = pod_usage(&pod);
        assert_eq!(usage["pods"], 1000);
        // max(100m + 100m + 50m, 2 + 50m) + 10m
        assert_eq!(usage["requests.cpu"], 2060);
        assert_eq!(usage["cpu"], 2060);
        assert_eq!(usage["requests.memory"], 64 * 1_048_576_000);
        assert_eq!(usage["limits.cpu"], 210);
        assert_eq!(usage["limits.memory"], 1_073_741_824_000);
    }

    #[test]
    fn finished_pods_count_nothing() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p"}, "spec": {"containers": []}, "status": {"phase": "Succeeded"}
        }))
        .expect("pod");
        assert!(pod_usage(&pod).is_empty());
    }

    #[test]
    fn services_and_claims_count_like_the_apiserver() {
        let svc: Service = serde_json::from_value(json!({
            "metadata": {"name": "s"},
            "spec": {"type": "LoadBalancer", "ports": [{"port": 80}, {"port": 443}]}
        }))
        .expect("service");
        let usage = service_usage(&svc);
        assert_eq!(usage["services.loadbalancers"], 1000);
        assert_eq!(usage["services.nodeports"], 2000);
        let pvc: PersistentVolumeClaim = serde_json::from_value(json!({
            "metadata": {"name": "c"},
            "spec": {"storageClassName": "fast", "resources": {"requests": {"storage": "10Gi"}}}
        }))
        .expect("claim");
        let usage = claim_usage(&pvc);
        assert_eq!(usage["requests.storage"], 10 * 1_073_741_824_000);
        assert_eq!(
            usage["fast.storageclass.storage.k8s.io/persistentvolumeclaims"],
            1000
        );
    }

    #[test]
    fn supported_names() {
        for ok in [
            "pods",
            "requests.cpu",
            "limits.memory",
            "requests.nvidia.com/gpu",
            "count/services",
            "fast.storageclass.storage.k8s.io/requests.storage",
        ] {
            assert!(is_supported(ok), "{ok}");
        }
        for no in [
            "configmaps",
            "requests.",
            "x",
            "count/",
            "count/.apps",
            "count/Pods",
        ] {
            assert!(!is_supported(no), "{no}");
        }
    }

    #[test]
    fn object_counts_are_named_as_the_apiserver_names_them() {
        assert_eq!(count_name("", "configmaps"), "count/configmaps");
        assert_eq!(count_name("apps", "deployments"), "count/deployments.apps");
        assert_eq!(
            counted_resource("count/deployments.apps"),
            Some(("apps".into(), "deployments".into()))
        );
        assert_eq!(
            counted_resource("count/widgets.example.com"),
            Some(("example.com".into(), "widgets".into()))
        );
        assert_eq!(
            counted_resource("count/secrets"),
            Some(("".into(), "secrets".into()))
        );
        for no in ["count/", "count/a..b", "count/x.", "pods", "count/UPPER"] {
            assert_eq!(counted_resource(no), None, "{no}");
        }
        // Pods, Services and claims have their own evaluators and watches.
        assert!(!is_generic_count("count/pods"));
        assert!(!is_generic_count("count/persistentvolumeclaims"));
        assert!(is_generic_count("count/configmaps"));
        assert!(is_generic_count("count/pods.example.com"));
        assert!(!is_generic_count("requests.cpu"));
        assert_eq!(
            object_count("apps", "deployments")["count/deployments.apps"],
            1000
        );
    }

    #[test]
    fn increases_only() {
        let old = Amounts::from([("a".into(), 5), ("b".into(), 5)]);
        let new = Amounts::from([("a".into(), 7), ("b".into(), 3), ("c".into(), 1)]);
        assert_eq!(
            increase(&old, &new),
            Amounts::from([("a".into(), 2), ("c".into(), 1)])
        );
    }
}
