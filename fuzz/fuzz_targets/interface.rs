//! Dataplane interface strings (`address:port:servicePort`, `:port`,
//! Service addresses): a parsed one prints back to what parses the same.
#![no_main]

use kuma::resources::{InboundInterface, OutboundInterface};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let inbound = InboundInterface {
        interface: text.to_string(),
        service_vip: Some(text.to_string()),
        ..Default::default()
    };
    if let Ok(ep) = inbound.endpoint() {
        let address = match ep.address {
            std::net::IpAddr::V6(a) => format!("[{a}]"),
            a => a.to_string(),
        };
        let printed = format!("{address}:{}:{}", ep.dataplane_port, ep.service_port);
        let again = InboundInterface {
            interface: printed,
            ..Default::default()
        };
        assert_eq!(again.endpoint().expect("printed form parses"), ep);
    }
    let _ = inbound.vip();
    let outbound = OutboundInterface {
        interface: text.to_string(),
        service: "fuzz".into(),
        mesh: None,
    };
    if let Ok(ep) = outbound.endpoint() {
        let again = OutboundInterface {
            interface: match ep.address {
                std::net::IpAddr::V6(a) => format!("[{a}]:{}", ep.port),
                a => format!("{a}:{}", ep.port),
            },
            service: "fuzz".into(),
            mesh: None,
        };
        assert_eq!(again.endpoint().expect("printed form parses"), ep);
    }
});
