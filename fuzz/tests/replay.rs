//! Replays every committed corpus input through its target (seconds, no fuzzing):
//! what a fuzzer found once must never come back. A target without a corpus fails.

#![allow(clippy::unwrap_used, missing_docs)]

use std::path::Path;

#[test]
fn every_corpus_input_runs_through_its_target_without_a_panic() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    for (name, target) in kith_fuzz::TARGETS {
        let dir = root.join(name);
        let mut inputs: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("no corpus for {name} at {}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        inputs.sort();
        assert!(
            inputs.len() >= 5,
            "the {name} corpus has {} inputs; run the fuzzer (fuzz/README.md)",
            inputs.len()
        );
        for input in inputs {
            let bytes = std::fs::read(&input).unwrap();
            let outcome = std::panic::catch_unwind(|| target(&bytes));
            assert!(outcome.is_ok(), "{name} panics on {}", input.display());
        }
    }
}
