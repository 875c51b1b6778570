//! What a user may do: the rules of every `AccessRole` bound to the user or
//! one of its groups by an `AccessRoleBinding`. Pure: the caller reads the
//! roles and bindings, this decides.

use super::users::User;
use crate::resources::{
    Access, AccessRoleBindingSpec, AccessRoleSpec, AccessRule, ResourceType, SubjectKind,
};

/// The rules that apply to one user.
#[derive(Debug, Clone, Default)]
pub struct Permissions {
    admin: bool,
    rules: Vec<AccessRule>,
}

/// A request the user's rules do not allow, said in full.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{user} may not {access} {what}: {why}")]
pub struct Forbidden {
    pub user: String,
    pub access: Access,
    pub what: String,
    pub why: String,
}

impl Permissions {
    pub fn admin() -> Self {
        Permissions {
            admin: true,
            rules: Vec::new(),
        }
    }

    /// `roles` by name, and every binding.
    pub fn of<'a>(
        user: &User,
        roles: impl Fn(&str) -> Option<&'a AccessRoleSpec>,
        bindings: &[AccessRoleBindingSpec],
    ) -> Self {
        if user.is_admin() {
            return Self::admin();
        }
        let mut rules = Vec::new();
        for binding in bindings {
            let bound = binding.subjects.iter().any(|s| match s.kind {
                SubjectKind::User => s.name == user.name,
                SubjectKind::Group => user.groups.contains(&s.name),
            });
            if bound {
                for role in binding.roles.iter().filter_map(|r| roles(r)) {
                    rules.extend(role.rules.iter().cloned());
                }
            }
        }
        Permissions {
            admin: false,
            rules,
        }
    }

    pub fn is_admin(&self) -> bool {
        self.admin
    }

    /// Rules about `kind` in `mesh`. Insights are read as their
    /// dataplanes are.
    fn rules_for(&self, kind: ResourceType, mesh: &str) -> impl Iterator<Item = &AccessRule> {
        let kind = match kind {
            ResourceType::DataplaneInsight => ResourceType::Dataplane,
            k => k,
        };
        self.rules.iter().filter(move |r| {
            (r.mesh.is_empty() || r.mesh == mesh)
                && (r.types.is_empty() || r.types.iter().any(|t| t == kind.name()))
        })
    }

    /// May `access` be done to `kind` `name` of `mesh`? For a `Mesh`,
    /// `mesh` is its own name. Access kinds and global secrets are the
    /// admin's only.
    pub fn may(&self, access: Access, kind: ResourceType, mesh: &str, name: &str) -> bool {
        if self.admin {
            return true;
        }
        if !kind.is_mesh_scoped() && kind != ResourceType::Mesh {
            return false;
        }
        if kind == ResourceType::Mesh && access == Access::Read {
            return self.may_see_mesh(mesh);
        }
        self.rules_for(kind, mesh).any(|r| {
            (kind == ResourceType::Mesh || r.names.is_empty() || r.names.iter().any(|n| n == name))
                && (access == Access::Read || r.access.contains(&access))
        })
    }

    /// Does any rule name mesh `mesh`? Reading a mesh needs one.
    pub fn may_see_mesh(&self, mesh: &str) -> bool {
        self.admin
            || self
                .rules
                .iter()
                .any(|r| r.mesh.is_empty() || r.mesh == mesh)
    }

    /// May some `kind` of `mesh` be read? Listing needs it.
    pub fn may_list(&self, kind: ResourceType, mesh: &str) -> bool {
        self.admin || self.rules_for(kind, mesh).next().is_some()
    }

    /// May every `kind` of `mesh` be read, whatever its name? When not, a
    /// list is filtered name by name.
    pub fn reads_every(&self, kind: ResourceType, mesh: &str) -> bool {
        self.admin || self.rules_for(kind, mesh).any(|r| r.names.is_empty())
    }

    /// [`Permissions::may`], or why not.
    pub fn require(
        &self,
        user: &User,
        access: Access,
        kind: ResourceType,
        mesh: &str,
        name: &str,
    ) -> Result<(), Forbidden> {
        if self.may(access, kind, mesh, name) {
            return Ok(());
        }
        let what = match (kind.is_mesh_scoped(), name.is_empty()) {
            (true, true) => format!("{kind}s in mesh \"{mesh}\""),
            (true, false) => format!("{kind} \"{name}\" in mesh \"{mesh}\""),
            (false, true) => format!("{kind}s"),
            (false, false) => format!("{kind} \"{name}\""),
        };
        let why = if !kind.is_mesh_scoped() && kind != ResourceType::Mesh {
            format!(
                "only members of the group {} may",
                super::users::ADMIN_GROUP
            )
        } else {
            format!(
                "no AccessRole bound to it or its groups ({}) has a rule allowing {access} there",
                user.groups.join(", ")
            )
        };
        Err(Forbidden {
            user: user.to_string(),
            access,
            what,
            why,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::Subject;

    fn team_a() -> (AccessRoleSpec, AccessRoleBindingSpec) {
        let role = AccessRoleSpec {
            rules: vec![
                AccessRule {
                    types: vec!["TrafficPermission".into()],
                    mesh: "a".into(),
                    names: Vec::new(),
                    access: vec![Access::Create, Access::Update],
                },
                AccessRule {
                    types: vec!["Dataplane".into()],
                    mesh: "a".into(),
                    names: vec!["web".into()],
                    access: vec![Access::Read],
                },
            ],
        };
        let binding = AccessRoleBindingSpec {
            subjects: vec![Subject {
                kind: SubjectKind::Group,
                name: "team-a".into(),
            }],
            roles: vec!["editor".into()],
        };
        (role, binding)
    }

    fn permissions(user: &User) -> Permissions {
        let (role, binding) = team_a();
        Permissions::of(user, |n| (n == "editor").then_some(&role), &[binding])
    }

    #[test]
    fn a_team_may_do_what_its_rules_say_in_its_mesh_only() {
        let alice = User::new("alice", ["team-a".to_string()]);
        let p = permissions(&alice);
        assert!(p.may(Access::Create, ResourceType::TrafficPermission, "a", "x"));
        assert!(!p.may(Access::Delete, ResourceType::TrafficPermission, "a", "x"));
        assert!(!p.may(Access::Create, ResourceType::TrafficPermission, "b", "x"));
        assert!(!p.may(Access::Read, ResourceType::TrafficPermission, "b", "x"));
        assert!(p.may(Access::Read, ResourceType::Mesh, "a", "a"));
        assert!(!p.may(Access::Read, ResourceType::Mesh, "b", "b"));
        assert!(p.may(Access::Read, ResourceType::DataplaneInsight, "a", "web"));
        assert!(!p.may(Access::Read, ResourceType::Dataplane, "a", "api"));
        assert!(p.reads_every(ResourceType::TrafficPermission, "a"));
        assert!(!p.reads_every(ResourceType::Dataplane, "a"));
        assert!(!p.may(Access::Read, ResourceType::AccessRole, "", "editor"));
        let err = p
            .require(
                &alice,
                Access::Delete,
                ResourceType::TrafficPermission,
                "a",
                "x",
            )
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("may not DELETE TrafficPermission \"x\" in mesh \"a\""),
            "{err}"
        );
    }

    #[test]
    fn an_unbound_user_may_do_nothing_and_the_admin_everything() {
        let bob = User::new("bob", ["team-b".to_string()]);
        let p = permissions(&bob);
        assert!(!p.may_see_mesh("a"));
        assert!(!p.may(Access::Read, ResourceType::TrafficPermission, "a", "x"));
        let admin = permissions(&User::local_admin());
        assert!(admin.may(Access::Delete, ResourceType::AccessRole, "", "editor"));
    }
}
