//! The release artefacts that `make release` (hack/release.sh) writes into dist/: the OCI
//! image is a valid OCI layout that runs as non-root and is rebuilt byte for byte, its
//! SBOM is CycloneDX that lists canopy's crates at their locked versions, SHA256SUMS
//! verifies, the plugin archives hold a plugin that runs, the krew manifest points at
//! them with their digests, and the packaged chart lints, renders and carries the CRDs.
//!
//! `make test` runs `make release` first; these tests fail, not skip, without dist/ (run
//! `make release`). `CANOPY_DIST` points them elsewhere; helm comes from `CANOPY_HELM`.

#[path = "common/helm.rs"]
mod helm;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use helm::helm_ok;
use serde_json::Value;
use sha2::{Digest, Sha256};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn dist() -> PathBuf {
    let dir = std::env::var_os("CANOPY_DIST")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("dist"));
    assert!(
        dir.join("SHA256SUMS").is_file(),
        "{} has no release in it: run `make release` (hack/release.sh)",
        dir.display()
    );
    dir
}

/// The version in Cargo.toml, which every artefact's name carries.
const VERSION: &str = env!("CARGO_PKG_VERSION");

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// The regular files of a tar, by path.
fn tar_files(bytes: &[u8]) -> BTreeMap<String, (u32, u64, Vec<u8>)> {
    let mut archive = tar::Archive::new(bytes);
    let mut files = BTreeMap::new();
    for entry in archive.entries().expect("a tar") {
        let mut entry = entry.expect("a tar entry");
        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let path = entry.path().expect("a path").display().to_string();
        let mode = entry.header().mode().expect("a mode");
        let mtime = entry.header().mtime().expect("an mtime");
        let mut contents = Vec::new();
        entry.read_to_end(&mut contents).expect("the entry reads");
        files.insert(path, (mode, mtime, contents));
    }
    files
}

fn gunzip(path: &Path) -> Vec<u8> {
    let out = Command::new("gzip")
        .arg("-dc")
        .arg(path)
        .output()
        .expect("gzip runs");
    assert!(out.status.success(), "gzip -dc {}", path.display());
    out.stdout
}

fn json(bytes: &[u8], what: &str) -> Value {
    serde_json::from_slice(bytes).unwrap_or_else(|e| panic!("{what} is not JSON: {e}"))
}

// ---------------------------------------------------------------------------------------
// The image

struct Image {
    files: BTreeMap<String, (u32, u64, Vec<u8>)>,
}

impl Image {
    fn open() -> Self {
        let path = dist().join(format!("canopy-{VERSION}.oci.tar"));
        Self {
            files: tar_files(&read(&path)),
        }
    }

    fn file(&self, name: &str) -> &[u8] {
        &self
            .files
            .get(name)
            .unwrap_or_else(|| panic!("the OCI archive has no {name}"))
            .2
    }

    /// The files of the image's layers, by path (one manifest, as `canopy image` writes).
    fn rootfs(&self) -> BTreeMap<String, (u32, u64, Vec<u8>)> {
        let index = json(self.file("index.json"), "index.json");
        let manifest = json(self.blob(&index["manifests"][0]), "the manifest");
        let mut files = BTreeMap::new();
        for layer in manifest["layers"].as_array().expect("layers") {
            files.extend(tar_files(self.blob(layer)));
        }
        files
    }

    /// The blob a descriptor names, checked against the descriptor's digest and size.
    fn blob(&self, descriptor: &Value) -> &[u8] {
        let digest = descriptor["digest"].as_str().expect("a digest");
        let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
        let blob = self.file(&format!("blobs/sha256/{hex}"));
        assert_eq!(sha256_hex(blob), hex, "blob {digest} has another digest");
        assert_eq!(
            descriptor["size"].as_u64(),
            Some(blob.len() as u64),
            "descriptor size of {digest}"
        );
        blob
    }
}

#[test]
fn the_image_is_a_valid_oci_layout_that_runs_as_non_root() {
    let image = Image::open();
    let layout = json(image.file("oci-layout"), "oci-layout");
    assert_eq!(layout["imageLayoutVersion"], "1.0.0");

    let index = json(image.file("index.json"), "index.json");
    assert_eq!(index["schemaVersion"], 2);
    let manifests = index["manifests"].as_array().expect("index manifests");
    assert_eq!(manifests.len(), 1, "one image: {index}");
    let descriptor = &manifests[0];
    assert_eq!(
        descriptor["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(
        descriptor["annotations"]["org.opencontainers.image.ref.name"], VERSION,
        "tagged with the version"
    );
    assert_eq!(descriptor["platform"]["os"], "linux");

    let manifest = json(image.blob(descriptor), "the manifest");
    assert_eq!(manifest["schemaVersion"], 2);
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.oci.image.config.v1+json"
    );
    let config = json(image.blob(&manifest["config"]), "the image config");
    assert_eq!(config["os"], "linux");
    assert_eq!(config["architecture"], "amd64");
    assert_eq!(config["config"]["User"], "65532:65532", "non-root");
    assert_eq!(
        config["config"]["Entrypoint"],
        serde_json::json!(["/canopy"])
    );
    assert_eq!(config["config"]["Cmd"], serde_json::json!(["manager"]));

    // Each layer: a valid blob whose (uncompressed) digest is the config's diff_id, and
    // together they hold the binary, the non-root user and the loader.
    let layers = manifest["layers"].as_array().expect("layers");
    let diff_ids = config["rootfs"]["diff_ids"].as_array().expect("diff_ids");
    assert_eq!(layers.len(), diff_ids.len());
    let mut rootfs = BTreeMap::new();
    for (layer, diff_id) in layers.iter().zip(diff_ids) {
        assert_eq!(layer["mediaType"], "application/vnd.oci.image.layer.v1.tar");
        let blob = image.blob(layer);
        assert_eq!(diff_id, &layer["digest"], "uncompressed: diff_id = digest");
        rootfs.extend(tar_files(blob));
    }
    let (mode, _, canopy) = rootfs.get("canopy").expect("/canopy in the image");
    assert_eq!(mode & 0o111, 0o111, "/canopy is executable");
    assert!(canopy.starts_with(b"\x7fELF"), "/canopy is an ELF binary");
    let passwd =
        String::from_utf8_lossy(&rootfs.get("etc/passwd").expect("/etc/passwd").2).into_owned();
    assert!(
        passwd.contains("nonroot:x:65532:65532:"),
        "the user 65532 exists: {passwd}"
    );
    assert!(
        rootfs.keys().any(|p| p.contains("ld-linux")),
        "the dynamic loader is in the image: {:?}",
        rootfs.keys().collect::<Vec<_>>()
    );
}

/// `canopy image` run again on the release binary, with the archive's timestamp, gives the
/// same bytes: the image is reproducible from the binary.
#[test]
fn the_image_is_rebuilt_byte_for_byte() {
    let dist = dist();
    let original = read(&dist.join(format!("canopy-{VERSION}.oci.tar")));
    let files = tar_files(&original);
    let (_, mtime, _) = files.get("index.json").expect("index.json");
    let index = json(&files["index.json"].2, "index.json");
    let name = index["manifests"][0]["annotations"]["io.containerd.image.name"]
        .as_str()
        .expect("the image name")
        .to_owned();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target"));
    let binary = target.join("release/canopy");
    assert!(
        binary.is_file(),
        "{} is missing: run `make release`",
        binary.display()
    );
    let out_dir = tempfile::tempdir().expect("a temporary directory");
    let again = out_dir.path().join("again.oci.tar");
    let out = Command::new(&binary)
        .args(["image", "--binary"])
        .arg(&binary)
        .args(["--name", &name, "--output"])
        .arg(&again)
        .env("SOURCE_DATE_EPOCH", mtime.to_string())
        .output()
        .expect("canopy image runs");
    assert!(
        out.status.success(),
        "canopy image: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        read(&again) == original,
        "the rebuilt image differs from dist/canopy-{VERSION}.oci.tar (or {} was rebuilt \
         after `make release`)",
        binary.display()
    );
}

// ---------------------------------------------------------------------------------------
// The SBOM

/// Locked versions of the packages in Cargo.lock, by name.
fn locked_versions() -> BTreeMap<String, BTreeSet<String>> {
    let lock = String::from_utf8(read(&repo().join("Cargo.lock"))).expect("UTF-8");
    let mut versions: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut name = None;
    for line in lock.lines() {
        if let Some(n) = line.strip_prefix("name = ") {
            name = Some(n.trim_matches('"').to_owned());
        } else if let Some(v) = line.strip_prefix("version = ")
            && let Some(n) = name.take()
        {
            versions
                .entry(n)
                .or_default()
                .insert(v.trim_matches('"').to_owned());
        }
    }
    versions
}

#[test]
fn the_sbom_is_cyclonedx_and_lists_canopys_crates_at_their_locked_versions() {
    let path = dist().join(format!("canopy-{VERSION}.sbom.cdx.json"));
    let bom = json(&read(&path), "the SBOM");
    assert_eq!(bom["bomFormat"], "CycloneDX");
    assert_eq!(bom["specVersion"], "1.5");
    assert!(
        bom["serialNumber"]
            .as_str()
            .is_some_and(|s| s.starts_with("urn:uuid:")),
        "a serial number: {}",
        bom["serialNumber"]
    );
    let component = &bom["metadata"]["component"];
    assert_eq!(component["name"], "canopy");
    assert_eq!(component["version"], VERSION);

    let locked = locked_versions();
    let components = bom["components"].as_array().expect("components");
    let mut listed: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    // The crates (the image's shared libraries, `pkg:deb` or bare files, come below).
    let crates = components.iter().filter(|c| {
        c["purl"]
            .as_str()
            .is_some_and(|p| p.starts_with("pkg:cargo/"))
    });
    for c in crates {
        let name = c["name"].as_str().expect("a component name");
        let version = c["version"].as_str().expect("a component version");
        let purl = c["purl"].as_str().unwrap_or_default();
        assert!(
            purl.starts_with(&format!("pkg:cargo/{name}@{version}")),
            "{name} {version}: purl {purl}"
        );
        assert!(
            locked.get(name).is_some_and(|v| v.contains(version)),
            "{name} {version} is not in Cargo.lock"
        );
        listed.entry(name).or_default().insert(version);
    }
    // canopy's direct dependencies (those the Linux binary links) are all there.
    for dep in [
        "kube",
        "k8s-openapi",
        "tokio",
        "rustls",
        "hyper",
        "serde",
        "clap",
        "nix",
        "rcgen",
    ] {
        let versions = locked.get(dep).expect("a locked dependency");
        assert!(
            listed
                .get(dep)
                .is_some_and(|v| v.iter().any(|x| versions.contains(*x))),
            "the SBOM lacks {dep} {versions:?}"
        );
    }
    assert!(
        listed.len() > 100,
        "canopy links a few hundred crates; the SBOM lists {}",
        listed.len()
    );

    // The shared libraries copied into the image are listed too (by their Debian package
    // where dpkg knows them), each with its path in the image.
    let in_sbom: BTreeSet<&str> = bom["components"]
        .as_array()
        .expect("components")
        .iter()
        .flat_map(|c| c["properties"].as_array().into_iter().flatten())
        .filter(|p| p["name"] == "canopy:image:path")
        .filter_map(|p| p["value"].as_str())
        .collect();
    let image = Image::open();
    let libraries: Vec<String> = image
        .rootfs()
        .into_keys()
        .filter(|p| p.contains(".so"))
        .collect();
    assert!(
        libraries.iter().any(|l| l.contains("libc.so")),
        "the image carries glibc: {libraries:?}"
    );
    for library in &libraries {
        assert!(
            in_sbom.contains(library.as_str()),
            "the SBOM lacks the image's {library} (it lists {in_sbom:?})"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Checksums, plugin archives, krew manifest

fn checksums() -> BTreeMap<String, String> {
    let text = String::from_utf8(read(&dist().join("SHA256SUMS"))).expect("UTF-8");
    text.lines()
        .map(|line| {
            let (sum, name) = line
                .split_once("  ")
                .unwrap_or_else(|| panic!("not a sha256sum line: {line:?}"));
            (name.to_owned(), sum.to_owned())
        })
        .collect()
}

#[test]
fn sha256sums_lists_and_verifies_every_artefact() {
    let dist = dist();
    let sums = checksums();
    let mut files = BTreeSet::new();
    for entry in std::fs::read_dir(&dist).expect("dist/ reads") {
        let name = entry
            .expect("an entry")
            .file_name()
            .into_string()
            .expect("UTF-8");
        if name != "SHA256SUMS" {
            files.insert(name);
        }
    }
    assert_eq!(
        sums.keys().cloned().collect::<BTreeSet<_>>(),
        files,
        "SHA256SUMS lists exactly the artefacts"
    );
    for (name, sum) in &sums {
        assert_eq!(&sha256_hex(&read(&dist.join(name))), sum, "{name}");
    }
    for expected in [
        format!("canopy-{VERSION}.oci.tar"),
        format!("canopy-{VERSION}.sbom.cdx.json"),
        format!("canopy-{VERSION}.tgz"),
        format!("canopy-crds-{VERSION}.yaml"),
        format!("kubectl-canopy_{VERSION}_linux_amd64.tar.gz"),
        "canopy.yaml".to_owned(),
    ] {
        assert!(sums.contains_key(&expected), "{expected} is released");
    }
}

#[test]
fn the_krew_manifest_points_at_each_plugin_archive_with_its_digest() {
    let dist = dist();
    let text = String::from_utf8(read(&dist.join("canopy.yaml"))).expect("UTF-8");
    let manifest: Value = serde_saphyr::from_str(&text).expect("the krew manifest is YAML");
    assert_eq!(
        manifest["apiVersion"],
        "krew.googlecontainertools.github.com/v1alpha2"
    );
    assert_eq!(manifest["kind"], "Plugin");
    assert_eq!(manifest["metadata"]["name"], "canopy");
    let spec = &manifest["spec"];
    assert_eq!(spec["version"], format!("v{VERSION}"));
    for field in ["homepage", "shortDescription", "description"] {
        assert!(
            spec[field].as_str().is_some_and(|s| !s.trim().is_empty()),
            "spec.{field} is set"
        );
    }
    let sums = checksums();
    let archives: BTreeSet<&String> = sums
        .keys()
        .filter(|n| n.starts_with("kubectl-canopy_"))
        .collect();
    let platforms = spec["platforms"].as_array().expect("platforms");
    let mut pointed = BTreeSet::new();
    for platform in platforms {
        let labels = &platform["selector"]["matchLabels"];
        let os = labels["os"].as_str().expect("selector os");
        let arch = labels["arch"].as_str().expect("selector arch");
        assert!(["linux", "darwin", "windows"].contains(&os), "os {os}");
        assert!(["amd64", "arm64"].contains(&arch), "arch {arch}");
        let archive = format!("kubectl-canopy_{VERSION}_{os}_{arch}.tar.gz");
        let uri = platform["uri"].as_str().expect("uri");
        assert!(
            uri.starts_with("https://") && uri.ends_with(&format!("/{archive}")),
            "uri {uri} downloads {archive}"
        );
        assert_eq!(
            platform["sha256"].as_str(),
            sums.get(&archive).map(String::as_str),
            "{archive}: the manifest's sha256"
        );
        let exe = if os == "windows" { ".exe" } else { "" };
        assert_eq!(platform["bin"], format!("kubectl-canopy{exe}"));
        let files = tar_files(&gunzip(&dist.join(&archive)));
        let (mode, _, binary) = files
            .get(&format!("kubectl-canopy{exe}"))
            .unwrap_or_else(|| panic!("{archive} holds kubectl-canopy{exe}"));
        assert_eq!(mode & 0o111, 0o111, "{archive}: the plugin is executable");
        let magic: &[u8] = if os == "windows" { b"MZ" } else { b"\x7fELF" };
        assert!(binary.starts_with(magic), "{archive}: a {os} executable");
        pointed.insert(archive);
    }
    assert_eq!(
        pointed.iter().collect::<BTreeSet<_>>(),
        archives,
        "one platform per archive"
    );
}

/// The Linux archive's plugin runs here and says the release's version.
#[test]
fn the_linux_plugin_archive_runs() {
    let archive = dist().join(format!("kubectl-canopy_{VERSION}_linux_amd64.tar.gz"));
    let files = tar_files(&gunzip(&archive));
    let dir = tempfile::tempdir().expect("a temporary directory");
    let binary = dir.path().join("kubectl-canopy");
    std::fs::write(&binary, &files["kubectl-canopy"].2).expect("writing the plugin");
    let mut perms = std::fs::metadata(&binary).expect("metadata").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&binary, perms).expect("chmod");
    let out = Command::new(&binary)
        .arg("--version")
        .output()
        .expect("the plugin runs");
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("kubectl-canopy {VERSION}")
    );
}

// ---------------------------------------------------------------------------------------
// The chart and the CRDs

/// The repository's CRDs (crds/, generated from the Rust types), by file name.
fn crds() -> BTreeMap<String, Vec<u8>> {
    let mut crds = BTreeMap::new();
    for entry in std::fs::read_dir(repo().join("crds")).expect("crds/ reads") {
        let path = entry.expect("an entry").path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let name = path
                .file_name()
                .expect("a name")
                .to_string_lossy()
                .into_owned();
            crds.insert(name, read(&path));
        }
    }
    assert!(crds.len() >= 5, "canopy has at least five CRDs: {crds:?}");
    crds
}

#[test]
fn the_packaged_chart_lints_renders_and_carries_the_crds() {
    let chart = dist().join(format!("canopy-{VERSION}.tgz"));
    let chart_path = chart.to_str().expect("UTF-8 path");
    let lint = helm_ok(&["lint", "--strict", chart_path]);
    assert!(lint.contains("0 chart(s) failed"), "helm lint: {lint}");

    let files = tar_files(&gunzip(&chart));
    let chart_yaml = String::from_utf8_lossy(&files["canopy/Chart.yaml"].2).into_owned();
    assert!(
        chart_yaml.contains(&format!("version: {VERSION}")),
        "{chart_yaml}"
    );
    // Helm installs crds/ before the templates on the first install; they are the
    // generated CRDs, unchanged.
    for (name, contents) in crds() {
        let packaged = files
            .get(&format!("canopy/crds/{name}"))
            .unwrap_or_else(|| panic!("the chart lacks crds/{name}"));
        assert!(packaged.2 == contents, "crds/{name} differs in the chart");
    }
    assert!(
        !files.keys().any(|p| p.starts_with("canopy/templates/")
            && String::from_utf8_lossy(&files[p].2).contains("kind: CustomResourceDefinition")),
        "no CRD is templated (Helm would delete it, and every Tenant, on uninstall)"
    );

    let rendered = helm_ok(&[
        "template",
        "canopy",
        chart_path,
        "--namespace",
        "canopy-system",
        "--include-crds",
    ]);
    for kind in [
        "kind: CustomResourceDefinition",
        "kind: Deployment",
        "kind: ValidatingWebhookConfiguration",
    ] {
        assert!(rendered.contains(kind), "helm template renders {kind}");
    }
    assert!(
        rendered.contains(&format!("image: \"canopy:{VERSION}\""))
            || rendered.contains(&format!("image: canopy:{VERSION}")),
        "the chart's default image is the released one, canopy:{VERSION}"
    );
}

#[test]
fn the_crds_file_is_every_crd_for_kubectl_apply() {
    let text = String::from_utf8(read(&dist().join(format!("canopy-crds-{VERSION}.yaml"))))
        .expect("UTF-8");
    let documents: Vec<&str> = text
        .split("---\n")
        .filter(|d| !d.trim().is_empty())
        .collect();
    let crds = crds();
    assert_eq!(documents.len(), crds.len(), "one document per CRD");
    for (name, contents) in &crds {
        let contents = String::from_utf8_lossy(contents);
        assert!(
            documents.iter().any(|d| *d == contents),
            "{name} is in the CRDs file unchanged"
        );
    }
    for doc in documents {
        let crd: Value = serde_saphyr::from_str(doc).expect("a CRD parses");
        assert_eq!(crd["kind"], "CustomResourceDefinition");
        assert!(
            crd["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.ends_with(".canopy.dev"))
        );
    }
}

/// Every archive entry carries the same timestamp (`SOURCE_DATE_EPOCH`, the commit's time)
/// and owner 0: the image, the chart and the plugin archives are repacked by
/// hack/release.sh so that the same commit gives the same bytes.
#[test]
fn every_archive_is_stamped_with_one_time() {
    let dist = dist();
    let mut stamps = BTreeMap::new();
    let mut archives = vec![(
        format!("canopy-{VERSION}.oci.tar"),
        read(&dist.join(format!("canopy-{VERSION}.oci.tar"))),
    )];
    for name in checksums()
        .keys()
        .filter(|n| n.ends_with(".tgz") || n.ends_with(".tar.gz"))
    {
        archives.push((name.clone(), gunzip(&dist.join(name))));
    }
    assert!(
        archives.len() >= 3,
        "the image, the chart and a plugin archive"
    );
    for (name, bytes) in archives {
        let mut archive = tar::Archive::new(bytes.as_slice());
        for entry in archive.entries().expect("a tar") {
            let entry = entry.expect("an entry");
            let header = entry.header();
            let path = entry.path().expect("a path").display().to_string();
            assert_eq!(header.uid().expect("uid"), 0, "{name}: {path} owner");
            stamps
                .entry(header.mtime().expect("mtime"))
                .or_insert_with(Vec::new)
                .push(format!("{name}: {path}"));
        }
    }
    assert_eq!(
        stamps.len(),
        1,
        "one timestamp for every entry: {:?}",
        stamps
            .iter()
            .map(|(t, paths)| (t, &paths[..paths.len().min(3)]))
            .collect::<Vec<_>>()
    );
}
