//! `AdmissionReview` bodies as the injector reads them, and a pod of a
//! namespace labelled for injection: never a panic; the patch applies to
//! the pod it was made for, gives the injected pod, and that pod reviewed
//! again is left alone (injection happens once).
#![no_main]

use kuma::injector::InjectorConfig;
use kuma::injector::parse_review;
use kuma::injector::sidecar::{Decision, SIDECAR_NAME, decide, injected, patch};
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;

fuzz_target!(|data: &[u8]| {
    let Ok(request) = parse_review(data) else {
        return;
    };
    let Some(object) = request.object.as_ref().filter(|_| request.kind.kind == "Pod") else {
        return;
    };
    let pod = serde_json::to_value(object).expect("a parsed object encodes");
    let labels = BTreeMap::from([(
        "kuma.io/sidecar-injection".to_string(),
        "enabled".to_string(),
    )]);
    let Decision::Inject { mesh } = decide(&pod, &labels, &BTreeMap::new()) else {
        return;
    };
    let config = InjectorConfig::default();
    // With the control plane's CA handed to the sidecar, as kuma-cp does.
    let ca = Some("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n");
    let mut patched = pod.clone();
    json_patch::patch(&mut patched, &patch(&pod, &config, &mesh, ca))
        .expect("the patch applies to its pod");
    assert_eq!(patched, injected(&pod, &config, &mesh, ca));
    // A native sidecar is an init container.
    let has_sidecar = ["containers", "initContainers"].iter().any(|list| {
        patched["spec"][list]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["name"] == SIDECAR_NAME))
    });
    assert!(has_sidecar, "no {SIDECAR_NAME} in {patched}");
    assert_eq!(
        decide(&patched, &labels, &BTreeMap::new()),
        Decision::AlreadyInjected
    );
});
