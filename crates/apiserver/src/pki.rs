//! The cluster's certificates: a CA, the serving certificate and the client certificates of
//! the admin and of the controller manager, made on first start under `<data-dir>/tls/` and
//! reused after; and their kubeconfigs. Node agents' serving certificates come from a CA of
//! their own (`kubelet-ca.crt`, the `kubernetes.io/kubelet-serving` signer's), which only the
//! API server trusts, and only towards agents: a node names its own addresses, so what it gets
//! signed must not be trusted as the API server.

use std::fs;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

/// Why the certificates could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// A file could not be read or written.
    #[error("cannot access {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A certificate or key could not be made or parsed.
    #[error("certificate {what}")]
    Certificate {
        /// Which certificate and what failed.
        what: String,
        /// The cause.
        #[source]
        source: rcgen::Error,
    },
    /// The service-account key is not a PKCS#8 private key.
    #[error("{path} is not a PKCS#8 private key")]
    Key {
        /// The file.
        path: PathBuf,
    },
}

/// PEM texts of the certificates the server needs.
#[derive(Debug, Clone)]
pub struct Pki {
    /// The cluster CA certificate.
    pub ca_cert: String,
    /// The serving certificate.
    pub serving_cert: String,
    /// The serving key.
    pub serving_key: String,
    /// The API server's client certificate towards node agents (`kube-apiserver-kubelet-client`
    /// in `system:masters`, as kubeadm's).
    pub kubelet_client_cert: String,
    /// Its key.
    pub kubelet_client_key: String,
}

/// The DNS names and addresses the serving certificate is valid for: besides the fixed
/// ones, `extra` (the `kubernetes` Service's cluster IP, the advertised address).
fn serving_names(bind: IpAddr, extra: &[IpAddr]) -> Vec<String> {
    let mut names: Vec<String> = [
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
        "127.0.0.1",
        "::1",
        "10.43.0.1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for ip in std::iter::once(&bind).chain(extra) {
        if !ip.is_unspecified() && !names.contains(&ip.to_string()) {
            names.push(ip.to_string());
        }
    }
    if let Ok(host) = fs::read_to_string("/etc/hostname") {
        let host = host.trim();
        if !host.is_empty() && !names.iter().any(|n| n == host) {
            names.push(host.to_string());
        }
    }
    names
}

fn read(path: &Path) -> Result<Option<String>, PkiError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(PkiError::Io { path: path.to_owned(), source }),
    }
}

/// Writes `text` to `path` atomically, readable and writable by the owner only (0600): keys
/// and kubeconfigs are credentials.
fn write(path: &Path, text: &str) -> Result<(), PkiError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io_err = |source| PkiError::Io { path: path.to_owned(), source };
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io_err)?;
    file.write_all(text.as_bytes()).map_err(io_err)?;
    file.sync_all().map_err(io_err)?;
    fs::rename(&tmp, path).map_err(io_err)
}

/// Makes `path` private to its owner: 0700 for a folder, 0600 for a file (repairs the modes
/// of a data dir made by an older krust).
fn private(path: &Path, mode: u32) -> Result<(), PkiError> {
    use std::os::unix::fs::PermissionsExt;
    match fs::set_permissions(path, fs::Permissions::from_mode(mode)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            Err(PkiError::Io { path: path.to_owned(), source: e })
        }
        _ => Ok(()),
    }
}

fn cert_err(what: &str) -> impl FnOnce(rcgen::Error) -> PkiError + '_ {
    move |source| PkiError::Certificate { what: what.to_string(), source }
}

/// The stem of the node agents' serving CA under `<data-dir>/tls` (`kubelet-ca.crt` and
/// `kubelet-ca.key`).
pub const KUBELET_CA: &str = "kubelet-ca";

/// The CA `stem` (`.crt` and `.key` in `dir`), made with `common_name` when missing.
fn authority(dir: &Path, stem: &str, common_name: &str) -> Result<(String, String), PkiError> {
    let (crt, key) = (dir.join(format!("{stem}.crt")), dir.join(format!("{stem}.key")));
    if let (Some(cert), Some(key)) = (read(&crt)?, read(&key)?) {
        return Ok((cert, key));
    }
    let key_pair = KeyPair::generate().map_err(cert_err("ca key"))?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(cert_err("ca"))?;
    params.distinguished_name = name(common_name, None);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_after = rcgen::date_time_ymd(2036, 1, 1);
    let cert = params.self_signed(&key_pair).map_err(cert_err("ca"))?;
    let (cert, key_pem) = (cert.pem(), key_pair.serialize_pem());
    write(&key, &key_pem)?;
    write(&crt, &cert)?;
    Ok((cert, key_pem))
}

/// Reads the certificates under `data_dir/tls`, making the missing ones, and writes the admin
/// kubeconfig for `server_url` to `data_dir/admin.kubeconfig`.
pub fn ensure(
    data_dir: &Path,
    bind: IpAddr,
    extra_names: &[IpAddr],
    server_url: &str,
) -> Result<Pki, PkiError> {
    let dir = data_dir.join("tls");
    fs::create_dir_all(&dir).map_err(|source| PkiError::Io { path: dir.clone(), source })?;
    private(&dir, 0o700)?;
    for file in [
        "ca.crt",
        "ca.key",
        "serving.crt",
        "serving.key",
        "admin.crt",
        "admin.key",
        "controller-manager.crt",
        "controller-manager.key",
        "scheduler.crt",
        "scheduler.key",
        "apiserver-kubelet-client.crt",
        "apiserver-kubelet-client.key",
        "kubelet-ca.crt",
        "kubelet-ca.key",
    ] {
        private(&dir.join(file), 0o600)?;
    }

    let (ca_cert, ca_key) = authority(&dir, "ca", "krust-ca")?;
    authority(&dir, KUBELET_CA, "krust-kubelet-serving-ca")?;
    let ca_key_pair = KeyPair::from_pem(&ca_key).map_err(cert_err("ca key"))?;
    let issuer = Issuer::from_ca_cert_pem(&ca_cert, ca_key_pair).map_err(cert_err("ca"))?;

    let leaf = |file: &str, params: CertificateParams| -> Result<(String, String), PkiError> {
        let (crt, key) = (dir.join(format!("{file}.crt")), dir.join(format!("{file}.key")));
        if let (Some(c), Some(k)) = (read(&crt)?, read(&key)?) {
            return Ok((c, k));
        }
        let key_pair = KeyPair::generate().map_err(cert_err(file))?;
        let cert = params.signed_by(&key_pair, &issuer).map_err(cert_err(file))?;
        let (c, k) = (cert.pem(), key_pair.serialize_pem());
        write(&key, &k)?;
        write(&crt, &c)?;
        Ok((c, k))
    };

    let mut serving =
        CertificateParams::new(serving_names(bind, extra_names)).map_err(cert_err("serving"))?;
    serving.distinguished_name = name("kube-apiserver", None);
    serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    serving.not_after = rcgen::date_time_ymd(2036, 1, 1);
    let (serving_cert, serving_key) = leaf("serving", serving)?;

    let mut admin = CertificateParams::new(Vec::<String>::new()).map_err(cert_err("admin"))?;
    admin.distinguished_name = name("system:admin", Some("system:masters"));
    admin.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    admin.not_after = rcgen::date_time_ymd(2036, 1, 1);
    let (admin_cert, admin_key) = leaf("admin", admin)?;

    let admin_kubeconfig = kubeconfig(server_url, &ca_cert, "admin", &admin_cert, &admin_key);
    write(&data_dir.join("admin.kubeconfig"), &admin_kubeconfig)?;

    // The controllers' own identity, bound to `system:kube-controller-manager` (as kubeadm's
    // controller-manager.conf): it reads every cache and mints each controller's token.
    let mut manager =
        CertificateParams::new(Vec::<String>::new()).map_err(cert_err("controller-manager"))?;
    manager.distinguished_name = name(CONTROLLER_MANAGER_USER, None);
    manager.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    manager.not_after = rcgen::date_time_ymd(2036, 1, 1);
    let (manager_cert, manager_key) = leaf("controller-manager", manager)?;
    let manager_kubeconfig =
        kubeconfig(server_url, &ca_cert, CONTROLLER_MANAGER_USER, &manager_cert, &manager_key);
    write(&data_dir.join(CONTROLLER_MANAGER_KUBECONFIG), &manager_kubeconfig)?;

    // The scheduler's identity, bound to `system:kube-scheduler` (kubeadm's scheduler.conf).
    let mut scheduler =
        CertificateParams::new(Vec::<String>::new()).map_err(cert_err("scheduler"))?;
    scheduler.distinguished_name = name(SCHEDULER_USER, None);
    scheduler.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    scheduler.not_after = rcgen::date_time_ymd(2036, 1, 1);
    let (scheduler_cert, scheduler_key) = leaf("scheduler", scheduler)?;
    let scheduler_kubeconfig =
        kubeconfig(server_url, &ca_cert, SCHEDULER_USER, &scheduler_cert, &scheduler_key);
    write(&data_dir.join(SCHEDULER_KUBECONFIG), &scheduler_kubeconfig)?;

    // The built-in ingress controller's identity, bound to `system:krust-ingress`.
    let mut ingress = CertificateParams::new(Vec::<String>::new()).map_err(cert_err("ingress"))?;
    ingress.distinguished_name = name(INGRESS_USER, None);
    ingress.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    ingress.not_after = rcgen::date_time_ymd(2036, 1, 1);
    let (ingress_cert, ingress_key) = leaf("ingress", ingress)?;
    let ingress_kubeconfig =
        kubeconfig(server_url, &ca_cert, INGRESS_USER, &ingress_cert, &ingress_key);
    write(&data_dir.join(INGRESS_KUBECONFIG), &ingress_kubeconfig)?;

    let mut kubelet_client = CertificateParams::new(Vec::<String>::new())
        .map_err(cert_err("apiserver-kubelet-client"))?;
    kubelet_client.distinguished_name =
        name("kube-apiserver-kubelet-client", Some("system:masters"));
    kubelet_client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    kubelet_client.not_after = rcgen::date_time_ymd(2036, 1, 1);
    let (kubelet_client_cert, kubelet_client_key) =
        leaf("apiserver-kubelet-client", kubelet_client)?;
    Ok(Pki { ca_cert, serving_cert, serving_key, kubelet_client_cert, kubelet_client_key })
}

/// The key service-account tokens are signed with (ECDSA P-256, PKCS#8 DER): read from
/// `data_dir/tls/service-account.key`, made there (0600) on first start and kept across
/// restarts, so that tokens stay valid.
pub fn service_account_key(data_dir: &Path) -> Result<Vec<u8>, PkiError> {
    let dir = data_dir.join("tls");
    fs::create_dir_all(&dir).map_err(|source| PkiError::Io { path: dir.clone(), source })?;
    let path = dir.join("service-account.key");
    private(&path, 0o600)?;
    let pem = match read(&path)? {
        Some(pem) => pem,
        None => {
            let key = KeyPair::generate().map_err(cert_err("service-account key"))?;
            let pem = key.serialize_pem();
            write(&path, &pem)?;
            pem
        }
    };
    match rustls_pemfile::private_key(&mut pem.as_bytes()) {
        Ok(Some(rustls::pki_types::PrivateKeyDer::Pkcs8(der))) => {
            Ok(der.secret_pkcs8_der().to_vec())
        }
        _ => Err(PkiError::Key { path }),
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

/// The controller manager's user name (upstream's).
pub const CONTROLLER_MANAGER_USER: &str = "system:kube-controller-manager";

/// The controller manager's kubeconfig, under the data dir.
pub const CONTROLLER_MANAGER_KUBECONFIG: &str = "controller-manager.kubeconfig";

/// The scheduler's user name (upstream's).
pub const SCHEDULER_USER: &str = "system:kube-scheduler";
/// The built-in ingress controller's user.
pub const INGRESS_USER: &str = "system:krust-ingress";
/// The built-in ingress controller's kubeconfig, under the data dir.
pub const INGRESS_KUBECONFIG: &str = "ingress.kubeconfig";

/// The scheduler's kubeconfig, under the data dir.
pub const SCHEDULER_KUBECONFIG: &str = "scheduler.kubeconfig";

/// A kubeconfig for `server` that authenticates as `user` with a client certificate.
pub fn kubeconfig(server: &str, ca: &str, user: &str, cert: &str, key: &str) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: krust\n  cluster:\n    server: {server}\n    certificate-authority-data: {}\nusers:\n- name: {user}\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\ncontexts:\n- name: krust\n  context:\n    cluster: krust\n    user: {user}\ncurrent-context: krust\npreferences: {{}}\n",
        b64(ca),
        b64(cert),
        b64(key)
    )
}

/// The cluster CA's certificate (PEM) and an issuer of certificates signed by it, from the
/// files [`ensure`] made.
fn cluster_issuer(data_dir: &Path) -> Result<(String, Issuer<'static, KeyPair>), PkiError> {
    issuer_of(data_dir, "ca")
}

/// The CA `stem` under `<data-dir>/tls` as an issuer, with its certificate.
pub(crate) fn issuer_of(
    data_dir: &Path,
    stem: &str,
) -> Result<(String, Issuer<'static, KeyPair>), PkiError> {
    let dir = data_dir.join("tls");
    let missing = |what: String| PkiError::Io {
        path: dir.join(what),
        source: io::Error::new(io::ErrorKind::NotFound, "the CA is missing"),
    };
    let ca_cert =
        read(&dir.join(format!("{stem}.crt")))?.ok_or_else(|| missing(format!("{stem}.crt")))?;
    let ca_key =
        read(&dir.join(format!("{stem}.key")))?.ok_or_else(|| missing(format!("{stem}.key")))?;
    let ca_key_pair = KeyPair::from_pem(&ca_key).map_err(cert_err("ca key"))?;
    let issuer = Issuer::from_ca_cert_pem(&ca_cert, ca_key_pair).map_err(cert_err("ca"))?;
    Ok((ca_cert, issuer))
}

/// A serving certificate and key (PEM) for the node agent's endpoint, signed by the agents'
/// CA ([`KUBELET_CA`]), valid for the node's name and `addresses`; made anew on every call
/// (the agent keeps it in memory).
pub fn node_serving(
    data_dir: &Path,
    node: &str,
    addresses: &[IpAddr],
) -> Result<(String, String), PkiError> {
    let (_, issuer) = issuer_of(data_dir, KUBELET_CA)?;
    let mut names = vec![node.to_string(), "localhost".to_string()];
    names.extend(addresses.iter().map(ToString::to_string));
    names.push("127.0.0.1".to_string());
    let mut params = CertificateParams::new(names).map_err(cert_err("node serving"))?;
    params.distinguished_name = name(&format!("system:node:{node}"), Some("system:nodes"));
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_after = rcgen::date_time_ymd(2036, 1, 1);
    let key_pair = KeyPair::generate().map_err(cert_err("node serving"))?;
    let cert = params.signed_by(&key_pair, &issuer).map_err(cert_err("node serving"))?;
    Ok((cert.pem(), key_pair.serialize_pem()))
}

/// The node agent's kubeconfig, under the data dir.
pub const AGENT_KUBECONFIG: &str = "agent.kubeconfig";

/// Writes `data_dir/agent.kubeconfig`: a client certificate for `system:node:NODE` in
/// `system:nodes`, signed by the cluster CA ([`ensure`] made it), for the node agent that
/// runs beside the server. Kept across restarts while the node's name stays the same.
pub fn node_kubeconfig(data_dir: &Path, server_url: &str, node: &str) -> Result<PathBuf, PkiError> {
    let dir = data_dir.join("tls");
    let (ca_cert, issuer) = cluster_issuer(data_dir)?;
    let user = format!("system:node:{node}");
    let (crt, key) = (dir.join("node.crt"), dir.join("node.key"));
    private(&key, 0o600)?;
    let issued_for_node = read(&crt)?
        .and_then(|pem| {
            let der = rustls_pemfile::certs(&mut pem.as_bytes()).next()?.ok()?;
            let (_, parsed) = x509_parser::parse_x509_certificate(&der).ok()?;
            let cn = parsed.subject().iter_common_name().next()?.as_str().ok()?.to_string();
            Some(cn == user)
        })
        .unwrap_or(false);
    let (cert, key_pem) = match (issued_for_node, read(&crt)?, read(&key)?) {
        (true, Some(c), Some(k)) => (c, k),
        _ => {
            let mut params =
                CertificateParams::new(Vec::<String>::new()).map_err(cert_err("node"))?;
            params.distinguished_name = name(&user, Some("system:nodes"));
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            params.not_after = rcgen::date_time_ymd(2036, 1, 1);
            let key_pair = KeyPair::generate().map_err(cert_err("node"))?;
            let cert = params.signed_by(&key_pair, &issuer).map_err(cert_err("node"))?;
            let (c, k) = (cert.pem(), key_pair.serialize_pem());
            write(&key, &k)?;
            write(&crt, &c)?;
            (c, k)
        }
    };
    let path = data_dir.join(AGENT_KUBECONFIG);
    write(&path, &kubeconfig(server_url, &ca_cert, &user, &cert, &key_pem))?;
    Ok(path)
}
