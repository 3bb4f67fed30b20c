//! What breaks a guardrail, as data with its text, reason and fix (the checks are in
//! `guardrails.rs`).

/// What breaks a guardrail; each carries what its reason quotes (the allowed values).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Breach {
    /// `runtimeClassName` unset (`None`) or not allowed.
    RuntimeClass {
        value: Option<String>,
        allowed: Vec<String>,
        default: Option<String>,
    },
    /// The node selector lacks `key: value` (or selects `found` instead), and no required
    /// node affinity term pins it either.
    NodeSelector {
        key: String,
        value: String,
        found: Option<String>,
        required: Vec<(String, String)>,
    },
    /// A claim's class is not allowed.
    StorageClass {
        class: ClaimClass,
        allowed: Vec<String>,
    },
    /// A Service of a type the tenant was not given.
    ServiceType { value: String, allowed: Vec<String> },
    /// A LoadBalancer that allocates node ports where NodePort is not allowed.
    LoadBalancerNodePorts { allowed: Vec<String> },
    /// An external IP outside the allowed CIDRs.
    ExternalIp { ip: String, allowed: Vec<String> },
    /// A container image that starts with no allowed prefix.
    Image { image: String, allowed: Vec<String> },
    /// A `priorityClassName` not allowed.
    PriorityClass { value: String, allowed: Vec<String> },
}

/// The class a claim asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClaimClass {
    Named(String),
    /// `storageClassName: ""`: no class at all, binding only to a pre-provisioned volume
    /// without one.
    Empty,
    /// No `storageClassName`: the cluster's default class, if any.
    Default(Option<String>),
}

fn quoted(values: &[String]) -> String {
    values
        .iter()
        .map(|v| format!("{v:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn one_of(values: &[String]) -> String {
    match values {
        [one] => format!("{one:?}"),
        _ => format!("one of {}", quoted(values)),
    }
}

const ASK: &str = "ask a cluster admin to allow one in the Tenant's spec";

impl Breach {
    /// What is wrong, following the subject (`spec.runtimeClassName is unset`).
    pub fn text(&self) -> String {
        match self {
            Breach::RuntimeClass { value: None, .. } => "is unset".to_owned(),
            Breach::RuntimeClass { value: Some(v), .. }
            | Breach::ServiceType { value: v, .. }
            | Breach::PriorityClass { value: v, .. } => format!("is {v:?}"),
            Breach::NodeSelector {
                key, found: None, ..
            } => format!("does not select {key}"),
            Breach::NodeSelector {
                key,
                found: Some(found),
                ..
            } => format!("selects {key}={found:?}"),
            Breach::StorageClass { class, .. } => match class {
                ClaimClass::Named(name) => format!("is {name:?}"),
                ClaimClass::Empty => {
                    "is \"\", which asks for a pre-provisioned volume of no class".to_owned()
                }
                ClaimClass::Default(Some(default)) => {
                    format!("is unset, which means the cluster's default class {default:?}")
                }
                ClaimClass::Default(None) => {
                    "is unset and the cluster has no default StorageClass".to_owned()
                }
            },
            Breach::LoadBalancerNodePorts { .. } => {
                "is not false, so the LoadBalancer opens node ports".to_owned()
            }
            Breach::ExternalIp { ip, .. } => format!("is {ip:?}"),
            Breach::Image { image, .. } => format!("uses image {image:?}"),
        }
    }

    /// Why, said once per message for each distinct reason.
    pub fn reason(&self, tenant: Option<&str>) -> String {
        let who = match tenant {
            Some(tenant) => format!("tenant {tenant}"),
            None => "the tenant".to_owned(),
        };
        let allows = |what: &str, allowed: &[String]| {
            if allowed.is_empty() {
                format!("{who} allows no {what}")
            } else {
                format!("{who} allows {what} {}", quoted(allowed))
            }
        };
        match self {
            Breach::RuntimeClass { allowed, .. } => allows("runtime classes", allowed),
            Breach::NodeSelector { required, .. } => {
                let labels: Vec<String> =
                    required.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!(
                    "{who} runs Pods only on nodes labelled {}",
                    labels.join(", ")
                )
            }
            Breach::StorageClass { allowed, .. } => allows("storage classes", allowed),
            Breach::ServiceType { allowed, .. } | Breach::LoadBalancerNodePorts { allowed } => {
                allows("Service types", allowed)
            }
            Breach::ExternalIp { allowed, .. } if allowed.is_empty() => {
                format!("{who} allows no external IPs")
            }
            Breach::ExternalIp { allowed, .. } => {
                format!("{who} allows external IPs in {}", allowed.join(", "))
            }
            Breach::Image { allowed, .. } => allows("images from", allowed),
            Breach::PriorityClass { allowed, .. } => allows("priority classes", allowed),
        }
    }

    /// How to fix it; `field_path` is the violation's.
    pub fn fix(&self, field_path: &str) -> String {
        let set = |allowed: &[String]| {
            if allowed.is_empty() {
                ASK.to_owned()
            } else {
                format!("set {field_path} to {}", one_of(allowed))
            }
        };
        match self {
            Breach::RuntimeClass {
                default: Some(default),
                ..
            } => format!("set {field_path} to {default:?}"),
            Breach::RuntimeClass { allowed, .. } | Breach::StorageClass { allowed, .. } => {
                set(allowed)
            }
            Breach::NodeSelector { key, value, .. } => {
                format!("set {field_path}.{key} to {value:?}")
            }
            Breach::ServiceType { allowed, .. } => set(allowed),
            Breach::LoadBalancerNodePorts { .. } => format!("set {field_path} to false"),
            Breach::ExternalIp { .. } => "remove it".to_owned(),
            Breach::Image { allowed, .. } if allowed.is_empty() => ASK.to_owned(),
            Breach::Image { allowed, .. } => {
                format!("use an image that starts with {}", one_of(allowed))
            }
            Breach::PriorityClass { allowed, .. } if allowed.is_empty() => "remove it".to_owned(),
            Breach::PriorityClass { allowed, .. } => {
                format!("set it to {} or remove it", one_of(allowed))
            }
        }
    }
}
