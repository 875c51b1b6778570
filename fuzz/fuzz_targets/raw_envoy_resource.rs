//! ProxyTemplate raw resources: a parsed resource, printed as JSON by the
//! explain endpoint, parses again to the same bytes.
#![no_main]

use kuma::envoy_api::{parse_resource, to_json};
use kuma::resources::RAW_TYPES;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse_resource(text, &RAW_TYPES) {
        Ok(raw) => {
            let json = to_json(&raw.body).expect("a parsed resource prints");
            let again = parse_resource(&json.to_string(), &RAW_TYPES).expect("its JSON parses");
            assert_eq!(again.body, raw.body);
            assert_eq!(again.name, raw.name);
        }
        Err(reason) => assert!(!reason.is_empty()),
    }
});
