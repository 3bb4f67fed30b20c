//! OCI images written without a Docker engine: one layer of files, an image config, a
//! manifest, `index.json` and `oci-layout`, packed into an OCI archive (a tar of the
//! layout) that `ctr images import`, `skopeo copy oci-archive:...` and `podman load`
//! read. `make image` writes canopy's own image this way; the local node loads it, the
//! toolbox image and the pause image (src/dev/node/images.rs).
//!
//! Reproducible: entries are sorted, owned by 0:0, and stamped with a fixed mtime
//! (`SOURCE_DATE_EPOCH`, else 0), so the same inputs give the same digests.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;
use sha2::{Digest, Sha256};

use super::DevError;

/// The user canopy's image runs as (the chart's `runAsUser`).
pub const NONROOT_UID: u32 = 65532;

/// One entry of the image's single layer.
#[derive(Clone, Debug)]
pub enum Entry {
    Dir {
        path: String,
        mode: u32,
    },
    File {
        path: String,
        mode: u32,
        contents: Vec<u8>,
    },
    Symlink {
        path: String,
        target: String,
    },
}

impl Entry {
    fn path(&self) -> &str {
        match self {
            Entry::Dir { path, .. } | Entry::File { path, .. } | Entry::Symlink { path, .. } => {
                path
            }
        }
    }
}

/// What goes into an image.
#[derive(Clone, Debug)]
pub struct ImageSpec {
    /// The full reference, e.g. `localhost/canopy:dev`.
    pub name: String,
    pub entries: Vec<Entry>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `uid:gid`.
    pub user: String,
    pub env: Vec<String>,
}

impl ImageSpec {
    fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            entries: Vec::new(),
            entrypoint: Vec::new(),
            cmd: Vec::new(),
            user: "0:0".to_owned(),
            env: vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()],
        }
    }

    fn dir(&mut self, path: &str, mode: u32) {
        self.entries.push(Entry::Dir {
            path: path.to_owned(),
            mode,
        });
    }

    fn file(&mut self, path: &str, mode: u32, contents: Vec<u8>) {
        self.entries.push(Entry::File {
            path: path.to_owned(),
            mode,
            contents,
        });
    }

    fn read_file(&mut self, path: &str, mode: u32, from: &Path) -> Result<(), DevError> {
        let contents = std::fs::read(from).map_err(|e| DevError::io(from, e))?;
        self.file(path, mode, contents);
        Ok(())
    }

    /// `/etc/passwd`, `/etc/group` and `/tmp`, which every image here needs.
    fn base(&mut self) {
        self.dir("etc", 0o755);
        self.dir("tmp", 0o1777);
        self.file(
            "etc/passwd",
            0o644,
            format!(
                "root:x:0:0:root:/root:/bin/sh\n\
                 nonroot:x:{NONROOT_UID}:{NONROOT_UID}:nonroot:/home/nonroot:/sbin/nologin\n\
                 nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n"
            )
            .into_bytes(),
        );
        self.file(
            "etc/group",
            0o644,
            format!("root:x:0:\nnonroot:x:{NONROOT_UID}:\nnobody:x:65534:\n").into_bytes(),
        );
    }
}

/// canopy's image: the binary at `/canopy`, the shared libraries `ldd` names (a Rust
/// binary links glibc dynamically), run as the non-root user 65532.
pub fn canopy_image(name: &str, binary: &Path) -> Result<ImageSpec, DevError> {
    let mut spec = ImageSpec::new(name);
    spec.base();
    spec.file("canopy", 0o755, without_debug_info(binary)?);
    for lib in shared_libraries(binary)? {
        let inside = lib.to_string_lossy().trim_start_matches('/').to_owned();
        add_parents(&mut spec, &inside);
        // The resolved file's contents at the path the loader asks for (ldd's names are
        // often symlinks, e.g. /lib64/ld-linux-x86-64.so.2).
        spec.read_file(&inside, 0o755, &lib)?;
    }
    spec.entrypoint = vec!["/canopy".into()];
    spec.cmd = vec!["manager".into()];
    spec.user = format!("{NONROOT_UID}:{NONROOT_UID}");
    Ok(spec)
}

/// The test image: busybox-static as `/bin/busybox` with the applets the tests and the
/// README use linked in `/bin` (`sh`, `nc`, `httpd`, `sleep`, `cat`, ...).
pub fn toolbox_image(name: &str, busybox: &Path) -> Result<ImageSpec, DevError> {
    const APPLETS: &[&str] = &[
        "sh", "nc", "httpd", "sleep", "cat", "echo", "ls", "mkdir", "id", "env", "hostname", "ps",
        "grep", "head", "tail", "true", "false", "test", "wget", "ip", "ifconfig", "date",
        "timeout", "printf", "rm", "touch",
    ];
    let mut spec = ImageSpec::new(name);
    spec.base();
    spec.dir("bin", 0o755);
    spec.read_file("bin/busybox", 0o755, busybox)?;
    for applet in APPLETS {
        spec.entries.push(Entry::Symlink {
            path: format!("bin/{applet}"),
            target: "busybox".into(),
        });
    }
    spec.dir("www", 0o755);
    spec.cmd = vec!["/bin/sh".into()];
    Ok(spec)
}

/// The sandbox ("pause") image: the static binary built from hack/pause.c.
pub fn pause_image(name: &str, pause: &Path) -> Result<ImageSpec, DevError> {
    let mut spec = ImageSpec::new(name);
    spec.read_file("pause", 0o755, pause)?;
    spec.entrypoint = vec!["/pause".into()];
    spec.user = "65535:65535".into();
    Ok(spec)
}

/// The binary without its debug sections when `strip` (binutils) is there: a debug build
/// of canopy is ~280 MB, mostly DWARF, which would make every import into the node slow.
/// The code is unchanged; without `strip` the binary goes in as it is.
fn without_debug_info(binary: &Path) -> Result<Vec<u8>, DevError> {
    let dir = tempfile::tempdir().map_err(|e| DevError::io(Path::new("/tmp"), e))?;
    let out = dir.path().join("canopy");
    let stripped = Command::new("strip")
        .arg("--strip-debug")
        .arg("-o")
        .arg(&out)
        .arg(binary)
        .status()
        .is_ok_and(|s| s.success());
    let from = if stripped { out.as_path() } else { binary };
    std::fs::read(from).map_err(|e| DevError::io(from, e))
}

fn add_parents(spec: &mut ImageSpec, inside: &str) {
    let mut prefix = String::new();
    let parts: Vec<&str> = inside.split('/').collect();
    for part in &parts[..parts.len().saturating_sub(1)] {
        if !prefix.is_empty() {
            prefix.push('/');
        }
        prefix.push_str(part);
        spec.dir(&prefix, 0o755);
    }
}

/// The absolute paths of the shared libraries `binary` loads, per `ldd` (including the
/// dynamic loader). Empty for a static binary.
pub fn shared_libraries(binary: &Path) -> Result<Vec<PathBuf>, DevError> {
    let output = Command::new("ldd")
        .arg(binary)
        .output()
        .map_err(|source| DevError::Spawn {
            program: "ldd".into(),
            source,
        })?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        // ldd exits non-zero for a static binary ("not a dynamic executable").
        return Ok(Vec::new());
    }
    let mut libs = Vec::new();
    for line in text.lines() {
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or
        // "/lib64/ld-linux-x86-64.so.2 (0x...)"; linux-vdso has no file.
        let path = match line.split_once("=>") {
            Some((_, right)) => right.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(path) = path.filter(|p| p.starts_with('/')) {
            libs.push(PathBuf::from(path));
        }
    }
    libs.sort();
    libs.dedup();
    Ok(libs)
}

/// The fixed mtime of every entry: `SOURCE_DATE_EPOCH` when set, else the epoch.
fn mtime() -> u64 {
    std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn sha256(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut hex = String::with_capacity(64);
    for b in digest {
        hex.push_str(&format!("{b:02x}"));
    }
    hex
}

fn tar_error(path: &Path, e: std::io::Error) -> DevError {
    DevError::io(path, e)
}

/// The layer: an uncompressed tar of `entries`, sorted by path, directories deduplicated.
fn layer(entries: &[Entry], mtime: u64) -> Result<Vec<u8>, DevError> {
    let mut sorted: BTreeMap<&str, &Entry> = BTreeMap::new();
    for entry in entries {
        sorted.insert(entry.path(), entry);
    }
    let mut builder = tar::Builder::new(Vec::new());
    let here = Path::new("<layer>");
    for (path, entry) in sorted {
        let mut header = tar::Header::new_ustar();
        header.set_mtime(mtime);
        header.set_uid(0);
        header.set_gid(0);
        match entry {
            Entry::Dir { mode, .. } => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(*mode);
                header.set_size(0);
                builder
                    .append_data(&mut header, format!("{path}/"), std::io::empty())
                    .map_err(|e| tar_error(here, e))?;
            }
            Entry::File { mode, contents, .. } => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(*mode);
                header.set_size(contents.len() as u64);
                builder
                    .append_data(&mut header, path, contents.as_slice())
                    .map_err(|e| tar_error(here, e))?;
            }
            Entry::Symlink { target, .. } => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_mode(0o777);
                header.set_size(0);
                builder
                    .append_link(&mut header, path, target)
                    .map_err(|e| tar_error(here, e))?;
            }
        }
    }
    builder.into_inner().map_err(|e| tar_error(here, e))
}

/// The digest (`sha256:...`) of the manifest of an image written by `write_oci_archive`.
#[derive(Clone, Debug)]
pub struct Written {
    pub path: PathBuf,
    pub manifest_digest: String,
}

/// Writes `spec` as an OCI archive at `path` (written to a temporary file, then renamed).
pub fn write_oci_archive(spec: &ImageSpec, path: &Path) -> Result<Written, DevError> {
    let mtime = mtime();
    let layer = layer(&spec.entries, mtime)?;
    let layer_digest = sha256(&layer);
    let created = "1970-01-01T00:00:00Z";
    let mut config = json!({
        "architecture": "amd64",
        "os": "linux",
        "created": created,
        "config": {
            "User": spec.user,
            "Env": spec.env,
            "WorkingDir": "/",
        },
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{layer_digest}")]},
        "history": [{"created": created, "created_by": "canopy src/dev/image.rs"}],
    });
    if !spec.entrypoint.is_empty() {
        config["config"]["Entrypoint"] = json!(spec.entrypoint);
    }
    if !spec.cmd.is_empty() {
        config["config"]["Cmd"] = json!(spec.cmd);
    }
    let config = serde_json::to_vec(&config).map_err(|e| DevError::Canopy(e.to_string()))?;
    let config_digest = sha256(&config);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": format!("sha256:{config_digest}"),
            "size": config.len(),
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": format!("sha256:{layer_digest}"),
            "size": layer.len(),
        }],
    }))
    .map_err(|e| DevError::Canopy(e.to_string()))?;
    let manifest_digest = sha256(&manifest);
    let tag = spec.name.rsplit_once(':').map_or("latest", |(_, t)| t);
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": format!("sha256:{manifest_digest}"),
            "size": manifest.len(),
            "platform": {"architecture": "amd64", "os": "linux"},
            "annotations": {
                // containerd names the imported image after this one.
                "io.containerd.image.name": spec.name,
                "org.opencontainers.image.ref.name": tag,
            },
        }],
    }))
    .map_err(|e| DevError::Canopy(e.to_string()))?;

    let mut files: Vec<(String, &[u8])> = vec![
        ("blobs/sha256/".into(), &[]),
        (format!("blobs/sha256/{config_digest}"), &config),
        (format!("blobs/sha256/{layer_digest}"), &layer),
        (format!("blobs/sha256/{manifest_digest}"), &manifest),
        ("index.json".into(), &index),
        ("oci-layout".into(), br#"{"imageLayoutVersion":"1.0.0"}"#),
    ];
    files.sort_by(|a, b| a.0.cmp(&b.0));
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| DevError::io(parent, e))?;
    }
    let tmp = path.with_extension("tmp");
    let file = std::fs::File::create(&tmp).map_err(|e| DevError::io(&tmp, e))?;
    let mut builder = tar::Builder::new(std::io::BufWriter::new(file));
    for dir in ["blobs/", "blobs/sha256/"] {
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(tar::EntryType::Directory);
        header.set_mode(0o755);
        header.set_mtime(mtime);
        header.set_uid(0);
        header.set_gid(0);
        header.set_size(0);
        builder
            .append_data(&mut header, dir, std::io::empty())
            .map_err(|e| DevError::io(&tmp, e))?;
    }
    for (name, contents) in files.iter().filter(|(n, _)| !n.ends_with('/')) {
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mode(0o644);
        header.set_mtime(mtime);
        header.set_uid(0);
        header.set_gid(0);
        header.set_size(contents.len() as u64);
        builder
            .append_data(&mut header, name, *contents)
            .map_err(|e| DevError::io(&tmp, e))?;
    }
    let mut out = builder.into_inner().map_err(|e| DevError::io(&tmp, e))?;
    out.flush().map_err(|e| DevError::io(&tmp, e))?;
    drop(out);
    std::fs::rename(&tmp, path).map_err(|e| DevError::io(path, e))?;
    Ok(Written {
        path: path.to_owned(),
        manifest_digest: format!("sha256:{manifest_digest}"),
    })
}

/// Copies the OCI archive `from` to `to` with the image named `name` (`repo:tag`) in its
/// `index.json`. The name lives only there (no digest covers it), so the manifest, config
/// and layers are unchanged: the node runs a release image (named for the registry it
/// will be pushed to) under a `localhost/` name that it never tries to pull.
pub fn rename_archive(from: &Path, to: &Path, name: &str) -> Result<(), DevError> {
    let bytes = std::fs::read(from).map_err(|e| DevError::io(from, e))?;
    let mut archive = tar::Archive::new(bytes.as_slice());
    let mut builder = tar::Builder::new(Vec::new());
    let mut renamed = false;
    let entries = archive.entries().map_err(|e| DevError::io(from, e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| DevError::io(from, e))?;
        let mut header = entry.header().clone();
        let path = entry
            .path()
            .map_err(|e| DevError::io(from, e))?
            .into_owned();
        let mut contents = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut contents).map_err(|e| DevError::io(from, e))?;
        if path == Path::new("index.json") {
            let mut index: serde_json::Value = serde_json::from_slice(&contents)
                .map_err(|e| DevError::Canopy(format!("{}: index.json: {e}", from.display())))?;
            let tag = name.rsplit_once(':').map_or("latest", |(_, t)| t);
            let Some(manifests) = index["manifests"].as_array_mut() else {
                return Err(DevError::Canopy(format!(
                    "{}: index.json has no manifests",
                    from.display()
                )));
            };
            for manifest in manifests {
                manifest["annotations"]["io.containerd.image.name"] = json!(name);
                manifest["annotations"]["org.opencontainers.image.ref.name"] = json!(tag);
            }
            contents = serde_json::to_vec(&index).map_err(|e| DevError::Canopy(e.to_string()))?;
            header.set_size(contents.len() as u64);
            renamed = true;
        }
        builder
            .append_data(&mut header, &path, contents.as_slice())
            .map_err(|e| DevError::io(to, e))?;
    }
    if !renamed {
        return Err(DevError::Canopy(format!(
            "{} is not an OCI archive: no index.json",
            from.display()
        )));
    }
    let out = builder.into_inner().map_err(|e| DevError::io(to, e))?;
    std::fs::write(to, out).map_err(|e| DevError::io(to, e))
}

/// Arguments of `canopy image` (what `make image` runs).
#[derive(Debug, clap::Args)]
pub struct ImageArgs {
    /// The canopy binary to pack; this very binary when unset.
    #[arg(long)]
    pub binary: Option<PathBuf>,
    /// The image reference recorded in the archive.
    #[arg(long, default_value = "localhost/canopy:dev")]
    pub name: String,
    /// Where to write the OCI archive.
    #[arg(long, default_value = "target/image/canopy.oci.tar")]
    pub output: PathBuf,
}

/// `canopy image`: write canopy's OCI archive and print its path and manifest digest.
pub fn run(args: ImageArgs) -> anyhow::Result<()> {
    let binary = match args.binary {
        Some(b) => b,
        None => std::env::current_exe()?,
    };
    let written = write_oci_archive(&canopy_image(&args.name, &binary)?, &args.output)?;
    println!(
        "{} {} {}",
        args.name,
        written.manifest_digest,
        written.path.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_inputs_give_the_same_archive() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut spec = ImageSpec::new("localhost/test:1");
        spec.base();
        spec.file("hello", 0o644, b"hi".to_vec());
        let a = write_oci_archive(&spec, &dir.path().join("a.tar")).expect("a");
        let b = write_oci_archive(&spec, &dir.path().join("b.tar")).expect("b");
        assert_eq!(a.manifest_digest, b.manifest_digest);
        let bytes_a = std::fs::read(&a.path).expect("read a");
        let bytes_b = std::fs::read(&b.path).expect("read b");
        assert_eq!(bytes_a, bytes_b);
    }

    #[test]
    fn a_renamed_archive_keeps_its_manifest_and_blobs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut spec = ImageSpec::new("canopy:1.2.3");
        spec.base();
        let original = write_oci_archive(&spec, &dir.path().join("a.tar")).expect("a");
        let renamed = dir.path().join("b.tar");
        rename_archive(&original.path, &renamed, "localhost/canopy:release").expect("rename");

        let files = |path: &Path| -> BTreeMap<String, Vec<u8>> {
            let bytes = std::fs::read(path).expect("read");
            let mut archive = tar::Archive::new(bytes.as_slice());
            let mut files = BTreeMap::new();
            for entry in archive.entries().expect("entries") {
                let mut entry = entry.expect("entry");
                let path = entry.path().expect("path").display().to_string();
                let mut contents = Vec::new();
                std::io::Read::read_to_end(&mut entry, &mut contents).expect("contents");
                files.insert(path, contents);
            }
            files
        };
        let (before, after) = (files(&original.path), files(&renamed));
        assert_eq!(
            before.keys().collect::<Vec<_>>(),
            after.keys().collect::<Vec<_>>()
        );
        for (path, contents) in &before {
            if path != "index.json" {
                assert_eq!(contents, &after[path], "{path} is unchanged");
            }
        }
        let index: serde_json::Value = serde_json::from_slice(&after["index.json"]).expect("json");
        let manifest = &index["manifests"][0];
        assert_eq!(manifest["digest"], original.manifest_digest);
        assert_eq!(
            manifest["annotations"]["io.containerd.image.name"],
            "localhost/canopy:release"
        );
        assert_eq!(
            manifest["annotations"]["org.opencontainers.image.ref.name"],
            "release"
        );
    }
}
