//! MeshTCPRoute and MeshHTTPRoute: where a proxy's outbound traffic to a
//! service goes, from the routes whose top-level `targetRef` selects the
//! proxy (see `xds::rules` for the order and the merge).
//!
//! For an outbound to a service, an HTTP route wins when the service
//! speaks HTTP and a MeshHTTPRoute names it; else a MeshTCPRoute that
//! names it splits the connections (or, on an HTTP service, the requests
//! no HTTP rule took); else the legacy TrafficRoute decides, as in Kuma.

use super::http::Protocol;
use super::route::Subset;
use crate::resources::tags::{SERVICE_TAG, Tags};
use crate::resources::{
    BackendRef, HeaderMatch, HeaderMatchType, HeaderModifier, HttpFilter, HttpMatch, HttpRouteRule,
    MeshHttpRouteSpec, MeshTcpRouteSpec, PathMatchType, PathRewrite, PathRewriteType,
    QueryMatchType, ServicePort, TargetRef, TcpRouteConf,
};
use crate::xds::index::{MeshView, selecting};
use crate::xds::rules;
use envoy_types::pb::envoy::config::core::v3::{
    HeaderValue, HeaderValueOption, RuntimeFractionalPercent, header_value_option,
};
use envoy_types::pb::envoy::config::route::v3::{
    HeaderMatcher, QueryParameterMatcher, RedirectAction, Route, RouteAction, RouteMatch,
    WeightedCluster, header_matcher, query_parameter_matcher, redirect_action, route, route_action,
    route_match, weighted_cluster,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{
    RegexMatchAndSubstitute, RegexMatcher, StringMatcher, string_matcher,
};
use envoy_types::pb::envoy::r#type::v3::{FractionalPercent, fractional_percent};
use envoy_types::pb::google::protobuf::{Duration, UInt32Value};
use serde_json::Value;

/// The routes that select one proxy, each kind least specific first.
#[derive(Clone)]
pub struct Selecting<'m> {
    tcp: Vec<(&'m str, &'m MeshTcpRouteSpec)>,
    http: Vec<(&'m str, &'m MeshHttpRouteSpec)>,
    /// Where the names of services' ports are read, for a `sectionName`
    /// that names one.
    mesh: &'m MeshView,
}

impl<'m> Selecting<'m> {
    /// The routes of `mesh` whose top-level `targetRef` selects a proxy
    /// with inbounds of `tags`.
    pub fn of(mesh: &'m MeshView, tags: &[&Tags], gateway: bool) -> Selecting<'m> {
        Selecting {
            tcp: selecting(mesh.mesh_tcp_routes(), tags, gateway),
            http: selecting(mesh.mesh_http_routes(), tags, gateway),
            mesh,
        }
    }

    /// Whether a `to` item's reference names the outbound to `service`.
    fn names_outbound(&self, target: &TargetRef, service: &str) -> bool {
        let destination: Tags = [(SERVICE_TAG.to_string(), service.to_string())].into();
        // A port's name is looked up only for a reference that names one.
        let name = target
            .section_name
            .as_ref()
            .and_then(|_| self.mesh.port_name(service));
        target.subset().contains(&destination)
            && target.names_service(&ServicePort { service, name })
    }

    /// The MeshTCPRoutes and MeshHTTPRoutes with `to` items naming
    /// `service`, least specific first, and those items: what each
    /// contributes to the outbound to `service`.
    pub fn naming(&self, service: &str) -> Vec<(&'static str, &'m str, Value)> {
        let names_it = |target: &TargetRef| self.names_outbound(target, service);
        let tcp = self.tcp.iter().map(|(name, spec)| {
            let items: Vec<_> = spec.to.iter().filter(|t| names_it(&t.target_ref)).collect();
            (
                "MeshTCPRoute",
                *name,
                serde_json::to_value(items).unwrap_or_default(),
            )
        });
        let http = self.http.iter().map(|(name, spec)| {
            let items: Vec<_> = spec.to.iter().filter(|t| names_it(&t.target_ref)).collect();
            (
                "MeshHTTPRoute",
                *name,
                serde_json::to_value(items).unwrap_or_default(),
            )
        });
        tcp.chain(http)
            .filter(|(_, _, items)| items.as_array().is_some_and(|a| !a.is_empty()))
            .collect()
    }

    /// The names of the routes, which decide everything the proxy's
    /// outbounds get from them: proxies with the same names share.
    pub fn names(&self) -> Vec<&'m str> {
        self.tcp
            .iter()
            .map(|(n, _)| *n)
            .chain(self.http.iter().map(|(n, _)| *n))
            .collect()
    }

    /// What the routes say of the outbound to `service` (of `protocol`),
    /// or `None` to leave it to the legacy TrafficRoute.
    /// `protocol` is asked only when an HTTP route names the service: it
    /// reads every provider of it.
    pub fn decide(&self, service: &str, protocol: impl FnOnce() -> Protocol) -> Option<Decision> {
        if self.tcp.is_empty() && self.http.is_empty() {
            return None;
        }
        let names_it = |target: &TargetRef| self.names_outbound(target, service);
        let tcp: Vec<Value> = self
            .tcp
            .iter()
            .flat_map(|(_, spec)| spec.to.iter())
            .filter(|to| names_it(&to.target_ref))
            .filter_map(|to| to.rules.first())
            .filter_map(|rule| serde_json::to_value(&rule.default).ok())
            .collect();
        let tcp: Option<TcpRouteConf> = (!tcp.is_empty())
            .then(|| rules::merge(&tcp.iter().collect::<Vec<_>>(), &[]))
            .and_then(|merged| serde_json::from_value(merged).ok());
        let http_lists: Vec<Vec<Value>> = self
            .http
            .iter()
            .flat_map(|(_, spec)| spec.to.iter())
            .filter(|to| names_it(&to.target_ref))
            .map(|to| {
                // Within one item the first rule wins a tie; the merge lets
                // the last win, so each item's rules go in reversed.
                to.rules
                    .iter()
                    .rev()
                    .filter_map(|r| serde_json::to_value(r).ok())
                    .collect()
            })
            .collect();
        let http = !http_lists.is_empty() && protocol() != Protocol::Tcp;
        let default = tcp
            .and_then(|conf| conf.backend_refs)
            .map(|backends| split(service, &backends));
        if !http {
            return default.map(|subsets| Decision {
                default: subsets,
                http: Vec::new(),
            });
        }
        let lists: Vec<&[Value]> = http_lists.iter().map(Vec::as_slice).collect();
        let mut merged: Vec<HttpRouteRule> = rules::merge_by_key(&lists, "matches")
            .into_iter()
            .filter_map(|rule| serde_json::from_value(rule).ok())
            .collect();
        merged.reverse();
        Some(Decision {
            default: default.unwrap_or_else(|| vec![Subset::whole(service)]),
            http: merged,
        })
    }
}

/// Where an outbound's traffic goes by the routes: the split of what no
/// HTTP rule takes, and the HTTP rules, in the order they were merged.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub default: Vec<Subset>,
    pub http: Vec<HttpRouteRule>,
}

impl Decision {
    /// A name for what was decided: two proxies with equal keys get the
    /// same outbound.
    pub fn key(&self) -> String {
        let default: Vec<(&str, u32)> = self
            .default
            .iter()
            .map(|s| (s.cluster.as_str(), s.weight))
            .collect();
        let http = serde_json::to_string(&self.http).unwrap_or_default();
        format!("routes {default:?} {http}")
    }

    /// Every subset the routes send traffic to: the default split, each
    /// rule's backends and its mirrors.
    pub fn subsets(&self, service: &str) -> Vec<Subset> {
        let mut all = self.default.clone();
        for rule in &self.http {
            all.extend(rule_backends(service, rule));
            for filter in rule.default.filters.iter().flatten() {
                if let Some(mirror) = &filter.request_mirror {
                    all.extend(split(service, std::slice::from_ref(&mirror.backend_ref)));
                }
            }
        }
        all
    }

    /// The HTTP routes, most precise match first (Gateway API's order:
    /// exact path, then longer prefixes, method, more headers, more query
    /// parameters; ties keep the merged order). A rule of several matches
    /// is a route for each.
    pub fn http_routes(&self, service: &str) -> Vec<Route> {
        let mut routes: Vec<(&HttpMatch, Route)> = Vec::new();
        for rule in &self.http {
            for matched in &rule.matches {
                routes.push((matched, http_route(service, matched, rule)));
            }
        }
        routes.sort_by(|(a, _), (b, _)| compare_matches(a, b));
        routes.into_iter().map(|(_, r)| r).collect()
    }
}

/// The subsets `backends` split traffic into (weight 0 left out).
fn split(service: &str, backends: &[BackendRef]) -> Vec<Subset> {
    backends
        .iter()
        .filter(|b| b.weight() > 0)
        .map(|b| {
            let (name, tags) = b.destination();
            let name = if name.is_empty() {
                service.to_string()
            } else {
                name
            };
            Subset::of(&name, tags, b.weight())
        })
        .collect()
}

/// A rule's backends, or the whole service when it names none.
fn rule_backends(service: &str, rule: &HttpRouteRule) -> Vec<Subset> {
    match &rule.default.backend_refs {
        Some(backends) if !backends.is_empty() => split(service, backends),
        _ => vec![Subset::whole(service)],
    }
}

/// Gateway API's precedence of two matches: an exact path, then a longer
/// prefix (or regex), then a method, then more headers, then more query
/// parameters; equal otherwise (the sort keeps the merged order).
fn compare_matches(a: &HttpMatch, b: &HttpMatch) -> std::cmp::Ordering {
    let path_rank = |m: &HttpMatch| match &m.path {
        Some(p) => match p.kind {
            PathMatchType::Exact => (0, 0),
            PathMatchType::PathPrefix => (1, usize::MAX - p.value.len()),
            PathMatchType::RegularExpression => (2, usize::MAX - p.value.len()),
        },
        None => (3, 0),
    };
    path_rank(a)
        .cmp(&path_rank(b))
        .then_with(|| b.method.is_some().cmp(&a.method.is_some()))
        .then_with(|| {
            let n = |m: &HttpMatch| m.headers.as_ref().map_or(0, Vec::len);
            n(b).cmp(&n(a))
        })
        .then_with(|| {
            let n = |m: &HttpMatch| m.query_params.as_ref().map_or(0, Vec::len);
            n(b).cmp(&n(a))
        })
}

fn exact(value: &str) -> StringMatcher {
    StringMatcher {
        match_pattern: Some(string_matcher::MatchPattern::Exact(value.to_string())),
        ..Default::default()
    }
}

fn regex(value: &str) -> RegexMatcher {
    RegexMatcher {
        regex: value.to_string(),
        ..Default::default()
    }
}

fn route_match(matched: &HttpMatch) -> RouteMatch {
    let path = match &matched.path {
        None => route_match::PathSpecifier::Prefix("/".into()),
        Some(p) => match p.kind {
            PathMatchType::Exact => route_match::PathSpecifier::Path(p.value.clone()),
            PathMatchType::PathPrefix if p.value == "/" => {
                route_match::PathSpecifier::Prefix("/".into())
            }
            PathMatchType::PathPrefix => {
                route_match::PathSpecifier::PathSeparatedPrefix(p.value.clone())
            }
            PathMatchType::RegularExpression => {
                route_match::PathSpecifier::SafeRegex(regex(&p.value))
            }
        },
    };
    let mut headers: Vec<HeaderMatcher> = matched
        .method
        .iter()
        .map(|m| HeaderMatcher {
            name: ":method".into(),
            header_match_specifier: Some(header_matcher::HeaderMatchSpecifier::StringMatch(exact(
                m.name(),
            ))),
            ..Default::default()
        })
        .collect();
    headers.extend(matched.headers.iter().flatten().map(header_matcher));
    let query_parameters = matched
        .query_params
        .iter()
        .flatten()
        .map(|q| QueryParameterMatcher {
            name: q.name.clone(),
            query_parameter_match_specifier: Some(
                query_parameter_matcher::QueryParameterMatchSpecifier::StringMatch(match q.kind {
                    QueryMatchType::Exact => exact(&q.value),
                    QueryMatchType::RegularExpression => StringMatcher {
                        match_pattern: Some(string_matcher::MatchPattern::SafeRegex(regex(
                            &q.value,
                        ))),
                        ..Default::default()
                    },
                }),
            ),
        })
        .collect();
    RouteMatch {
        path_specifier: Some(path),
        headers,
        query_parameters,
        ..Default::default()
    }
}

fn header_matcher(header: &HeaderMatch) -> HeaderMatcher {
    let string = |pattern| {
        Some(header_matcher::HeaderMatchSpecifier::StringMatch(
            StringMatcher {
                match_pattern: Some(pattern),
                ..Default::default()
            },
        ))
    };
    let (specifier, invert) = match header.kind.unwrap_or(HeaderMatchType::Exact) {
        HeaderMatchType::Exact => (
            string(string_matcher::MatchPattern::Exact(header.value.clone())),
            false,
        ),
        HeaderMatchType::Prefix => (
            string(string_matcher::MatchPattern::Prefix(header.value.clone())),
            false,
        ),
        HeaderMatchType::RegularExpression => (
            string(string_matcher::MatchPattern::SafeRegex(regex(
                &header.value,
            ))),
            false,
        ),
        HeaderMatchType::Present => (
            Some(header_matcher::HeaderMatchSpecifier::PresentMatch(true)),
            false,
        ),
        HeaderMatchType::Absent => (
            Some(header_matcher::HeaderMatchSpecifier::PresentMatch(true)),
            true,
        ),
    };
    HeaderMatcher {
        name: header.name.clone(),
        header_match_specifier: specifier,
        invert_match: invert,
        ..Default::default()
    }
}

/// The Envoy route of one match of `rule`.
fn http_route(service: &str, matched: &HttpMatch, rule: &HttpRouteRule) -> Route {
    let filters: &[HttpFilter] = rule.default.filters.as_deref().unwrap_or_default();
    let prefix = matched
        .path
        .as_ref()
        .filter(|p| p.kind == PathMatchType::PathPrefix)
        .map(|p| p.value.as_str());
    let redirect = filters.iter().find_map(|f| f.request_redirect.as_ref());
    let action = match redirect {
        Some(redirect) => route::Action::Redirect(RedirectAction {
            host_redirect: redirect.hostname.clone().unwrap_or_default(),
            port_redirect: redirect.port.map(u32::from).unwrap_or_default(),
            response_code: match redirect.status_code.unwrap_or(302) {
                301 => redirect_action::RedirectResponseCode::MovedPermanently,
                303 => redirect_action::RedirectResponseCode::SeeOther,
                307 => redirect_action::RedirectResponseCode::TemporaryRedirect,
                308 => redirect_action::RedirectResponseCode::PermanentRedirect,
                _ => redirect_action::RedirectResponseCode::Found,
            } as i32,
            scheme_rewrite_specifier: redirect
                .scheme
                .clone()
                .map(redirect_action::SchemeRewriteSpecifier::SchemeRedirect),
            path_rewrite_specifier: redirect.path.as_ref().and_then(|p| match p.kind {
                PathRewriteType::ReplaceFullPath => p
                    .replace_full_path
                    .clone()
                    .map(redirect_action::PathRewriteSpecifier::PathRedirect),
                PathRewriteType::ReplacePrefixMatch => p
                    .replace_prefix_match
                    .clone()
                    .map(redirect_action::PathRewriteSpecifier::PrefixRewrite),
            }),
            ..Default::default()
        }),
        None => route::Action::Route(route_action(service, rule, filters, prefix)),
    };
    let mut route = Route {
        r#match: Some(route_match(matched)),
        action: Some(action),
        ..Default::default()
    };
    for filter in filters {
        if let Some(m) = &filter.request_header_modifier {
            route.request_headers_to_add.extend(headers_to_add(m));
            route
                .request_headers_to_remove
                .extend(m.remove.iter().flatten().cloned());
        }
        if let Some(m) = &filter.response_header_modifier {
            route.response_headers_to_add.extend(headers_to_add(m));
            route
                .response_headers_to_remove
                .extend(m.remove.iter().flatten().cloned());
        }
    }
    route
}

fn route_action(
    service: &str,
    rule: &HttpRouteRule,
    filters: &[HttpFilter],
    prefix: Option<&str>,
) -> RouteAction {
    let backends = rule_backends(service, rule);
    let cluster_specifier = match backends.as_slice() {
        [only] => route_action::ClusterSpecifier::Cluster(only.cluster.clone()),
        split => route_action::ClusterSpecifier::WeightedClusters(WeightedCluster {
            clusters: split
                .iter()
                .map(|s| weighted_cluster::ClusterWeight {
                    name: s.cluster.clone(),
                    weight: Some(UInt32Value { value: s.weight }),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }),
    };
    let mut action = RouteAction {
        cluster_specifier: Some(cluster_specifier),
        // As the default route: no request timeout of the route's own.
        timeout: Some(Duration {
            seconds: 0,
            nanos: 0,
        }),
        ..Default::default()
    };
    for filter in filters {
        if let Some(rewrite) = &filter.url_rewrite {
            if let Some(host) = &rewrite.hostname {
                action.host_rewrite_specifier = Some(
                    route_action::HostRewriteSpecifier::HostRewriteLiteral(host.clone()),
                );
            }
            if let Some(path) = &rewrite.path {
                rewrite_path(&mut action, path, prefix);
            }
        }
        if let Some(mirror) = &filter.request_mirror {
            let cluster = split(service, std::slice::from_ref(&mirror.backend_ref))
                .into_iter()
                .next()
                .map(|s| s.cluster)
                .unwrap_or_else(|| service.to_string());
            // In millionths, so that "12.5" percent is kept exactly.
            let percent = mirror
                .percentage
                .as_ref()
                .and_then(|p| p.value())
                .unwrap_or(100.0);
            action
                .request_mirror_policies
                .push(route_action::RequestMirrorPolicy {
                    cluster,
                    runtime_fraction: Some(RuntimeFractionalPercent {
                        default_value: Some(FractionalPercent {
                            numerator: (percent * 10_000.0).round() as u32,
                            denominator: fractional_percent::DenominatorType::Million as i32,
                        }),
                        runtime_key: String::new(),
                    }),
                    ..Default::default()
                });
        }
    }
    action
}

/// A URLRewrite's path. Replacing a prefix with `/` by Envoy's prefix
/// rewrite would leave `//rest`; a regex on the prefix and the slashes
/// after it gives `/rest`, as Kuma does.
fn rewrite_path(action: &mut RouteAction, path: &PathRewrite, prefix: Option<&str>) {
    match path.kind {
        PathRewriteType::ReplaceFullPath => {
            if let Some(full) = &path.replace_full_path {
                action.regex_rewrite = Some(RegexMatchAndSubstitute {
                    pattern: Some(regex(".*")),
                    substitution: full.clone(),
                });
            }
        }
        PathRewriteType::ReplacePrefixMatch => {
            let Some(replacement) = &path.replace_prefix_match else {
                return;
            };
            match prefix {
                Some(prefix) if replacement == "/" && prefix != "/" => {
                    action.regex_rewrite = Some(RegexMatchAndSubstitute {
                        pattern: Some(regex(&format!("^{}/*", regex_escape(prefix)))),
                        substitution: "/".into(),
                    });
                }
                _ => action.prefix_rewrite = replacement.clone(),
            }
        }
    }
}

fn regex_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn headers_to_add(modifier: &HeaderModifier) -> Vec<HeaderValueOption> {
    let option = |name: &str, value: &str, action: header_value_option::HeaderAppendAction| {
        HeaderValueOption {
            header: Some(HeaderValue {
                key: name.to_string(),
                value: value.to_string(),
                ..Default::default()
            }),
            append_action: action as i32,
            ..Default::default()
        }
    };
    let set = modifier.set.iter().flatten().map(|h| {
        option(
            &h.name,
            &h.value,
            header_value_option::HeaderAppendAction::OverwriteIfExistsOrAdd,
        )
    });
    let add = modifier.add.iter().flatten().map(|h| {
        option(
            &h.name,
            &h.value,
            header_value_option::HeaderAppendAction::AppendIfExistsOrAdd,
        )
    });
    set.chain(add).collect()
}
