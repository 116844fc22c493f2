//! A certificate authority made at test time, and certificates it signs, with the
//! `openssl` crate (the same Debian libssl the services link): the secured-connection
//! tests give Kafka, ClickHouse and the gateway certificates from a [`TestCa`] and the
//! clients its certificate to trust; a second `TestCa` is "another CA".
//!
//! Keys are RSA 2048, written as unencrypted PKCS#8 PEM (`BEGIN PRIVATE KEY`), the
//! form Kafka's PEM key store, ClickHouse, librdkafka and OpenSSL all read.

use std::path::{Path, PathBuf};

use anyhow::Context;
use openssl::asn1::{Asn1Integer, Asn1Time};
use openssl::bn::{BigNum, MsbOption};
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::x509::extension::{BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName};
use openssl::x509::{X509Name, X509};

/// How long a certificate is valid, relative to now.
#[derive(Debug, Clone, Copy)]
pub enum Validity {
    /// From a day ago for `days` days.
    Days(u32),
    /// Expired: valid from 30 days ago until yesterday.
    Expired,
}

/// A certificate with its private key, as PEM.
#[derive(Clone)]
pub struct Issued {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

impl Issued {
    /// Write `<dir>/<name>.crt` and `<dir>/<name>.key`; returns their paths.
    pub fn write(&self, dir: &Path, name: &str) -> anyhow::Result<(PathBuf, PathBuf)> {
        let (cert, key) = (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")));
        std::fs::write(&cert, &self.cert_pem).with_context(|| format!("writing {}", cert.display()))?;
        std::fs::write(&key, &self.key_pem).with_context(|| format!("writing {}", key.display()))?;
        Ok((cert, key))
    }

    /// Write the key followed by the certificate into one file (Kafka's PEM key store).
    pub fn write_key_and_chain(&self, path: &Path) -> anyhow::Result<()> {
        let mut both = self.key_pem.clone();
        both.extend_from_slice(&self.cert_pem);
        std::fs::write(path, both).with_context(|| format!("writing {}", path.display()))
    }
}

/// A self-signed CA.
pub struct TestCa {
    cert: X509,
    key: PKey<Private>,
}

impl TestCa {
    /// A new CA whose subject is `CN=<name>`.
    pub fn new(name: &str) -> anyhow::Result<Self> {
        let key = new_key()?;
        let subject = name_of(name)?;
        let mut builder = X509::builder()?;
        builder.set_version(2)?;
        let serial = serial()?;
        builder.set_serial_number(&serial)?;
        builder.set_subject_name(&subject)?;
        builder.set_issuer_name(&subject)?;
        builder.set_pubkey(&key)?;
        set_validity(&mut builder, Validity::Days(30))?;
        builder.append_extension(BasicConstraints::new().critical().ca().build()?)?;
        builder.append_extension(KeyUsage::new().critical().key_cert_sign().crl_sign().build()?)?;
        builder.sign(&key, MessageDigest::sha256())?;
        Ok(Self { cert: builder.build(), key })
    }

    /// The CA certificate as PEM (what clients trust).
    pub fn cert_pem(&self) -> Vec<u8> {
        self.cert.to_pem().expect("PEM of a built certificate")
    }

    /// Write the CA certificate to `path`.
    pub fn write_cert(&self, path: &Path) -> anyhow::Result<()> {
        std::fs::write(path, self.cert_pem()).with_context(|| format!("writing {}", path.display()))
    }

    /// A server certificate for `127.0.0.1` and `localhost` (what every test server
    /// listens on), usable as a client certificate too.
    pub fn server(&self, common_name: &str, validity: Validity) -> anyhow::Result<Issued> {
        self.issue(common_name, validity, true)
    }

    /// A client certificate (no host names) for `common_name`.
    pub fn client(&self, common_name: &str, validity: Validity) -> anyhow::Result<Issued> {
        self.issue(common_name, validity, false)
    }

    fn issue(&self, common_name: &str, validity: Validity, server: bool) -> anyhow::Result<Issued> {
        let key = new_key()?;
        let mut builder = X509::builder()?;
        builder.set_version(2)?;
        let (serial, subject) = (serial()?, name_of(common_name)?);
        builder.set_serial_number(&serial)?;
        builder.set_subject_name(&subject)?;
        builder.set_issuer_name(self.cert.subject_name())?;
        builder.set_pubkey(&key)?;
        set_validity(&mut builder, validity)?;
        builder.append_extension(BasicConstraints::new().build()?)?;
        builder.append_extension(KeyUsage::new().critical().digital_signature().key_encipherment().build()?)?;
        builder.append_extension(ExtendedKeyUsage::new().server_auth().client_auth().build()?)?;
        if server {
            let san = SubjectAlternativeName::new()
                .ip("127.0.0.1")
                .dns("localhost")
                .build(&builder.x509v3_context(Some(&self.cert), None))?;
            builder.append_extension(san)?;
        }
        builder.sign(&self.key, MessageDigest::sha256())?;
        let cert_pem = builder.build().to_pem()?;
        Ok(Issued { cert_pem, key_pem: key.private_key_to_pem_pkcs8()? })
    }
}

/// XML for [`crate::clickhouse::ClickHouseServer::start_with`]: HTTPS on `https_port`
/// with `cert`/`key`; with `client_ca`, a client certificate from that CA is required
/// (Poco's `strict` verification).
pub fn clickhouse_https_config(https_port: u16, cert: &Path, key: &Path, client_ca: Option<&Path>) -> String {
    let verification = match client_ca {
        Some(ca) => format!("<verificationMode>strict</verificationMode><caConfig>{}</caConfig>", ca.display()),
        None => "<verificationMode>none</verificationMode>".to_owned(),
    };
    format!(
        "<https_port>{https_port}</https_port>\n<openSSL><server>\
         <certificateFile>{}</certificateFile><privateKeyFile>{}</privateKeyFile>{verification}\
         <loadDefaultCAFile>false</loadDefaultCAFile><cacheSessions>true</cacheSessions>\
         <disableProtocols>sslv2,sslv3</disableProtocols><preferServerCiphers>true</preferServerCiphers>\
         </server></openSSL>",
        cert.display(),
        key.display()
    )
}

fn new_key() -> anyhow::Result<PKey<Private>> {
    Ok(PKey::from_rsa(Rsa::generate(2048)?)?)
}

fn name_of(common_name: &str) -> anyhow::Result<X509Name> {
    let mut name = X509Name::builder()?;
    name.append_entry_by_text("CN", common_name)?;
    Ok(name.build())
}

fn serial() -> anyhow::Result<Asn1Integer> {
    let mut n = BigNum::new()?;
    n.rand(127, MsbOption::MAYBE_ZERO, false)?;
    Ok(n.to_asn1_integer()?)
}

fn set_validity(builder: &mut openssl::x509::X509Builder, validity: Validity) -> anyhow::Result<()> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs() as i64;
    const DAY: i64 = 86_400;
    let (from, until) = match validity {
        Validity::Days(days) => (now - DAY, now + i64::from(days) * DAY),
        Validity::Expired => (now - 30 * DAY, now - DAY),
    };
    let (from, until) = (Asn1Time::from_unix(from)?, Asn1Time::from_unix(until)?);
    builder.set_not_before(&from)?;
    builder.set_not_after(&until)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::stack::Stack;
    use openssl::x509::store::X509StoreBuilder;
    use openssl::x509::X509StoreContext;

    fn verifies(ca: &TestCa, issued: &Issued) -> bool {
        let mut store = X509StoreBuilder::new().unwrap();
        store.add_cert(ca.cert.clone()).unwrap();
        let store = store.build();
        let cert = X509::from_pem(&issued.cert_pem).unwrap();
        let mut context = X509StoreContext::new().unwrap();
        context.init(&store, &cert, &Stack::new().unwrap(), |c| c.verify_cert()).unwrap()
    }

    #[test]
    fn certificates_verify_against_their_ca_only_and_expire() {
        let (ca, other) = (TestCa::new("vero test CA").unwrap(), TestCa::new("another CA").unwrap());
        let server = ca.server("broker", Validity::Days(1)).unwrap();
        assert!(verifies(&ca, &server));
        assert!(!verifies(&other, &server), "a certificate from another CA is not trusted");
        assert!(!verifies(&ca, &ca.client("old", Validity::Expired).unwrap()), "an expired certificate is refused");
        assert!(String::from_utf8_lossy(&server.key_pem).starts_with("-----BEGIN PRIVATE KEY-----"));
    }
}
