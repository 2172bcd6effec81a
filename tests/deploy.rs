//! What `deploy/` ships, checked by the tools that will read it: the alerting rules by
//! Prometheus' own `promtool` (syntax, and the cases of `alerts.test.yml`), the Grafana
//! dashboard as JSON whose every panel has a query. (That each metric name they read is one
//! `/metrics` exposes is checked against a running `asepsis up` in `tests/up.rs`.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

fn promtool(args: &[&str]) {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/prometheus");
    let out = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("promtool (Debian's prometheus package; scripts/test installs it)");
    assert!(
        out.status.success(),
        "promtool {args:?}:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_alerting_rules_parse_and_fire_as_their_tests_say() {
    promtool(&["check", "rules", "alerts.yml"]);
    promtool(&["test", "rules", "alerts.test.yml"]);
}

#[test]
fn the_dashboard_is_json_with_a_query_in_every_panel() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/grafana/asepsis.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let panels = dashboard["panels"].as_array().unwrap();
    assert!(panels.len() >= 10);
    for panel in panels {
        let targets = panel["targets"].as_array().unwrap();
        assert!(
            !targets.is_empty()
                && targets
                    .iter()
                    .all(|t| t["expr"].as_str().is_some_and(|e| e.contains("asepsis_"))),
            "{}",
            panel["title"]
        );
    }
}
