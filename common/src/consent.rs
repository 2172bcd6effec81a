//! Consent records: what a subject agreed to, checked once when it is recorded, and the rules
//! that decide whether an upload may name it and whether its assets may be published now.
//!
//! A record is versioned: a rectification or an objection makes a new version and keeps the
//! one it replaces in `history`; an erasure scrubs every version's personal fields to a
//! tombstone that still says which consent existed and when it was erased.
//!
//! Pure: values and the current time in, decisions out; storing records is `asepsis-store`'s
//! business. A record holds pseudonymous references only (`subject_ref`, the guardian's
//! `name_ref`), and still nothing here or in a caller logs its fields: errors name the field,
//! never its value.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

/// How far in the future a stated time may be before it is refused (clock skew).
const SKEW: time::Duration = time::Duration::minutes(5);
/// Longest free-text reference accepted.
const MAX_TEXT: usize = 256;
/// What an erased record's personal fields read.
pub const ERASED: &str = "[erased]";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Method {
    Written,
    Electronic,
    Verbal,
}

/// What publication the subject allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// The subject may be recognisable in what is published.
    Identifiable,
    /// Only de-identified media may be published (faces found are redacted or held).
    Deidentified,
    /// Internal use only: never published.
    Internal,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Guardian {
    /// A reference to the guardian (a pseudonym or a record number, never a name).
    #[cfg_attr(
        feature = "openapi",
        schema(min_length = 1, max_length = 256, pattern = r"\S")
    )]
    pub name_ref: String,
    #[cfg_attr(
        feature = "openapi",
        schema(min_length = 1, max_length = 256, pattern = r"\S")
    )]
    pub relationship: String,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub obtained_at: OffsetDateTime,
}

/// The terms a client records (`POST /v1/consents`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Terms {
    /// A pseudonym for the subject, never a name.
    #[cfg_attr(
        feature = "openapi",
        schema(min_length = 1, max_length = 256, pattern = r"\S")
    )]
    pub subject_ref: String,
    #[cfg_attr(
        feature = "openapi",
        schema(min_length = 1, max_length = 256, pattern = r"\S")
    )]
    pub obtained_by: String,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub obtained_at: OffsetDateTime,
    pub method: Method,
    pub scope: Scope,
    #[cfg_attr(feature = "openapi", schema(schema_with = purposes_schema))]
    pub purposes: Vec<String>,
    #[cfg_attr(
        feature = "openapi",
        schema(min_length = 1, max_length = 256, pattern = r"\S")
    )]
    pub jurisdiction: String,
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub expires_at: Option<OffsetDateTime>,
    /// Version of the licence grant the uploader accepted.
    #[cfg_attr(
        feature = "openapi",
        schema(min_length = 1, max_length = 256, pattern = r"\S")
    )]
    pub licence_version: String,
    /// Under 16: a guardian's consent is required.
    pub minor: bool,
    #[serde(default)]
    pub guardian: Option<Guardian>,
}

/// A stored consent record: its current terms and version, and the versions before.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Consent {
    pub id: Uuid,
    pub tenant: String,
    /// When this version was recorded.
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub recorded_at: OffsetDateTime,
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub withdrawn_at: Option<OffsetDateTime>,
    /// Set while the subject's data is restricted (frozen: not processed, not published).
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub restricted_at: Option<OffsetDateTime>,
    /// Set once the subject's data was erased; the personal fields then read [`ERASED`].
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub erased_at: Option<OffsetDateTime>,
    /// 1 for the record as first made; each rectification or objection adds one.
    #[serde(default = "first_version")]
    pub version: u32,
    pub terms: Terms,
    /// The versions this one replaced, oldest first.
    #[serde(default)]
    pub history: Vec<Version>,
}

fn first_version() -> u32 {
    1
}

/// A version of a consent's terms that a later one replaced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Version {
    pub version: u32,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub recorded_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub replaced_at: OffsetDateTime,
    /// Why it was replaced.
    pub replaced_by: Change,
    pub terms: Terms,
}

/// What made a new version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// `PATCH /v1/consents/{id}`: fields corrected.
    Rectification,
    /// `POST /v1/subjects/{ref}/object`: purposes removed.
    Objection,
}

/// A field of the terms that is not acceptable, and why (never its value).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct FieldError {
    pub field: String,
    pub problem: String,
}

fn field(field: impl Into<String>, problem: impl Into<String>) -> FieldError {
    FieldError {
        field: field.into(),
        problem: problem.into(),
    }
}

/// Why a consent cannot cover an upload or a publication now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Unusable {
    #[error("the consent was withdrawn")]
    Withdrawn,
    #[error("the consent has expired")]
    Expired,
    #[error("the consent allows internal use only")]
    InternalOnly,
    #[error("the subject's data was erased")]
    Erased,
    #[error("the subject's data is restricted")]
    Restricted,
    #[error("the consent names no purpose any more (the subject objected)")]
    NoPurpose,
}

/// `purposes` as [`Terms::validate`] takes it: at least one, each a non-empty text.
#[cfg(feature = "openapi")]
fn purposes_schema() -> utoipa::openapi::Array {
    use utoipa::openapi::{ArrayBuilder, ObjectBuilder, Type};
    let purpose = ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(MAX_TEXT))
        .pattern(Some(r"\S"));
    ArrayBuilder::new()
        .items(purpose)
        .min_items(Some(1))
        .build()
}

fn text(name: &'static str, value: &str) -> Result<(), FieldError> {
    if value.trim().is_empty() {
        Err(field(name, "must not be empty"))
    } else if value.len() > MAX_TEXT {
        Err(field(name, format!("longer than {MAX_TEXT} bytes")))
    } else {
        Ok(())
    }
}

impl Terms {
    /// Check the terms as of `now`.
    ///
    /// # Errors
    /// The first [`FieldError`]: an empty reference, no purposes, a time in the future, an
    /// expiry already past or before the consent was obtained, a minor without a guardian.
    pub fn validate(&self, now: OffsetDateTime) -> Result<(), FieldError> {
        self.check(now)?;
        if self.expires_at.is_some_and(|e| e <= now) {
            return Err(field("expires_at", "is already past"));
        }
        Ok(())
    }

    /// Check corrected terms as of `now`: as [`Terms::validate`], except that an expiry may
    /// be past (a correction may say the consent ended earlier than recorded).
    ///
    /// # Errors
    /// As [`Terms::validate`].
    pub fn validate_correction(&self, now: OffsetDateTime) -> Result<(), FieldError> {
        self.check(now)
    }

    fn check(&self, now: OffsetDateTime) -> Result<(), FieldError> {
        text("subject_ref", &self.subject_ref)?;
        text("obtained_by", &self.obtained_by)?;
        text("jurisdiction", &self.jurisdiction)?;
        text("licence_version", &self.licence_version)?;
        if self.purposes.is_empty() {
            return Err(field("purposes", "name at least one purpose"));
        }
        for purpose in &self.purposes {
            text("purposes", purpose)?;
        }
        if self.obtained_at > now + SKEW {
            return Err(field("obtained_at", "is in the future"));
        }
        if self.expires_at.is_some_and(|e| e <= self.obtained_at) {
            return Err(field("expires_at", "must be after obtained_at"));
        }
        match (&self.guardian, self.minor) {
            (None, true) => Err(field(
                "guardian",
                "required when minor is true (a guardian's consent is needed under 16)",
            )),
            (Some(g), _) => {
                text("guardian.name_ref", &g.name_ref)?;
                text("guardian.relationship", &g.relationship)?;
                if g.obtained_at > now + SKEW {
                    return Err(field("guardian.obtained_at", "is in the future"));
                }
                Ok(())
            }
            (None, false) => Ok(()),
        }
    }
}

impl Consent {
    /// A new record, version 1.
    pub fn new(id: Uuid, tenant: String, recorded_at: OffsetDateTime, terms: Terms) -> Self {
        Self {
            id,
            tenant,
            recorded_at,
            withdrawn_at: None,
            restricted_at: None,
            erased_at: None,
            version: 1,
            terms,
            history: Vec::new(),
        }
    }

    /// May an upload name this consent at `now`? (A restricted subject's uploads are
    /// accepted, and frozen.)
    ///
    /// # Errors
    /// [`Unusable::Erased`], [`Unusable::Withdrawn`] or [`Unusable::Expired`].
    pub fn check_for_upload(&self, now: OffsetDateTime) -> Result<(), Unusable> {
        if self.erased_at.is_some() {
            Err(Unusable::Erased)
        } else if self.withdrawn_at.is_some() {
            Err(Unusable::Withdrawn)
        } else if self.terms.expires_at.is_some_and(|e| e <= now) {
            Err(Unusable::Expired)
        } else {
            Ok(())
        }
    }

    /// May assets under this consent be published at `now`? Checked again at every publish
    /// and every request for published media.
    ///
    /// # Errors
    /// Why not: erased, withdrawn, expired, restricted, internal use only, or no purpose left.
    pub fn check_for_publication(&self, now: OffsetDateTime) -> Result<(), Unusable> {
        self.check_for_upload(now)?;
        if self.restricted_at.is_some() {
            return Err(Unusable::Restricted);
        }
        if self.terms.scope == Scope::Internal {
            return Err(Unusable::InternalOnly);
        }
        if self.terms.purposes.is_empty() {
            return Err(Unusable::NoPurpose);
        }
        Ok(())
    }

    /// Make `terms` the current version, keeping the one it replaces in the history.
    pub fn revise(&mut self, terms: Terms, change: Change, now: OffsetDateTime) {
        let before = std::mem::replace(&mut self.terms, terms);
        self.history.push(Version {
            version: self.version,
            recorded_at: self.recorded_at,
            replaced_at: now,
            replaced_by: change,
            terms: before,
        });
        self.version += 1;
        self.recorded_at = now;
    }

    /// The terms corrected by a JSON merge patch (RFC 7396) of their fields.
    ///
    /// # Errors
    /// A [`FieldError`]: the patch is not an object, names an unknown field, gives a value of
    /// the wrong type, changes `subject_ref` (whose record this is cannot be corrected: record
    /// a consent under the right reference), or the result fails
    /// [`Terms::validate_correction`].
    pub fn rectified(
        &self,
        patch: &serde_json::Value,
        now: OffsetDateTime,
    ) -> Result<Terms, FieldError> {
        let serde_json::Value::Object(fields) = patch else {
            return Err(field(
                "body",
                "must be a JSON object of the fields to correct",
            ));
        };
        if fields.is_empty() {
            return Err(field("body", "names no field to correct"));
        }
        let mut merged = serde_json::to_value(&self.terms)
            .map_err(|_| field("body", "the stored terms do not serialize"))?;
        merge_patch(&mut merged, patch);
        let terms: Terms = serde_path_to_error::deserialize(merged).map_err(|e| {
            let path = e.path().to_string();
            let name = if path == "." { "body".to_owned() } else { path };
            field(name, without_value(&e.into_inner().to_string()))
        })?;
        if terms.subject_ref != self.terms.subject_ref {
            return Err(field(
                "subject_ref",
                "cannot be rectified; record a new consent under the right reference",
            ));
        }
        terms.validate_correction(now)?;
        Ok(terms)
    }

    /// Remove `purposes` from the terms as a new version; `false` when none was there.
    pub fn object(&mut self, purposes: &[String], now: OffsetDateTime) -> bool {
        let mut terms = self.terms.clone();
        terms.purposes.retain(|p| !purposes.contains(p));
        if terms.purposes.len() == self.terms.purposes.len() {
            return false;
        }
        self.revise(terms, Change::Objection, now);
        true
    }

    /// Scrub every version's personal fields (who obtained it, the subject and guardian
    /// references, purposes and jurisdiction as free text) to [`ERASED`], keeping what says
    /// which consent existed: id, tenant, dates, version, method, scope. Idempotent: an
    /// erased record keeps its first `erased_at`.
    pub fn erase(&mut self, now: OffsetDateTime) {
        self.erased_at.get_or_insert(now);
        scrub(&mut self.terms);
        for version in &mut self.history {
            scrub(&mut version.terms);
        }
    }
}

fn scrub(terms: &mut Terms) {
    for text in [
        &mut terms.subject_ref,
        &mut terms.obtained_by,
        &mut terms.jurisdiction,
    ] {
        ERASED.clone_into(text);
    }
    terms.purposes.clear();
    if let Some(g) = &mut terms.guardian {
        ERASED.clone_into(&mut g.name_ref);
        ERASED.clone_into(&mut g.relationship);
    }
}

/// A deserializer's complaint without the value it quotes (`invalid type: string "…"`,
/// `unknown variant `…``): what is wrong and what is expected, never what was sent.
pub fn without_value(problem: &str) -> String {
    if problem.starts_with("unknown field") || problem.starts_with("missing field") {
        // These quote the client's key or ours, not a value.
        return problem.to_owned();
    }
    let kind = problem.split([':', '`', '"']).next().unwrap_or("").trim();
    match problem.find("expected") {
        Some(at) => format!("{kind}; {}", &problem[at..]),
        None => "not a valid value".to_owned(),
    }
}

/// RFC 7396: objects merge key by key, `null` removes, anything else replaces.
fn merge_patch(target: &mut serde_json::Value, patch: &serde_json::Value) {
    use serde_json::Value;
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(serde_json::Map::new());
    }
    if let Value::Object(map) = target {
        for (key, value) in patch {
            if value.is_null() {
                map.remove(key);
            } else {
                merge_patch(map.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-06-01 12:00 UTC);

    fn terms() -> Terms {
        Terms {
            subject_ref: "subj-1".into(),
            obtained_by: "dr-7".into(),
            obtained_at: datetime!(2026-05-01 9:00 UTC),
            method: Method::Written,
            scope: Scope::Identifiable,
            purposes: vec!["education".into()],
            jurisdiction: "US-CA".into(),
            expires_at: None,
            licence_version: "2026-01".into(),
            minor: false,
            guardian: None,
        }
    }

    fn consent(terms: Terms) -> Consent {
        Consent::new(Uuid::new_v4(), "clinic".into(), NOW, terms)
    }

    #[test]
    fn valid_terms_pass() {
        assert_eq!(terms().validate(NOW), Ok(()));
    }

    #[test]
    fn each_bad_field_is_named() {
        type Spoil = fn(&mut Terms);
        let cases: Vec<(&str, Spoil)> = vec![
            ("subject_ref", |t| t.subject_ref = " ".into()),
            ("purposes", |t| t.purposes.clear()),
            ("obtained_at", |t| {
                t.obtained_at = datetime!(2027-01-01 0:00 UTC)
            }),
            ("expires_at", |t| {
                t.expires_at = Some(datetime!(2026-05-02 0:00 UTC))
            }),
            ("guardian", |t| t.minor = true),
            ("licence_version", |t| t.licence_version.clear()),
        ];
        for (name, spoil) in cases {
            let mut t = terms();
            spoil(&mut t);
            let err = t.validate(NOW).unwrap_err();
            assert_eq!(err.field, name, "{err}");
        }
    }

    #[test]
    fn a_minor_with_a_guardian_passes() {
        let mut t = terms();
        t.minor = true;
        t.guardian = Some(Guardian {
            name_ref: "g-1".into(),
            relationship: "parent".into(),
            obtained_at: datetime!(2026-05-01 9:00 UTC),
        });
        assert_eq!(t.validate(NOW), Ok(()));
    }

    #[test]
    fn unknown_scope_does_not_parse() {
        let mut json = serde_json::to_value(terms()).unwrap();
        json["scope"] = "public".into();
        let err = serde_json::from_value::<Terms>(json).unwrap_err();
        assert!(err.to_string().contains("unknown variant"), "{err}");
    }

    #[test]
    fn publication_needs_live_non_internal_consent() {
        assert_eq!(consent(terms()).check_for_publication(NOW), Ok(()));
        let mut c = consent(terms());
        c.withdrawn_at = Some(NOW);
        assert_eq!(c.check_for_publication(NOW), Err(Unusable::Withdrawn));
        let mut t = terms();
        t.expires_at = Some(datetime!(2026-05-15 0:00 UTC));
        assert_eq!(consent(t).check_for_upload(NOW), Err(Unusable::Expired));
        let mut t = terms();
        t.scope = Scope::Internal;
        let c = consent(t);
        assert_eq!(c.check_for_upload(NOW), Ok(()));
        assert_eq!(c.check_for_publication(NOW), Err(Unusable::InternalOnly));
    }

    #[test]
    fn rectification_is_a_merge_patch_and_keeps_the_old_version() {
        let mut c = consent(terms());
        let patch = serde_json::json!({"scope": "internal", "expires_at": "2026-05-20T00:00:00Z"});
        let corrected = c.rectified(&patch, NOW).unwrap();
        assert_eq!(corrected.scope, Scope::Internal);
        c.revise(corrected, Change::Rectification, NOW);
        assert_eq!((c.version, c.history.len()), (2, 1));
        assert_eq!(c.history[0].terms, terms());
        assert_eq!(c.check_for_publication(NOW), Err(Unusable::Expired));
        for (patch, named) in [
            (serde_json::json!({"scope": "public-SECRET"}), "scope"),
            (serde_json::json!({"minor": "SECRET"}), "minor"),
            (serde_json::json!({"colour": "red"}), "colour"),
            (
                serde_json::json!({"subject_ref": "someone-else"}),
                "subject_ref",
            ),
            (serde_json::json!({"purposes": []}), "purposes"),
            (serde_json::json!({}), "body"),
            (serde_json::json!([1]), "body"),
        ] {
            let err = c.rectified(&patch, NOW).unwrap_err();
            assert_eq!(err.field, named, "{err}");
            assert!(!err.to_string().contains("SECRET"), "{err}");
        }
    }

    #[test]
    fn an_objection_removes_purposes_and_erasure_scrubs_every_version() {
        let mut t = terms();
        t.purposes.push("marketing".into());
        t.minor = true;
        t.guardian = Some(Guardian {
            name_ref: "g-secret".into(),
            relationship: "parent".into(),
            obtained_at: datetime!(2026-05-01 9:00 UTC),
        });
        let mut c = consent(t);
        assert!(c.object(&["marketing".into()], NOW));
        assert!(!c.object(&["marketing".into()], NOW));
        assert_eq!(c.check_for_publication(NOW), Ok(()));
        assert!(c.object(&["education".into()], NOW));
        assert_eq!(c.check_for_publication(NOW), Err(Unusable::NoPurpose));
        c.erase(NOW);
        let json = serde_json::to_string(&c).unwrap();
        for secret in ["subj-1", "dr-7", "g-secret", "education", "US-CA"] {
            assert!(!json.contains(secret), "{secret} in {json}");
        }
        assert_eq!((c.version, c.erased_at), (3, Some(NOW)));
        assert_eq!(c.check_for_upload(NOW), Err(Unusable::Erased));
    }
}
