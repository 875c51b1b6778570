//! A multi-document YAML stream as `kumactl apply -f` reads it: never a
//! panic; every resource it accepts validates again from its own JSON.
#![no_main]

use kuma::resources::{Identity, Resource};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match kuma::kumactl::parse_documents("fuzz.yaml", text) {
        Ok(resources) => {
            assert!(!resources.is_empty());
            for r in resources {
                let again = Resource::from_json(r.to_json(), Identity::FromDocument)
                    .expect("an accepted resource's JSON is valid");
                assert_eq!(again.spec, r.spec);
            }
        }
        Err(e) => assert!(e.to_string().contains("fuzz.yaml")),
    }
});
