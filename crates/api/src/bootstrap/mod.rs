//! The bootstrap server on port 5682: `POST /bootstrap` answers the Envoy
//! bootstrap configuration of a registered dataplane, pointing Envoy's ADS
//! at this control plane.

mod settings;

use crate::api::ApiError;
use crate::xds::auth::{AuthError, DataplaneAuth};
use crate::xds::index::REGISTRATION_GRACE;
use crate::xds::index::{IndexHandle, ProxyId};
use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use serde::Deserialize;
use serde_json::{Value, json};
pub use settings::{BootstrapParams, BootstrapServerConfig, XdsApiType};
use std::sync::Arc;

/// What `kuma-dp` asks for.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BootstrapRequest {
    pub mesh: String,
    pub name: String,
    #[serde(default)]
    pub admin_port: Option<u16>,
    #[serde(default)]
    pub dataplane_token_path: Option<String>,
    /// The token itself, checked here as the ADS stream will check it, so
    /// that a refusal reaches `kuma-dp` before Envoy starts.
    #[serde(default)]
    pub dataplane_token: Option<String>,
    /// What kuma-dp runs (`{"kumaDp": {"version": ...}}`), passed to the
    /// ADS stream in the node's metadata, for the insight.
    #[serde(default)]
    pub version: Option<Value>,
}

pub struct BootstrapContext {
    /// Who is registered.
    pub index: IndexHandle,
    /// What a dataplane must present.
    pub auth: Arc<DataplaneAuth>,
    /// Host name Envoy uses to reach the control plane.
    pub xds_host: String,
    pub xds_port: u16,
    pub api_type: XdsApiType,
    /// Whether the xDS port speaks TLS: Envoy is then told to verify it
    /// as `xds_host`, with the CA `kuma-dp` was given (see
    /// [`crate::dp`], which adds it).
    pub xds_tls: bool,
}

pub fn router(ctx: BootstrapContext) -> Router {
    Router::new()
        .route("/bootstrap", post(bootstrap))
        .with_state(Arc::new(ctx))
}

async fn bootstrap(
    State(ctx): State<Arc<BootstrapContext>>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let request: BootstrapRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(
            format!("the bootstrap request is not valid: {e}; expected {{\"mesh\", \"name\", \"adminPort\", \"dataplaneTokenPath\", \"dataplaneToken\"}}"),
            Vec::new(),
        )
    })?;
    let id = ProxyId::new(&request.mesh, &request.name);
    // The service of the first inbound names Envoy's node cluster: Envoy
    // reports it as the service of its spans and stats.
    let service = ctx
        .index
        .wait_for(REGISTRATION_GRACE, |i| {
            i.dataplane(&id)
                .map(|dp| dp.services().first().map(|s| s.to_string()))
        })
        .await;
    let Some(service) = service else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "Dataplane not found",
            format!(
                "Dataplane \"{}\" of mesh \"{}\" is not registered. On Universal, create the Dataplane resource (kumactl apply -f dataplane.yaml) before starting kuma-dp",
                request.name, request.mesh
            ),
        ));
    };
    let token = request.dataplane_token.as_deref().unwrap_or("").trim();
    let refused = |e| match e {
        AuthError::Refused(message) => {
            tracing::warn!(mesh = %id.mesh, dataplane = %id.name, "bootstrap refused: {message}");
            ApiError::new(StatusCode::UNAUTHORIZED, "Dataplane token refused", message)
        }
        AuthError::NotAdmitted(message) => ApiError::new(
            StatusCode::FORBIDDEN,
            "Dataplane not admitted to its mesh",
            message,
        ),
        AuthError::Unavailable(message) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Cannot check the dataplane token now",
            message,
        ),
    };
    ctx.auth.check(&id, token).await.map_err(refused)?;
    ctx.auth.admitted(&id).map_err(refused)?;
    let cluster = service.unwrap_or_else(|| request.name.clone());
    Ok(Json(envoy_bootstrap(&ctx, &request, &cluster)))
}

/// Envoy's bootstrap, v3, as JSON; `cluster` is the node's service.
pub fn envoy_bootstrap(ctx: &BootstrapContext, request: &BootstrapRequest, cluster: &str) -> Value {
    let api_type = match ctx.api_type {
        XdsApiType::Sotw => "GRPC",
        XdsApiType::Delta => "DELTA_GRPC",
    };
    let mut bootstrap = json!({
        "node": {
            "id": ProxyId::new(&request.mesh, &request.name).node_id(),
            "cluster": cluster,
            "metadata": {
                "dataplane.mesh": request.mesh,
                "dataplane.name": request.name,
                "dataplane.admin.port": request.admin_port.map(|p| p.to_string()).unwrap_or_default(),
                "dataplaneTokenPath": request.dataplane_token_path.clone().unwrap_or_default(),
                "version": request.version.clone().unwrap_or_else(|| json!({})),
            }
        },
        "dynamic_resources": {
            "lds_config": {"ads": {}, "resource_api_version": "V3"},
            "cds_config": {"ads": {}, "resource_api_version": "V3"},
            "ads_config": {
                "api_type": api_type,
                "transport_api_version": "V3",
                "set_node_on_first_message_only": true,
                "grpc_services": [{"envoy_grpc": {"cluster_name": "ads_cluster"}}]
            }
        },
        "static_resources": {
            "clusters": [{
                "name": "ads_cluster",
                "type": "STRICT_DNS",
                "dns_lookup_family": "V4_ONLY",
                "connect_timeout": "1s",
                "typed_extension_protocol_options": {
                    "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                        "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                        "explicit_http_config": {"http2_protocol_options": {}}
                    }
                },
                "load_assignment": {
                    "cluster_name": "ads_cluster",
                    "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {
                        "address": ctx.xds_host, "port_value": ctx.xds_port
                    }}}}]}]
                }
            }]
        },
        // The cap on downstream connections, as the resource monitor that
        // replaced the deprecated runtime key Envoy warned about.
        "overload_manager": {
            "resource_monitors": [{
                "name": "envoy.resource_monitors.global_downstream_max_connections",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig",
                    "max_active_downstream_connections": 50000
                }
            }]
        }
    });
    if ctx.xds_tls {
        bootstrap["static_resources"]["clusters"][0]["transport_socket"] =
            ads_transport_socket(&ctx.xds_host);
    }
    if let Some(port) = request.admin_port {
        bootstrap["admin"] = json!({
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}
        });
    }
    bootstrap
}

/// TLS towards the control plane's xDS port: the server must present a
/// certificate for `host` (SNI and subject alt name checked). The CA to
/// verify it with is not known here; `kuma-dp` puts the one it was given
/// into `validation_context.trusted_ca`.
fn ads_transport_socket(host: &str) -> Value {
    let is_ip = host.parse::<std::net::IpAddr>().is_ok();
    let san_type = if is_ip { "IP_ADDRESS" } else { "DNS" };
    let mut tls = json!({
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
        "common_tls_context": {
            "alpn_protocols": ["h2"],
            "validation_context": {
                "match_typed_subject_alt_names": [{"san_type": san_type, "matcher": {"exact": host}}]
            }
        }
    });
    // Server Name Indication carries host names only, never addresses.
    if !is_ip {
        tls["sni"] = json!(host);
    }
    json!({"name": "envoy.transport_sockets.tls", "typed_config": tls})
}
