//! DMCA take-downs (17 U.S.C. 512): what a notice and a counter-notice must hold, the record
//! of a take-down and its timeline, when a restore falls due (US business days), when a
//! notice stands (upheld), and how many stand against each uploader.
//!
//! Pure: the store keeps the records and the rights desk carries them out. The personal data
//! of a notice (the claimant's name and contact, the work, the signatures) lives only in
//! [`NoticeParty`] and [`CounterParty`], which the store seals; a [`Takedown`] holds ids,
//! tenants, key ids, states and times. Error messages name the element, never its value.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use time::{Date, Month, OffsetDateTime, Weekday};
use uuid::Uuid;

/// Longest accepted text field of a notice, in bytes.
const MAX_TEXT: usize = 8 * 1024;
/// Most assets one notice may name.
pub const MAX_ASSETS: usize = 1000;

/// How take-downs run, `[takedown]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Business days from a counter-notice to the restore: 10 to 14 (512(g)(2)(C)).
    pub restore_after_business_days: u32,
    /// Calendar days after the notice within which the uploader may counter it; a notice not
    /// countered by then is upheld.
    pub counter_notice_window_days: u32,
    /// Upheld notices after which an uploader's API key is disabled.
    pub repeat_infringer_limit: u32,
    /// Hamming distance (of 256 bits) within which an upload matches a blocked hash; at most
    /// 31, PDQ's own threshold.
    pub match_distance: u32,
    /// Seconds between runs of the worker's take-down job (due restores, lapsed windows).
    pub interval_secs: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            restore_after_business_days: 10,
            counter_notice_window_days: 14,
            repeat_infringer_limit: 3,
            match_distance: 31,
            interval_secs: 60,
        }
    }
}

impl Settings {
    /// # Errors
    /// `(setting, what is wrong)`.
    pub fn validate(&self) -> Result<(), (&'static str, &'static str)> {
        if !(10..=14).contains(&self.restore_after_business_days) {
            return Err((
                "takedown.restore_after_business_days",
                "must be 10 to 14 (17 U.S.C. 512(g)(2)(C))",
            ));
        }
        if self.counter_notice_window_days == 0 {
            return Err(("takedown.counter_notice_window_days", "must be at least 1"));
        }
        if self.repeat_infringer_limit == 0 {
            return Err(("takedown.repeat_infringer_limit", "must be at least 1"));
        }
        if self.match_distance > 31 {
            return Err(("takedown.match_distance", "must be 0 to 31"));
        }
        if self.interval_secs == 0 {
            return Err(("takedown.interval_secs", "must be more than 0"));
        }
        Ok(())
    }
}

/// A notice as a client sent it. Fields are optional so that a missing element is named. No
/// `Debug`: it holds the claimant's personal data.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoticeForm {
    #[serde(default)]
    pub assets: Vec<String>,
    pub claimant: Option<ClaimantForm>,
    pub work: Option<String>,
    #[serde(default)]
    pub statements: NoticeStatements,
    pub signature: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimantForm {
    pub name: Option<String>,
    pub contact: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoticeStatements {
    #[serde(default)]
    pub good_faith: bool,
    #[serde(default)]
    pub accurate_under_penalty_of_perjury: bool,
}

/// A counter-notice as the uploader's tenant sent it.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CounterForm {
    #[serde(default)]
    pub statements: CounterStatements,
    pub signature: Option<String>,
    /// Name, address and telephone of the subscriber (512(g)(3)(D)); optional because the
    /// tenant's are on file with the service.
    pub contact: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CounterStatements {
    #[serde(default)]
    pub good_faith_mistake: bool,
    #[serde(default)]
    pub consent_to_jurisdiction: bool,
}

/// A valid notice: the assets it names and what the claimant said.
#[derive(Debug, Clone)]
pub struct Notice {
    pub assets: Vec<Uuid>,
    pub party: NoticeParty,
}

/// The claimant's side of a notice: personal data, sealed at rest, never logged.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoticeParty {
    pub name: String,
    pub contact: String,
    pub work: String,
    pub signature: String,
}

impl std::fmt::Debug for NoticeParty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NoticeParty([personal data])")
    }
}

/// One counter-notice's personal data: sealed at rest, never logged.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CounterParty {
    pub tenant: String,
    pub signature: String,
    pub contact: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

impl std::fmt::Debug for CounterParty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CounterParty([personal data])")
    }
}

/// A required text element: present, not blank, bounded.
fn text(value: Option<String>, field: &str, clause: &str) -> Result<String, String> {
    match value {
        Some(v) if v.len() > MAX_TEXT => Err(format!("{field}: longer than {MAX_TEXT} bytes")),
        Some(v) if !v.trim().is_empty() => Ok(v),
        _ => Err(format!("{field}: required (17 U.S.C. {clause})")),
    }
}

fn statement(made: bool, field: &str, clause: &str) -> Result<(), String> {
    if made {
        Ok(())
    } else {
        Err(format!("{field}: must be true (17 U.S.C. {clause})"))
    }
}

/// An asset id, or a `/media/{id}` URL (absolute or not, with or without a query).
pub fn asset_ref(value: &str) -> Option<Uuid> {
    let value = value.trim();
    if let Ok(id) = Uuid::parse_str(value) {
        return Some(id);
    }
    let (_, rest) = value.split_once("/media/")?;
    let id = rest.split(['/', '?', '#', '.']).next()?;
    Uuid::parse_str(id).ok()
}

impl NoticeForm {
    /// Check every element 512(c)(3)(A) requires.
    ///
    /// # Errors
    /// The first missing or malformed element, as `field: what is wrong (the clause)`.
    pub fn validate(self) -> Result<Notice, String> {
        let signature = text(self.signature, "signature", "512(c)(3)(A)(i)")?;
        let work = text(self.work, "work", "512(c)(3)(A)(ii)")?;
        if self.assets.is_empty() {
            return Err(
                "assets: name at least one asset, by id or /media URL (17 U.S.C. 512(c)(3)(A)(iii))"
                    .into(),
            );
        }
        if self.assets.len() > MAX_ASSETS {
            return Err(format!("assets: at most {MAX_ASSETS} in one notice"));
        }
        let mut assets = Vec::with_capacity(self.assets.len());
        for (i, a) in self.assets.iter().enumerate() {
            let id = asset_ref(a)
                .ok_or_else(|| format!("assets[{i}]: not an asset id or a /media URL"))?;
            if !assets.contains(&id) {
                assets.push(id);
            }
        }
        let claimant = self.claimant.unwrap_or_default();
        let name = text(claimant.name, "claimant.name", "512(c)(3)(A)(iv)")?;
        let contact = text(claimant.contact, "claimant.contact", "512(c)(3)(A)(iv)")?;
        statement(
            self.statements.good_faith,
            "statements.good_faith",
            "512(c)(3)(A)(v)",
        )?;
        statement(
            self.statements.accurate_under_penalty_of_perjury,
            "statements.accurate_under_penalty_of_perjury",
            "512(c)(3)(A)(vi)",
        )?;
        Ok(Notice {
            assets,
            party: NoticeParty {
                name,
                contact,
                work,
                signature,
            },
        })
    }
}

impl CounterForm {
    /// Check the elements 512(g)(3) requires (the material is the take-down's).
    ///
    /// # Errors
    /// The first missing element, as `field: what is wrong (the clause)`.
    pub fn validate(self, tenant: &str, now: OffsetDateTime) -> Result<CounterParty, String> {
        let signature = text(self.signature, "signature", "512(g)(3)(A)")?;
        statement(
            self.statements.good_faith_mistake,
            "statements.good_faith_mistake",
            "512(g)(3)(C)",
        )?;
        statement(
            self.statements.consent_to_jurisdiction,
            "statements.consent_to_jurisdiction",
            "512(g)(3)(D)",
        )?;
        if self.contact.as_ref().is_some_and(|c| c.len() > MAX_TEXT) {
            return Err(format!("contact: longer than {MAX_TEXT} bytes"));
        }
        Ok(CounterParty {
            tenant: tenant.to_owned(),
            signature,
            contact: self.contact,
            at: now,
        })
    }
}

/// Why a notice stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Upheld {
    /// The claimant told us it filed a court action (512(g)(2)(C)).
    CourtAction,
    /// The uploader did not counter it within the window.
    NoCounterNotice,
}

/// Where one asset named by a notice is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Status {
    TakenDown,
    RestoreScheduled {
        #[serde(with = "time::serde::rfc3339")]
        restore_due: OffsetDateTime,
    },
    Restored {
        #[serde(with = "time::serde::rfc3339")]
        at: OffsetDateTime,
    },
    Upheld {
        why: Upheld,
    },
}

/// An asset a notice names, and whose it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoticedAsset {
    pub asset: Uuid,
    pub tenant: String,
    /// The API key id that uploaded it (older assets: unknown).
    pub uploader: Option<String>,
    #[serde(flatten)]
    pub status: Status,
    /// Perceptual hashes this asset put on the block list.
    pub blocked_hashes: u32,
    /// Whether its crop grid is on the block list yet (until then, only the hash the worker
    /// recorded).
    #[serde(default)]
    pub hashed: bool,
}

/// One step of a take-down's timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    #[serde(flatten)]
    pub what: StepKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum StepKind {
    Received {
        assets: usize,
    },
    /// Every named asset taken down and its tenant told (`asset.taken_down`).
    Notified {
        tenants: Vec<String>,
    },
    CounterNoticed {
        tenant: String,
        #[serde(with = "time::serde::rfc3339")]
        restore_due: OffsetDateTime,
    },
    CourtAction,
    Restored {
        asset: Uuid,
        /// `false` when the consent no longer allowed publication: the asset is held.
        republished: bool,
    },
    Upheld {
        why: Upheld,
        assets: usize,
    },
}

/// A take-down: the public part of its record (the claimant's is a [`NoticeParty`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Takedown {
    pub id: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    pub received_at: OffsetDateTime,
    /// The key id (or `host:<user>`) that entered the notice.
    pub entered_by: String,
    pub assets: Vec<NoticedAsset>,
    pub timeline: Vec<Step>,
}

/// Why a counter-notice or a court action is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TakedownError {
    /// The caller's tenant has no asset in this notice.
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Conflict(String),
}

impl Takedown {
    pub fn new(id: Uuid, now: OffsetDateTime, entered_by: &str, assets: Vec<NoticedAsset>) -> Self {
        Self {
            id,
            received_at: now,
            entered_by: entered_by.to_owned(),
            timeline: vec![Step {
                at: now,
                what: StepKind::Received {
                    assets: assets.len(),
                },
            }],
            assets,
        }
    }

    fn step(&mut self, at: OffsetDateTime, what: StepKind) {
        self.timeline.push(Step { at, what });
    }

    pub fn has_step(&self, f: impl Fn(&StepKind) -> bool) -> bool {
        self.timeline.iter().any(|s| f(&s.what))
    }

    /// Record that every asset was taken down and its tenant told.
    pub fn notified(&mut self, now: OffsetDateTime) {
        if self.has_step(|s| matches!(s, StepKind::Notified { .. })) {
            return;
        }
        let tenants: BTreeSet<String> = self.assets.iter().map(|a| a.tenant.clone()).collect();
        let tenants = tenants.into_iter().collect();
        self.step(now, StepKind::Notified { tenants });
    }

    /// The last day of the counter-notice window.
    pub fn window_closes(&self, settings: &Settings) -> OffsetDateTime {
        self.received_at + time::Duration::days(i64::from(settings.counter_notice_window_days))
    }

    /// `tenant` counters the notice: its taken-down assets are scheduled for restore
    /// `restore_after_business_days` US business days after `now`. Returns the due time and
    /// whether anything changed (a repeat answers the same due time).
    ///
    /// # Errors
    /// [`TakedownError::NotFound`] when the tenant has no asset here;
    /// [`TakedownError::Conflict`] when the notice stands or its window has closed.
    pub fn counter_notice(
        &mut self,
        tenant: &str,
        now: OffsetDateTime,
        settings: &Settings,
    ) -> Result<(OffsetDateTime, bool), TakedownError> {
        let mine: Vec<usize> = (0..self.assets.len())
            .filter(|&i| self.assets[i].tenant == tenant)
            .collect();
        if mine.is_empty() {
            return Err(TakedownError::NotFound);
        }
        if let Some(due) = mine.iter().find_map(|&i| match self.assets[i].status {
            Status::RestoreScheduled { restore_due } => Some(restore_due),
            _ => None,
        }) {
            return Ok((due, false));
        }
        if !mine
            .iter()
            .any(|&i| self.assets[i].status == Status::TakenDown)
        {
            return Err(TakedownError::Conflict(
                "this take-down is no longer open to a counter-notice (upheld or restored)".into(),
            ));
        }
        if now > self.window_closes(settings) {
            return Err(TakedownError::Conflict(format!(
                "the counter-notice window closed {} days after the notice",
                settings.counter_notice_window_days
            )));
        }
        let due = add_business_days(now, settings.restore_after_business_days);
        for &i in &mine {
            if self.assets[i].status == Status::TakenDown {
                self.assets[i].status = Status::RestoreScheduled { restore_due: due };
            }
        }
        self.step(
            now,
            StepKind::CounterNoticed {
                tenant: tenant.to_owned(),
                restore_due: due,
            },
        );
        Ok((due, true))
    }

    /// The claimant filed a court action: every restore is cancelled and the notice stands.
    /// Returns the assets upheld by this call (none on a repeat).
    ///
    /// # Errors
    /// [`TakedownError::Conflict`] when everything was already restored.
    /// `tenant`: only that tenant's assets (a privacy officer's); `None`: all.
    pub fn court_action(
        &mut self,
        now: OffsetDateTime,
        tenant: Option<&str>,
    ) -> Result<usize, TakedownError> {
        let mine = |a: &NoticedAsset| tenant.is_none_or(|t| t == a.tenant);
        let open = |a: &NoticedAsset| {
            mine(a)
                && matches!(
                    a.status,
                    Status::TakenDown | Status::RestoreScheduled { .. }
                )
        };
        let upheld = self.assets.iter().filter(|a| open(a)).count();
        if upheld == 0 {
            if self.has_step(|s| matches!(s, StepKind::CourtAction)) {
                return Ok(0);
            }
            return Err(TakedownError::Conflict(
                "every asset of this take-down was already restored".into(),
            ));
        }
        for a in &mut self.assets {
            if open(a) {
                a.status = Status::Upheld {
                    why: Upheld::CourtAction,
                };
            }
        }
        self.step(now, StepKind::CourtAction);
        self.step(
            now,
            StepKind::Upheld {
                why: Upheld::CourtAction,
                assets: upheld,
            },
        );
        Ok(upheld)
    }

    /// Assets whose restore is due at `now`.
    pub fn due_restores(&self, now: OffsetDateTime) -> Vec<Uuid> {
        self.assets
            .iter()
            .filter(|a| matches!(a.status, Status::RestoreScheduled { restore_due } if restore_due <= now))
            .map(|a| a.asset)
            .collect()
    }

    /// Record a restore carried out.
    pub fn restored(&mut self, asset: Uuid, republished: bool, now: OffsetDateTime) {
        for a in &mut self.assets {
            if a.asset == asset && matches!(a.status, Status::RestoreScheduled { .. }) {
                a.status = Status::Restored { at: now };
                self.timeline.push(Step {
                    at: now,
                    what: StepKind::Restored { asset, republished },
                });
            }
        }
    }

    /// Uphold the assets nobody countered within the window. Returns how many.
    pub fn lapse(&mut self, now: OffsetDateTime, settings: &Settings) -> usize {
        if now <= self.window_closes(settings) {
            return 0;
        }
        let mut n = 0;
        for a in &mut self.assets {
            if a.status == Status::TakenDown {
                a.status = Status::Upheld {
                    why: Upheld::NoCounterNotice,
                };
                n += 1;
            }
        }
        if n > 0 {
            self.step(
                now,
                StepKind::Upheld {
                    why: Upheld::NoCounterNotice,
                    assets: n,
                },
            );
        }
        n
    }

    /// The notice as a whole: `upheld` if any asset stands, else `restore_scheduled` while a
    /// restore waits, `restored` when all are back, `taken_down` until something happens.
    pub fn status(&self) -> &'static str {
        let any = |f: fn(&Status) -> bool| self.assets.iter().any(|a| f(&a.status));
        if any(|s| matches!(s, Status::Upheld { .. })) {
            "upheld"
        } else if any(|s| matches!(s, Status::RestoreScheduled { .. })) {
            "restore_scheduled"
        } else if any(|s| matches!(s, Status::TakenDown)) {
            "taken_down"
        } else {
            "restored"
        }
    }

    /// The uploaders (key ids) this notice stands against.
    pub fn upheld_against(&self) -> BTreeSet<&str> {
        self.assets
            .iter()
            .filter(|a| matches!(a.status, Status::Upheld { .. }))
            .filter_map(|a| a.uploader.as_deref())
            .collect()
    }

    /// The tenants this notice stands against.
    pub fn upheld_tenants(&self) -> BTreeSet<&str> {
        self.assets
            .iter()
            .filter(|a| matches!(a.status, Status::Upheld { .. }))
            .map(|a| a.tenant.as_str())
            .collect()
    }
}

/// Upheld notices per uploader key and per tenant (a notice counts once for each).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub by_uploader: BTreeMap<String, u32>,
    pub by_tenant: BTreeMap<String, u32>,
}

pub fn upheld_counts<'a>(takedowns: impl IntoIterator<Item = &'a Takedown>) -> Counts {
    let mut counts = Counts::default();
    for t in takedowns {
        for u in t.upheld_against() {
            *counts.by_uploader.entry(u.to_owned()).or_default() += 1;
        }
        for tenant in t.upheld_tenants() {
            *counts.by_tenant.entry(tenant.to_owned()).or_default() += 1;
        }
    }
    counts
}

/// The end (midnight UTC) of the `days`th US business day after `from`'s day: so at least
/// `days` whole business days pass, whatever the time and day `from` falls on. Weekends and US
/// federal holidays (as observed: a Saturday holiday on the Friday before, a Sunday one on the
/// Monday after) are skipped.
pub fn add_business_days(from: OffsetDateTime, days: u32) -> OffsetDateTime {
    let from = from.to_offset(time::UtcOffset::UTC);
    let mut date = from.date();
    let mut left = days;
    while left > 0 {
        let Some(next) = date.next_day() else {
            break;
        };
        date = next;
        if is_business_day(date) {
            left -= 1;
        }
    }
    let end = date.next_day().unwrap_or(date);
    end.midnight().assume_utc()
}

pub fn is_business_day(date: Date) -> bool {
    !matches!(date.weekday(), Weekday::Saturday | Weekday::Sunday) && !is_federal_holiday(date)
}

/// The `n`th `weekday` of a month (1-based), or the last when `n` is 0.
fn nth_weekday(year: i32, month: Month, weekday: Weekday, n: u8) -> Option<Date> {
    if n == 0 {
        let mut d = Date::from_calendar_date(year, month.next(), 1)
            .ok()
            .filter(|_| month != Month::December)?
            .previous_day()?;
        while d.weekday() != weekday {
            d = d.previous_day()?;
        }
        return Some(d);
    }
    let mut d = Date::from_calendar_date(year, month, 1).ok()?;
    while d.weekday() != weekday {
        d = d.next_day()?;
    }
    Date::from_calendar_date(year, month, d.day() + 7 * (n - 1)).ok()
}

/// A fixed-date holiday as observed.
fn observed(year: i32, month: Month, day: u8) -> Option<Date> {
    let d = Date::from_calendar_date(year, month, day).ok()?;
    match d.weekday() {
        Weekday::Saturday => d.previous_day(),
        Weekday::Sunday => d.next_day(),
        _ => Some(d),
    }
}

/// The eleven US federal holidays (5 U.S.C. 6103) as observed.
pub fn is_federal_holiday(date: Date) -> bool {
    let y = date.year();
    let holidays = [
        observed(y, Month::January, 1),
        // New Year's Day of next year observed on 31 December.
        observed(y + 1, Month::January, 1),
        nth_weekday(y, Month::January, Weekday::Monday, 3),
        nth_weekday(y, Month::February, Weekday::Monday, 3),
        nth_weekday(y, Month::May, Weekday::Monday, 0),
        observed(y, Month::June, 19),
        observed(y, Month::July, 4),
        nth_weekday(y, Month::September, Weekday::Monday, 1),
        nth_weekday(y, Month::October, Weekday::Monday, 2),
        observed(y, Month::November, 11),
        nth_weekday(y, Month::November, Weekday::Thursday, 4),
        observed(y, Month::December, 25),
    ];
    holidays.contains(&Some(date))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::{date, datetime};

    fn form() -> serde_json::Value {
        serde_json::json!({
            "assets": ["https://example.org/media/6f1c1f0e-4c7e-4f7e-9a55-1f0e4c7e4f7e.jpg",
                       "6f1c1f0e-4c7e-4f7e-9a55-1f0e4c7e4f7e"],
            "claimant": {"name": "Canary Claimant", "contact": "canary@example.org"},
            "work": "Photo series",
            "statements": {"good_faith": true, "accurate_under_penalty_of_perjury": true},
            "signature": "/Canary Claimant/"
        })
    }

    fn validate(v: serde_json::Value) -> Result<Notice, String> {
        serde_json::from_value::<NoticeForm>(v)
            .map_err(|e| e.to_string())?
            .validate()
    }

    #[test]
    fn a_complete_notice_names_each_asset_once() {
        let notice = validate(form()).unwrap();
        assert_eq!(notice.assets.len(), 1);
        assert_eq!(notice.party.name, "Canary Claimant");
        assert!(!format!("{:?}", notice).contains("Canary"));
    }

    #[test]
    fn each_missing_element_is_named_without_its_value() {
        for (pointer, want) in [
            (
                "/signature",
                "signature: required (17 U.S.C. 512(c)(3)(A)(i))",
            ),
            ("/work", "work: required"),
            ("/assets", "assets: name at least one asset"),
            ("/claimant/name", "claimant.name: required"),
            ("/claimant/contact", "claimant.contact: required"),
            (
                "/statements/good_faith",
                "statements.good_faith: must be true",
            ),
            (
                "/statements/accurate_under_penalty_of_perjury",
                "statements.accurate_under_penalty_of_perjury: must be true",
            ),
        ] {
            let mut v = form();
            let (parent, key) = pointer.rsplit_once('/').unwrap();
            v.pointer_mut(parent)
                .unwrap()
                .as_object_mut()
                .unwrap()
                .remove(key);
            let err = validate(v).unwrap_err();
            assert!(err.starts_with(want), "{pointer}: {err}");
            assert!(!err.contains("Canary"), "{err}");
        }
        let mut v = form();
        v["assets"] = serde_json::json!(["not-an-asset"]);
        assert_eq!(
            validate(v).unwrap_err(),
            "assets[0]: not an asset id or a /media URL"
        );
        let mut v = form();
        v["signature"] = serde_json::json!("   ");
        assert!(validate(v).unwrap_err().starts_with("signature: required"));
    }

    #[test]
    fn business_days_skip_weekends_and_federal_holidays() {
        // Friday 2026-11-20 + 10: the weekends and Thanksgiving (Thu 26 Nov) are skipped; due
        // when Monday 7 December ends.
        let due = add_business_days(datetime!(2026-11-20 15:00 UTC), 10);
        assert_eq!(due, datetime!(2026-12-08 00:00 UTC));
        // From a Saturday, ten whole business days still pass.
        let due = add_business_days(datetime!(2026-11-28 10:00 UTC), 10);
        assert_eq!(due, datetime!(2026-12-12 00:00 UTC));
        // Across Christmas and New Year: 2027-12-24 (observed Christmas, Sat 25th) and
        // 2027-12-31 (observed New Year 2028, Sat 1 Jan) are holidays.
        assert!(is_federal_holiday(date!(2027 - 12 - 24)));
        assert!(is_federal_holiday(date!(2027 - 12 - 31)));
        assert!(is_federal_holiday(date!(2026 - 01 - 19))); // MLK, 3rd Monday
        assert!(is_federal_holiday(date!(2026 - 05 - 25))); // Memorial, last Monday
        assert!(is_federal_holiday(date!(2026 - 07 - 03))); // 4 July is a Saturday
        assert!(is_federal_holiday(date!(2026 - 10 - 12))); // Columbus, 2nd Monday
        assert!(!is_federal_holiday(date!(2026 - 12 - 02)));
        let due = add_business_days(datetime!(2027-12-22 09:00 UTC), 3);
        assert_eq!(due, datetime!(2027-12-29 00:00 UTC));
    }

    fn takedown(now: OffsetDateTime) -> Takedown {
        let asset = |tenant: &str, uploader: &str| NoticedAsset {
            asset: Uuid::new_v4(),
            tenant: tenant.into(),
            uploader: Some(uploader.into()),
            status: Status::TakenDown,
            blocked_hashes: 0,
            hashed: false,
        };
        Takedown::new(
            Uuid::new_v4(),
            now,
            "op",
            vec![asset("a", "ka"), asset("b", "kb")],
        )
    }

    #[test]
    fn a_counter_notice_schedules_its_tenants_restore_and_a_court_action_cancels_it() {
        let now = datetime!(2026-12-02 12:00 UTC);
        let settings = Settings::default();
        let mut t = takedown(now);
        assert_eq!(t.status(), "taken_down");
        assert_eq!(
            t.counter_notice("c", now, &settings),
            Err(TakedownError::NotFound)
        );
        let (due, changed) = t.counter_notice("a", now, &settings).unwrap();
        assert!(changed);
        assert_eq!(due, datetime!(2026-12-17 00:00 UTC));
        assert_eq!(t.counter_notice("a", now, &settings), Ok((due, false)));
        assert_eq!(t.status(), "restore_scheduled");
        assert!(t.due_restores(due - time::Duration::SECOND).is_empty());
        assert_eq!(t.due_restores(due), vec![t.assets[0].asset]);
        assert_eq!(t.court_action(now, None), Ok(2));
        assert!(t.due_restores(due).is_empty());
        assert_eq!(t.status(), "upheld");
        let counts = upheld_counts([&t]);
        assert_eq!(counts.by_uploader.get("ka"), Some(&1));
        assert_eq!(counts.by_tenant.get("b"), Some(&1));
        assert_eq!(t.court_action(now, None), Ok(0));
    }

    #[test]
    fn an_uncountered_notice_is_upheld_when_its_window_closes() {
        let now = datetime!(2026-12-02 12:00 UTC);
        let settings = Settings::default();
        let mut t = takedown(now);
        assert_eq!(t.lapse(now + time::Duration::days(14), &settings), 0);
        let later = now + time::Duration::days(15);
        assert!(matches!(
            t.counter_notice("a", later, &settings),
            Err(TakedownError::Conflict(_))
        ));
        assert_eq!(t.lapse(later, &settings), 2);
        assert_eq!(t.status(), "upheld");
        assert_eq!(t.lapse(later, &settings), 0);
    }

    #[test]
    fn a_restored_notice_does_not_count() {
        let now = datetime!(2026-12-02 12:00 UTC);
        let settings = Settings::default();
        let mut t = takedown(now);
        let (due, _) = t.counter_notice("a", now, &settings).unwrap();
        let (_, _) = t.counter_notice("b", now, &settings).unwrap();
        for a in t.due_restores(due) {
            t.restored(a, true, due);
        }
        assert_eq!(t.status(), "restored");
        assert!(upheld_counts([&t]).by_uploader.is_empty());
        assert!(matches!(
            t.court_action(due, None),
            Err(TakedownError::Conflict(_))
        ));
    }

    #[test]
    fn media_urls_and_ids_name_assets() {
        let id = Uuid::new_v4();
        for s in [
            id.to_string(),
            format!("/media/{id}"),
            format!("https://x.example/media/{id}?w=1"),
            format!("http://x/media/{id}.webp"),
        ] {
            assert_eq!(asset_ref(&s), Some(id), "{s}");
        }
        assert_eq!(asset_ref("/media/xyz"), None);
    }
}
