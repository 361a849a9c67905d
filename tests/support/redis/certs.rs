//! Test certificates made at test time with rcgen (never committed): a CA, a server certificate it signs for
//! `127.0.0.1` and `localhost`, and a second, unrelated CA for "wrong CA" tests. Written as PEM files that
//! `redis-server --tls-*` and the clients read.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

/// The PEM files of a TLS test setup, all in one directory.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The CA that signed the server certificate (`ca.pem`).
    pub ca: PathBuf,
    /// The server certificate for 127.0.0.1 and localhost (`server.pem`).
    pub cert: PathBuf,
    /// Its private key, PKCS#8 (`server.key`).
    pub key: PathBuf,
    /// A CA that signed nothing here (`wrong-ca.pem`): a client trusting only it must fail the handshake.
    pub wrong_ca: PathBuf,
}

impl TlsFiles {
    /// Generates the certificates and writes them into `dir`.
    pub fn generate(dir: &Path) -> TlsFiles {
        let (ca, ca_key) = new_ca("Aegis test CA");
        let key = KeyPair::generate().expect("generate the server key");
        let params = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .expect("server certificate parameters");
        let cert = params.signed_by(&key, &ca, &ca_key).expect("sign the server certificate");
        let (wrong_ca, _) = new_ca("Unrelated test CA");
        let files = TlsFiles {
            ca: dir.join("ca.pem"),
            cert: dir.join("server.pem"),
            key: dir.join("server.key"),
            wrong_ca: dir.join("wrong-ca.pem"),
        };
        for (path, pem) in [
            (&files.ca, ca.pem()),
            (&files.cert, cert.pem()),
            (&files.key, key.serialize_pem()),
            (&files.wrong_ca, wrong_ca.pem()),
        ] {
            std::fs::write(path, pem).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        }
        files
    }
}

fn new_ca(name: &str) -> (rcgen::Certificate, KeyPair) {
    let key = KeyPair::generate().expect("generate a CA key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    let cert = params.self_signed(&key).expect("self-sign the CA");
    (cert, key)
}
