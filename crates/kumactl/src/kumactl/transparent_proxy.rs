//! `kumactl install transparent-proxy`: what `kuma-init` runs in a pod. It
//! writes iptables rules (IPv4, `nat` table) sending the pod's inbound TCP
//! to the sidecar's inbound redirect port (15006) and its outbound TCP to
//! the outbound one (15001), except traffic of the sidecar's own user
//! (Envoy, UID 5678), loopback traffic, and the excluded ports.
//!
//! Nodes use one of two iptables back ends, legacy or nft, and rules
//! written to the other are silently ignored (kumahq/kuma#12658): the one
//! already holding rules is used, else the one `iptables` itself is.

use super::KumactlError;
use crate::resources::TransparentProxying;
use std::io::Write;
use std::process::{Command, Stdio};

#[derive(Debug, Clone, clap::Args)]
pub struct Settings {
    #[arg(long = "redirect-inbound-port", default_value_t = TransparentProxying::INBOUND_PORT)]
    pub redirect_inbound_port: u16,
    #[arg(long = "redirect-outbound-port", default_value_t = TransparentProxying::OUTBOUND_PORT)]
    pub redirect_outbound_port: u16,
    /// The user Envoy runs as; its own traffic is not redirected
    #[arg(long = "kuma-dp-uid", default_value_t = TransparentProxying::PROXY_UID)]
    pub kuma_dp_uid: u32,
    /// Inbound ports left alone, comma-separated
    #[arg(long = "exclude-inbound-ports", value_delimiter = ',')]
    pub exclude_inbound_ports: Vec<u16>,
    /// Outbound ports left alone, comma-separated
    #[arg(long = "exclude-outbound-ports", value_delimiter = ',')]
    pub exclude_outbound_ports: Vec<u16>,
}

/// An iptables back end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    Legacy,
    Nft,
}

impl Backend {
    fn restore(self) -> &'static str {
        match self {
            Backend::Legacy => "iptables-legacy-restore",
            Backend::Nft => "iptables-nft-restore",
        }
    }

    fn save(self) -> &'static str {
        match self {
            Backend::Legacy => "iptables-legacy-save",
            Backend::Nft => "iptables-nft-save",
        }
    }
}

/// The rules, as `iptables-restore` reads them.
pub fn rules(s: &Settings) -> String {
    let mut out = String::from("*nat\n");
    for chain in [
        "KUMA_INBOUND",
        "KUMA_REDIRECT_INBOUND",
        "KUMA_OUTBOUND",
        "KUMA_REDIRECT_OUTBOUND",
    ] {
        out.push_str(&format!(":{chain} - [0:0]\n"));
    }
    let mut rule = |r: String| {
        out.push_str(&r);
        out.push('\n');
    };
    rule(format!(
        "-A KUMA_REDIRECT_INBOUND -p tcp -j REDIRECT --to-ports {}",
        s.redirect_inbound_port
    ));
    rule(format!(
        "-A KUMA_REDIRECT_OUTBOUND -p tcp -j REDIRECT --to-ports {}",
        s.redirect_outbound_port
    ));
    // Inbound: everything but the excluded ports goes to the sidecar.
    rule("-A PREROUTING -p tcp -j KUMA_INBOUND".into());
    for port in &s.exclude_inbound_ports {
        rule(format!("-A KUMA_INBOUND -p tcp --dport {port} -j RETURN"));
    }
    rule("-A KUMA_INBOUND -p tcp -j KUMA_REDIRECT_INBOUND".into());
    // Outbound: not the sidecar's own connections (Envoy is the one making
    // them), not loopback, not the excluded ports.
    rule("-A OUTPUT -p tcp -j KUMA_OUTBOUND".into());
    rule(format!(
        "-A KUMA_OUTBOUND -m owner --uid-owner {} -j RETURN",
        s.kuma_dp_uid
    ));
    rule("-A KUMA_OUTBOUND -o lo -j RETURN".into());
    rule("-A KUMA_OUTBOUND -d 127.0.0.1/32 -j RETURN".into());
    for port in &s.exclude_outbound_ports {
        rule(format!("-A KUMA_OUTBOUND -p tcp --dport {port} -j RETURN"));
    }
    rule("-A KUMA_OUTBOUND -p tcp -j KUMA_REDIRECT_OUTBOUND".into());
    out.push_str("COMMIT\n");
    out
}

/// How many rules a back end holds now; None when it is not installed.
fn rule_count(backend: Backend) -> Option<usize> {
    let out = Command::new(backend.save())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status.success().then(|| {
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.starts_with("-A"))
            .count()
    })
}

/// The back end the node uses: the one holding rules already, else the
/// one `iptables` is.
pub fn detect() -> Result<Backend, KumactlError> {
    let legacy = rule_count(Backend::Legacy);
    let nft = rule_count(Backend::Nft);
    match (legacy, nft) {
        (None, None) => Err(KumactlError::Invalid(
            "neither iptables-legacy-save nor iptables-nft-save runs here: install iptables".into(),
        )),
        (Some(_), None) => Ok(Backend::Legacy),
        (None, Some(_)) => Ok(Backend::Nft),
        (Some(l), Some(n)) if l > n => Ok(Backend::Legacy),
        (Some(l), Some(n)) if n > l => Ok(Backend::Nft),
        _ => {
            let version = Command::new("iptables")
                .arg("--version")
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            Ok(if version.contains("legacy") {
                Backend::Legacy
            } else {
                Backend::Nft
            })
        }
    }
}

/// Writes the rules with `backend` (detected when not given), or with
/// `dry_run` prints them.
pub fn install(
    settings: &Settings,
    backend: Option<Backend>,
    dry_run: bool,
) -> Result<(), KumactlError> {
    let text = rules(settings);
    if dry_run {
        print!("{text}");
        return Ok(());
    }
    let backend = match backend {
        Some(b) => b,
        None => detect()?,
    };
    let mut child = Command::new(backend.restore())
        .arg("--noflush")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(KumactlError::file(backend.restore()))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(text.as_bytes())
            .map_err(KumactlError::file(backend.restore()))?;
    }
    let out = child
        .wait_with_output()
        .map_err(KumactlError::file(backend.restore()))?;
    if !out.status.success() {
        return Err(KumactlError::Invalid(format!(
            "{} refused the rules: {}",
            backend.restore(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    println!(
        "transparent proxying is on ({:?} iptables): inbound TCP to {}, outbound TCP to {}, except user {}",
        backend,
        settings.redirect_inbound_port,
        settings.redirect_outbound_port,
        settings.kuma_dp_uid
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rules_redirect_both_ways_and_spare_envoy_loopback_and_exclusions() {
        let text = rules(&Settings {
            redirect_inbound_port: 15006,
            redirect_outbound_port: 15001,
            kuma_dp_uid: 5678,
            exclude_inbound_ports: vec![22],
            exclude_outbound_ports: vec![53],
        });
        let lines: Vec<&str> = text.lines().collect();
        let at = |needle: &str| {
            lines
                .iter()
                .position(|l| *l == needle)
                .unwrap_or_else(|| panic!("missing {needle:?} in\n{text}"))
        };
        let redirect = at("-A KUMA_OUTBOUND -p tcp -j KUMA_REDIRECT_OUTBOUND");
        for spared in [
            "-A KUMA_OUTBOUND -m owner --uid-owner 5678 -j RETURN",
            "-A KUMA_OUTBOUND -o lo -j RETURN",
            "-A KUMA_OUTBOUND -p tcp --dport 53 -j RETURN",
        ] {
            assert!(at(spared) < redirect, "{spared} must come first");
        }
        assert!(
            at("-A KUMA_INBOUND -p tcp --dport 22 -j RETURN")
                < at("-A KUMA_INBOUND -p tcp -j KUMA_REDIRECT_INBOUND")
        );
        at("-A KUMA_REDIRECT_INBOUND -p tcp -j REDIRECT --to-ports 15006");
        at("-A KUMA_REDIRECT_OUTBOUND -p tcp -j REDIRECT --to-ports 15001");
        assert_eq!(lines.first(), Some(&"*nat"));
        assert_eq!(lines.last(), Some(&"COMMIT"));
    }
}
