//! The images the node runs, made on this machine and loaded into containerd: nothing is
//! ever pulled (there is no registry to pull from).

use std::path::{Path, PathBuf};

use super::NodeError;
use super::cmd;
use crate::dev::image;

/// The sandbox image (containerd's `sandbox_image`), from hack/pause.c.
pub const PAUSE_IMAGE: &str = "localhost/canopy-pause:1";
/// busybox-static: `sh`, `nc`, `httpd`, `sleep`, `cat`, ... for test Pods.
pub const TOOLBOX_IMAGE: &str = "localhost/canopy-toolbox:latest";
/// canopy itself, for the chart (`image.repository=localhost/canopy`, `image.tag=dev`).
pub const CANOPY_IMAGE: &str = "localhost/canopy:dev";

fn write(spec: &image::ImageSpec, dir: &Path, file: &str) -> Result<PathBuf, NodeError> {
    let path = dir.join(file);
    image::write_oci_archive(spec, &path)
        .map(|w| w.path)
        .map_err(|e| NodeError::Command {
            command: format!("writing image {}", spec.name),
            detail: e.to_string(),
        })
}

fn spec_error(name: &str, e: crate::dev::DevError) -> NodeError {
    NodeError::Command {
        command: format!("assembling image {name}"),
        detail: e.to_string(),
    }
}

pub fn pause(dir: &Path, binary: &Path) -> Result<PathBuf, NodeError> {
    let spec = image::pause_image(PAUSE_IMAGE, binary).map_err(|e| spec_error(PAUSE_IMAGE, e))?;
    write(&spec, dir, "pause.oci.tar")
}

pub fn toolbox(dir: &Path, busybox: &Path) -> Result<PathBuf, NodeError> {
    let spec =
        image::toolbox_image(TOOLBOX_IMAGE, busybox).map_err(|e| spec_error(TOOLBOX_IMAGE, e))?;
    write(&spec, dir, "toolbox.oci.tar")
}

/// canopy's image from `binary` (the test binary's `canopy`, or `canopy dev` itself).
pub fn canopy(dir: &Path, binary: &Path) -> Result<PathBuf, NodeError> {
    let spec =
        image::canopy_image(CANOPY_IMAGE, binary).map_err(|e| spec_error(CANOPY_IMAGE, e))?;
    write(&spec, dir, "canopy.oci.tar")
}

/// `ctr -n k8s.io images import`: the CRI plugin sees images in the `k8s.io` namespace,
/// unpacked into its snapshotter (overlayfs, the default).
pub fn import(socket: &Path, archive: &Path) -> Result<(), NodeError> {
    let socket = socket.display().to_string();
    let archive = archive.display().to_string();
    cmd::run(
        "ctr",
        &[
            "--address",
            &socket,
            "--namespace",
            "k8s.io",
            "images",
            "import",
            &archive,
        ],
    )
    .map(|_| ())
}
