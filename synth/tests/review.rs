//! The review summary of every stage's template (`synth review`): a plain-text snapshot beside
//! the JSON one, which a pull request's reviewer reads in a minute. A change that widens a
//! permission or adds a resource shows in its diff as one added line.

use std::path::Path;

use wsstack_synth::assets::{self, AssetSource};
use wsstack_synth::review;
use wsstack_synth::stack;
use wsstack_synth::stage::{self, manifest};

#[test]
fn review_snapshot_of_every_stage() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let stages = stage::load_all(&root.join("stages")).expect("stage files");
    let manifest = manifest::load(&root.join("wsstack.toml")).expect("the app manifest");
    let asset = assets::Assets::resolve(&AssetSource::StandIn, true).expect("stand-in");
    assert!(!stages.is_empty());
    for stage in stages {
        let t = stack::build(&stage, &manifest, &asset).expect("valid stack");
        let t = serde_json::to_value(&t).expect("serializes");
        // The text names no asset hash: handler edits leave it alone.
        insta::assert_snapshot!(format!("review_{}", stage.name), review::render(&t));
    }
}

#[test]
fn review_reads_an_assembly_and_names_its_stacks() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("WsstackDev.template.json");
    std::fs::write(
        &path,
        r#"{"Resources": {"T": {"Type": "AWS::SNS::Topic"}}}"#,
    )
    .expect("write");
    let text = review::review_path(&path).expect("reads");
    assert!(
        text.starts_with("# WsstackDev\n\nResources\n  AWS::SNS::Topic\n    T\n"),
        "{text}"
    );
    let missing = review::review_path(&dir.path().join("nope.json"));
    assert!(missing.is_err());
}
