//! The fuzz targets' corpora replayed as ordinary tests: every committed seed
//! (`fuzz/corpus_seeds/TARGET/`) and, where a long run left one, every input of the local
//! corpus (`fuzz/corpus/TARGET/`), through the same property the fuzz target checks
//! (`sentinella::fuzzing`). The ASAN fuzzing itself is `scripts/fuzz.sh`.

use std::path::Path;

/// The inputs of `target` under `folder` (none if the folder is absent).
fn inputs(folder: &Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(folder) else {
        return Vec::new();
    };
    let mut out: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    out
}

#[test]
fn every_corpus_input_keeps_its_fuzz_target_property() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut seeds = 0;
    for (target, property) in sentinella::fuzzing::TARGETS {
        let committed = inputs(&root.join("corpus_seeds").join(target));
        assert!(
            !committed.is_empty(),
            "fuzz target {target} has no committed seeds"
        );
        seeds += committed.len();
        for path in committed
            .iter()
            .chain(&inputs(&root.join("corpus").join(target)))
        {
            let data = std::fs::read(path).unwrap();
            let outcome = std::panic::catch_unwind(|| property(&data));
            assert!(
                outcome.is_ok(),
                "fuzz target {target}: {} breaks its property",
                path.display()
            );
        }
    }
    // Every committed folder is a target: a renamed target cannot leave its seeds unread.
    let folders = std::fs::read_dir(root.join("corpus_seeds"))
        .unwrap()
        .count();
    assert_eq!(folders, sentinella::fuzzing::TARGETS.len());
    assert!(seeds >= sentinella::fuzzing::TARGETS.len());
}
