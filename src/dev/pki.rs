//! Certificates and keys for a local control plane, minted in-process with rcgen.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};

use super::DevError;

/// A certificate and its private key, PEM-encoded.
#[derive(Clone, Debug)]
pub struct CertPair {
    pub cert_pem: String,
    pub key_pem: String,
}

/// The files one control plane needs, written into `dir`.
#[derive(Debug)]
pub struct Pki {
    pub dir: PathBuf,
    /// Signs the serving certificate, every client certificate and the CSRs the
    /// controller manager approves.
    pub ca: CertPair,
    pub admin: CertPair,
    pub controller_manager: CertPair,
    /// For a webhook server on loopback (`127.0.0.1`, `localhost`) that the apiserver calls.
    pub loopback_serving: CertPair,
    /// The node's components (src/dev/node): kubelet as `system:node:<node>` in
    /// `system:nodes` (what the Node authorizer and NodeRestriction expect), kube-scheduler
    /// and kube-proxy as the users their bootstrap roles are bound to.
    pub kubelet: CertPair,
    pub scheduler: CertPair,
    pub kube_proxy: CertPair,
}

impl Pki {
    pub const CA_CERT: &str = "ca.crt";
    pub const CA_KEY: &str = "ca.key";
    pub const SERVING_CERT: &str = "apiserver.crt";
    pub const SERVING_KEY: &str = "apiserver.key";
    pub const SA_KEY: &str = "sa.key";
    pub const SA_PUB: &str = "sa.pub";
    /// The admin certificate as files: kube-apiserver's client certificate towards kubelets
    /// (`kubectl exec` and `logs`).
    pub const ADMIN_CERT: &str = "admin.crt";
    pub const ADMIN_KEY: &str = "admin.key";

    /// Mints a CA, the apiserver's serving certificate (for 127.0.0.1 and localhost),
    /// an admin client certificate in `system:masters`, the controller manager's client
    /// certificate and the service-account signing key, and writes them to `dir`.
    ///
    /// `extra_ips` are added to the apiserver's serving certificate: the node's address,
    /// where Pods and the kubelet reach it.
    pub fn generate(dir: &Path, extra_ips: &[IpAddr]) -> Result<Self, DevError> {
        std::fs::create_dir_all(dir).map_err(|e| DevError::io(dir, e))?;
        let ca_key = KeyPair::generate()?;
        let ca_key_pem = ca_key.serialize_pem();
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.distinguished_name = name("canopy-dev-ca", None);
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = CertifiedIssuer::self_signed(ca_params, ca_key)?;

        let serving_key = KeyPair::generate()?;
        let mut serving = CertificateParams::new(vec![
            "localhost".to_owned(),
            "kubernetes".to_owned(),
            "kubernetes.default".to_owned(),
            "kubernetes.default.svc".to_owned(),
        ])?;
        serving.distinguished_name = name("kube-apiserver", None);
        serving
            .subject_alt_names
            .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        serving
            .subject_alt_names
            .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))));
        for ip in extra_ips {
            serving.subject_alt_names.push(SanType::IpAddress(*ip));
        }
        serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let serving_cert = serving.signed_by(&serving_key, &ca)?;

        let loopback_key = KeyPair::generate()?;
        let mut loopback = CertificateParams::new(vec!["localhost".to_owned()])?;
        loopback.distinguished_name = name("canopy-webhook", None);
        loopback
            .subject_alt_names
            .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        loopback.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let loopback_serving = CertPair {
            cert_pem: loopback.signed_by(&loopback_key, &ca)?.pem(),
            key_pem: loopback_key.serialize_pem(),
        };

        let client = |user: &str, group: Option<&str>| -> Result<CertPair, DevError> {
            let key = KeyPair::generate()?;
            let mut params = CertificateParams::new(Vec::<String>::new())?;
            params.distinguished_name = name(user, group);
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            let cert = params.signed_by(&key, &ca)?;
            Ok(CertPair {
                cert_pem: cert.pem(),
                key_pem: key.serialize_pem(),
            })
        };
        let admin = client("canopy-admin", Some("system:masters"))?;
        let controller_manager = client("system:kube-controller-manager", None)?;
        let kubelet = client(
            &format!("system:node:{}", crate::dev::NODE_NAME),
            Some("system:nodes"),
        )?;
        let scheduler = client("system:kube-scheduler", None)?;
        let kube_proxy = client("system:kube-proxy", None)?;

        let sa_key = KeyPair::generate()?;
        let pki = Self {
            dir: dir.to_owned(),
            ca: CertPair {
                cert_pem: ca.pem(),
                key_pem: ca_key_pem,
            },
            admin,
            controller_manager,
            loopback_serving,
            kubelet,
            scheduler,
            kube_proxy,
        };
        pki.write(Self::CA_CERT, &pki.ca.cert_pem)?;
        pki.write(Self::CA_KEY, &pki.ca.key_pem)?;
        pki.write(Self::SERVING_CERT, &serving_cert.pem())?;
        pki.write(Self::SERVING_KEY, &serving_key.serialize_pem())?;
        pki.write(Self::SA_KEY, &sa_key.serialize_pem())?;
        pki.write(Self::SA_PUB, &sa_key.public_key_pem())?;
        pki.write(Self::ADMIN_CERT, &pki.admin.cert_pem)?;
        pki.write(Self::ADMIN_KEY, &pki.admin.key_pem)?;
        Ok(pki)
    }

    /// The path of one of the files above.
    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    fn write(&self, file: &str, contents: &str) -> Result<(), DevError> {
        let path = self.path(file);
        std::fs::write(&path, contents).map_err(|e| DevError::io(&path, e))
    }
}

fn name(common_name: &str, organization: Option<&str>) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    if let Some(org) = organization {
        dn.push(DnType::OrganizationName, org);
    }
    dn
}
