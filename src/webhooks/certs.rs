//! Serving certificates the manager makes and rotates itself: a CA kept in a Secret (so
//! every replica signs with the same one), a short-lived leaf per replica swapped in
//! before it expires without a restart, and the CA patched into the webhook
//! configuration's caBundle.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use parking_lot::RwLock;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::json;
use tracing::{info, warn};

/// The name of canopy's ValidatingWebhookConfiguration in the chart and kustomize.
pub const DEFAULT_WEBHOOK_CONFIGURATION: &str = "canopy";

const CA_CERT: &str = "ca.crt";
const CA_KEY: &str = "ca.key";

/// Where the certificates live and what they are for.
#[derive(Clone, Debug, clap::Args)]
pub struct CertArgs {
    /// Make and rotate the serving certificate (and its CA) instead of reading files.
    #[arg(long)]
    pub self_signed_certificates: bool,
    /// The Secret holding the CA, in the leader-election namespace.
    #[arg(long, default_value = "canopy-webhook-ca")]
    pub ca_secret: String,
    /// The Service the apiserver calls the webhooks through.
    #[arg(long, default_value = "canopy-webhook")]
    pub webhook_service: String,
    /// The ValidatingWebhookConfiguration whose caBundle is kept in step (with
    /// --self-signed-certificates), and whose `propagated.canopy.dev` rules the leader
    /// keeps equal to the propagated kinds (always).
    #[arg(long, default_value = DEFAULT_WEBHOOK_CONFIGURATION)]
    pub webhook_configuration: String,
    /// Extra names or IPs for the serving certificate (e.g. 127.0.0.1 for local runs).
    #[arg(long = "webhook-host")]
    pub extra_hosts: Vec<String>,
    /// How long each serving certificate is valid; it is replaced after two thirds.
    #[arg(long, default_value_t = 7 * 24 * 3600)]
    pub certificate_validity_seconds: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("generating a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("loading the serving key: {0}")]
    Tls(#[from] rustls::Error),
    #[error("{action}: {source}")]
    Api {
        action: &'static str,
        source: kube::Error,
    },
    #[error("the CA Secret {0} is incomplete")]
    BadSecret(String),
    #[error("the CA Secret {0} does not exist; the chart and kustomize create it empty")]
    MissingSecret(String),
}

/// The CA: its PEM certificate and its key.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Ca {
    cert_pem: String,
    key_pem: String,
}

fn ca_params() -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "canopy-webhook-ca");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
    params.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(3650);
    Ok(params)
}

fn new_ca() -> Result<Ca, rcgen::Error> {
    let key = KeyPair::generate()?;
    let cert = ca_params()?.self_signed(&key)?;
    Ok(Ca {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// A leaf for `hosts`, valid for `validity`, signed by `ca`; returns it as rustls wants it.
fn issue_leaf(ca: &Ca, hosts: &[String], validity: Duration) -> Result<CertifiedKey, CertError> {
    // The issuer is rebuilt from the stored key and the fixed CA name: a signature needs
    // only those, so no certificate parsing is needed.
    let issuer = Issuer::new(ca_params()?, KeyPair::from_pem(&ca.key_pem)?);
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "canopy-webhook");
    params.distinguished_name = dn;
    for host in hosts {
        params.subject_alt_names.push(match host.parse() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(host.clone().try_into()?),
        });
    }
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::minutes(5);
    params.not_after =
        now + time::Duration::seconds(i64::try_from(validity.as_secs()).unwrap_or(i64::MAX / 2));
    let leaf = params.signed_by(&key, &issuer)?;
    let chain = vec![CertificateDer::from(leaf.der().to_vec())];
    let private = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let provider = rustls::crypto::ring::default_provider();
    Ok(CertifiedKey::from_der(chain, private, &provider)?)
}

/// When the certificate whose DER is `der` expires (its notAfter), in seconds since the
/// Unix epoch; `None` if it cannot be read as an X.509 certificate.
pub fn not_after(der: &[u8]) -> Option<i64> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(cert.validity().not_after.timestamp())
}

/// The notAfter of the first certificate in a PEM chain (the serving one).
pub fn pem_not_after(pem: &[u8]) -> Option<i64> {
    use rustls_pki_types::pem::PemObject;
    let first = CertificateDer::pem_slice_iter(pem).next()?.ok()?;
    not_after(&first)
}

/// Hands the current serving certificate to every TLS handshake.
#[derive(Debug)]
pub struct RotatingCertificate {
    current: RwLock<Arc<CertifiedKey>>,
    /// The current certificate's notAfter, served as
    /// `canopy_webhook_certificate_expiration_timestamp_seconds`.
    expiry: prometheus_client::metrics::gauge::Gauge,
}

impl RotatingCertificate {
    fn new(leaf: CertifiedKey) -> Self {
        let rotating = Self {
            expiry: Default::default(),
            current: RwLock::new(Arc::new(leaf)),
        };
        rotating.record_expiry(&rotating.current.read());
        rotating
    }

    fn replace(&self, leaf: CertifiedKey) {
        self.record_expiry(&leaf);
        *self.current.write() = Arc::new(leaf);
    }

    fn record_expiry(&self, leaf: &CertifiedKey) {
        if let Some(at) = leaf.cert.first().and_then(|der| not_after(der)) {
            self.expiry.set(at);
        }
    }

    /// The gauge of the current certificate's notAfter (shared: it follows rotations).
    pub fn expiry(&self) -> prometheus_client::metrics::gauge::Gauge {
        self.expiry.clone()
    }
}

impl ResolvesServerCert for RotatingCertificate {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().clone())
    }
}

/// Keeps the CA, the serving certificate and the caBundle in step.
pub struct CertManager {
    client: Client,
    args: CertArgs,
    namespace: String,
    hosts: Vec<String>,
    resolver: Arc<RotatingCertificate>,
    ca: Ca,
}

impl CertManager {
    /// Loads (or creates) the CA, issues a first serving certificate and publishes the
    /// caBundle. The returned resolver goes into the TLS configuration.
    pub async fn start(
        client: Client,
        args: CertArgs,
        namespace: String,
    ) -> Result<Self, CertError> {
        let mut hosts = vec![
            args.webhook_service.clone(),
            format!("{}.{namespace}", args.webhook_service),
            format!("{}.{namespace}.svc", args.webhook_service),
            format!("{}.{namespace}.svc.cluster.local", args.webhook_service),
        ];
        hosts.extend(args.extra_hosts.iter().cloned());
        let ca = load_or_create_ca(&client, &namespace, &args.ca_secret).await?;
        let leaf = issue_leaf(&ca, &hosts, validity(&args))?;
        let manager = Self {
            resolver: Arc::new(RotatingCertificate::new(leaf)),
            client,
            args,
            namespace,
            hosts,
            ca,
        };
        manager.publish_ca_bundle().await?;
        Ok(manager)
    }

    pub fn resolver(&self) -> Arc<RotatingCertificate> {
        self.resolver.clone()
    }

    /// Replaces the serving certificate after two thirds of its life (and at once when the
    /// CA in the Secret changed), and keeps the caBundle published.
    pub async fn run(mut self) {
        let validity = validity(&self.args);
        let renew_after = validity.mul_f64(2.0 / 3.0);
        let mut issued = tokio::time::Instant::now();
        let mut tick = tokio::time::interval(
            Duration::from_secs(1)
                .max(renew_after / 20)
                .min(Duration::from_secs(60)),
        );
        loop {
            tick.tick().await;
            let ca = match load_or_create_ca(&self.client, &self.namespace, &self.args.ca_secret)
                .await
            {
                Ok(ca) => ca,
                Err(err) => {
                    warn!(error = %err, "cannot read the webhook CA; keeping the current certificate");
                    continue;
                }
            };
            let ca_changed = ca != self.ca;
            if ca_changed || issued.elapsed() >= renew_after {
                match issue_leaf(&ca, &self.hosts, validity) {
                    Ok(leaf) => {
                        self.resolver.replace(leaf);
                        issued = tokio::time::Instant::now();
                        self.ca = ca;
                        info!(ca_changed, "rotated the webhook serving certificate");
                    }
                    Err(err) => warn!(error = %err, "cannot issue a serving certificate"),
                }
            }
            if let Err(err) = self.publish_ca_bundle().await {
                warn!(error = %err, "cannot publish the webhook caBundle");
            }
        }
    }

    /// Sets every webhook's caBundle to the CA, if it is not already.
    async fn publish_ca_bundle(&self) -> Result<(), CertError> {
        let api: Api<ValidatingWebhookConfiguration> = Api::all(self.client.clone());
        let config = api
            .get(&self.args.webhook_configuration)
            .await
            .map_err(|source| CertError::Api {
                action: "reading the webhook configuration",
                source,
            })?;
        let bundle = ByteString(self.ca.cert_pem.as_bytes().to_vec());
        let webhooks = config.webhooks.unwrap_or_default();
        if webhooks
            .iter()
            .all(|w| w.client_config.ca_bundle.as_ref() == Some(&bundle))
        {
            return Ok(());
        }
        // A strategic merge keyed by webhook name touches only the caBundles.
        let patch = json!({"webhooks": webhooks
            .iter()
            .map(|w| json!({"name": w.name, "clientConfig": {"caBundle": bundle}}))
            .collect::<Vec<_>>()});
        api.patch(
            &self.args.webhook_configuration,
            &PatchParams::default(),
            &Patch::Strategic(&patch),
        )
        .await
        .map_err(|source| CertError::Api {
            action: "patching the webhook caBundle",
            source,
        })?;
        info!(configuration = %self.args.webhook_configuration, "published the webhook caBundle");
        Ok(())
    }
}

fn validity(args: &CertArgs) -> Duration {
    Duration::from_secs(args.certificate_validity_seconds.max(30))
}

/// The CA from the Secret. The Secret is created empty by the installation (so canopy
/// needs no right to create Secrets); the first replica to find it empty fills it, with a
/// resourceVersion precondition so that replicas racing to do so agree on one CA.
async fn load_or_create_ca(client: &Client, namespace: &str, name: &str) -> Result<Ca, CertError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let read = |secret: &Secret| -> Option<Ca> {
        let data = secret.data.as_ref()?;
        let text = |k: &str| {
            data.get(k)
                .and_then(|b| String::from_utf8(b.0.clone()).ok())
        };
        Some(Ca {
            cert_pem: text(CA_CERT)?,
            key_pem: text(CA_KEY)?,
        })
    };
    let api_error = |action| move |source| CertError::Api { action, source };
    let secret = api
        .get_opt(name)
        .await
        .map_err(api_error("reading the CA Secret"))?
        .ok_or_else(|| CertError::MissingSecret(format!("{namespace}/{name}")))?;
    if let Some(ca) = read(&secret) {
        return Ok(ca);
    }
    let ca = new_ca()?;
    let patch = json!({
        "metadata": {"resourceVersion": secret.metadata.resource_version},
        "data": {CA_CERT: ByteString(ca.cert_pem.clone().into_bytes()), CA_KEY: ByteString(ca.key_pem.clone().into_bytes())},
    });
    match api
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => {
            info!(secret = %name, "created the webhook CA");
            Ok(ca)
        }
        // Another replica filled it first: use theirs.
        Err(e) if crate::api::errors::is_conflict(&e) => {
            let stored = api
                .get(name)
                .await
                .map_err(api_error("reading the CA Secret"))?;
            read(&stored).ok_or_else(|| CertError::BadSecret(name.to_owned()))
        }
        Err(source) => Err(CertError::Api {
            action: "writing the CA Secret",
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leaf_is_signed_for_the_service_names_and_ips() {
        let ca = new_ca().expect("a CA");
        let hosts = vec![
            "canopy-webhook.canopy-system.svc".to_owned(),
            "127.0.0.1".to_owned(),
        ];
        let leaf = issue_leaf(&ca, &hosts, Duration::from_secs(3600)).expect("a leaf");
        assert_eq!(leaf.cert.len(), 1);
        assert!(leaf.keys_match().is_ok());
        // Its expiry is read back from the certificate itself, as the gauge serves it.
        let expires = not_after(&leaf.cert[0]).expect("a readable notAfter");
        let expected = time::OffsetDateTime::now_utc().unix_timestamp() + 3600;
        assert!((expires - expected).abs() <= 5, "{expires} vs {expected}");
        let rotating = RotatingCertificate::new(leaf);
        assert_eq!(rotating.expiry().get(), expires);
        assert_eq!(not_after(b"not a certificate"), None);
    }
}
