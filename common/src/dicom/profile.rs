//! PS3.15 Table E.1-1's action codes (generated into `tables`) and what each does here, plus
//! the standard VR of a tag for implicit-VR files. Lookups only: no parsing, no writing.

use super::tables::{PROFILE, PROFILE_MASKED, VRS, VRS_MASKED};

/// A row's action code in the Basic Profile column, named as the standard writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(clippy::upper_case_acronyms)]
pub(crate) enum Action {
    /// Remove.
    X,
    /// Replace with a zero-length value.
    Z,
    /// Replace with a non-zero-length dummy value.
    D,
    /// Replace with a non-zero-length UID, consistently within the tenant.
    U,
    /// Z unless D is required (Type 1).
    ZD,
    /// X unless Z is required (Type 2).
    XZ,
    /// X unless D is required (Type 1).
    XD,
    /// X unless Z or D is required.
    XZD,
    /// X unless Z, or replacing the contained instance UIDs (U), is required.
    XZU,
}

/// What is done to one element. Where a row allows several actions, the one that keeps the
/// attribute present with the least invented content: Z over D (a Type 2 attribute stays, with
/// nothing in it), D only where the row demands a value, and a sequence whose row allows U
/// keeps its items, each de-identified in turn (references between files still resolve).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    Remove,
    Empty,
    Dummy,
    Remap,
    /// Keep the element; a sequence's items are de-identified.
    Keep,
}

impl Action {
    pub(crate) fn step(self, vr: [u8; 2]) -> Step {
        let (ui, sq) = (&vr == b"UI", &vr == b"SQ");
        match self {
            Action::X => Step::Remove,
            Action::Z | Action::ZD | Action::XZ | Action::XZD => Step::Empty,
            Action::D | Action::XD if ui => Step::Remap,
            Action::D | Action::XD => Step::Dummy,
            // A UID row on a value that is not UI is refused when remapped (malformed).
            Action::U => Step::Remap,
            Action::XZU if ui => Step::Remap,
            Action::XZU if sq => Step::Keep,
            Action::XZU => Step::Empty,
        }
    }
}

/// The row of Table E.1-1 for `tag`, with the attribute's name.
pub(crate) fn action(tag: u32) -> Option<(Action, &'static str)> {
    if let Ok(i) = PROFILE.binary_search_by_key(&tag, |row| row.0) {
        let (_, action, name) = PROFILE[i];
        return Some((action, name));
    }
    PROFILE_MASKED
        .iter()
        .find(|(value, mask, _, _)| tag & mask == *value)
        .map(|&(_, _, action, name)| (action, name))
}

/// The standard VR of `tag` (the first where PS3.6 allows several), `UN` when unknown.
pub(crate) fn standard_vr(tag: u32) -> [u8; 2] {
    if let Ok(i) = VRS.binary_search_by_key(&tag, |row| row.0) {
        return VRS[i].1;
    }
    if tag & 0xFFFF == 0 {
        return *b"UL"; // group length
    }
    if tag >> 16 & 1 == 1 && (0x10..=0xFF).contains(&(tag & 0xFFFF)) {
        return *b"LO"; // private creator
    }
    VRS_MASKED
        .iter()
        .find(|(value, mask, _)| tag & mask == *value)
        .map_or(*b"UN", |row| row.2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_sorted_and_reads_back() {
        assert!(PROFILE.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(VRS.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(PROFILE.len() + PROFILE_MASKED.len(), 655);
        assert_eq!(action(0x0010_0010), Some((Action::Z, "Patient's Name")));
        assert_eq!(action(0x0008_0018).map(|a| a.0), Some(Action::U));
        assert_eq!(action(0x6002_3000).map(|a| a.0), Some(Action::X));
        assert_eq!(action(0x5010_0020).map(|a| a.0), Some(Action::X));
        assert_eq!(action(0x0028_0010), None);
        assert_eq!(standard_vr(0x0010_0010), *b"PN");
        assert_eq!(standard_vr(0x300A_00B0), *b"SQ");
        assert_eq!(standard_vr(0x6000_3000), *b"OB");
        assert_eq!(standard_vr(0x0029_0010), *b"LO");
        assert_eq!(standard_vr(0x0029_1010), *b"UN");
    }

    #[test]
    fn combined_codes_keep_the_least_invented_content() {
        assert_eq!(Action::XZD.step(*b"LO"), Step::Empty);
        assert_eq!(Action::XD.step(*b"DA"), Step::Dummy);
        assert_eq!(Action::XD.step(*b"UI"), Step::Remap);
        assert_eq!(Action::XZU.step(*b"SQ"), Step::Keep);
        assert_eq!(Action::XZU.step(*b"UI"), Step::Remap);
        assert_eq!(Action::U.step(*b"LO"), Step::Remap);
    }
}
