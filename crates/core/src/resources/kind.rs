//! The kinds of resources and the names each goes by: in the `type` field,
//! in HTTP API paths, in `kumactl` commands and in the Postgres table.

/// One kind of resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceType {
    Mesh,
    Dataplane,
    TrafficPermission,
    TrafficLog,
    TrafficRoute,
    TrafficTrace,
    ProxyTemplate,
    MeshGateway,
    MeshGatewayRoute,
    Secret,
    DataplaneInsight,
    AccessRole,
    AccessRoleBinding,
    GlobalSecret,
    MeshTrafficPermission,
    MeshTcpRoute,
    MeshHttpRoute,
    MeshTls,
}

impl ResourceType {
    pub const ALL: [ResourceType; 18] = [
        ResourceType::Mesh,
        ResourceType::Dataplane,
        ResourceType::TrafficPermission,
        ResourceType::TrafficLog,
        ResourceType::TrafficRoute,
        ResourceType::TrafficTrace,
        ResourceType::ProxyTemplate,
        ResourceType::MeshGateway,
        ResourceType::MeshGatewayRoute,
        ResourceType::Secret,
        ResourceType::DataplaneInsight,
        ResourceType::AccessRole,
        ResourceType::AccessRoleBinding,
        ResourceType::GlobalSecret,
        ResourceType::MeshTrafficPermission,
        ResourceType::MeshTcpRoute,
        ResourceType::MeshHttpRoute,
        ResourceType::MeshTls,
    ];

    /// The value of the `type` field.
    pub fn name(self) -> &'static str {
        match self {
            ResourceType::Mesh => "Mesh",
            ResourceType::Dataplane => "Dataplane",
            ResourceType::TrafficPermission => "TrafficPermission",
            ResourceType::TrafficLog => "TrafficLog",
            ResourceType::TrafficRoute => "TrafficRoute",
            ResourceType::TrafficTrace => "TrafficTrace",
            ResourceType::ProxyTemplate => "ProxyTemplate",
            ResourceType::MeshGateway => "MeshGateway",
            ResourceType::MeshGatewayRoute => "MeshGatewayRoute",
            ResourceType::Secret => "Secret",
            ResourceType::DataplaneInsight => "DataplaneInsight",
            ResourceType::AccessRole => "AccessRole",
            ResourceType::AccessRoleBinding => "AccessRoleBinding",
            ResourceType::GlobalSecret => "GlobalSecret",
            ResourceType::MeshTrafficPermission => "MeshTrafficPermission",
            ResourceType::MeshTcpRoute => "MeshTCPRoute",
            ResourceType::MeshHttpRoute => "MeshHTTPRoute",
            ResourceType::MeshTls => "MeshTLS",
        }
    }

    pub fn from_name(name: &str) -> Option<ResourceType> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Every kind lives inside a mesh except `Mesh` itself and the
    /// control plane's own: who may do what (`AccessRole`,
    /// `AccessRoleBinding`) and its global secrets.
    pub fn is_mesh_scoped(self) -> bool {
        !matches!(
            self,
            ResourceType::Mesh
                | ResourceType::AccessRole
                | ResourceType::AccessRoleBinding
                | ResourceType::GlobalSecret
        )
    }

    /// Kinds whose changes the stores' change feeds announce: all but
    /// dataplane insights. Every connected proxy's insight is rewritten
    /// about once a second and nothing follows them (the API reads them
    /// when asked), so at 100,000 proxies they would only push the changes
    /// that matter out of the subscribers' buffers and force full reloads.
    pub fn is_announced(self) -> bool {
        self != ResourceType::DataplaneInsight
    }

    /// Kinds that shape what proxies are sent, so the index keeps them.
    pub fn shapes_proxies(self) -> bool {
        !matches!(
            self,
            ResourceType::DataplaneInsight
                | ResourceType::AccessRole
                | ResourceType::AccessRoleBinding
                | ResourceType::GlobalSecret
        )
    }

    /// Kinds that users create with `kumactl apply` or `PUT`; secrets and
    /// insights are written by the control plane itself.
    pub fn is_user_managed(self) -> bool {
        !matches!(
            self,
            ResourceType::Secret | ResourceType::DataplaneInsight | ResourceType::GlobalSecret
        )
    }

    /// Today's Kuma policies (`targetRef`): written with their fields under
    /// `spec`, and chosen for a proxy by the rules engine rather than by
    /// the selectors of the legacy kinds.
    pub fn is_target_ref_policy(self) -> bool {
        matches!(
            self,
            ResourceType::MeshTrafficPermission
                | ResourceType::MeshTcpRoute
                | ResourceType::MeshHttpRoute
                | ResourceType::MeshTls
        )
    }

    pub fn user_managed_names() -> Vec<&'static str> {
        Self::ALL
            .into_iter()
            .filter(|k| k.is_user_managed())
            .map(|k| k.name())
            .collect()
    }

    /// The collection segment of the HTTP API path: `/meshes/{mesh}/<here>`
    /// for kinds inside a mesh, `/<here>` for the others. `None` for kinds
    /// the API does not serve as a collection.
    pub fn collection(self) -> Option<&'static str> {
        match self {
            ResourceType::Mesh => Some("meshes"),
            ResourceType::Dataplane => Some("dataplanes"),
            ResourceType::TrafficPermission => Some("traffic-permissions"),
            ResourceType::TrafficLog => Some("traffic-logs"),
            ResourceType::TrafficRoute => Some("traffic-routes"),
            ResourceType::TrafficTrace => Some("traffic-traces"),
            ResourceType::ProxyTemplate => Some("proxytemplates"),
            ResourceType::MeshGateway => Some("meshgateways"),
            ResourceType::MeshGatewayRoute => Some("meshgatewayroutes"),
            ResourceType::AccessRole => Some("access-roles"),
            ResourceType::AccessRoleBinding => Some("access-role-bindings"),
            ResourceType::MeshTrafficPermission => Some("meshtrafficpermissions"),
            ResourceType::MeshTcpRoute => Some("meshtcproutes"),
            ResourceType::MeshHttpRoute => Some("meshhttproutes"),
            ResourceType::MeshTls => Some("meshtlses"),
            ResourceType::Secret | ResourceType::DataplaneInsight | ResourceType::GlobalSecret => {
                None
            }
        }
    }

    /// Resolves an API path segment. The reference shows
    /// `/trafficpermissions` once in a request line, so that spelling is
    /// accepted too.
    pub fn from_collection(segment: &str) -> Option<ResourceType> {
        match segment {
            "trafficpermissions" => Some(ResourceType::TrafficPermission),
            "trafficlogs" => Some(ResourceType::TrafficLog),
            "trafficroutes" => Some(ResourceType::TrafficRoute),
            "traffictraces" => Some(ResourceType::TrafficTrace),
            "proxy-templates" => Some(ResourceType::ProxyTemplate),
            _ => Self::ALL
                .into_iter()
                .filter(|k| k.is_mesh_scoped())
                .find(|k| k.collection() == Some(segment)),
        }
    }

    /// The singular word `kumactl` uses (`kumactl delete traffic-permission`).
    pub fn singular(self) -> &'static str {
        match self {
            ResourceType::Mesh => "mesh",
            ResourceType::Dataplane => "dataplane",
            ResourceType::TrafficPermission => "traffic-permission",
            ResourceType::TrafficLog => "traffic-log",
            ResourceType::TrafficRoute => "traffic-route",
            ResourceType::TrafficTrace => "traffic-trace",
            ResourceType::ProxyTemplate => "proxytemplate",
            ResourceType::MeshGateway => "meshgateway",
            ResourceType::MeshGatewayRoute => "meshgatewayroute",
            ResourceType::Secret => "secret",
            ResourceType::DataplaneInsight => "dataplane-insight",
            ResourceType::AccessRole => "access-role",
            ResourceType::AccessRoleBinding => "access-role-binding",
            ResourceType::GlobalSecret => "global-secret",
            ResourceType::MeshTrafficPermission => "meshtrafficpermission",
            ResourceType::MeshTcpRoute => "meshtcproute",
            ResourceType::MeshHttpRoute => "meshhttproute",
            ResourceType::MeshTls => "meshtls",
        }
    }

    /// Resolves a `kumactl` word, singular or plural, with or without its
    /// dash, as the API's paths are (`traffic-permissions`,
    /// `trafficpermissions`, `trafficpermission`).
    pub fn from_cli_word(word: &str) -> Option<ResourceType> {
        let undashed = |w: &str| w.replace('-', "");
        Self::ALL
            .into_iter()
            .filter(|k| k.is_user_managed())
            .find(|k| {
                undashed(k.singular()) == undashed(word)
                    || k.collection()
                        .is_some_and(|c| undashed(c) == undashed(word))
            })
    }
}

impl std::fmt::Display for ResourceType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
