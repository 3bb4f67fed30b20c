//! Where the control-plane binaries built by `make envtest` live.

use std::path::{Path, PathBuf};

use super::DevError;

/// The Kubernetes release the control plane is built from (hack/build-envtest.sh).
pub const K8S_VERSION: &str = "1.36.3";

/// Paths of etcd, kube-apiserver, kube-controller-manager and kubectl.
#[derive(Clone, Debug)]
pub struct Binaries {
    pub etcd: PathBuf,
    pub kube_apiserver: PathBuf,
    pub kube_controller_manager: PathBuf,
    pub kubectl: PathBuf,
}

impl Binaries {
    /// `$CANOPY_ENVTEST_DIR`, or `~/.cache/canopy/envtest/k8s-<version>` as the Makefile builds it.
    pub fn locate() -> Result<Self, DevError> {
        let dir = match std::env::var_os("CANOPY_ENVTEST_DIR") {
            Some(dir) => PathBuf::from(dir),
            None => default_dir()?,
        };
        Self::in_dir(&dir)
    }

    /// The binaries in `dir`; each must exist.
    pub fn in_dir(dir: &Path) -> Result<Self, DevError> {
        let find = |name: &str| {
            let path = dir.join(name);
            if path.is_file() {
                Ok(path)
            } else {
                Err(DevError::MissingBinary { path })
            }
        };
        Ok(Self {
            etcd: find("etcd")?,
            kube_apiserver: find("kube-apiserver")?,
            kube_controller_manager: find("kube-controller-manager")?,
            kubectl: find("kubectl")?,
        })
    }
}

fn default_dir() -> Result<PathBuf, DevError> {
    let cache = match std::env::var_os("CANOPY_CACHE") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let home = std::env::var_os("HOME").ok_or(DevError::NoHome)?;
            PathBuf::from(home).join(".cache").join("canopy")
        }
    };
    Ok(cache.join("envtest").join(format!("k8s-{K8S_VERSION}")))
}
