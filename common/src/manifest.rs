//! The batch import's manifest: a CSV file with a header, one row per file, naming the file
//! (a relative path inside the import's directory or archive) and either a `consent_id` or the
//! consent's fields inline. Parsing finds every problem at once, each as `row N, column: what
//! is wrong` (N counts lines as a spreadsheet does: the header is row 1), and never quotes a
//! value: a subject reference in the wrong column is not echoed.
//!
//! Pure: the manifest's bytes in, rows or problems out. Whether a named file exists is the
//! caller's business; [`relative_path`] is the one check of a path's shape, for manifest rows
//! and archive entries alike.

use std::collections::BTreeSet;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use crate::consent::{Guardian, Method, Scope, Terms};

/// The columns a manifest may have; `file` is required.
pub const COLUMNS: &[&str] = &[
    "file",
    "consent_id",
    "subject_ref",
    "obtained_by",
    "obtained_at",
    "method",
    "scope",
    "purposes",
    "jurisdiction",
    "expires_at",
    "licence_version",
    "minor",
    "guardian_name_ref",
    "guardian_relationship",
    "guardian_obtained_at",
];

/// Longest path accepted, in bytes.
const MAX_PATH: usize = 1024;

/// Which consent covers a row's file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsentRef {
    /// A consent already recorded.
    Id(Uuid),
    /// A consent to record (once per distinct set of terms).
    Inline(Box<Terms>),
}

/// A valid row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// The row's number as a spreadsheet shows it (the header is row 1).
    pub number: usize,
    /// The file's path relative to the import's root, `/`-separated, checked by
    /// [`relative_path`].
    pub file: String,
    pub consent: ConsentRef,
}

/// What is wrong with a row (or, as row 1, the header), never quoting a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("row {row}, {column}: {what}")]
pub struct Problem {
    pub row: usize,
    pub column: String,
    pub what: String,
}

/// A manifest read: its valid rows, and the problems of the others (a row with a problem is
/// not among `rows`).
#[derive(Debug, Default)]
pub struct Manifest {
    pub rows: Vec<Row>,
    pub problems: Vec<Problem>,
    /// Every row's `file` cell as written, valid or not (for a report of every row).
    pub files: std::collections::BTreeMap<usize, String>,
}

/// Is `path` a plain relative path that stays inside its root: not empty, not absolute (no
/// leading `/` or `\`, no drive letter), no `..` or `.` component, no backslash, no NUL.
///
/// # Errors
/// What is wrong with it, in words.
pub fn relative_path(path: &str) -> Result<(), &'static str> {
    if path.is_empty() {
        return Err("is empty");
    }
    if path.len() > MAX_PATH {
        return Err("is longer than 1024 bytes");
    }
    if path.starts_with('/') || path.as_bytes().get(1) == Some(&b':') {
        return Err("is an absolute path; name the file relative to the import's root");
    }
    if path.contains('\\') || path.contains('\0') {
        return Err("contains a backslash or NUL; separate directories with /");
    }
    if path.split('/').any(|c| c == "..") {
        return Err("leads out of the import's root (a .. component)");
    }
    if path.split('/').any(|c| c.is_empty() || c == ".") {
        return Err("has an empty or . component");
    }
    Ok(())
}

/// Parse a manifest as of `now` (consent times are checked against it).
pub fn parse(bytes: &[u8], now: OffsetDateTime) -> Manifest {
    let mut manifest = Manifest::default();
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_reader(bytes);
    let header = match reader.headers() {
        Ok(h) => h.iter().map(|c| c.trim().to_owned()).collect::<Vec<_>>(),
        Err(e) => {
            manifest
                .problems
                .push(problem(1, "header", csv_problem(&e)));
            return manifest;
        }
    };
    let mut seen = BTreeSet::new();
    for column in &header {
        if !COLUMNS.contains(&column.as_str()) {
            let what = format!("unknown column; the columns are {}", COLUMNS.join(", "));
            manifest.problems.push(problem(1, "header", what));
        } else if !seen.insert(column.clone()) {
            manifest.problems.push(problem(1, column, "appears twice"));
        }
    }
    if !seen.contains("file") {
        manifest
            .problems
            .push(problem(1, "header", "no file column"));
    }
    if !manifest.problems.is_empty() {
        return manifest;
    }
    for (i, record) in reader.records().enumerate() {
        let number = i + 2;
        match record {
            Ok(record) => {
                let cell = |name: &str| {
                    header
                        .iter()
                        .position(|c| c == name)
                        .and_then(|at| record.get(at))
                        .map(str::trim)
                        .filter(|v| !v.is_empty())
                };
                if let Some(file) = cell("file") {
                    manifest.files.insert(number, file.to_owned());
                }
                match row(number, &cell, now) {
                    Ok(row) => manifest.rows.push(row),
                    Err(problems) => manifest.problems.extend(problems),
                }
            }
            Err(e) => manifest
                .problems
                .push(problem(number, "row", csv_problem(&e))),
        }
    }
    if manifest.rows.is_empty() && manifest.problems.is_empty() {
        manifest
            .problems
            .push(problem(1, "manifest", "has no rows"));
    }
    manifest
}

fn problem(row: usize, column: &str, what: impl Into<String>) -> Problem {
    Problem {
        row,
        column: column.into(),
        what: what.into(),
    }
}

/// A CSV error in words, without the record's contents.
fn csv_problem(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::Utf8 { .. } => "is not UTF-8".into(),
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => format!("has {len} fields; the header has {expected_len}"),
        _ => "is not valid CSV".into(),
    }
}

/// The columns of an inline consent: every column but `file` and `consent_id`.
const CONSENT_FIELDS: &[&str] = COLUMNS.split_at(2).1;

fn row<'a>(
    number: usize,
    cell: &dyn Fn(&str) -> Option<&'a str>,
    now: OffsetDateTime,
) -> Result<Row, Vec<Problem>> {
    let mut problems = Vec::new();
    let mut report = |column: &str, what: &str| problems.push(problem(number, column, what));
    let file = match cell("file") {
        None => {
            report("file", "is empty");
            None
        }
        Some(path) => match relative_path(path) {
            Ok(()) => Some(path.to_owned()),
            Err(why) => {
                report("file", why);
                None
            }
        },
    };
    let inline = CONSENT_FIELDS.iter().any(|f| cell(f).is_some());
    let consent = match (cell("consent_id"), inline) {
        (Some(_), true) => {
            report(
                "consent_id",
                "give either a consent_id or the consent's fields, not both",
            );
            None
        }
        (Some(id), false) => match Uuid::parse_str(id) {
            Ok(id) => Some(ConsentRef::Id(id)),
            Err(_) => {
                report("consent_id", "is not a consent id (a UUID)");
                None
            }
        },
        (None, false) => {
            report(
                "consent_id",
                "is empty; give a consent_id or the consent's fields",
            );
            None
        }
        (None, true) => {
            inline_terms(cell, now, &mut report).map(|t| ConsentRef::Inline(Box::new(t)))
        }
    };
    match (file, consent) {
        (Some(file), Some(consent)) if problems.is_empty() => Ok(Row {
            number,
            file,
            consent,
        }),
        _ => Err(problems),
    }
}

/// The inline consent's terms, checked by the same rules as `POST /v1/consents`.
fn inline_terms<'a>(
    cell: &dyn Fn(&str) -> Option<&'a str>,
    now: OffsetDateTime,
    report: &mut dyn FnMut(&str, &str),
) -> Option<Terms> {
    let mut ok = true;
    let mut required = |name: &str| {
        let value = cell(name);
        if value.is_none() {
            report(name, "is required for an inline consent");
            ok = false;
        }
        value.unwrap_or_default().to_owned()
    };
    let subject_ref = required("subject_ref");
    let obtained_by = required("obtained_by");
    let obtained_at = required("obtained_at");
    let method = required("method");
    let scope = required("scope");
    let purposes = required("purposes");
    let jurisdiction = required("jurisdiction");
    let licence_version = required("licence_version");
    let minor = required("minor");
    let mut time = |name: &str, value: &str| match OffsetDateTime::parse(value, &Rfc3339) {
        Ok(t) => Some(t),
        Err(_) => {
            report(name, "is not an RFC 3339 time (2026-11-30T09:00:00Z)");
            None
        }
    };
    let obtained_at = if obtained_at.is_empty() {
        None
    } else {
        time("obtained_at", &obtained_at)
    };
    let expires_at = cell("expires_at").map(|v| time("expires_at", v));
    let guardian_obtained_at =
        cell("guardian_obtained_at").map(|v| time("guardian_obtained_at", v));
    let method = match method.as_str() {
        "" => None,
        m => enum_value::<Method>(m).or_else(|| {
            report("method", "is not one of written, electronic, verbal");
            None
        }),
    };
    let scope = match scope.as_str() {
        "" => None,
        s => enum_value::<Scope>(s).or_else(|| {
            report(
                "scope",
                "is not one of identifiable, deidentified, internal",
            );
            None
        }),
    };
    let minor = match minor.to_ascii_lowercase().as_str() {
        "" => None,
        "true" | "yes" | "1" => Some(true),
        "false" | "no" | "0" => Some(false),
        _ => {
            report("minor", "is not true or false");
            None
        }
    };
    let guardian_fields = [
        cell("guardian_name_ref"),
        cell("guardian_relationship"),
        cell("guardian_obtained_at"),
    ];
    let guardian = match (guardian_fields, guardian_obtained_at) {
        ([None, None, None], _) => Some(None),
        ([Some(name_ref), Some(relationship), Some(_)], Some(Some(obtained_at))) => {
            Some(Some(Guardian {
                name_ref: name_ref.into(),
                relationship: relationship.into(),
                obtained_at,
            }))
        }
        ([_, _, Some(_)], Some(None)) => None, // reported as a bad time
        _ => {
            report(
                "guardian_name_ref",
                "give all three guardian fields (name_ref, relationship, obtained_at) or none",
            );
            None
        }
    };
    let (Some(obtained_at), Some(method), Some(scope), Some(minor), Some(guardian), true) =
        (obtained_at, method, scope, minor, guardian, ok)
    else {
        return None;
    };
    let expires_at = match expires_at {
        Some(Some(t)) => Some(t),
        Some(None) => return None,
        None => None,
    };
    let terms = Terms {
        subject_ref,
        obtained_by,
        obtained_at,
        method,
        scope,
        purposes: purposes
            .split(';')
            .map(|p| p.trim().to_owned())
            .filter(|p| !p.is_empty())
            .collect(),
        jurisdiction,
        expires_at,
        licence_version,
        minor,
        guardian,
    };
    match terms.validate(now) {
        Ok(()) => Some(terms),
        Err(e) => {
            let column = match e.field.as_str() {
                "guardian" => "minor".to_owned(),
                f => f.replace("guardian.", "guardian_"),
            };
            report(&column, &e.problem);
            None
        }
    }
}

fn enum_value<T: serde::de::DeserializeOwned>(text: &str) -> Option<T> {
    serde_json::from_value(serde_json::Value::String(text.to_ascii_lowercase())).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> OffsetDateTime {
        time::macros::datetime!(2026-12-01 12:00 UTC)
    }

    const INLINE: &str = "file,subject_ref,obtained_by,obtained_at,method,scope,purposes,jurisdiction,licence_version,minor\n";

    #[test]
    fn inline_and_referenced_consents_are_read() {
        let csv = format!(
            "{INLINE}a/one.jpg,pseudo-1,dr-k,2026-11-01T09:00:00Z,written,identifiable,teaching; publication,US-CA,v3,false\n"
        );
        let m = parse(csv.as_bytes(), now());
        assert_eq!(m.problems, vec![]);
        let ConsentRef::Inline(terms) = &m.rows[0].consent else {
            panic!("inline");
        };
        assert_eq!(terms.purposes, vec!["teaching", "publication"]);
        assert_eq!(m.rows[0].number, 2);

        let id = Uuid::new_v4();
        let m = parse(format!("file,consent_id\nb.png,{id}\n").as_bytes(), now());
        assert_eq!(m.rows[0].consent, ConsentRef::Id(id));
    }

    #[test]
    fn every_problem_is_named_by_row_and_column_without_its_value() {
        let csv = format!(
            "{INLINE}../up.jpg,pseudo-1,dr-k,2026-11-01T09:00:00Z,written,identifiable,teaching,US,v3,false\n\
             ok.jpg,SECRET-NAME,dr-k,tomorrow,faxed,identifiable,teaching,US,v3,true\n\
             /abs.jpg,,,,,,,,,\n"
        );
        let m = parse(csv.as_bytes(), now());
        let said: Vec<String> = m.problems.iter().map(ToString::to_string).collect();
        assert!(m.rows.is_empty(), "{said:?}");
        for expected in [
            "row 2, file: leads out",
            "row 3, obtained_at: is not an RFC 3339 time",
            "row 3, method: is not one of",
            "row 4, file: is an absolute path",
            "row 4, consent_id: is empty",
        ] {
            assert!(
                said.iter().any(|s| s.starts_with(expected)),
                "{expected} in {said:?}"
            );
        }
        assert!(!said.iter().any(|s| s.contains("SECRET")), "{said:?}");
    }

    #[test]
    fn a_minor_needs_the_guardian_fields() {
        let csv = format!(
            "{INLINE}a.jpg,p,dr,2026-11-01T09:00:00Z,written,identifiable,teaching,US,v3,yes\n"
        );
        let said = parse(csv.as_bytes(), now()).problems[0].to_string();
        assert!(said.starts_with("row 2, minor: required"), "{said}");
    }

    #[test]
    fn unknown_columns_and_ragged_rows_are_refused() {
        let m = parse(b"file,consent,name\n", now());
        assert_eq!(m.problems.len(), 2, "{:?}", m.problems);
        let m = parse(
            format!("file,consent_id\na.jpg,{}\nb.jpg\n", Uuid::nil()).as_bytes(),
            now(),
        );
        assert_eq!(m.rows.len(), 1);
        assert_eq!(
            m.problems[0].to_string(),
            "row 3, row: has 1 fields; the header has 2"
        );
    }

    #[test]
    fn paths_stay_inside_their_root() {
        for bad in [
            "",
            "/etc/passwd",
            "C:/x",
            "a/../../b",
            "a\\b",
            "./a",
            "a//b",
        ] {
            assert!(relative_path(bad).is_err(), "{bad}");
        }
        assert_eq!(relative_path("scans/2026/ct-1.jpg"), Ok(()));
    }
}
