//! Kubeconfig files for the local control plane's users.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::DevError;
use super::pki::CertPair;

/// How a kubeconfig's user authenticates.
pub enum Credentials<'a> {
    ClientCert(&'a CertPair),
    Token(&'a str),
}

/// A kubeconfig for one user of the apiserver at `server`.
pub fn render(server: &str, ca_pem: &str, user: Credentials<'_>, context: &str) -> String {
    let b64 = |s: &str| STANDARD.encode(s.as_bytes());
    let user = match user {
        Credentials::ClientCert(pair) => format!(
            "    client-certificate-data: {}\n    client-key-data: {}",
            b64(&pair.cert_pem),
            b64(&pair.key_pem)
        ),
        Credentials::Token(token) => format!("    token: {token}"),
    };
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: {context}
  cluster:
    server: {server}
    certificate-authority-data: {ca}
users:
- name: {context}
  user:
{user}
contexts:
- name: {context}
  context:
    cluster: {context}
    user: {context}
    namespace: default
current-context: {context}
",
        ca = b64(ca_pem),
    )
}

/// Writes `contents` to `path` atomically (a reader never sees half a file), mode 0600.
pub fn write_atomically(path: &Path, contents: &str) -> Result<(), DevError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;

    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).map_err(|e| DevError::io(dir, e))?;
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("kubeconfig")
    ));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| DevError::io(&tmp, e))?;
    file.write_all(contents.as_bytes())
        .map_err(|e| DevError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| DevError::io(path, e))
}
