//! A bounded, fail-closed reader of DICOM data sets over bytes: explicit VR little and big
//! endian, implicit VR little endian, defined and undefined lengths, nested sequences and
//! encapsulated pixel data (kept as its byte range). Every length is checked against its
//! container before it is used, depth and element count are bounded, tags must ascend, and
//! anything malformed is an error naming the problem (a tag and a kind, never a value). It
//! never repairs and never allocates for a value: values borrow the input.

use std::borrow::Cow;

use super::profile::standard_vr;

pub(crate) const ITEM: u32 = 0xFFFE_E000;
pub(crate) const ITEM_END: u32 = 0xFFFE_E00D;
pub(crate) const SEQUENCE_END: u32 = 0xFFFE_E0DD;
pub(crate) const PIXEL_DATA: u32 = 0x7FE0_0010;
/// The length of a sequence, item or encapsulated pixel data that ends at its delimiter.
pub(crate) const UNDEFINED: u32 = 0xFFFF_FFFF;
/// Sequences nested in sequences, at most.
pub(crate) const MAX_DEPTH: usize = 32;

/// How a data set's elements are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Syntax {
    ImplicitLe,
    ExplicitLe,
    ExplicitBe,
}

impl Syntax {
    pub(crate) fn big(self) -> bool {
        self == Syntax::ExplicitBe
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Element<'a> {
    pub tag: u32,
    pub vr: [u8; 2],
    pub value: Value<'a>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value<'a> {
    /// A value as its bytes, in the data set's byte order.
    Bytes(Cow<'a, [u8]>),
    /// A sequence's items, each a data set.
    Items(Vec<Vec<Element<'a>>>),
    /// Encapsulated pixel data: its items and the sequence delimiter, byte for byte.
    Encapsulated(&'a [u8]),
}

/// VRs whose explicit header has two reserved bytes and a 32-bit length.
pub(crate) fn long_header(vr: [u8; 2]) -> bool {
    matches!(
        &vr,
        b"OB"
            | b"OD"
            | b"OF"
            | b"OL"
            | b"OV"
            | b"OW"
            | b"SQ"
            | b"SV"
            | b"UC"
            | b"UN"
            | b"UR"
            | b"UT"
            | b"UV"
    )
}

fn known_vr(vr: [u8; 2]) -> bool {
    long_header(vr)
        || matches!(
            &vr,
            b"AE"
                | b"AS"
                | b"AT"
                | b"CS"
                | b"DA"
                | b"DS"
                | b"DT"
                | b"FD"
                | b"FL"
                | b"IS"
                | b"LO"
                | b"LT"
                | b"PN"
                | b"SH"
                | b"SL"
                | b"SS"
                | b"ST"
                | b"TM"
                | b"UI"
                | b"UL"
                | b"US"
        )
}

pub(crate) fn tag_name(tag: u32) -> String {
    format!("({:04X},{:04X})", tag >> 16, tag & 0xFFFF)
}

/// Reads one data set (and what it nests), counting elements against a budget.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    syntax: Syntax,
    budget: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8], syntax: Syntax, max_elements: usize) -> Self {
        Self {
            bytes,
            syntax,
            budget: max_elements,
        }
    }

    /// The whole input as one data set.
    pub(crate) fn read_all(mut self) -> Result<Vec<Element<'a>>, String> {
        let (elements, _) = self.data_set(0, self.bytes.len(), 0, false)?;
        Ok(elements)
    }

    fn u16_at(&self, at: usize) -> Result<u16, String> {
        crate::media::read_u16(self.bytes, at, self.syntax.big())
            .ok_or_else(|| format!("truncated at byte {at}"))
    }

    fn u32_at(&self, at: usize) -> Result<u32, String> {
        crate::media::read_u32(self.bytes, at, self.syntax.big())
            .ok_or_else(|| format!("truncated at byte {at}"))
    }

    fn tag_at(&self, at: usize) -> Result<u32, String> {
        Ok(u32::from(self.u16_at(at)?) << 16 | u32::from(self.u16_at(at + 2)?))
    }

    fn spend(&mut self) -> Result<(), String> {
        self.budget = self
            .budget
            .checked_sub(1)
            .ok_or("more elements than the limit max_segments allows")?;
        Ok(())
    }

    /// Elements from `at` up to `end`, or (`delimited`) up to an item delimiter, which is
    /// consumed. Returns them and the position after the last byte read.
    fn data_set(
        &mut self,
        mut at: usize,
        end: usize,
        depth: usize,
        delimited: bool,
    ) -> Result<(Vec<Element<'a>>, usize), String> {
        let mut elements: Vec<Element<'a>> = Vec::new();
        loop {
            if at == end {
                if delimited {
                    return Err(format!(
                        "item without its delimiter (truncated at byte {at})"
                    ));
                }
                return Ok((elements, at));
            }
            if end - at < 8 {
                return Err(format!("truncated element header at byte {at}"));
            }
            let tag = self.tag_at(at)?;
            match tag {
                ITEM_END if delimited => {
                    if self.u32_at(at + 4)? != 0 {
                        return Err("item delimiter with a length".into());
                    }
                    return Ok((elements, at + 8));
                }
                ITEM | ITEM_END | SEQUENCE_END => {
                    return Err(format!("{} out of place at byte {at}", tag_name(tag)));
                }
                _ => {}
            }
            if let Some(last) = elements.last()
                && last.tag >= tag
            {
                return Err(format!(
                    "{} after {}: tags out of order or repeated",
                    tag_name(tag),
                    tag_name(last.tag)
                ));
            }
            self.spend()?;
            let (element, next) = self.element(tag, at, end, depth)?;
            elements.push(element);
            at = next;
        }
    }

    /// The element whose tag is at `at`; returns it and the position after it.
    fn element(
        &mut self,
        tag: u32,
        at: usize,
        end: usize,
        depth: usize,
    ) -> Result<(Element<'a>, usize), String> {
        let name = || tag_name(tag);
        let (vr, len, start) = match self.syntax {
            Syntax::ImplicitLe => (standard_vr(tag), self.u32_at(at + 4)?, at + 8),
            Syntax::ExplicitLe | Syntax::ExplicitBe => {
                let vr = [self.bytes[at + 4], self.bytes[at + 5]];
                if !known_vr(vr) {
                    return Err(format!("{}: unknown VR", name()));
                }
                if long_header(vr) {
                    if end - at < 12 {
                        return Err(format!("{}: truncated header", name()));
                    }
                    (vr, self.u32_at(at + 8)?, at + 12)
                } else {
                    (vr, u32::from(self.u16_at(at + 6)?), at + 8)
                }
            }
        };
        // A standard sequence must be read as one: encoded as anything else (UN, OB, LT…),
        // its nested values would pass through the walk unseen.
        if standard_vr(tag) == *b"SQ" && &vr != b"SQ" {
            let vr = String::from_utf8_lossy(&vr).into_owned();
            return Err(format!("{}: a sequence encoded as {vr}", name()));
        }
        if len == UNDEFINED {
            if tag == PIXEL_DATA {
                let stop = self.fragments(start, end)?;
                let value = Value::Encapsulated(&self.bytes[start..stop]);
                return Ok((Element { tag, vr, value }, stop));
            }
            // Undefined length is for sequences; in implicit VR, for a tag the dictionary
            // does not know (a private sequence) too.
            if &vr != b"SQ" && !(self.syntax == Syntax::ImplicitLe && &vr == b"UN") {
                return Err(format!("{}: undefined length on a non-sequence", name()));
            }
            let (items, stop) = self.items(start, end, depth, None)?;
            let value = Value::Items(items);
            return Ok((
                Element {
                    tag,
                    vr: *b"SQ",
                    value,
                },
                stop,
            ));
        }
        let len = len as usize;
        if len > end - start {
            return Err(format!(
                "{}: value of {len} bytes runs past its container (truncated?)",
                name()
            ));
        }
        if len % 2 == 1 {
            return Err(format!("{}: odd value length {len}", name()));
        }
        let stop = start + len;
        if &vr == b"SQ" {
            let (items, _) = self.items(start, stop, depth, Some(stop))?;
            return Ok((
                Element {
                    tag,
                    vr,
                    value: Value::Items(items),
                },
                stop,
            ));
        }
        let value = Value::Bytes(Cow::Borrowed(&self.bytes[start..stop]));
        Ok((Element { tag, vr, value }, stop))
    }

    /// A sequence's items from `at`, up to `defined` or (undefined length) its delimiter.
    fn items(
        &mut self,
        mut at: usize,
        end: usize,
        depth: usize,
        defined: Option<usize>,
    ) -> Result<(Vec<Vec<Element<'a>>>, usize), String> {
        if depth + 1 > MAX_DEPTH {
            return Err(format!("sequences nested deeper than {MAX_DEPTH}"));
        }
        let mut items = Vec::new();
        loop {
            if Some(at) == defined {
                return Ok((items, at));
            }
            if end - at < 8 {
                return Err(format!("truncated sequence at byte {at}"));
            }
            let tag = self.tag_at(at)?;
            let len = self.u32_at(at + 4)?;
            match tag {
                SEQUENCE_END if defined.is_none() => {
                    if len != 0 {
                        return Err("sequence delimiter with a length".into());
                    }
                    return Ok((items, at + 8));
                }
                ITEM => {}
                _ => return Err(format!("{} where an item should be", tag_name(tag))),
            }
            self.spend()?;
            let start = at + 8;
            let (item, next) = if len == UNDEFINED {
                self.data_set(start, end, depth + 1, true)?
            } else {
                let len = len as usize;
                if len > end - start {
                    return Err(format!("item of {len} bytes runs past its sequence"));
                }
                let (item, _) = self.data_set(start, start + len, depth + 1, false)?;
                (item, start + len)
            };
            items.push(item);
            at = next;
        }
    }

    /// Encapsulated pixel data's fragments from `at`: items of defined length, then the
    /// sequence delimiter. Returns the position after the delimiter.
    fn fragments(&mut self, mut at: usize, end: usize) -> Result<usize, String> {
        loop {
            if end - at < 8 {
                return Err(format!("truncated pixel data at byte {at}"));
            }
            let tag = self.tag_at(at)?;
            let len = self.u32_at(at + 4)?;
            match tag {
                SEQUENCE_END if len == 0 => return Ok(at + 8),
                ITEM if len != UNDEFINED && len as usize <= end - at - 8 => {
                    self.spend()?;
                    at += 8 + len as usize;
                }
                ITEM => return Err("pixel data fragment runs past the file".into()),
                _ => return Err(format!("{} inside encapsulated pixel data", tag_name(tag))),
            }
        }
    }
}

/// The value of `tag` in `elements` (not nested), if it is there as bytes.
pub(crate) fn bytes_of<'e>(elements: &'e [Element<'_>], tag: u32) -> Option<&'e [u8]> {
    let i = elements.binary_search_by_key(&tag, |e| e.tag).ok()?;
    match &elements[i].value {
        Value::Bytes(b) => Some(b),
        _ => None,
    }
}

/// A text value without its padding (trailing spaces or NULs), if it is text.
pub(crate) fn text_of<'e>(elements: &'e [Element<'_>], tag: u32) -> Option<&'e str> {
    let bytes = bytes_of(elements, tag)?;
    let text = std::str::from_utf8(bytes).ok()?;
    Some(text.trim_end_matches(['\0', ' ']).trim_start())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn explicit(tag: u32, vr: &[u8; 2], value: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend(((tag >> 16) as u16).to_le_bytes());
        out.extend((tag as u16).to_le_bytes());
        out.extend(vr);
        out.extend((value.len() as u16).to_le_bytes());
        out.extend(value);
        out
    }

    #[test]
    fn reads_explicit_elements_and_refuses_disorder() {
        let mut bytes = explicit(0x0008_0060, b"CS", b"CT");
        bytes.extend(explicit(0x0010_0010, b"PN", b"DOE^JO"));
        let set = Reader::new(&bytes, Syntax::ExplicitLe, 100)
            .read_all()
            .unwrap();
        assert_eq!(set.len(), 2);
        assert_eq!(text_of(&set, 0x0010_0010), Some("DOE^JO"));

        let mut swapped = explicit(0x0010_0010, b"PN", b"DOE^JO");
        swapped.extend(explicit(0x0008_0060, b"CS", b"CT"));
        let err = Reader::new(&swapped, Syntax::ExplicitLe, 100)
            .read_all()
            .unwrap_err();
        assert!(err.contains("out of order"), "{err}");
    }

    #[test]
    fn lengths_past_the_container_and_budgets_are_refused() {
        let mut bytes = explicit(0x0010_0010, b"PN", b"DOE^JO");
        bytes[6] = 200;
        let err = Reader::new(&bytes, Syntax::ExplicitLe, 100)
            .read_all()
            .unwrap_err();
        assert!(err.contains("runs past"), "{err}");

        let bytes = explicit(0x0010_0010, b"PN", b"DOE^JO");
        let err = Reader::new(&bytes, Syntax::ExplicitLe, 0)
            .read_all()
            .unwrap_err();
        assert!(err.contains("max_segments"), "{err}");
    }

    #[test]
    fn nesting_is_bounded() {
        // Sequences of undefined length, each holding one undefined item, 40 deep.
        let mut bytes = Vec::new();
        for _ in 0..40 {
            bytes.extend(explicit(0x0040_A730, b"SQ", b"")[..6].iter());
            bytes.extend([0, 0, 0xFF, 0xFF, 0xFF, 0xFF]);
            bytes.extend([0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF]);
        }
        let err = Reader::new(&bytes, Syntax::ExplicitLe, 1000)
            .read_all()
            .unwrap_err();
        assert!(err.contains("deeper than 32"), "{err}");
    }
}
