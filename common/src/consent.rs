//! Consent records: what a subject agreed to, checked once when it is recorded, and the rules
//! that decide whether an upload may name it and whether its assets may be published now.
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
    pub name_ref: String,
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
    pub subject_ref: String,
    pub obtained_by: String,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub obtained_at: OffsetDateTime,
    pub method: Method,
    pub scope: Scope,
    pub purposes: Vec<String>,
    pub jurisdiction: String,
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub expires_at: Option<OffsetDateTime>,
    /// Version of the licence grant the uploader accepted.
    pub licence_version: String,
    /// Under 16: a guardian's consent is required.
    pub minor: bool,
    #[serde(default)]
    pub guardian: Option<Guardian>,
}

/// A stored consent record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consent {
    pub id: Uuid,
    pub tenant: String,
    #[serde(with = "time::serde::rfc3339")]
    pub recorded_at: OffsetDateTime,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub withdrawn_at: Option<OffsetDateTime>,
    pub terms: Terms,
}

/// A field of the terms that is not acceptable, and why (never its value).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct FieldError {
    pub field: &'static str,
    pub problem: String,
}

fn field(field: &'static str, problem: impl Into<String>) -> FieldError {
    FieldError {
        field,
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
        if let Some(expires) = self.expires_at {
            if expires <= self.obtained_at {
                return Err(field("expires_at", "must be after obtained_at"));
            }
            if expires <= now {
                return Err(field("expires_at", "is already past"));
            }
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
    /// May an upload name this consent at `now`?
    ///
    /// # Errors
    /// [`Unusable::Withdrawn`] or [`Unusable::Expired`].
    pub fn check_for_upload(&self, now: OffsetDateTime) -> Result<(), Unusable> {
        if self.withdrawn_at.is_some() {
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
    /// Why not: withdrawn, expired, or internal use only.
    pub fn check_for_publication(&self, now: OffsetDateTime) -> Result<(), Unusable> {
        self.check_for_upload(now)?;
        if self.terms.scope == Scope::Internal {
            return Err(Unusable::InternalOnly);
        }
        Ok(())
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
        Consent {
            id: Uuid::new_v4(),
            tenant: "clinic".into(),
            recorded_at: NOW,
            withdrawn_at: None,
            terms,
        }
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
}
