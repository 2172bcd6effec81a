//! DICOM de-identification by the Basic Application Level Confidentiality Profile (PS3.15
//! Annex E, Table E.1-1, generated into [`tables`] by `scripts/gen-dicom-tables.py`).
//!
//! [`deidentify`] reads a file with our own bounded parser (`parse`), applies each
//! attribute's action at every nesting depth (remove, empty, dummy, or remap a UID under the
//! tenant's [`UidKey`]), removes every private group, rewrites the file meta for the new SOP
//! Instance UID, and writes the result in the input's transfer syntax with the pixel data byte
//! for byte. The output is then re-read and checked (`verify`): nothing the table removes is
//! left, nothing private, every remapped UID is ours, the pixels and their description are
//! unchanged. Any doubt fails closed: a malformed file is rejected with the reason, never
//! repaired.
//!
//! Burned-in text cannot be ruled out from the header alone on some images: [`BurnedIn`] says
//! so, and only a file whose annotation is ruled out says Patient Identity Removed.
//!
//! Pure code: bytes in, typed results out; no I/O, no logging, and reports carry tags and
//! attribute names, never values.

mod parse;
mod preview;
mod profile;
mod tables;
mod write;

use std::borrow::Cow;
use std::collections::BTreeSet;

use ring::hmac;
use serde::{Deserialize, Serialize};

use crate::media::{Format, Limits, StripError, check_limit};
use parse::{Element, PIXEL_DATA, Reader, Syntax, Value, bytes_of, tag_name, text_of};
use profile::{Step, action};

const IMPLICIT_LE: &str = "1.2.840.10008.1.2";
const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";
const DEFLATED_LE: &str = "1.2.840.10008.1.2.1.99";
const EXPLICIT_BE: &str = "1.2.840.10008.1.2.2";
/// Asepsis's Implementation Class UID (0002,0012): `2.25.` and a fixed random UUID.
const IMPLEMENTATION_UID: &str = "2.25.253917542417419848766232155316593424481";
const IMPLEMENTATION_VERSION: &str = "ASEPSIS_0_1";
/// What (0012,0063) and the code of (0012,0064) say was applied (CID 7050, DCM 113100).
const METHOD: &str = "Basic Application Confidentiality Profile";
const METHOD_CODE: &str = "113100";
/// The profile and options applied, as the `deidentified` event names them.
pub const PROFILE_NAME: &str =
    "PS3.15 E.1-1 Basic Application Level Confidentiality Profile (2026c), no options";

const SOP_CLASS: u32 = 0x0008_0016;
const SOP_INSTANCE: u32 = 0x0008_0018;
const MODALITY: u32 = 0x0008_0060;
const BURNED_IN: u32 = 0x0028_0301;
const IDENTITY_REMOVED: u32 = 0x0012_0062;
const METHOD_TEXT: u32 = 0x0012_0063;
const METHOD_CODES: u32 = 0x0012_0064;

/// Modalities where text in the pixels is common, so an image that does not declare Burned In
/// Annotation is held: ultrasound, X-ray angiography and radiofluoroscopy, endoscopy, external
/// camera photography, "other" (scanned documents, screenshots) and document.
pub const TEXT_PRONE_MODALITIES: [&str; 7] = ["US", "XA", "RF", "ES", "XC", "OT", "DOC"];
/// Secondary Capture SOP classes (1.2.840.10008.5.1.4.1.1.7 and .7.1 to .7.4): screenshots
/// and scans, text-prone whatever their modality says.
const SECONDARY_CAPTURE: &str = "1.2.840.10008.5.1.4.1.1.7";

/// A tenant's secret for remapping UIDs: `2.25.` + the decimal of a UUID (version 8) made of
/// the first 122 bits of HMAC-SHA256(key, UID). The same UID maps the same way across a tenant's uploads, so
/// references between its files still resolve; without the key no one can link an output UID
/// to its original, nor two tenants' outputs to each other.
#[derive(Clone)]
pub struct UidKey(hmac::Key);

/// The service's DICOM UID secret (`DATA/keys/dicom-uid.key`), from which each tenant's
/// [`UidKey`] is derived. Never shown: its Debug says nothing.
pub struct UidSecret([u8; 32]);

impl From<[u8; 32]> for UidSecret {
    fn from(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
}

impl std::fmt::Debug for UidSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UidSecret(..)")
    }
}

impl UidKey {
    /// The key of `tenant` under the service's DICOM UID secret.
    pub fn for_tenant(secret: &UidSecret, tenant: &str) -> Self {
        let master = hmac::Key::new(hmac::HMAC_SHA256, &secret.0);
        let mut context = hmac::Context::with_key(&master);
        context.update(b"asepsis dicom uid v1\0");
        context.update(tenant.as_bytes());
        Self(hmac::Key::new(hmac::HMAC_SHA256, context.sign().as_ref()))
    }

    /// The remapped form of `uid` (without padding).
    pub fn remap(&self, uid: &str) -> String {
        let tag = hmac::sign(&self.0, uid.as_bytes());
        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(&tag.as_ref()[..16]);
        // A UUID (RFC 9562 version 8, vendor-defined) as 2.25 asks: 122 bits of the MAC.
        uuid[6] = uuid[6] & 0x0F | 0x80;
        uuid[8] = uuid[8] & 0x3F | 0x80;
        format!("2.25.{}", u128::from_be_bytes(uuid))
    }
}

impl std::fmt::Debug for UidKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UidKey(..)")
    }
}

/// Whether text burned into the pixels is ruled out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BurnedIn {
    /// Burned In Annotation (0028,0301) says NO, or the modality is not text-prone.
    RuledOut,
    /// Burned In Annotation says YES.
    Declared,
    /// Not declared, on a modality or SOP class where text in the pixels is common.
    Likely(String),
}

/// What de-identification did, by tag and attribute name, never by value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeidReport {
    /// `(0010,0030) Patient's Birth Date` and so on, each once however often it occurred.
    pub removed: Vec<String>,
    pub emptied: Vec<String>,
    pub replaced: Vec<String>,
    pub remapped: Vec<String>,
    /// Private elements removed (their creators included), at every depth.
    pub private_removed: u32,
    pub burned_in: BurnedIn,
    /// The transfer syntax, kept.
    pub transfer_syntax: String,
    /// The input had no Part 10 header (preamble and file meta): one was written.
    pub header_added: bool,
}

impl DeidReport {
    /// Every attribute named, for the `stripped` event's list.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = [
            ("DICOM removed", &self.removed),
            ("DICOM emptied", &self.emptied),
            ("DICOM replaced", &self.replaced),
            ("DICOM remapped", &self.remapped),
        ]
        .into_iter()
        .flat_map(|(what, list)| list.iter().map(move |n| format!("{what}:{n}")))
        .collect();
        if self.private_removed > 0 {
            names.push("DICOM removed:private groups".into());
        }
        names
    }
}

/// A de-identified file, verified.
#[derive(Debug, Clone)]
pub struct Deidentified {
    pub bytes: Vec<u8>,
    pub report: DeidReport,
    /// How long the re-read took (the stage metrics' `verify`).
    pub verify_time: std::time::Duration,
}

/// The parts of a file: how its data set is encoded and the data set's bytes.
struct Layout<'a> {
    meta: Vec<Element<'a>>,
    transfer_syntax: String,
    syntax: Syntax,
    deflated: bool,
    body: &'a [u8],
    header: bool,
}

fn malformed(problem: impl Into<String>) -> StripError {
    StripError::malformed(Format::Dicom, problem)
}

/// Split `bytes` into file meta and data set, with or without a Part 10 header.
fn layout<'a>(bytes: &'a [u8], limits: &Limits) -> Result<Layout<'a>, StripError> {
    let header = bytes.get(128..132) == Some(b"DICM");
    let start = if header { 132 } else { 0 };
    let rest = &bytes[start..];
    // The file meta is always explicit VR little endian, group 0002, first.
    let meta_len = meta_length(rest).map_err(malformed)?;
    let meta = Reader::new(&rest[..meta_len], Syntax::ExplicitLe, limits.max_segments)
        .read_all()
        .map_err(|e| malformed(format!("file meta: {e}")))?;
    let body = &rest[meta_len..];
    if header && meta.is_empty() {
        return Err(malformed("no file meta after the DICM prefix"));
    }
    let (transfer_syntax, syntax, deflated) = if meta.is_empty() {
        // A bare data set: explicit if the bytes after the first tag are a VR.
        let explicit = body
            .get(4..6)
            .is_some_and(|vr| vr.iter().all(u8::is_ascii_uppercase));
        if explicit {
            (EXPLICIT_LE.to_owned(), Syntax::ExplicitLe, false)
        } else {
            (IMPLICIT_LE.to_owned(), Syntax::ImplicitLe, false)
        }
    } else {
        let ts = text_of(&meta, 0x0002_0010)
            .ok_or_else(|| malformed("file meta without a Transfer Syntax UID"))?
            .to_owned();
        let (syntax, deflated) = syntax_of(&ts)?;
        (ts, syntax, deflated)
    };
    Ok(Layout {
        meta,
        transfer_syntax,
        syntax,
        deflated,
        body,
        header,
    })
}

/// How many leading bytes are group 0002 elements (explicit VR little endian).
fn meta_length(bytes: &[u8]) -> Result<usize, String> {
    let mut at = 0;
    while bytes.get(at..at + 2) == Some(&[0x02, 0x00]) {
        let vr = bytes.get(at + 4..at + 6).ok_or("truncated file meta")?;
        let (len, head) = if parse::long_header([vr[0], vr[1]]) {
            let len = crate::media::read_u32(bytes, at + 8, false).ok_or("truncated file meta")?;
            (len as usize, 12)
        } else {
            let len = crate::media::read_u16(bytes, at + 6, false).ok_or("truncated file meta")?;
            (usize::from(len), 8)
        };
        at = at
            .checked_add(head + len)
            .filter(|&next| next <= bytes.len())
            .ok_or("file meta element runs past the file")?;
    }
    Ok(at)
}

/// Transfer syntaxes whose data set is explicit VR little endian and whose pixel data is
/// encapsulated: JPEG (baseline, extended, lossless), JPEG-LS, JPEG 2000, HTJ2K, MPEG-2/4,
/// HEVC, JPEG XL and RLE. Anything else (JPIP, retired or private syntaxes) is refused.
const ENCAPSULATED: [&str; 25] = [
    "1.2.840.10008.1.2.4.50",
    "1.2.840.10008.1.2.4.51",
    "1.2.840.10008.1.2.4.57",
    "1.2.840.10008.1.2.4.70",
    "1.2.840.10008.1.2.4.80",
    "1.2.840.10008.1.2.4.81",
    "1.2.840.10008.1.2.4.90",
    "1.2.840.10008.1.2.4.91",
    "1.2.840.10008.1.2.4.92",
    "1.2.840.10008.1.2.4.93",
    "1.2.840.10008.1.2.4.100",
    "1.2.840.10008.1.2.4.101",
    "1.2.840.10008.1.2.4.102",
    "1.2.840.10008.1.2.4.103",
    "1.2.840.10008.1.2.4.104",
    "1.2.840.10008.1.2.4.105",
    "1.2.840.10008.1.2.4.106",
    "1.2.840.10008.1.2.4.107",
    "1.2.840.10008.1.2.4.108",
    "1.2.840.10008.1.2.4.110",
    "1.2.840.10008.1.2.4.111",
    "1.2.840.10008.1.2.4.112",
    "1.2.840.10008.1.2.4.201",
    "1.2.840.10008.1.2.4.202",
    "1.2.840.10008.1.2.5",
];

fn syntax_of(ts: &str) -> Result<(Syntax, bool), StripError> {
    Ok(match ts {
        IMPLICIT_LE => (Syntax::ImplicitLe, false),
        EXPLICIT_LE => (Syntax::ExplicitLe, false),
        EXPLICIT_BE => (Syntax::ExplicitBe, false),
        DEFLATED_LE => (Syntax::ExplicitLe, true),
        _ if ENCAPSULATED.contains(&ts) => (Syntax::ExplicitLe, false),
        // The UID is not echoed: it is the file's text.
        _ => return Err(StripError::Unsupported("DICOM in this transfer syntax")),
    })
}

/// The data set's bytes: as they are, or inflated.
fn body<'a>(layout: &Layout<'a>, limits: &Limits) -> Result<Cow<'a, [u8]>, StripError> {
    Ok(if layout.deflated {
        Cow::Owned(inflate(layout.body, limits)?)
    } else {
        Cow::Borrowed(layout.body)
    })
}

/// What the walk found and did, by tag.
#[derive(Default)]
struct Tally {
    removed: BTreeSet<String>,
    emptied: BTreeSet<String>,
    replaced: BTreeSet<String>,
    remapped: BTreeSet<String>,
    private_removed: u32,
}

fn named(tag: u32, name: &str) -> String {
    format!("{} {name}", tag_name(tag))
}

/// De-identify one file under `key`, then verify the output.
///
/// # Errors
/// [`StripError`] naming why: malformed (with the problem), a limit, a transfer syntax not
/// supported, or an output that failed verification.
pub fn deidentify(bytes: &[u8], key: &UidKey, limits: &Limits) -> Result<Deidentified, StripError> {
    check_limit(
        "max_input_bytes",
        bytes.len() as u64,
        limits.max_input_bytes,
    )?;
    let layout = layout(bytes, limits)?;
    let body = body(&layout, limits)?;
    let data_set = Reader::new(&body, layout.syntax, limits.max_segments)
        .read_all()
        .map_err(malformed)?;
    let mut tally = Tally::default();
    // What verify holds the output to, read before the walk consumes the data set.
    let sop_class = one_uid(&data_set, SOP_CLASS)?.to_owned();
    let expected = Expected::of(&data_set);
    let burned_in = expected.burned_in.clone();
    let mut cleaned = clean(data_set, key, &mut tally)?;
    cleaned.retain(|e| !matches!(e.tag, IDENTITY_REMOVED | METHOD_TEXT | METHOD_CODES));
    if burned_in == BurnedIn::RuledOut {
        cleaned.extend(identity_removed());
        cleaned.sort_by_key(|e| e.tag);
    }
    let instance = one_uid(&cleaned, SOP_INSTANCE)?;
    let mut out = vec![0u8; 128];
    out.extend(b"DICM");
    let meta = file_meta(&sop_class, instance, &layout.transfer_syntax);
    write::data_set(&mut out, &meta, Syntax::ExplicitLe);
    let mut encoded = Vec::with_capacity(body.len());
    write::data_set(&mut encoded, &cleaned, layout.syntax);
    if layout.deflated {
        out.extend(miniz_oxide::deflate::compress_to_vec(&encoded, 6));
    } else {
        out.extend(encoded);
    }
    let verifying = std::time::Instant::now();
    verify(&expected, &out, limits).map_err(StripError::into_verify)?;
    let report = DeidReport {
        removed: tally.removed.into_iter().collect(),
        emptied: tally.emptied.into_iter().collect(),
        replaced: tally.replaced.into_iter().collect(),
        remapped: tally.remapped.into_iter().collect(),
        private_removed: tally.private_removed,
        burned_in,
        transfer_syntax: layout.transfer_syntax,
        header_added: !layout.header,
    };
    Ok(Deidentified {
        bytes: out,
        report,
        verify_time: verifying.elapsed(),
    })
}

/// The first frame of a DICOM file as an 8-bit picture, for the face scan (uncompressed 8- and
/// 16-bit greyscale, windowed, and 8-bit RGB), or why there is none.
///
/// # Errors
/// Why no picture: the file does not parse, or its pixels are compressed or of another kind.
pub fn preview(bytes: &[u8], limits: &Limits) -> Result<image::DynamicImage, String> {
    let layout = layout(bytes, limits).map_err(|e| e.to_string())?;
    let body = body(&layout, limits).map_err(|e| e.to_string())?;
    let data_set = Reader::new(&body, layout.syntax, limits.max_segments).read_all()?;
    preview::preview(&data_set, layout.syntax, &layout.transfer_syntax, limits)
}

fn inflate(deflated: &[u8], limits: &Limits) -> Result<Vec<u8>, StripError> {
    let max = usize::try_from(limits.max_input_bytes).unwrap_or(usize::MAX);
    miniz_oxide::inflate::decompress_to_vec_with_limit(deflated, max).map_err(|e| match e.status {
        miniz_oxide::inflate::TINFLStatus::HasMoreOutput => StripError::Limit {
            limit: "max_input_bytes (inflated)",
            actual: max as u64 + 1,
            max: max as u64,
        },
        _ => malformed("deflated data set does not inflate"),
    })
}

/// Apply the profile to a data set, recursively.
fn clean<'a>(
    elements: Vec<Element<'a>>,
    key: &UidKey,
    tally: &mut Tally,
) -> Result<Vec<Element<'a>>, StripError> {
    let mut out = Vec::with_capacity(elements.len());
    for mut element in elements {
        let tag = element.tag;
        let group = tag >> 16;
        if group & 1 == 1 {
            tally.private_removed += 1;
            continue;
        }
        if group == 0x0002 {
            return Err(malformed(format!(
                "file meta element {} inside the data set",
                tag_name(tag)
            )));
        }
        if tag & 0xFFFF == 0 {
            // Group lengths: retired, and wrong once anything is removed.
            continue;
        }
        let Some((action, name)) = action(tag) else {
            if let Value::Items(items) = element.value {
                element.value = Value::Items(clean_items(items, key, tally)?);
            }
            out.push(element);
            continue;
        };
        let name = named(tag, name);
        match action.step(element.vr) {
            Step::Remove => {
                tally.removed.insert(name);
            }
            Step::Empty => {
                element.value = match element.value {
                    Value::Items(_) => Value::Items(Vec::new()),
                    _ => Value::Bytes(Cow::Borrowed(&[])),
                };
                tally.emptied.insert(name);
                out.push(element);
            }
            Step::Dummy => {
                element.value = dummy(element.vr);
                tally.replaced.insert(name);
                out.push(element);
            }
            Step::Remap => {
                let (Value::Bytes(uids), b"UI") = (&element.value, &element.vr) else {
                    return Err(malformed(format!(
                        "{}: a UID that is not UI",
                        tag_name(tag)
                    )));
                };
                element.value = Value::Bytes(Cow::Owned(remap_all(tag, uids, key)?));
                tally.remapped.insert(name);
                out.push(element);
            }
            Step::Keep => {
                if let Value::Items(items) = element.value {
                    element.value = Value::Items(clean_items(items, key, tally)?);
                }
                out.push(element);
            }
        }
    }
    Ok(out)
}

fn clean_items<'a>(
    items: Vec<Vec<Element<'a>>>,
    key: &UidKey,
    tally: &mut Tally,
) -> Result<Vec<Vec<Element<'a>>>, StripError> {
    items
        .into_iter()
        .map(|item| clean(item, key, tally))
        .collect()
}

/// The UIDs of a UI value (without padding), each checked to be one: digits and dots, at
/// most 64 characters.
fn uids_of(tag: u32, value: &[u8]) -> Result<Vec<&str>, StripError> {
    let not_uid = || malformed(format!("{}: not a UID", tag_name(tag)));
    let text = std::str::from_utf8(value)
        .map_err(|_| not_uid())?
        .trim_end_matches(['\0', ' ']);
    if text.is_empty() {
        return Ok(Vec::new());
    }
    text.split('\\')
        .map(|uid| {
            let uid = uid.trim_start();
            let valid = !uid.is_empty()
                && uid.len() <= 64
                && uid.bytes().all(|b| b.is_ascii_digit() || b == b'.');
            valid.then_some(uid).ok_or_else(not_uid)
        })
        .collect()
}

/// The one UID of `tag` (the file meta repeats the SOP Class and Instance UIDs).
fn one_uid<'e>(set: &'e [Element<'_>], tag: u32) -> Result<&'e str, StripError> {
    let value = bytes_of(set, tag).ok_or_else(|| malformed(format!("no {}", tag_name(tag))))?;
    match uids_of(tag, value)?[..] {
        [uid] => Ok(uid),
        _ => Err(malformed(format!("{}: not one UID", tag_name(tag)))),
    }
}

/// Each of a multi-valued UI value's UIDs remapped, padded to an even length with a NUL.
fn remap_all(tag: u32, value: &[u8], key: &UidKey) -> Result<Vec<u8>, StripError> {
    let mapped: Vec<String> = uids_of(tag, value)?
        .into_iter()
        .map(|uid| key.remap(uid))
        .collect();
    let out = padded(mapped.join("\\").into_bytes(), 0);
    if out.len() > usize::from(u16::MAX) - 1 {
        return Err(malformed(format!("{}: too many UIDs", tag_name(tag))));
    }
    Ok(out)
}

fn padded(mut value: Vec<u8>, pad: u8) -> Vec<u8> {
    if value.len() % 2 == 1 {
        value.push(pad);
    }
    value
}

/// A non-empty value of `vr` that says nothing; a sequence gets one empty item.
fn dummy(vr: [u8; 2]) -> Value<'static> {
    let text: &[u8] = match &vr {
        b"SQ" => return Value::Items(vec![Vec::new()]),
        b"DA" => b"19000101",
        b"TM" => b"000000",
        b"DT" => b"19000101000000",
        b"AS" => b"000Y",
        b"DS" | b"IS" => b"0 ",
        b"UR" => b"urn:none",
        b"AE" | b"CS" | b"LO" | b"LT" | b"PN" | b"SH" | b"ST" | b"UC" | b"UT" => b"ANONYMOUS ",
        b"US" | b"SS" => &[0; 2],
        b"UL" | b"SL" | b"FL" | b"AT" => &[0; 4],
        _ => &[0; 8],
    };
    Value::Bytes(Cow::Borrowed(text))
}

fn burned_in(data_set: &[Element<'_>]) -> BurnedIn {
    match text_of(data_set, BURNED_IN) {
        Some("YES") => return BurnedIn::Declared,
        Some("NO") => return BurnedIn::RuledOut,
        _ => {}
    }
    let modality = text_of(data_set, MODALITY).unwrap_or("");
    if let Some(m) = TEXT_PRONE_MODALITIES.iter().find(|m| **m == modality) {
        return BurnedIn::Likely(format!("Burned In Annotation not declared on modality {m}"));
    }
    let capture = |class: &str| {
        class
            .strip_prefix(SECONDARY_CAPTURE)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
    };
    if text_of(data_set, SOP_CLASS).is_some_and(capture) {
        return BurnedIn::Likely("Burned In Annotation not declared on a secondary capture".into());
    }
    BurnedIn::RuledOut
}

fn text(tag: u32, vr: &[u8; 2], value: &str) -> Element<'static> {
    let pad = if vr == b"UI" { 0 } else { b' ' };
    Element {
        tag,
        vr: *vr,
        value: Value::Bytes(Cow::Owned(padded(value.as_bytes().to_vec(), pad))),
    }
}

/// Patient Identity Removed, and the method and its code.
fn identity_removed() -> [Element<'static>; 3] {
    let code = vec![
        text(0x0008_0100, b"SH", METHOD_CODE),
        text(0x0008_0102, b"SH", "DCM"),
        text(0x0008_0104, b"LO", METHOD),
    ];
    [
        text(IDENTITY_REMOVED, b"CS", "YES"),
        text(METHOD_TEXT, b"LO", METHOD),
        Element {
            tag: METHOD_CODES,
            vr: *b"SQ",
            value: Value::Items(vec![code]),
        },
    ]
}

/// A new file meta: version, class, the new instance UID, the transfer syntax and ours.
fn file_meta(sop_class: &str, instance: &str, transfer_syntax: &str) -> Vec<Element<'static>> {
    let mut meta = vec![
        Element {
            tag: 0x0002_0001,
            vr: *b"OB",
            value: Value::Bytes(Cow::Borrowed(&[0, 1])),
        },
        text(0x0002_0002, b"UI", sop_class),
        text(0x0002_0003, b"UI", instance),
        text(0x0002_0010, b"UI", transfer_syntax),
        text(0x0002_0012, b"UI", IMPLEMENTATION_UID),
        text(0x0002_0013, b"SH", IMPLEMENTATION_VERSION),
    ];
    let mut body = Vec::new();
    write::data_set(&mut body, &meta, Syntax::ExplicitLe);
    let length = u32::try_from(body.len()).unwrap_or(u32::MAX).to_le_bytes();
    meta.insert(
        0,
        Element {
            tag: 0x0002_0000,
            vr: *b"UL",
            value: Value::Bytes(Cow::Owned(length.to_vec())),
        },
    );
    meta
}

/// What an output must match, from its input: the UIDs the table remaps (none may be left),
/// the pixel data with the values of group 0028 that describe it (byte-identical), and
/// whether burned-in text is ruled out.
struct Expected<'a> {
    uids: BTreeSet<String>,
    pixels: Vec<Element<'a>>,
    burned_in: BurnedIn,
}

impl<'a> Expected<'a> {
    fn of(input: &[Element<'a>]) -> Self {
        let mut uids = BTreeSet::new();
        uids_in(input, &mut uids);
        Self {
            uids,
            pixels: pixel_part(input).into_iter().cloned().collect(),
            burned_in: burned_in(input),
        }
    }
}

/// Re-parse `output` (sharing the table with the walk, not its code; the tests' independent
/// judge is pydicom with its own copy of the table) and fail unless it is clean
/// against what its input makes `expected`: it parses with its file meta; no private element
/// and nothing the table removes is left at any depth; what it empties is empty, what it
/// replaces holds the dummy, and every UID it remaps is a `2.25.` UID that is not among the
/// original's; the file meta names the new instance; the pixel data and group 0028 are
/// byte-identical; Patient Identity Removed is claimed only with burned-in text ruled out.
///
/// # Errors
/// [`StripError::Verify`] naming the first problem.
fn verify(expected: &Expected<'_>, output: &[u8], limits: &Limits) -> Result<(), StripError> {
    let fail = |why: String| StripError::Verify(format!("DICOM: {why}"));
    let layout = layout(output, limits)?;
    if !layout.header {
        return Err(fail("no Part 10 header".into()));
    }
    let body = body(&layout, limits)?;
    let data_set = Reader::new(&body, layout.syntax, limits.max_segments)
        .read_all()
        .map_err(fail)?;
    check(&data_set, &expected.uids).map_err(fail)?;
    let ours = match (
        text_of(&data_set, SOP_CLASS),
        text_of(&data_set, SOP_INSTANCE),
    ) {
        (Some(class), Some(instance)) => file_meta(class, instance, &layout.transfer_syntax),
        _ => return Err(fail("no SOP Class or Instance UID".into())),
    };
    if layout.meta != ours {
        return Err(fail("the file meta is not exactly the one written".into()));
    }
    if !expected.pixels.iter().eq(pixel_part(&data_set)) {
        return Err(fail("pixel data or its description changed".into()));
    }
    let claimed = bytes_of(&data_set, IDENTITY_REMOVED).is_some();
    if claimed != (expected.burned_in == BurnedIn::RuledOut) {
        return Err(fail(
            "Patient Identity Removed does not match the burned-in check".into(),
        ));
    }
    Ok(())
}

/// The pixel data and the values of group 0028 that describe it (those the table leaves).
fn pixel_part<'s, 'a>(set: &'s [Element<'a>]) -> Vec<&'s Element<'a>> {
    set.iter()
        .filter(|e| e.tag >> 16 == 0x0028 && e.tag & 0xFFFF != 0 || e.tag == PIXEL_DATA)
        .filter(|e| action(e.tag).is_none() && !matches!(e.value, Value::Items(_)))
        .collect()
}

/// The UIDs of the elements the table remaps, at every depth.
fn uids_in(elements: &[Element<'_>], uids: &mut BTreeSet<String>) {
    for element in elements {
        match &element.value {
            Value::Items(items) => items.iter().for_each(|item| uids_in(item, uids)),
            Value::Bytes(bytes)
                if &element.vr == b"UI"
                    && action(element.tag)
                        .is_some_and(|(a, _)| a.step(element.vr) == Step::Remap) =>
            {
                // The walk refused the file already if these are not UIDs.
                let found = uids_of(element.tag, bytes).unwrap_or_default();
                uids.extend(found.into_iter().map(str::to_owned));
            }
            _ => {}
        }
    }
}

fn check(elements: &[Element<'_>], original_uids: &BTreeSet<String>) -> Result<(), String> {
    for element in elements {
        let tag = element.tag;
        if tag >> 16 & 1 == 1 {
            return Err(format!("private element {} left", tag_name(tag)));
        }
        let step = action(tag).map(|(a, _)| a.step(element.vr));
        let empty = match &element.value {
            Value::Bytes(b) => b.is_empty(),
            Value::Items(items) => items.is_empty(),
            Value::Encapsulated(_) => false,
        };
        match step {
            Some(Step::Remove) => return Err(format!("{} left", tag_name(tag))),
            Some(Step::Empty) if !empty => return Err(format!("{} not emptied", tag_name(tag))),
            Some(Step::Dummy) if element.value != dummy(element.vr) => {
                return Err(format!("{} not replaced", tag_name(tag)));
            }
            Some(Step::Remap) => {
                let Value::Bytes(bytes) = &element.value else {
                    return Err(format!("{} is not a UID", tag_name(tag)));
                };
                for uid in uids_of(tag, bytes).map_err(|e| e.to_string())? {
                    let ours = uid.strip_prefix("2.25.").is_some_and(|n| {
                        !n.is_empty() && n.len() <= 39 && n.bytes().all(|b| b.is_ascii_digit())
                    });
                    if !ours || original_uids.contains(uid) {
                        return Err(format!("{} not remapped", tag_name(tag)));
                    }
                }
            }
            _ => {}
        }
        if let Value::Items(items) = &element.value {
            for item in items {
                check(item, original_uids)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
