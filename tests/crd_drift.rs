//! crds/, the chart's CRDs and docs/crd-reference.md are generated from the Rust types; they
//! must never drift from them.

#[test]
fn crds_directory_matches_the_generated_crds() {
    let generated =
        frontegg_token_operator::api::crds_yaml(&frontegg_token_operator::api::Conversion::Webhook)
            .expect("render CRDs");
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/crds/frontegg-token-operator.crds.yaml"
    );
    let committed = std::fs::read_to_string(path).expect("read crds/");
    assert!(
        generated == committed,
        "crds/ is out of date: run `make crds` and commit the result"
    );
}

#[test]
fn chart_crds_match_the_generated_crds() {
    let generated = frontegg_token_operator::api::helm_crds_template().expect("render chart CRDs");
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/charts/frontegg-token-operator/templates/crds.yaml"
    );
    let committed = std::fs::read_to_string(path).expect("read chart CRDs");
    assert!(
        generated == committed,
        "the chart's CRDs are out of date: run `make crds` and commit the result"
    );
}

#[test]
fn the_crd_reference_matches_the_generated_reference() {
    let generated = frontegg_token_operator::api::crd_reference();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/crd-reference.md");
    let committed = std::fs::read_to_string(path).expect("read docs/crd-reference.md");
    assert!(
        generated == committed,
        "docs/crd-reference.md is out of date: run `make crds` and commit the result"
    );
}

#[test]
fn every_crd_field_has_a_description() {
    let crds: serde_json::Value =
        serde_json::to_value(frontegg_token_operator::api::all_crds()).unwrap();
    fn walk(path: &str, schema: &serde_json::Value, missing: &mut Vec<String>) {
        if let Some(props) = schema.get("properties").and_then(|p| p.as_object()) {
            for (name, sub) in props {
                let here = format!("{path}.{name}");
                let top = matches!(
                    name.as_str(),
                    "apiVersion" | "kind" | "metadata" | "spec" | "status"
                ) && !path.contains('.');
                if !top && sub.get("description").is_none() {
                    missing.push(here.clone());
                }
                walk(&here, sub, missing);
            }
        }
        if let Some(items) = schema.get("items") {
            walk(path, items, missing);
        }
    }
    let mut missing = Vec::new();
    for crd in crds.as_array().unwrap() {
        let kind = crd["spec"]["names"]["kind"].as_str().unwrap();
        let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
        walk(kind, &schema["properties"]["spec"], &mut missing);
        walk(kind, &schema["properties"]["status"], &mut missing);
    }
    assert!(
        missing.is_empty(),
        "fields without a description (kubectl explain would be mute): {missing:#?}"
    );
}
