//! `MeshTLS`: how the inbounds of an mTLS mesh take connections, as Kuma
//! 2.x writes it (`pkg/plugins/policies/meshtls/api/v1alpha1`).
//!
//! ```yaml
//! type: MeshTLS
//! name: permissive-legacy
//! mesh: default
//! spec:
//!   targetRef: {kind: Dataplane, labels: {app: legacy}}
//!   from:
//!   - targetRef: {kind: Mesh}
//!     default: {mode: Permissive}
//! ```
//!
//! Kuma 2.12 also writes the conf as `rules: [{default: ...}]`, which
//! takes every inbound connection as `from: [{targetRef: {kind: Mesh}}]`
//! does; a policy has one form or the other.
//!
//! `Strict` (what a mesh with mTLS means without a MeshTLS) takes mTLS
//! only; `Permissive` takes mTLS and plain text on the same port, plain
//! text without an identity and so without a permission check. The TLS
//! versions and ciphers apply to every inbound of the mesh, so Kuma takes
//! them only from a policy whose top-level `targetRef` is the `Mesh`.

use super::target_ref::{TargetRef, TargetRefKind, TargetRefPolicy};
use super::validation::Cause;
use serde::{Deserialize, Serialize};

pub const MESH_TLS_TOP_LEVEL_KINDS: [TargetRefKind; 3] = [
    TargetRefKind::Mesh,
    TargetRefKind::MeshSubset,
    TargetRefKind::Dataplane,
];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MeshTlsSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_ref: Option<TargetRef>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from: Vec<MeshTlsFrom>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<MeshTlsRule>,
}

/// A conf for every connection an inbound takes (Kuma has no L7 matching
/// for TLS).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MeshTlsRule {
    #[serde(default)]
    pub default: MeshTlsConf,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MeshTlsFrom {
    pub target_ref: TargetRef,
    #[serde(default)]
    pub default: MeshTlsConf,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MeshTlsConf {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_version: Option<TlsVersionRange>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_ciphers: Option<Vec<TlsCipher>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<TlsMode>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum TlsMode {
    Strict,
    Permissive,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsVersionRange {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<TlsVersion>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<TlsVersion>,
}

/// In order; `TLSAuto` is Envoy's choice.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum TlsVersion {
    #[serde(rename = "TLSAuto")]
    Auto,
    #[serde(rename = "TLS10")]
    Tls10,
    #[serde(rename = "TLS11")]
    Tls11,
    #[serde(rename = "TLS12")]
    Tls12,
    #[serde(rename = "TLS13")]
    Tls13,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum TlsCipher {
    #[serde(rename = "ECDHE-ECDSA-AES128-GCM-SHA256")]
    EcdheEcdsaAes128GcmSha256,
    #[serde(rename = "ECDHE-ECDSA-AES256-GCM-SHA384")]
    EcdheEcdsaAes256GcmSha384,
    #[serde(rename = "ECDHE-ECDSA-CHACHA20-POLY1305")]
    EcdheEcdsaChacha20Poly1305,
    #[serde(rename = "ECDHE-RSA-AES128-GCM-SHA256")]
    EcdheRsaAes128GcmSha256,
    #[serde(rename = "ECDHE-RSA-AES256-GCM-SHA384")]
    EcdheRsaAes256GcmSha384,
    #[serde(rename = "ECDHE-RSA-CHACHA20-POLY1305")]
    EcdheRsaChacha20Poly1305,
}

impl TlsCipher {
    /// The name Envoy (BoringSSL) knows it by: the same as Kuma's.
    pub fn name(self) -> &'static str {
        match self {
            TlsCipher::EcdheEcdsaAes128GcmSha256 => "ECDHE-ECDSA-AES128-GCM-SHA256",
            TlsCipher::EcdheEcdsaAes256GcmSha384 => "ECDHE-ECDSA-AES256-GCM-SHA384",
            TlsCipher::EcdheEcdsaChacha20Poly1305 => "ECDHE-ECDSA-CHACHA20-POLY1305",
            TlsCipher::EcdheRsaAes128GcmSha256 => "ECDHE-RSA-AES128-GCM-SHA256",
            TlsCipher::EcdheRsaAes256GcmSha384 => "ECDHE-RSA-AES256-GCM-SHA384",
            TlsCipher::EcdheRsaChacha20Poly1305 => "ECDHE-RSA-CHACHA20-POLY1305",
        }
    }
}

impl TargetRefPolicy for MeshTlsSpec {
    fn target_ref(&self) -> Option<&TargetRef> {
        self.target_ref.as_ref()
    }

    fn validate(&self) -> Vec<Cause> {
        let mut causes = Vec::new();
        if let Some(target) = &self.target_ref {
            causes.extend(target.validate("targetRef", &MESH_TLS_TOP_LEVEL_KINDS));
        }
        match (self.from.is_empty(), self.rules.is_empty()) {
            (true, true) => causes.push(Cause::new(
                "rules",
                "must hold at least one rule (default), or from at least one item (targetRef kind Mesh, and default)",
            )),
            (false, false) => causes.push(Cause::new(
                "from",
                "must be left out when rules is set: a policy has one form or the other",
            )),
            _ => {}
        }
        let mesh_wide = self.target().kind == TargetRefKind::Mesh;
        for (i, from) in self.from.iter().enumerate() {
            let path = format!("from[{i}]");
            causes.extend(
                from.target_ref
                    .validate(&format!("{path}.targetRef"), &[TargetRefKind::Mesh]),
            );
            causes.extend(from.default.validate(&format!("{path}.default"), mesh_wide));
        }
        for (i, rule) in self.rules.iter().enumerate() {
            causes.extend(
                rule.default
                    .validate(&format!("rules[{i}].default"), mesh_wide),
            );
        }
        causes
    }
}

impl MeshTlsConf {
    /// The problems of a conf at `path`; versions and ciphers are the whole
    /// mesh's, so only a policy for the whole mesh (`mesh_wide`) sets them.
    fn validate(&self, path: &str, mesh_wide: bool) -> Vec<Cause> {
        let mut causes = Vec::new();
        if self.tls_ciphers.as_ref().is_some_and(|c| !c.is_empty()) && !mesh_wide {
            causes.push(Cause::new(
                format!("{path}.tlsCiphers"),
                "can only be set when the top-level targetRef is kind Mesh",
            ));
        }
        if let Some(version) = &self.tls_version {
            if !mesh_wide {
                causes.push(Cause::new(
                    format!("{path}.tlsVersion"),
                    "can only be set when the top-level targetRef is kind Mesh",
                ));
            } else if let (Some(min), Some(max)) = (version.min, version.max)
                && min != TlsVersion::Auto
                && max != TlsVersion::Auto
                && min > max
            {
                causes.push(Cause::new(
                    format!("{path}.tlsVersion.min"),
                    "must not be above max",
                ));
            }
        }
        causes
    }

    /// The confs of a policy, in its order, whichever form it has.
    pub fn of(spec: &MeshTlsSpec) -> impl Iterator<Item = &MeshTlsConf> {
        spec.from
            .iter()
            .map(|f| &f.default)
            .chain(spec.rules.iter().map(|r| &r.default))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kumas_examples_parse_and_versions_and_ciphers_need_the_whole_mesh() {
        let spec: MeshTlsSpec = serde_json::from_value(serde_json::json!({
            "targetRef": {"kind": "Mesh"},
            "from": [{"targetRef": {"kind": "Mesh"}, "default": {
                "tlsVersion": {"min": "TLS12", "max": "TLS13"},
                "tlsCiphers": ["ECDHE-ECDSA-AES256-GCM-SHA384"],
                "mode": "Permissive"}}]
        }))
        .unwrap();
        assert!(spec.validate().is_empty(), "{:?}", spec.validate());
        let bad: MeshTlsSpec = serde_json::from_value(serde_json::json!({
            "targetRef": {"kind": "MeshSubset", "tags": {"app": "x"}},
            "from": [{"targetRef": {"kind": "MeshService", "name": "a"}, "default": {
                "tlsVersion": {"min": "TLS13", "max": "TLS12"}}}]
        }))
        .unwrap();
        let fields: Vec<String> = bad.validate().into_iter().map(|c| c.field).collect();
        assert_eq!(
            fields,
            ["from[0].targetRef.kind", "from[0].default.tlsVersion"]
        );
    }

    #[test]
    fn the_rules_form_is_one_conf_per_rule_and_excludes_from() {
        let spec: MeshTlsSpec = serde_json::from_value(serde_json::json!({
            "targetRef": {"kind": "Dataplane", "labels": {"app": "legacy"}},
            "rules": [{"default": {"mode": "Permissive"}}]
        }))
        .unwrap();
        assert!(spec.validate().is_empty(), "{:?}", spec.validate());
        let modes: Vec<_> = MeshTlsConf::of(&spec).map(|c| c.mode).collect();
        assert_eq!(modes, [Some(TlsMode::Permissive)]);
        let both: MeshTlsSpec = serde_json::from_value(serde_json::json!({
            "targetRef": {"kind": "MeshSubset", "tags": {"app": "x"}},
            "from": [{"targetRef": {"kind": "Mesh"}, "default": {"mode": "Strict"}}],
            "rules": [{"default": {"tlsCiphers": ["ECDHE-RSA-AES128-GCM-SHA256"]}}]
        }))
        .unwrap();
        let fields: Vec<String> = both.validate().into_iter().map(|c| c.field).collect();
        assert_eq!(fields, ["from", "rules[0].default.tlsCiphers"]);
        let neither: MeshTlsSpec =
            serde_json::from_value(serde_json::json!({"targetRef": {"kind": "Mesh"}})).unwrap();
        let fields: Vec<String> = neither.validate().into_iter().map(|c| c.field).collect();
        assert_eq!(fields, ["rules"]);
    }
}
