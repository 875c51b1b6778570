//! `kumactl generate dataplane-token` and `kumactl generate certificate`.

use super::KumactlError;
use super::Session;
use super::client::ApiClient;
use crate::api::describe_error_body;
use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair};
use std::path::Path;

/// Asks the token server of the current control plane. With a client
/// certificate configured (`config control-planes add
/// --dataplane-token-client-cert`) it uses the public HTTPS server;
/// otherwise the local one, which answers on the control plane's host only.
pub async fn dataplane_token(
    session: &Session,
    name: &str,
    valid_for: Option<u64>,
) -> Result<(), KumactlError> {
    let config = session.config()?;
    let cp = config.current()?;
    let info = ApiClient::new(&cp.coordinates.api_server.url)?
        .get("/")
        .await?;
    let servers = &info["dataplaneTokenServer"];
    let mut http = reqwest::Client::builder().timeout(std::time::Duration::from_secs(30));
    let url = match &cp.coordinates.dataplane_token_server {
        Some(client) => {
            let url = servers["public"].as_str().ok_or(
                "a client certificate is configured, but the control plane's public token server is not enabled (KUMA_DATAPLANE_TOKEN_SERVER_PUBLIC_ENABLED)",
            )?;
            let mut pem = std::fs::read(&client.client_cert)
                .map_err(KumactlError::file(&client.client_cert))?;
            pem.extend(
                std::fs::read(&client.client_key)
                    .map_err(KumactlError::file(&client.client_key))?,
            );
            let identity =
                reqwest::Identity::from_pem(&pem).map_err(KumactlError::http(format!(
                    "client certificate {} and key {}",
                    client.client_cert, client.client_key
                )))?;
            // The server's certificate is self-signed (kumactl generate
            // certificate); it is the client certificate that authenticates.
            http = http.identity(identity).danger_accept_invalid_certs(true);
            url.to_string()
        }
        None => servers["local"]
            .as_str()
            .ok_or("the control plane did not say where its token server is")?
            .to_string(),
    };
    let http = http
        .build()
        .map_err(KumactlError::http("cannot build an HTTP client"))?;
    let body =
        serde_json::json!({"name": name, "mesh": session.mesh, "validForSeconds": valid_for});
    let response = http
        .post(format!("{url}/tokens"))
        .json(&body)
        .send()
        .await
        .map_err(|source| KumactlError::Unreachable {
            what: "the dataplane token server",
            url: url.clone(),
            source,
        })?;
    let status = response.status();
    let text = response
        .text()
        .await
        .map_err(KumactlError::http(format!("reading the answer of {url}")))?;
    if !status.is_success() {
        return Err(KumactlError::Refused(format!(
            "the token server refused: {}",
            describe_error_body(status, &text)
        )));
    }
    println!("{text}");
    Ok(())
}

/// A self-signed certificate: for a server (the host names given), or for
/// a client (client authentication only).
pub fn certificate(
    kind: &str,
    cert: &Path,
    key: &Path,
    hostnames: &[String],
) -> Result<(), KumactlError> {
    let names = if kind == "server" {
        hostnames.to_vec()
    } else {
        Vec::new()
    };
    let mut params = CertificateParams::new(names)?;
    params
        .distinguished_name
        .push(DnType::CommonName, format!("kuma {kind}"));
    params.extended_key_usages = vec![if kind == "server" {
        ExtendedKeyUsagePurpose::ServerAuth
    } else {
        ExtendedKeyUsagePurpose::ClientAuth
    }];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::minutes(5);
    params.not_after = now + time::Duration::days(365 * 10);
    let key_pair = KeyPair::generate()?;
    let generated = params.self_signed(&key_pair)?;
    std::fs::write(cert, generated.pem()).map_err(KumactlError::file(cert))?;
    std::fs::write(key, key_pair.serialize_pem()).map_err(KumactlError::file(key))?;
    println!(
        "wrote the {kind} certificate to {} and its key to {}",
        cert.display(),
        key.display()
    );
    Ok(())
}
