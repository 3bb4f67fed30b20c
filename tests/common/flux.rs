//! Flux's verdict on an object: the `healthCheckExprs` of the `tenants` Kustomization in
//! `docs/gitops.md`, evaluated by `hack/flux-cel` (cel-go, as kustomize-controller
//! evaluates them). Used by `tests/argocd_health.rs`, which requires Flux and Argo CD to
//! agree on every object.

#![allow(dead_code)] // each test binary uses a different part of this module

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use serde_json::{Value, json};

use crate::argocd::repo_path;

/// What kustomize-controller makes of an object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Current,
    Failed,
    InProgress,
    /// An expression could not be evaluated (a field that is not there yet):
    /// kustomize-controller waits, as for `InProgress`, until its timeout.
    Error(String),
}

/// `hack/flux-cel`, built once per test binary.
fn evaluator() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| crate::argocd::go_build("flux-cel"))
}

/// The `healthCheckExprs` entries of the `tenants` Kustomization in docs/gitops.md.
pub fn health_check_exprs() -> Vec<Value> {
    let doc = std::fs::read_to_string(repo_path("docs/gitops.md")).expect("docs/gitops.md");
    let block = doc
        .split("```yaml\n")
        .skip(1)
        .filter_map(|b| b.split("```").next())
        .find(|b| b.contains("healthCheckExprs:"))
        .expect("docs/gitops.md has a yaml block with healthCheckExprs");
    let tenants = block
        .split("\n---\n")
        .map(|d| serde_saphyr::from_str::<Value>(d).expect("each document is YAML"))
        .find(|d| d["kind"] == "Kustomization" && d["metadata"]["name"] == "tenants")
        .expect("the Kustomization `tenants`");
    tenants["spec"]["healthCheckExprs"]
        .as_array()
        .expect("a healthCheckExprs list")
        .clone()
}

/// Flux's verdict on `obj`, or `None` when no expression names its kind (kstatus decides).
pub fn verdict(obj: &Value) -> Option<Verdict> {
    let exprs = health_check_exprs()
        .into_iter()
        .find(|e| e["apiVersion"] == obj["apiVersion"] && e["kind"] == obj["kind"])?;
    let request = json!({
        "inProgress": exprs["inProgress"].as_str().unwrap_or_default(),
        "failed": exprs["failed"].as_str().unwrap_or_default(),
        "current": exprs["current"].as_str().unwrap_or_default(),
        "object": obj,
    });
    let mut child = Command::new(evaluator())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("flux-cel runs");
    writeln!(child.stdin.take().expect("stdin"), "{request}").expect("write the request");
    let out = child.wait_with_output().expect("flux-cel finishes");
    assert!(out.status.success(), "flux-cel failed on {request}");
    let line = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    Some(match line.as_str() {
        "Current" => Verdict::Current,
        "Failed" => Verdict::Failed,
        "InProgress" => Verdict::InProgress,
        other => Verdict::Error(other.to_owned()),
    })
}
