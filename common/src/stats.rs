//! Aggregate statistics that identify no one: counts of a tenant's assets per state, format,
//! face-scan verdict and day of arrival, with small cells suppressed.
//!
//! A count below `min_count` could point at a person (one patient's photos on one day), so it
//! is not shown. Because every dimension counts the same assets, a single hidden cell could be
//! recovered by subtraction from the total; so in each dimension the smallest shown cells are
//! hidden too until the hidden ones add up to at least `min_count` (complementary
//! suppression). No total is given. Pure: facts in, figures out.

use std::collections::BTreeMap;

use serde::Serialize;

/// What one asset contributes: its state, format, verdict and arrival day (`YYYY-MM-DD`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssetFacts {
    pub state: String,
    pub format: String,
    /// `not_scanned` until scanned.
    pub verdict: String,
    pub day: String,
}

/// The figures a caller may see.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Cells below this, and those hidden with them, are not shown.
    pub min_count: u64,
    pub by_state: BTreeMap<String, u64>,
    pub by_format: BTreeMap<String, u64>,
    pub by_verdict: BTreeMap<String, u64>,
    pub by_day: BTreeMap<String, u64>,
    /// How many cells were hidden, over all dimensions.
    pub suppressed_cells: usize,
}

/// Count `assets` and suppress small cells.
pub fn tally(assets: &[AssetFacts], min_count: u64) -> Stats {
    let count = |key: fn(&AssetFacts) -> &str| {
        let mut cells = BTreeMap::<String, u64>::new();
        for a in assets {
            *cells.entry(key(a).to_owned()).or_default() += 1;
        }
        cells
    };
    let mut stats = Stats {
        min_count,
        ..Stats::default()
    };
    for (dimension, cells) in [
        (&mut stats.by_state, count(|a| &a.state)),
        (&mut stats.by_format, count(|a| &a.format)),
        (&mut stats.by_verdict, count(|a| &a.verdict)),
        (&mut stats.by_day, count(|a| &a.day)),
    ] {
        let (shown, hidden) = suppress(cells, min_count);
        *dimension = shown;
        stats.suppressed_cells += hidden;
    }
    stats
}

/// The cells that may be shown, and how many were hidden.
fn suppress(cells: BTreeMap<String, u64>, min_count: u64) -> (BTreeMap<String, u64>, usize) {
    let (mut hidden, mut shown): (Vec<_>, Vec<_>) =
        cells.into_iter().partition(|(_, n)| *n < min_count);
    let mut hidden_sum: u64 = hidden.iter().map(|(_, n)| n).sum();
    // Hide the smallest shown cells until what is hidden cannot be told by subtraction.
    shown.sort_by_key(|(_, n)| *n);
    while hidden_sum > 0 && (hidden_sum < min_count || hidden.len() == 1) && !shown.is_empty() {
        let cell = shown.remove(0);
        hidden_sum += cell.1;
        hidden.push(cell);
    }
    (shown.into_iter().collect(), hidden.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asset(state: &str, format: &str, day: &str) -> AssetFacts {
        AssetFacts {
            state: state.into(),
            format: format.into(),
            verdict: "none".into(),
            day: day.into(),
        }
    }

    #[test]
    fn small_cells_and_their_complements_are_hidden() {
        let mut assets = vec![asset("published", "jpeg", "2026-12-01"); 12];
        assets.extend(vec![asset("held", "png", "2026-12-01"); 7]);
        assets.push(asset("rejected", "heif", "2026-12-02"));
        let stats = tally(&assets, 5);
        // One rejected asset: hidden, and so is the next smallest (held, 7), or the rejected
        // one could be read off as 20 - 12 - 7.
        assert_eq!(stats.by_state, BTreeMap::from([("published".into(), 12)]));
        assert_eq!(stats.by_format, BTreeMap::from([("jpeg".into(), 12)]));
        // The day with one asset is hidden with the other day: nothing by day.
        assert!(stats.by_day.is_empty());
        assert_eq!(stats.by_verdict, BTreeMap::from([("none".into(), 20)]));
        assert_eq!(stats.suppressed_cells, 2 + 2 + 2);
        // No figure anywhere is below the threshold.
        for dimension in [
            &stats.by_state,
            &stats.by_format,
            &stats.by_verdict,
            &stats.by_day,
        ] {
            assert!(dimension.values().all(|n| *n >= 5));
        }
    }

    #[test]
    fn when_every_cell_is_large_nothing_is_hidden() {
        let mut assets = vec![asset("published", "jpeg", "2026-12-01"); 6];
        assets.extend(vec![asset("held", "png", "2026-12-02"); 5]);
        let stats = tally(&assets, 5);
        assert_eq!(stats.by_state.len(), 2);
        assert_eq!(stats.suppressed_cells, 0);
        assert_eq!(
            tally(&[], 5),
            Stats {
                min_count: 5,
                ..Stats::default()
            }
        );
    }
}
