//! Settings of the control plane as a whole (`general.*`): the host name
//! it is reached by, its work directory, and the certificate of the
//! servers proxies talk to.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct GeneralConfig {
    /// The host name other machines reach this control plane by.
    pub advertised_hostname: String,
    /// Where the control plane keeps its own files: the CA of its generated
    /// TLS certificate (kuma-cp-ca.crt, what kuma-dp --ca-cert-file takes).
    /// Empty: $HOME/.kuma.
    pub work_dir: String,
    /// The TLS certificate (PEM, chain) every server proxies talk to
    /// presents, and the HTTPS API unless it has its own; read again when
    /// the file changes. Empty: one issued by the control plane's own CA.
    pub tls_cert_file: String,
    /// The private key (PEM) of tlsCertFile.
    pub tls_key_file: String,
    /// More host names and addresses, comma-separated, for the generated
    /// certificate (it always names localhost, 127.0.0.1, ::1, the
    /// advertised host name, this machine's name and the bootstrap's xDS
    /// host).
    pub tls_subject_alt_names: String,
}

impl Default for GeneralConfig {
    fn default() -> Self {
        GeneralConfig {
            advertised_hostname: "localhost".into(),
            work_dir: String::new(),
            tls_cert_file: String::new(),
            tls_key_file: String::new(),
            tls_subject_alt_names: String::new(),
        }
    }
}
