//! Dataplane tokens as a stream or the bootstrap request presents them:
//! never a panic, and a token is taken only for the dataplane its claims
//! name (the signature is checked after, against the mesh's key).
#![no_main]

use kuma::security::tokens::claimed;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(claims) = claimed(text, "default", "web-1") {
        assert_eq!(
            (claims.mesh.as_str(), claims.name.as_str()),
            ("default", "web-1")
        );
    }
});
