//! `MeshHTTPRoute`: how the HTTP requests a proxy sends to a service are
//! matched, altered and where they go, as Kuma 2.x writes it
//! (`pkg/plugins/policies/meshhttproute/api/v1alpha1`).
//!
//! ```yaml
//! type: MeshHTTPRoute
//! name: http-route
//! mesh: default
//! spec:
//!   targetRef: {kind: Mesh}
//!   to:
//!   - targetRef: {kind: MeshService, name: backend}
//!     rules:
//!     - matches: [{path: {type: PathPrefix, value: /v2}}]
//!       default:
//!         filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /}}}]
//!         backendRefs: [{kind: MeshServiceSubset, name: backend, tags: {version: v2}}]
//! ```
//!
//! Requests no rule matches go to the service as they would without the
//! route. A rule without `backendRefs` sends its requests there too.

use super::mesh_tcp_route::{validate_backends, validate_targets};
use super::target_ref::{BackendRef, TargetRef, TargetRefPolicy};
use super::validation::Cause;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MeshHttpRouteSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_ref: Option<TargetRef>,
    #[serde(default)]
    pub to: Vec<HttpRouteTo>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRouteTo {
    pub target_ref: TargetRef,
    /// Only with a MeshGateway top-level reference, which is not here yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostnames: Option<Vec<String>>,
    pub rules: Vec<HttpRouteRule>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRouteRule {
    /// A request matches the rule when it matches one of these.
    pub matches: Vec<HttpMatch>,
    pub default: HttpRouteConf,
}

/// All that is given must hold.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpMatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathMatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<Method>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_params: Option<Vec<QueryParamsMatch>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<Vec<HeaderMatch>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PathMatch {
    pub value: String,
    #[serde(rename = "type")]
    pub kind: PathMatchType,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum PathMatchType {
    Exact,
    PathPrefix,
    RegularExpression,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    Connect,
    Delete,
    Get,
    Head,
    Options,
    Patch,
    Post,
    Put,
    Trace,
}

impl Method {
    /// As HTTP spells it (the `:method` pseudo-header).
    pub fn name(self) -> &'static str {
        match self {
            Method::Connect => "CONNECT",
            Method::Delete => "DELETE",
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Options => "OPTIONS",
            Method::Patch => "PATCH",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Trace => "TRACE",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct QueryParamsMatch {
    #[serde(rename = "type")]
    pub kind: QueryMatchType,
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum QueryMatchType {
    Exact,
    RegularExpression,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeaderMatch {
    /// `Exact` when left out.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<HeaderMatchType>,
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub value: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum HeaderMatchType {
    Exact,
    Present,
    RegularExpression,
    Absent,
    Prefix,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRouteConf {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filters: Option<Vec<HttpFilter>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_refs: Option<Vec<BackendRef>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpFilter {
    #[serde(rename = "type")]
    pub kind: HttpFilterType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_header_modifier: Option<HeaderModifier>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_header_modifier: Option<HeaderModifier>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_redirect: Option<RequestRedirect>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_rewrite: Option<UrlRewrite>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_mirror: Option<RequestMirror>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum HttpFilterType {
    RequestHeaderModifier,
    ResponseHeaderModifier,
    RequestRedirect,
    #[serde(rename = "URLRewrite")]
    UrlRewrite,
    RequestMirror,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeaderModifier {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set: Option<Vec<HeaderValue>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub add: Option<Vec<HeaderValue>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remove: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeaderValue {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RequestRedirect {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathRewrite>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// 302 when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PathRewrite {
    #[serde(rename = "type")]
    pub kind: PathRewriteType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replace_full_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replace_prefix_match: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum PathRewriteType {
    ReplaceFullPath,
    ReplacePrefixMatch,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UrlRewrite {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathRewrite>,
    /// Only with a MeshGateway, which is not here yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_to_backend_hostname: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RequestMirror {
    /// The share of requests mirrored, in percent (an integer or a string
    /// such as "50" or "12.5"); all of them when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Percentage")]
    pub percentage: Option<Percentage>,
    pub backend_ref: BackendRef,
}

/// Kuma's int-or-string percentage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Percentage {
    Number(u32),
    Text(String),
}

/// Kubernetes' int-or-string, so that the custom resource's schema stays
/// structural (a type for every field) and takes what Kuma's does.
impl schemars::JsonSchema for Percentage {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Percentage".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "x-kubernetes-int-or-string": true,
            "description": "An integer, or a string such as \"12.5\"."
        })
    }
}

impl Percentage {
    /// The value, if it is a number from 0 to 100.
    pub fn value(&self) -> Option<f64> {
        let value = match self {
            Percentage::Number(n) => f64::from(*n),
            Percentage::Text(text) => text.trim().parse().ok()?,
        };
        (0.0..=100.0).contains(&value).then_some(value)
    }
}

impl TargetRefPolicy for MeshHttpRouteSpec {
    fn target_ref(&self) -> Option<&TargetRef> {
        self.target_ref.as_ref()
    }

    fn is_route(&self) -> bool {
        true
    }

    fn default_namespace(&mut self, namespace: &str) {
        for to in &mut self.to {
            to.target_ref.default_namespace(namespace);
            for rule in &mut to.rules {
                let conf = &mut rule.default;
                let mirrors = conf
                    .filters
                    .iter_mut()
                    .flatten()
                    .filter_map(|f| f.request_mirror.as_mut())
                    .map(|m| &mut m.backend_ref);
                for backend in conf.backend_refs.iter_mut().flatten().chain(mirrors) {
                    backend.default_namespace(namespace);
                }
            }
        }
    }

    fn validate(&self) -> Vec<Cause> {
        let destinations = self.to.iter().map(|to| &to.target_ref);
        let mut causes = validate_targets(self.target_ref.as_ref(), destinations);
        for (i, to) in self.to.iter().enumerate() {
            let path = format!("to[{i}]");
            if to.hostnames.as_ref().is_some_and(|h| !h.is_empty()) {
                causes.push(Cause::new(
                    format!("{path}.hostnames"),
                    "must not be set: hostnames apply to a MeshGateway's routes only",
                ));
            }
            for (r, rule) in to.rules.iter().enumerate() {
                causes.extend(rule.validate(&format!("{path}.rules[{r}]")));
            }
        }
        causes
    }
}

impl HttpRouteRule {
    fn validate(&self, path: &str) -> Vec<Cause> {
        let mut causes = Vec::new();
        if self.matches.is_empty() {
            causes.push(Cause::new(
                format!("{path}.matches"),
                "must hold at least one match (`{path: {type: PathPrefix, value: /}}` for every request)",
            ));
        }
        for (m, matched) in self.matches.iter().enumerate() {
            causes.extend(matched.validate(&format!("{path}.matches[{m}]")));
        }
        if let Some(backends) = &self.default.backend_refs {
            causes.extend(validate_backends(
                &format!("{path}.default.backendRefs"),
                Some(backends),
            ));
        }
        let all_prefix = self.matches.iter().all(|m| {
            m.path
                .as_ref()
                .is_some_and(|p| p.kind == PathMatchType::PathPrefix)
        });
        for (f, filter) in self.default.filters.iter().flatten().enumerate() {
            causes.extend(filter.validate(&format!("{path}.default.filters[{f}]"), all_prefix));
        }
        causes
    }
}

impl HttpMatch {
    fn validate(&self, path: &str) -> Vec<Cause> {
        let mut causes = Vec::new();
        if let Some(p) = &self.path {
            let field = format!("{path}.path.value");
            match p.kind {
                PathMatchType::Exact | PathMatchType::PathPrefix if !p.value.starts_with('/') => {
                    causes.push(Cause::new(field, "must be an absolute path (start with /)"))
                }
                PathMatchType::PathPrefix if p.value != "/" && p.value.ends_with('/') => {
                    causes.push(Cause::new(
                        field,
                        "does not need a trailing slash: a prefix matches whole /-separated segments",
                    ))
                }
                PathMatchType::RegularExpression if p.value.is_empty() => {
                    causes.push(Cause::new(field, "must be a regular expression"))
                }
                _ => {}
            }
        }
        let mut names: Vec<&str> = Vec::new();
        for (q, query) in self.query_params.iter().flatten().enumerate() {
            if query.name.is_empty() {
                causes.push(Cause::new(
                    format!("{path}.queryParams[{q}].name"),
                    "must be set",
                ));
            }
            if names.contains(&query.name.as_str()) {
                causes.push(Cause::new(
                    format!("{path}.queryParams[{q}].name"),
                    format!("\"{}\" is matched twice: give each name once", query.name),
                ));
            }
            names.push(&query.name);
        }
        for (h, header) in self.headers.iter().flatten().enumerate() {
            let at = format!("{path}.headers[{h}]");
            if header.name.is_empty() {
                causes.push(Cause::new(format!("{at}.name"), "must be set"));
            }
            let valueless = matches!(
                header.kind,
                Some(HeaderMatchType::Present | HeaderMatchType::Absent)
            );
            if valueless && !header.value.is_empty() {
                causes.push(Cause::new(
                    format!("{at}.value"),
                    "must not be set with type Present or Absent",
                ));
            }
        }
        causes
    }
}

impl HttpFilter {
    fn validate(&self, path: &str, all_prefix: bool) -> Vec<Cause> {
        let mut causes = Vec::new();
        let (field, present) = match self.kind {
            HttpFilterType::RequestHeaderModifier => (
                "requestHeaderModifier",
                self.request_header_modifier.is_some(),
            ),
            HttpFilterType::ResponseHeaderModifier => (
                "responseHeaderModifier",
                self.response_header_modifier.is_some(),
            ),
            HttpFilterType::RequestRedirect => ("requestRedirect", self.request_redirect.is_some()),
            HttpFilterType::UrlRewrite => ("urlRewrite", self.url_rewrite.is_some()),
            HttpFilterType::RequestMirror => ("requestMirror", self.request_mirror.is_some()),
        };
        if !present {
            causes.push(Cause::new(
                format!("{path}.{field}"),
                "must be set for a filter of this type",
            ));
        }
        for (name, modifier) in [
            ("requestHeaderModifier", &self.request_header_modifier),
            ("responseHeaderModifier", &self.response_header_modifier),
        ] {
            if let Some(m) = modifier
                && m.set.is_none()
                && m.add.is_none()
                && m.remove.is_none()
            {
                causes.push(Cause::new(
                    format!("{path}.{name}"),
                    "must have at least one of set, add, remove",
                ));
            }
        }
        let rewrites = [
            (
                "requestRedirect",
                self.request_redirect.as_ref().and_then(|r| r.path.as_ref()),
            ),
            (
                "urlRewrite",
                self.url_rewrite.as_ref().and_then(|r| r.path.as_ref()),
            ),
        ];
        for (name, rewrite) in rewrites {
            let Some(rewrite) = rewrite else { continue };
            let at = format!("{path}.{name}.path");
            match rewrite.kind {
                PathRewriteType::ReplaceFullPath if rewrite.replace_full_path.is_none() => causes
                    .push(Cause::new(
                        format!("{at}.replaceFullPath"),
                        "must be set with type ReplaceFullPath",
                    )),
                PathRewriteType::ReplacePrefixMatch if rewrite.replace_prefix_match.is_none() => {
                    causes.push(Cause::new(
                        format!("{at}.replacePrefixMatch"),
                        "must be set with type ReplacePrefixMatch",
                    ))
                }
                PathRewriteType::ReplacePrefixMatch if !all_prefix => causes.push(Cause::new(
                    format!("{at}.replacePrefixMatch"),
                    "can only appear if all matches match a path prefix",
                )),
                _ => {}
            }
        }
        if let Some(redirect) = &self.request_redirect {
            if let Some(scheme) = &redirect.scheme
                && scheme != "http"
                && scheme != "https"
            {
                causes.push(Cause::new(
                    format!("{path}.requestRedirect.scheme"),
                    "must be http or https",
                ));
            }
            if let Some(code) = redirect.status_code
                && ![301, 302, 303, 307, 308].contains(&code)
            {
                causes.push(Cause::new(
                    format!("{path}.requestRedirect.statusCode"),
                    "must be one of 301, 302, 303, 307, 308",
                ));
            }
        }
        if let Some(rewrite) = &self.url_rewrite
            && rewrite.host_to_backend_hostname == Some(true)
        {
            causes.push(Cause::new(
                format!("{path}.urlRewrite.hostToBackendHostname"),
                "can only be set with MeshGateway",
            ));
        }
        if let Some(mirror) = &self.request_mirror {
            causes.extend(
                mirror
                    .backend_ref
                    .validate(&format!("{path}.requestMirror.backendRef")),
            );
            if mirror
                .percentage
                .as_ref()
                .is_some_and(|p| p.value().is_none())
            {
                causes.push(Cause::new(
                    format!("{path}.requestMirror.percentage"),
                    "must be a number from 0 to 100",
                ));
            }
        }
        causes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kumas_route_parses_and_bad_matches_and_filters_name_their_fields() {
        let spec: MeshHttpRouteSpec = serde_json::from_value(serde_json::json!({
            "targetRef": {"kind": "Dataplane", "labels": {"app": "frontend"}},
            "to": [{"targetRef": {"kind": "MeshService", "name": "backend"},
                    "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/v2"},
                                            "method": "GET",
                                            "headers": [{"name": "x-team", "value": "a"}]}],
                               "default": {
                                 "filters": [{"type": "URLRewrite",
                                              "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}}},
                                             {"type": "RequestMirror",
                                              "requestMirror": {"percentage": "50", "backendRef": {"kind": "MeshService", "name": "shadow"}}}],
                                 "backendRefs": [{"kind": "MeshService", "name": "backend-v2"}]}}]}]
        }))
        .unwrap();
        assert!(spec.validate().is_empty(), "{:?}", spec.validate());
        let bad: MeshHttpRouteSpec = serde_json::from_value(serde_json::json!({
            "to": [{"targetRef": {"kind": "MeshService", "name": "backend"},
                    "rules": [{"matches": [{"path": {"type": "Exact", "value": "v2"}}],
                               "default": {"filters": [{"type": "URLRewrite",
                                  "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}}},
                                  {"type": "RequestRedirect"}]}}]}]
        }))
        .unwrap();
        let fields: Vec<String> = bad.validate().into_iter().map(|c| c.field).collect();
        assert_eq!(
            fields,
            [
                "to[0].rules[0].matches[0].path.value",
                "to[0].rules[0].default.filters[0].urlRewrite.path.replacePrefixMatch",
                "to[0].rules[0].default.filters[1].requestRedirect",
            ]
        );
    }
}
