//! Golden JSON fixtures: every protocol message parses and serializes back to the same JSON.

use std::path::Path;

use shared::protocol::Envelope;

fn fixtures() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/protocol");
    let mut files: Vec<(String, String)> = std::fs::read_dir(&dir)
        .expect("fixture directory exists")
        .map(|entry| {
            let path = entry.expect("readable entry").path();
            let name = path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default()
                .to_owned();
            let text = std::fs::read_to_string(&path).expect("readable fixture");
            (name, text)
        })
        .collect();
    files.sort();
    files
}

#[test]
fn every_fixture_round_trips_unchanged() {
    let fixtures = fixtures();
    assert!(fixtures.len() >= 13, "fixtures went missing");
    for (name, text) in fixtures {
        let original: serde_json::Value = serde_json::from_str(&text).expect("fixture is JSON");
        let envelope = Envelope::from_json(&text)
            .unwrap_or_else(|e| panic!("fixture {name} does not parse: {e}"));
        let again: serde_json::Value =
            serde_json::from_str(&envelope.to_json()).expect("serialized frame is JSON");
        assert_eq!(again, original, "fixture {name} changed on the round trip");
    }
}

#[test]
fn every_message_type_has_a_fixture() {
    let mut seen = std::collections::BTreeSet::new();
    for (_, text) in fixtures() {
        let envelope = Envelope::from_json(&text).expect("fixture parses");
        let kind = envelope.msg.kind();
        // The wire name and the kind agree.
        assert!(text.contains(&format!("\"type\": \"{kind}\"")), "{kind}");
        seen.insert(kind);
    }
    assert_eq!(seen.len(), 13, "missing fixtures; have {seen:?}");
}
