//! Runs canopy's Argo CD health checks (`config/argocd/*.lua`) the way Argo CD does: the
//! object as the global `obj`, the script's returned table read for `status` and
//! `message`. Lua 5.1, the dialect of Argo CD's gopher-lua. Used by `tests/argocd_health.rs`
//! on fixtures and by `tests/readme.rs` on live objects.

#![allow(dead_code)] // each test binary uses a different part of this module

use std::path::{Path, PathBuf};

use mlua::{Lua, LuaSerdeExt, SerializeOptions, Table};
use serde_json::Value;

/// One kind's health check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HealthCheck {
    Tenant,
    SubnamespaceAnchor,
    HierarchyConfiguration,
    CanopyConfiguration,
}

impl HealthCheck {
    pub const ALL: [HealthCheck; 4] = [
        HealthCheck::Tenant,
        HealthCheck::SubnamespaceAnchor,
        HealthCheck::HierarchyConfiguration,
        HealthCheck::CanopyConfiguration,
    ];

    /// The kind, as in Argo CD's `resource.customizations.health.canopy.dev_<Kind>`.
    pub fn kind(self) -> &'static str {
        match self {
            HealthCheck::Tenant => "Tenant",
            HealthCheck::SubnamespaceAnchor => "SubnamespaceAnchor",
            HealthCheck::HierarchyConfiguration => "HierarchyConfiguration",
            HealthCheck::CanopyConfiguration => "CanopyConfiguration",
        }
    }

    /// The script's file in `config/argocd/`.
    pub fn file(self) -> String {
        format!("{}.lua", self.kind().to_lowercase())
    }

    pub fn script(self) -> String {
        let path = repo_path("config/argocd").join(self.file());
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
    }
}

pub fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// Builds the Go tool `hack/<name>` into the test binary's scratch directory and returns
/// its path. Callers keep the result in a `OnceLock`, to build it once per binary.
pub fn go_build(name: &str) -> PathBuf {
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let status = std::process::Command::new("go")
        .args(["build", "-o"])
        .arg(&out)
        .arg(".")
        .current_dir(repo_path("hack").join(name))
        .status()
        .expect("go runs (make tools installs it)");
    assert!(status.success(), "building hack/{name} failed");
    out
}

/// `(hs.status, hs.message)` of `check` run on `obj` (a JSON object, as Argo CD passes the
/// live object).
pub fn health(check: HealthCheck, obj: &Value) -> (String, String) {
    let lua = Lua::new();
    // JSON null becomes nil, as in Argo CD (which decodes the object into plain tables).
    let options = SerializeOptions::new()
        .serialize_none_to_null(false)
        .serialize_unit_to_null(false)
        .set_array_metatable(false);
    let value = lua
        .to_value_with(obj, options)
        .expect("the object converts to a Lua table");
    lua.globals().set("obj", value).expect("set obj");
    let hs: Table = lua
        .load(check.script())
        .set_name(check.file())
        .eval()
        .unwrap_or_else(|e| panic!("{} fails on {obj}: {e}", check.file()));
    let status: String = hs.get("status").expect("hs.status is a string");
    let message: Option<String> = hs.get("message").expect("hs.message is a string or nil");
    assert!(
        [
            "Healthy",
            "Progressing",
            "Degraded",
            "Suspended",
            "Missing",
            "Unknown"
        ]
        .contains(&status.as_str()),
        "{} returned status {status:?}, which Argo CD does not know",
        check.file()
    );
    (status, message.unwrap_or_default())
}

/// `(hs.status, hs.message)` of `check` run on `obj` by `hack/argocd-lua`: gopher-lua, the
/// interpreter Argo CD embeds, with the object decoded as Argo CD decodes it. Built with Go
/// once per test binary.
pub fn health_on_gopher_lua(check: HealthCheck, obj: &Value) -> (String, String) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    use std::sync::OnceLock;
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let tool = BUILT.get_or_init(|| go_build("argocd-lua"));
    let script = repo_path("config/argocd").join(check.file());
    let mut child = Command::new(tool)
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("argocd-lua runs");
    writeln!(child.stdin.take().expect("stdin"), "{obj}").expect("write the object");
    let out = child.wait_with_output().expect("argocd-lua finishes");
    assert!(
        out.status.success(),
        "{} fails on gopher-lua for {obj}: {}",
        check.file(),
        String::from_utf8_lossy(&out.stderr)
    );
    let hs: Value = serde_json::from_slice(&out.stdout).expect("argocd-lua prints JSON");
    let field = |k: &str| hs[k].as_str().unwrap_or_default().to_owned();
    (field("status"), field("message"))
}
