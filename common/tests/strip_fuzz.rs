//! Mutated and truncated corpus files (every format) never panic, never hang, and never give an
//! output that fails verification or, for HEIF/AVIF, that libheif cannot parse when it
//! parses the input.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::OnceLock;

mod support;

use asepsis_common::media::{Format, Limits, sniff, strip, verify};
use proptest::prelude::*;

/// The corpus files of every format up to 256 KiB (read once).
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

/// The HEIF and AVIF seeds alone, so that their round trip gets cases of its own.
fn heif_seeds() -> &'static Vec<Vec<u8>> {
    static SEEDS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        seeds()
            .iter()
            .filter(|b| matches!(sniff(b), Some(Format::Heif | Format::Avif)))
            .cloned()
            .collect()
    })
}

fn check(bytes: &[u8]) {
    let limits = Limits::default();
    if let Ok(stripped) = strip(bytes, &limits) {
        verify(&stripped.bytes, &limits).unwrap();
        // Stripping never makes a HEIF/AVIF unreadable: whenever a real reader (libheif)
        // parses the input, it parses the output. (Not "every output": a mutated input that
        // libheif itself refuses, say an `ispe` of 62790 px against its 32768, stays refused.)
        if matches!(stripped.report.format, Format::Heif | Format::Avif)
            && support::heif_parses(bytes).is_ok()
            && let Err(e) = support::heif_parses(&stripped.bytes)
        {
            panic!("libheif reads the input but not the output: {e}");
        }
        // Stripping is idempotent on its own output.
        let again = strip(&stripped.bytes, &limits).unwrap();
        assert_eq!(again.bytes, stripped.bytes);
    }
}

/// `seed` with each `(at, value)` written over it.
fn edited(seed: &[u8], edits: Vec<(prop::sample::Index, u8)>) -> Vec<u8> {
    let mut bytes = seed.to_vec();
    for (at, value) in edits {
        let i = at.index(bytes.len());
        bytes[i] = value;
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn mutated_files_are_handled(seed in any::<prop::sample::Index>(), edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..16)) {
        check(&edited(seed.get::<Vec<u8>>(seeds()), edits));
    }

    #[test]
    fn truncated_files_are_handled(seed in any::<prop::sample::Index>(), cut in any::<prop::sample::Index>()) {
        let bytes = seed.get(seeds());
        check(&bytes[..cut.index(bytes.len())]);
    }

    #[test]
    fn mutated_heif_comes_out_readable(seed in any::<prop::sample::Index>(), edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..16)) {
        check(&edited(seed.get::<Vec<u8>>(heif_seeds()), edits));
    }
}
