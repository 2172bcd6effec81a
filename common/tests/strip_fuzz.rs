//! Mutated and truncated corpus files (every format) never panic, never hang, and never give an output that
//! fails verification.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::OnceLock;

use asepsis_common::media::{Limits, strip, verify};
use proptest::prelude::*;

/// The JPEG, PNG and WebP files of the corpus (read once).
fn seeds() -> &'static Vec<Vec<u8>> {
    static SEEDS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus");
        let mut out = Vec::new();
        for dir in ["jpeg", "png", "webp", "tiff", "heic", "avif", "malformed"] {
            let mut paths: Vec<_> = std::fs::read_dir(corpus.join(dir))
                .unwrap()
                .flatten()
                .map(|e| e.path())
                .collect();
            paths.sort();
            for path in paths {
                let bytes = std::fs::read(path).unwrap();
                if bytes.len() <= 256 * 1024 {
                    out.push(bytes);
                }
            }
        }
        out
    })
}

fn check(bytes: &[u8]) {
    let limits = Limits::default();
    if let Ok(stripped) = strip(bytes, &limits) {
        verify(&stripped.bytes, &limits).unwrap();
        // Stripping is idempotent on its own output.
        let again = strip(&stripped.bytes, &limits).unwrap();
        assert_eq!(again.bytes, stripped.bytes);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn mutated_files_are_handled(seed in any::<prop::sample::Index>(), edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..16)) {
        let mut bytes = seed.get(seeds()).clone();
        for (at, value) in edits {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        check(&bytes);
    }

    #[test]
    fn truncated_files_are_handled(seed in any::<prop::sample::Index>(), cut in any::<prop::sample::Index>()) {
        let bytes = seed.get(seeds());
        check(&bytes[..cut.index(bytes.len())]);
    }
}
