//! Any JSON document as the HTTP API takes it: a resource that validates
//! reads back the same from its own JSON and from YAML; one that does not
//! is refused with at least one cause, each with a message.
#![no_main]

use kuma::resources::{Identity, Resource};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    match Resource::from_json(value, Identity::FromDocument) {
        Ok(resource) => {
            let json = resource.to_json();
            let again = Resource::from_json(json.clone(), Identity::FromDocument)
                .expect("a valid resource's own JSON is valid");
            assert_eq!(again.spec, resource.spec, "JSON round trip");
            let yaml = serde_yaml_ng::to_string(&json).expect("JSON is YAML");
            let back: serde_json::Value = serde_yaml_ng::from_str(&yaml).expect("YAML reads back");
            let again = Resource::from_json(back, Identity::FromDocument)
                .expect("a valid resource's YAML is valid");
            assert_eq!(again.spec, resource.spec, "YAML round trip");
        }
        Err(e) => {
            assert!(!e.causes.is_empty(), "a refusal names a cause");
            assert!(e.causes.iter().all(|c| !c.message.is_empty()));
        }
    }
});
