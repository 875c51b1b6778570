//! TrafficLog: access logs on a source proxy's outbounds. For a connection
//! from this proxy to a service, the most specific rule of the mesh's
//! TrafficLogs whose sources select the proxy and whose destinations
//! select the service names a logging backend (or the mesh's default);
//! `file` backends are written by Envoy itself, `tcp` ones by kuma-dp
//! from the lines Envoy marks for it on its stdout. Kuma's placeholders in the
//! backend's format are filled in here, Envoy's own (`%START_TIME%`, …) by
//! Envoy.

use super::encode::any;
use crate::resources::tags::Tags;
use crate::resources::{DataplaneSpec, LoggingBackend, TrafficLogRule, for_connection};
use crate::xds::index::MeshView;
use envoy_types::pb::envoy::config::accesslog::v3::{AccessLog, access_log};
use envoy_types::pb::envoy::config::core::v3::{
    DataSource, SubstitutionFormatString, data_source, substitution_format_string,
};
use envoy_types::pb::envoy::extensions::access_loggers::file::v3::{
    FileAccessLog, file_access_log,
};
use envoy_types::pb::envoy::extensions::access_loggers::stream::v3::{
    StdoutAccessLog, stdout_access_log,
};

/// Kuma's default format for TCP connections.
/// Starts a line Envoy writes for a tcp backend on its stdout:
/// `{TCP_LOG_MARKER}{address} {line}`, which kuma-dp takes out of the
/// stream and sends to the address (`dp::tcp_log`).
pub const TCP_LOG_MARKER: &str = "kuma-dp:tcp-log:";

const DEFAULT_FORMAT: &str = "[%START_TIME%] %RESPONSE_FLAGS% %KUMA_MESH% %KUMA_SOURCE_ADDRESS_WITHOUT_PORT%(%KUMA_SOURCE_SERVICE%)->%UPSTREAM_HOST%(%KUMA_DESTINATION_SERVICE%) took %DURATION%ms, sent %BYTES_SENT% bytes, received: %BYTES_RECEIVED% bytes\n";

/// The most specific TrafficLog rule for connections from a proxy with
/// `source_tags` to `service`, and the name of its TrafficLog.
pub fn chosen<'m>(
    source_tags: &[&Tags],
    mesh: &'m MeshView,
    service: &str,
) -> Option<(&'m str, &'m TrafficLogRule)> {
    let rules = mesh
        .traffic_logs()
        .for_services(&[service])
        .flat_map(|(name, log)| {
            log.rules
                .iter()
                .map(|r| (name.as_str(), &r.sources[..], &r.destinations[..], r))
        });
    for_connection(source_tags, service, rules)
}

/// The backend a rule names, or the mesh's default.
pub fn backend<'m>(mesh: &'m MeshView, rule: &TrafficLogRule) -> Option<&'m LoggingBackend> {
    let logging = mesh.spec.logging.as_ref()?;
    let name = rule
        .conf
        .as_ref()
        .and_then(|c| c.backend.as_deref())
        .or(logging.default_backend.as_deref());
    logging
        .backends
        .iter()
        .find(|b| name.is_none_or(|n| b.name == n))
}

/// The access logs of the outbound from `source` to `service`: none when
/// no TrafficLog selects the connection.
pub fn outbound(
    source: &DataplaneSpec,
    source_tags: &[&Tags],
    mesh: &MeshView,
    service: &str,
) -> Vec<AccessLog> {
    let Some((_, rule)) = chosen(source_tags, mesh, service) else {
        return Vec::new();
    };
    let Some(backend) = backend(mesh, rule) else {
        return Vec::new();
    };
    let source_address = source
        .networking
        .inbound
        .first()
        .and_then(|i| i.endpoint().ok())
        .map(|e| (e.address.to_string(), e.dataplane_port));
    let format = backend
        .format
        .as_deref()
        .unwrap_or(DEFAULT_FORMAT)
        .replace("%KUMA_MESH%", &mesh.name)
        .replace(
            "%KUMA_SOURCE_SERVICE%",
            source.services().first().copied().unwrap_or(""),
        )
        .replace("%KUMA_DESTINATION_SERVICE%", service)
        .replace(
            "%KUMA_SOURCE_ADDRESS_WITHOUT_PORT%",
            source_address.as_ref().map_or("", |(a, _)| a),
        )
        .replace(
            "%KUMA_SOURCE_ADDRESS%",
            &source_address.map_or(String::new(), |(a, p)| format!("{a}:{p}")),
        );
    // One entry, one line: a line is what a file holds per entry and what
    // kuma-dp forwards to a tcp backend.
    let line = format.trim_end_matches('\n').replace('\n', " ");
    let text = |line: String| SubstitutionFormatString {
        format: Some(substitution_format_string::Format::TextFormatSource(
            DataSource {
                specifier: Some(data_source::Specifier::InlineString(line + "\n")),
                ..Default::default()
            },
        )),
        ..Default::default()
    };
    let (name, config) = match (&backend.file, &backend.tcp) {
        (Some(file), _) => (
            "envoy.access_loggers.file",
            any(&FileAccessLog {
                path: file.path.clone(),
                access_log_format: Some(file_access_log::AccessLogFormat::LogFormat(text(line))),
            }),
        ),
        // Envoy has no plain-TCP logger: it writes the line to its stdout
        // behind a marker naming the address, and kuma-dp, which reads
        // Envoy's stdout, sends it there.
        (None, Some(tcp)) => (
            "envoy.access_loggers.stdout",
            any(&StdoutAccessLog {
                access_log_format: Some(stdout_access_log::AccessLogFormat::LogFormat(text(
                    format!("{}{} {line}", TCP_LOG_MARKER, tcp.address),
                ))),
            }),
        ),
        (None, None) => return Vec::new(),
    };
    vec![AccessLog {
        name: name.into(),
        config_type: Some(access_log::ConfigType::TypedConfig(config)),
        ..Default::default()
    }]
}
