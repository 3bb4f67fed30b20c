//! The helm binary the tests use (`CANOPY_HELM`, which `make test` sets; built by
//! hack/build-helm.sh), run so that it reads and writes nothing outside a private
//! directory. Shared by tests/packaging.rs, tests/observability.rs (through `common`) and
//! tests/release.rs (which includes it alone).

#![allow(dead_code)] // each test binary uses a different part of this module

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

pub fn helm() -> PathBuf {
    let Some(path) = std::env::var_os("CANOPY_HELM").filter(|p| !p.is_empty()) else {
        panic!(
            "CANOPY_HELM is not set: the tests render, lint and install helm/canopy with a \
             helm binary. Run them through `make test`, or build helm with \
             `hack/build-helm.sh` and export CANOPY_HELM=<the path it prints>"
        );
    };
    let path = PathBuf::from(path);
    assert!(
        path.is_file(),
        "CANOPY_HELM={} is not a file; run `make helm-cli` (hack/build-helm.sh)",
        path.display()
    );
    path
}

/// A helm command that reads and writes nothing outside a private directory.
pub fn helm_command(args: &[&str]) -> Command {
    static HOME: OnceLock<tempfile::TempDir> = OnceLock::new();
    let home = HOME.get_or_init(|| tempfile::tempdir().expect("a temporary helm home"));
    let mut cmd = Command::new(helm());
    cmd.args(args)
        .env("HELM_CACHE_HOME", home.path().join("cache"))
        .env("HELM_CONFIG_HOME", home.path().join("config"))
        .env("HELM_DATA_HOME", home.path().join("data"))
        .env_remove("KUBECONFIG");
    cmd
}

/// Runs helm with `args`, which must succeed; its standard output.
#[track_caller]
pub fn helm_ok(args: &[&str]) -> String {
    let out = helm_command(args).output().expect("helm runs");
    assert!(
        out.status.success(),
        "helm {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}
