//! `kumactl generate dataplane-token`, `user-token` and `certificate`.

use super::KumactlError;
use super::Session;
use super::client::ApiClient;
use crate::resources::describe_error_body;
use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair};
use std::path::Path;

/// Asks the current control plane for a dataplane token. With a client
/// certificate for the public token server configured (`config
/// control-planes add --dataplane-token-client-cert`) it asks that server;
/// otherwise the HTTP API (`POST /tokens/dataplane`), as the configured
/// user, who needs `GENERATE_DATAPLANE_TOKEN` on the mesh.
pub async fn dataplane_token(
    session: &Session,
    name: &str,
    valid_for: Option<u64>,
) -> Result<(), KumactlError> {
    let config = session.config()?;
    let cp = config.current()?;
    let body =
        serde_json::json!({"name": name, "mesh": session.mesh, "validForSeconds": valid_for});
    let Some(client) = &cp.coordinates.dataplane_token_server else {
        let token = ApiClient::new(&cp.coordinates.api_server)?
            .post("/tokens/dataplane", &body)
            .await?;
        println!("{token}");
        return Ok(());
    };
    let info = ApiClient::new(&cp.coordinates.api_server)?.get("/").await?;
    let url = info["dataplaneTokenServer"]["public"].as_str().ok_or(
        "a client certificate is configured, but the control plane's public token server is not enabled (KUMA_DATAPLANE_TOKEN_SERVER_PUBLIC_ENABLED)",
    )?;
    let mut pem =
        std::fs::read(&client.client_cert).map_err(KumactlError::file(&client.client_cert))?;
    pem.extend(std::fs::read(&client.client_key).map_err(KumactlError::file(&client.client_key))?);
    let identity = reqwest::Identity::from_pem(&pem).map_err(KumactlError::http(format!(
        "client certificate {} and key {}",
        client.client_cert, client.client_key
    )))?;
    // The server's certificate is self-signed (kumactl generate
    // certificate); it is the client certificate that authenticates.
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .identity(identity)
        .danger_accept_invalid_certs(true)
        .build()
        .map_err(KumactlError::http("cannot build an HTTP client"))?;
    let response = http
        .post(format!("{url}/tokens"))
        .json(&body)
        .send()
        .await
        .map_err(|source| KumactlError::Unreachable {
            what: "the dataplane token server",
            url: url.to_string(),
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

/// `kumactl generate user-token`: the admin mints a token for a user.
pub async fn user_token(
    session: &Session,
    name: &str,
    groups: &[String],
    valid_for: &str,
) -> Result<(), KumactlError> {
    crate::security::users::parse_duration(valid_for)
        .map_err(|e| KumactlError::Invalid(format!("--valid-for: {e}")))?;
    let body = serde_json::json!({"name": name, "groups": groups, "validFor": valid_for});
    let token = session.client()?.post("/tokens/user", &body).await?;
    println!("{token}");
    Ok(())
}

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
