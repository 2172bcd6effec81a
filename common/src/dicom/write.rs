//! Writes data sets back in their own transfer syntax: values byte for byte, sequences and
//! items with undefined lengths and their delimiters, encapsulated pixel data as its range.

use super::parse::{Element, ITEM, ITEM_END, SEQUENCE_END, Syntax, UNDEFINED, Value, long_header};

pub(crate) fn data_set(out: &mut Vec<u8>, elements: &[Element<'_>], syntax: Syntax) {
    for element in elements {
        self::element(out, element, syntax);
    }
}

fn element(out: &mut Vec<u8>, element: &Element<'_>, syntax: Syntax) {
    match &element.value {
        Value::Bytes(bytes) => {
            // Every value the parser accepted or the profile wrote fits its header: lengths
            // are even and at most what the input's own header could say.
            let len = u32::try_from(bytes.len()).unwrap_or(UNDEFINED - 1);
            header(out, element.tag, element.vr, len, syntax);
            out.extend_from_slice(bytes);
        }
        Value::Items(items) => {
            header(out, element.tag, element.vr, UNDEFINED, syntax);
            for item in items {
                tag_and_length(out, ITEM, UNDEFINED, syntax);
                data_set(out, item, syntax);
                tag_and_length(out, ITEM_END, 0, syntax);
            }
            tag_and_length(out, SEQUENCE_END, 0, syntax);
        }
        Value::Encapsulated(range) => {
            header(out, element.tag, element.vr, UNDEFINED, syntax);
            out.extend_from_slice(range);
        }
    }
}

fn u16_bytes(value: u16, syntax: Syntax) -> [u8; 2] {
    if syntax.big() {
        value.to_be_bytes()
    } else {
        value.to_le_bytes()
    }
}

fn u32_bytes(value: u32, syntax: Syntax) -> [u8; 4] {
    if syntax.big() {
        value.to_be_bytes()
    } else {
        value.to_le_bytes()
    }
}

fn tag_and_length(out: &mut Vec<u8>, tag: u32, len: u32, syntax: Syntax) {
    out.extend(u16_bytes((tag >> 16) as u16, syntax));
    out.extend(u16_bytes(tag as u16, syntax));
    out.extend(u32_bytes(len, syntax));
}

fn header(out: &mut Vec<u8>, tag: u32, vr: [u8; 2], len: u32, syntax: Syntax) {
    if syntax == Syntax::ImplicitLe {
        return tag_and_length(out, tag, len, syntax);
    }
    out.extend(u16_bytes((tag >> 16) as u16, syntax));
    out.extend(u16_bytes(tag as u16, syntax));
    out.extend(vr);
    if long_header(vr) {
        out.extend([0, 0]);
        out.extend(u32_bytes(len, syntax));
    } else {
        out.extend(u16_bytes(u16::try_from(len).unwrap_or(u16::MAX), syntax));
    }
}
