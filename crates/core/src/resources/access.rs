//! `AccessRole` and `AccessRoleBinding`: who may read and change what, mesh
//! by mesh. Both are global (outside every mesh) and managed by the admin
//! only; `security::rbac` reads them to decide a request.
//!
//! ```yaml
//! type: AccessRole
//! name: team-a-editor
//! rules:
//! - types: [TrafficPermission, TrafficRoute]   # empty: every kind
//!   mesh: team-a                               # empty: every mesh
//!   names: []                                  # empty: every name
//!   access: [CREATE, UPDATE, DELETE]
//! ---
//! type: AccessRoleBinding
//! name: team-a
//! subjects:
//! - type: Group
//!   name: team-a
//! roles: [team-a-editor]
//! ```
//!
//! A rule always lets its subjects read what it names; `access` says what
//! else they may do. Reading a mesh needs a rule for it: a team sees no
//! mesh, no resource and no metric of a mesh no rule names.

use super::kind::ResourceType;
use super::validate_name;
use super::validation::Cause;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AccessRoleSpec {
    #[serde(default)]
    pub rules: Vec<AccessRule>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AccessRule {
    /// Kinds the rule is about (`type` values); empty for every kind.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub types: Vec<String>,
    /// The mesh the rule is about; empty for every mesh. For the `Mesh`
    /// kind it is the mesh itself.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mesh: String,
    /// Names of the resources; empty for every name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    /// What may be done beyond reading.
    pub access: Vec<Access>,
}

/// What a rule allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Access {
    /// Reading, which every rule allows anyway: a read-only rule lists
    /// only this.
    Read,
    Create,
    Update,
    Delete,
    /// Minting dataplane tokens for the rule's mesh.
    GenerateDataplaneToken,
    /// Reading a proxy's Envoy configuration (`/meshes/{m}/dataplanes/{n}/xds`).
    ViewConfigDump,
}

impl Access {
    pub fn name(self) -> &'static str {
        match self {
            Access::Read => "READ",
            Access::Create => "CREATE",
            Access::Update => "UPDATE",
            Access::Delete => "DELETE",
            Access::GenerateDataplaneToken => "GENERATE_DATAPLANE_TOKEN",
            Access::ViewConfigDump => "VIEW_CONFIG_DUMP",
        }
    }
}

impl std::fmt::Display for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Kinds a rule may name: what users write, but not the access kinds,
/// which only the admin manages.
fn ruled_kinds() -> Vec<&'static str> {
    ResourceType::ALL
        .into_iter()
        .filter(|k| k.is_user_managed() && k.is_mesh_scoped() || *k == ResourceType::Mesh)
        .map(ResourceType::name)
        .collect()
}

impl AccessRoleSpec {
    pub(crate) fn validate(&self) -> Vec<Cause> {
        let mut causes = Vec::new();
        if self.rules.is_empty() {
            causes.push(Cause::new("rules", "must have at least one rule"));
        }
        let kinds = ruled_kinds();
        for (i, rule) in self.rules.iter().enumerate() {
            for (j, t) in rule.types.iter().enumerate() {
                if !kinds.contains(&t.as_str()) {
                    causes.push(Cause::new(
                        format!("rules[{i}].types[{j}]"),
                        format!(
                            "unknown type \"{t}\"; expected one of {} (AccessRole and AccessRoleBinding are for the admin only)",
                            kinds.join(", ")
                        ),
                    ));
                }
            }
            if !rule.mesh.is_empty() {
                causes.extend(validate_name(
                    &format!("rules[{i}].mesh"),
                    &rule.mesh,
                    false,
                ));
            }
            for (j, name) in rule.names.iter().enumerate() {
                if name.is_empty() {
                    causes.push(Cause::new(
                        format!("rules[{i}].names[{j}]"),
                        "must not be empty",
                    ));
                }
            }
            if rule.access.is_empty() {
                causes.push(Cause::new(
                    format!("rules[{i}].access"),
                    "must list at least one of READ, CREATE, UPDATE, DELETE, GENERATE_DATAPLANE_TOKEN, VIEW_CONFIG_DUMP",
                ));
            }
        }
        causes
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AccessRoleBindingSpec {
    #[serde(default)]
    pub subjects: Vec<Subject>,
    /// Names of `AccessRole`s.
    #[serde(default)]
    pub roles: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Subject {
    #[serde(rename = "type")]
    pub kind: SubjectKind,
    pub name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum SubjectKind {
    User,
    Group,
}

impl AccessRoleBindingSpec {
    pub(crate) fn validate(&self) -> Vec<Cause> {
        let mut causes = Vec::new();
        if self.subjects.is_empty() {
            causes.push(Cause::new(
                "subjects",
                "must name at least one User or Group",
            ));
        }
        for (i, subject) in self.subjects.iter().enumerate() {
            if subject.name.is_empty() {
                causes.push(Cause::new(
                    format!("subjects[{i}].name"),
                    "must not be empty",
                ));
            }
        }
        if self.roles.is_empty() {
            causes.push(Cause::new("roles", "must name at least one AccessRole"));
        }
        for (i, role) in self.roles.iter().enumerate() {
            causes.extend(validate_name(&format!("roles[{i}]"), role, true));
        }
        causes
    }
}

#[cfg(test)]
mod tests {
    use crate::resources::{Identity, Resource};
    use serde_json::json;

    fn fields(kind: &str, mut extra: serde_json::Value) -> serde_json::Value {
        extra["type"] = json!(kind);
        extra["name"] = json!("r");
        extra
    }

    #[test]
    fn a_role_names_every_wrong_field() {
        let err = Resource::from_json(
            fields(
                "AccessRole",
                json!({"rules": [{"types": ["Secret"], "mesh": "Bad Mesh", "names": [""], "access": []}]}),
            ),
            Identity::FromDocument,
        )
        .unwrap_err()
        .to_string();
        for field in [
            "rules[0].types[0]",
            "rules[0].mesh",
            "rules[0].names[0]",
            "rules[0].access",
        ] {
            assert!(err.contains(field), "{field} missing from {err}");
        }
    }

    #[test]
    fn a_binding_needs_subjects_and_roles() {
        let err = Resource::from_json(
            fields(
                "AccessRoleBinding",
                json!({"subjects": [{"type": "Team", "name": "x"}]}),
            ),
            Identity::FromDocument,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("subjects[0].type"), "{err}");
        let err = Resource::from_json(
            fields("AccessRoleBinding", json!({"subjects": []})),
            Identity::FromDocument,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("subjects") && err.contains("roles"), "{err}");
    }

    #[test]
    fn a_valid_role_round_trips() {
        let doc = fields(
            "AccessRole",
            json!({"rules": [{"types": ["TrafficPermission"], "mesh": "team-a", "access": ["CREATE", "GENERATE_DATAPLANE_TOKEN"]}]}),
        );
        let r = Resource::from_json(doc.clone(), Identity::FromDocument).unwrap();
        assert_eq!(r.to_json(), doc);
    }
}
