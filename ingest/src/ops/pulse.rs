//! The operator's figures over time: every [`SAMPLE_EVERY`] the process's own metrics (as
//! `/metrics` renders them) and the queue counts are sampled into a ring of the last hour,
//! and the page reads rates and latency percentiles as differences between the newest sample
//! and one [`WINDOW`] older. Counters and histograms are this process's: under `asepsis up`
//! that is the whole pipeline; an ingest process apart sees its uploads, and each worker's
//! stages are on that worker's `/metrics` (Prometheus and the dashboard add them up).
//! Holds no id and no PHI: metric series are labelled by route, status, stage and outcome.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use asepsis_queue::QueueStats;
use asepsis_store::now_ms;

/// How often a sample is taken.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(30);
/// How far back the trend goes.
pub const HISTORY: Duration = Duration::from_secs(3600);
/// The span rates and percentiles are computed over.
pub const WINDOW: Duration = Duration::from_secs(300);

/// One metric series, as rendered in the Prometheus text format.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Series {
    fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every `(name, value)` of `want` is among the labels.
    fn has(&self, want: &[(&str, &str)]) -> bool {
        want.iter().all(|(k, v)| self.label(k) == Some(*v))
    }
}

/// Parse the Prometheus text exposition format (comments skipped; a line that does not
/// parse is skipped too: this reads our own exporter's output).
pub fn parse(text: &str) -> Vec<Series> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(parse_line)
        .collect()
}

fn parse_line(line: &str) -> Option<Series> {
    let (head, value) = line.rsplit_once(' ')?;
    let value: f64 = match value {
        "+Inf" => f64::INFINITY,
        v => v.parse().ok()?,
    };
    let (name, labels) = match head.split_once('{') {
        None => (head, Vec::new()),
        Some((name, rest)) => (name, parse_labels(rest.strip_suffix('}')?)?),
    };
    Some(Series {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// `a="x",b="y"`, with `\"`, `\\` and `\n` escapes in values.
fn parse_labels(mut rest: &str) -> Option<Vec<(String, String)>> {
    let mut labels = Vec::new();
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (_, c) => value.push(c),
            }
        };
        labels.push((key.trim_start_matches(',').to_owned(), value));
        rest = after.get(end + 1..)?.trim_start_matches(',');
    }
    Some(labels)
}

/// What was seen at one moment.
#[derive(Debug, Clone)]
pub struct Sample {
    pub at_ms: u64,
    /// `None`: the queue did not answer.
    pub queue: Option<QueueStats>,
    pub series: Vec<Series>,
}

impl Sample {
    pub fn new(queue: Option<QueueStats>, metrics_text: &str) -> Self {
        Sample {
            at_ms: now_ms(),
            queue,
            series: parse(metrics_text),
        }
    }

    /// The sum of the series `name` carrying the labels `want`.
    pub fn sum(&self, name: &str, want: &[(&str, &str)]) -> f64 {
        self.series
            .iter()
            .filter(|s| s.name == name && s.has(want))
            .map(|s| s.value)
            .sum()
    }

    /// The values of label `by` on the series `name`, each with its summed value.
    pub fn by(&self, name: &str, want: &[(&str, &str)], by: &str) -> Vec<(String, f64)> {
        let mut out: Vec<(String, f64)> = Vec::new();
        for s in self.series.iter().filter(|s| s.name == name && s.has(want)) {
            let Some(key) = s.label(by) else { continue };
            match out.iter_mut().find(|(k, _)| k == key) {
                Some((_, v)) => *v += s.value,
                None => out.push((key.to_owned(), s.value)),
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// The cumulative bucket counts of histogram `name` over the series carrying `want`,
    /// by upper bound.
    fn buckets(&self, name: &str, want: &[(&str, &str)]) -> Vec<(f64, f64)> {
        let bucket = format!("{name}_bucket");
        let mut out: Vec<(f64, f64)> = Vec::new();
        for s in self
            .series
            .iter()
            .filter(|s| s.name == bucket && s.has(want))
        {
            let Some(le) = s.label("le").and_then(|le| match le {
                "+Inf" => Some(f64::INFINITY),
                v => v.parse().ok(),
            }) else {
                continue;
            };
            match out.iter_mut().find(|(b, _)| *b == le) {
                Some((_, n)) => *n += s.value,
                None => out.push((le, s.value)),
            }
        }
        out.sort_by(|a, b| a.0.total_cmp(&b.0));
        out
    }
}

/// Percentiles of a histogram between two samples.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Percentiles {
    /// Observations in the span.
    pub count: u64,
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p99: Option<f64>,
}

/// The `q` quantile of cumulative `buckets`, interpolated within its bucket as Prometheus'
/// `histogram_quantile` does; the highest finite bound when it falls in `+Inf`.
fn quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut lower = (0.0, 0.0);
    for &(bound, count) in buckets {
        if count >= rank {
            if bound.is_infinite() {
                return Some(lower.0);
            }
            let within = count - lower.1;
            let share = if within > 0.0 {
                (rank - lower.1) / within
            } else {
                1.0
            };
            return Some(lower.0 + (bound - lower.0) * share);
        }
        lower = (bound, count);
    }
    None
}

/// The histogram `name` (series carrying `want`) observed between `old` (if any) and `new`.
pub fn percentiles(
    old: Option<&Sample>,
    new: &Sample,
    name: &str,
    want: &[(&str, &str)],
) -> Percentiles {
    let mut buckets = new.buckets(name, want);
    if let Some(old) = old {
        let before = old.buckets(name, want);
        for (bound, n) in &mut buckets {
            let was = before.iter().find(|(b, _)| b == bound).map_or(0.0, |b| b.1);
            *n = (*n - was).max(0.0);
        }
    }
    Percentiles {
        count: buckets.last().map_or(0, |b| b.1 as u64),
        p50: quantile(0.5, &buckets),
        p90: quantile(0.9, &buckets),
        p99: quantile(0.99, &buckets),
    }
}

/// Per second, of the counter `name` (series carrying `want`) between two samples.
pub fn rate(old: &Sample, new: &Sample, name: &str, want: &[(&str, &str)]) -> Option<f64> {
    let secs = new.at_ms.checked_sub(old.at_ms)? as f64 / 1000.0;
    (secs > 0.0).then(|| (new.sum(name, want) - old.sum(name, want)).max(0.0) / secs)
}

/// The last hour of samples.
#[derive(Default)]
pub struct Pulse {
    samples: Mutex<VecDeque<Sample>>,
}

impl Pulse {
    /// Keep `sample`, dropping what is older than [`HISTORY`].
    pub fn record(&self, sample: Sample) {
        let Ok(mut samples) = self.samples.lock() else {
            return;
        };
        let horizon = sample.at_ms.saturating_sub(HISTORY.as_millis() as u64);
        while samples.front().is_some_and(|s| s.at_ms < horizon) {
            samples.pop_front();
        }
        samples.push_back(sample);
    }

    /// Every sample kept, oldest first.
    pub fn history(&self) -> Vec<Sample> {
        self.samples
            .lock()
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The newest sample at least [`WINDOW`] before `at_ms`, else the oldest one kept.
    pub fn window_start(&self, at_ms: u64) -> Option<Sample> {
        let samples = self.samples.lock().ok()?;
        let edge = at_ms.saturating_sub(WINDOW.as_millis() as u64);
        samples
            .iter()
            .rev()
            .find(|s| s.at_ms <= edge)
            .or_else(|| samples.front())
            .filter(|s| s.at_ms < at_ms)
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# TYPE asepsis_jobs_total counter
asepsis_jobs_total{outcome="done"} 7
asepsis_jobs_total{outcome="retry"} 2
asepsis_build_info{version="0.1.0"} 1
weird{a="x\"y",b="1"} 3
asepsis_t_seconds_bucket{stage="scan",le="0.1"} 50
asepsis_t_seconds_bucket{stage="scan",le="1"} 90
asepsis_t_seconds_bucket{stage="scan",le="+Inf"} 100
asepsis_t_seconds_bucket{stage="strip",le="0.1"} 5
asepsis_t_seconds_bucket{stage="strip",le="1"} 5
asepsis_t_seconds_bucket{stage="strip",le="+Inf"} 5
"#;

    fn sample(at_ms: u64, text: &str) -> Sample {
        Sample {
            at_ms,
            queue: None,
            series: parse(text),
        }
    }

    #[test]
    fn the_text_format_parses_with_labels_and_escapes() {
        let s = parse(TEXT);
        assert_eq!(s.len(), 10);
        assert_eq!(
            s[3].labels,
            [("a".into(), "x\"y".into()), ("b".into(), "1".into())]
        );
        let now = sample(0, TEXT);
        assert_eq!(now.sum("asepsis_jobs_total", &[]), 9.0);
        assert_eq!(now.sum("asepsis_jobs_total", &[("outcome", "retry")]), 2.0);
        assert_eq!(
            now.by("asepsis_jobs_total", &[], "outcome"),
            [("done".into(), 7.0), ("retry".into(), 2.0)]
        );
    }

    #[test]
    fn percentiles_interpolate_within_buckets_as_prometheus_does() {
        let now = sample(0, TEXT);
        let p = percentiles(None, &now, "asepsis_t_seconds", &[("stage", "scan")]);
        assert_eq!(p.count, 100);
        assert_eq!(p.p50, Some(0.1));
        assert!((p.p90.unwrap() - 1.0).abs() < 1e-9);
        // The 99th falls in +Inf: the highest finite bound.
        assert_eq!(p.p99, Some(1.0));
        let none = percentiles(None, &now, "asepsis_t_seconds", &[("stage", "decrypt")]);
        assert_eq!((none.count, none.p50), (0, None));
    }

    #[test]
    fn rates_and_percentiles_are_over_the_window_between_samples() {
        let old = sample(0, TEXT);
        let new = sample(
            10_000,
            &TEXT
                .replace("outcome=\"done\"} 7", "outcome=\"done\"} 27")
                .replace("le=\"+Inf\"} 100", "le=\"+Inf\"} 110"),
        );
        let r = rate(&old, &new, "asepsis_jobs_total", &[("outcome", "done")]);
        assert_eq!(r, Some(2.0));
        let p = percentiles(Some(&old), &new, "asepsis_t_seconds", &[("stage", "scan")]);
        assert_eq!((p.count, p.p50), (10, Some(1.0)));
    }

    #[test]
    fn the_pulse_keeps_an_hour_and_finds_the_window_s_start() {
        let pulse = Pulse::default();
        let hour = HISTORY.as_millis() as u64;
        for at in [0, 1000, hour, hour + 400_000] {
            pulse.record(sample(at, ""));
        }
        let kept: Vec<u64> = pulse.history().iter().map(|s| s.at_ms).collect();
        assert_eq!(kept, [hour, hour + 400_000]);
        let start = pulse.window_start(hour + 400_000).unwrap();
        assert_eq!(start.at_ms, hour);
        assert!(Pulse::default().window_start(5).is_none());
    }
}
