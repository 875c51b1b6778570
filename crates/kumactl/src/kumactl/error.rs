//! What can go wrong in a `kumactl` command. I/O, HTTP and format failures
//! keep their cause; the binary prints the whole thing as one line.

use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum KumactlError {
    /// The control plane (or its token server) did not answer.
    #[error(
        "cannot reach {what} at {url}: {} (see `kumactl config control-planes list`)",
        crate::cli::root_cause(.source)
    )]
    Unreachable {
        what: &'static str,
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// It answered, with an error of its own: the line says what and why.
    #[error("{0}")]
    Refused(String),
    #[error("{context}: {source}")]
    Http {
        context: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{path}: {source}")]
    File {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{context}: {source}")]
    Yaml {
        context: String,
        #[source]
        source: serde_yaml_ng::Error,
    },
    #[error("{context}: {source}")]
    Json {
        context: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot generate the certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    /// The chart could not be rendered as asked (a bad value, file or flag).
    #[cfg(feature = "kubernetes")]
    #[error("{0}")]
    Install(#[from] crate::install::InstallError),
    /// What the user asked for cannot be done as asked (an unknown type, a
    /// missing control plane, a bad document); the message says why.
    #[error("{0}")]
    Invalid(String),
}

impl KumactlError {
    /// An I/O failure on `path`.
    pub fn file(path: impl AsRef<Path>) -> impl FnOnce(std::io::Error) -> KumactlError {
        let path = path.as_ref().display().to_string();
        move |source| KumactlError::File { path, source }
    }
}

impl KumactlError {
    /// An HTTP failure while doing `context`.
    pub fn http(context: impl Into<String>) -> impl FnOnce(reqwest::Error) -> KumactlError {
        let context = context.into();
        move |source| KumactlError::Http { context, source }
    }
}

impl From<String> for KumactlError {
    fn from(message: String) -> Self {
        KumactlError::Invalid(message)
    }
}

impl From<&str> for KumactlError {
    fn from(message: &str) -> Self {
        KumactlError::Invalid(message.to_string())
    }
}
