use proptest::prelude::*;

use super::*;

const SECRET: [u8; 32] = [7; 32];
const CT: &str = "1.2.840.10008.5.1.4.1.1.2";
const ORIGINAL_UID: &str = "1.2.826.0.1.3680043.2.1125.1.99";

/// One element in `syntax`, with a value of even length (padded with a space).
fn el(syntax: Syntax, tag: u32, vr: &[u8; 2], value: &[u8]) -> Vec<u8> {
    let value = padded(value.to_vec(), if vr == b"UI" { 0 } else { b' ' });
    let element = Element {
        tag,
        vr: *vr,
        value: Value::Bytes(Cow::Owned(value)),
    };
    let mut out = Vec::new();
    write::data_set(&mut out, &[element], syntax);
    out
}

/// A sequence (undefined lengths) of one item made of `item`'s encoded elements.
fn seq(syntax: Syntax, tag: u32, item: &[u8]) -> Vec<u8> {
    let item = Reader::new(item, syntax, 100).read_all().unwrap();
    let element = Element {
        tag,
        vr: *b"SQ",
        value: Value::Items(vec![item]),
    };
    let mut out = Vec::new();
    write::data_set(&mut out, &[element], syntax);
    out
}

/// A small CT image's data set: names, dates, UIDs (one nested), a private group, pixels.
fn data_set(syntax: Syntax, extra: &[u8]) -> Vec<u8> {
    let mut referenced = el(syntax, 0x0008_1150, b"UI", CT.as_bytes());
    referenced.extend(el(syntax, 0x0008_1155, b"UI", ORIGINAL_UID.as_bytes()));
    let mut out = el(syntax, 0x0008_0016, b"UI", CT.as_bytes());
    out.extend(el(syntax, 0x0008_0018, b"UI", b"1.2.3.4.5.6"));
    out.extend(el(syntax, 0x0008_0020, b"DA", b"20240131"));
    out.extend(el(syntax, 0x0008_0060, b"CS", b"CT"));
    out.extend(el(syntax, 0x0008_0080, b"LO", b"Saint Elsewhere Hospital"));
    out.extend(seq(syntax, 0x0008_1140, &referenced));
    out.extend(el(syntax, 0x0009_0010, b"LO", b"ACME private"));
    out.extend(el(syntax, 0x0009_1001, b"LO", b"secret serial 42"));
    out.extend(el(syntax, 0x0010_0010, b"PN", b"DOE^JANE"));
    out.extend(el(syntax, 0x0010_0020, b"LO", b"MRN-0001"));
    out.extend(el(syntax, 0x0020_000D, b"UI", b"1.2.3.4.7"));
    out.extend(el(syntax, 0x0028_0002, b"US", &1u16.to_le_bytes()));
    out.extend(el(syntax, 0x0028_0004, b"CS", b"MONOCHROME2"));
    out.extend(el(syntax, 0x0028_0010, b"US", &2u16.to_le_bytes()));
    out.extend(el(syntax, 0x0028_0011, b"US", &2u16.to_le_bytes()));
    out.extend(el(syntax, 0x0028_0100, b"US", &8u16.to_le_bytes()));
    out.extend(extra);
    out.extend(el(syntax, PIXEL_DATA, b"OB", &[0, 64, 128, 255]));
    out
}

fn part10(transfer_syntax: &str, body: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; 128];
    out.extend(b"DICM");
    write::data_set(
        &mut out,
        &file_meta(CT, "1.2.3.4.5.6", transfer_syntax),
        Syntax::ExplicitLe,
    );
    out.extend(body);
    out
}

fn parse_output(bytes: &[u8]) -> (Layout<'_>, Vec<Element<'_>>) {
    let layout = layout(bytes, &Limits::default()).unwrap();
    assert!(!layout.deflated, "test helper reads plain outputs only");
    let set = Reader::new(layout.body, layout.syntax, 1000)
        .read_all()
        .unwrap();
    (layout, set)
}

fn deid(bytes: &[u8], tenant: &str) -> Deidentified {
    deidentify(
        bytes,
        &UidKey::for_tenant(&SECRET.into(), tenant),
        &Limits::default(),
    )
    .unwrap()
}

#[test]
fn removes_empties_and_remaps_at_every_depth() {
    let input = part10(EXPLICIT_LE, &data_set(Syntax::ExplicitLe, &[]));
    let done = deid(&input, "clinic-a");
    let (layout, set) = parse_output(&done.bytes);
    assert_eq!(
        text_of(&set, 0x0010_0010),
        Some(""),
        "patient's name emptied"
    );
    assert_eq!(text_of(&set, 0x0008_0020), Some(""), "study date emptied");
    assert_eq!(
        text_of(&set, 0x0008_0080),
        Some(""),
        "institution name emptied (X/Z/D)"
    );
    assert!(
        set.iter().all(|e| e.tag >> 16 != 0x0009),
        "private group removed"
    );
    assert_eq!(done.report.private_removed, 2);
    let instance = text_of(&set, SOP_INSTANCE).unwrap();
    assert!(instance.starts_with("2.25."), "{instance}");
    assert_eq!(text_of(&layout.meta, 0x0002_0003), Some(instance));
    assert_eq!(text_of(&set, SOP_CLASS), Some(CT), "class UID kept");
    let Value::Items(items) =
        &set[set.binary_search_by_key(&0x0008_1140, |e| e.tag).unwrap()].value
    else {
        panic!("referenced image sequence kept");
    };
    let nested = text_of(&items[0], 0x0008_1155).unwrap();
    let key = UidKey::for_tenant(&SECRET.into(), "clinic-a");
    assert_eq!(
        nested,
        key.remap(ORIGINAL_UID),
        "nested UID remapped with the tenant's key"
    );
    assert_eq!(text_of(&items[0], 0x0008_1150), Some(CT));
    assert_eq!(bytes_of(&set, PIXEL_DATA), Some(&[0, 64, 128, 255][..]));
    assert_eq!(text_of(&set, IDENTITY_REMOVED), Some("YES"));
    assert_eq!(text_of(&set, METHOD_TEXT), Some(METHOD));
    assert!(
        done.report
            .emptied
            .contains(&"(0010,0010) Patient's Name".to_owned())
    );
    assert!(
        done.report
            .remapped
            .contains(&"(0008,1155) Referenced SOP Instance UID".to_owned())
    );
    let report = serde_json::to_string(&done.report).unwrap();
    for value in [
        "DOE",
        "MRN",
        "Elsewhere",
        "20240131",
        "secret",
        ORIGINAL_UID,
    ] {
        assert!(
            !report.contains(value),
            "the report names no value: {report}"
        );
        assert!(
            !done
                .bytes
                .windows(value.len())
                .any(|w| w == value.as_bytes()),
            "{value} left in the output"
        );
    }
    let grey = preview(&done.bytes, &Limits::default()).unwrap();
    assert_eq!((grey.width(), grey.height()), (2, 2));
}

#[test]
fn uids_are_stable_within_a_tenant_and_differ_across_tenants() {
    let input = part10(EXPLICIT_LE, &data_set(Syntax::ExplicitLe, &[]));
    let (a1, a2, b) = (deid(&input, "a"), deid(&input, "a"), deid(&input, "b"));
    assert_eq!(a1.bytes, a2.bytes, "deterministic");
    let uid = |d: &Deidentified| {
        let (_, set) = parse_output(&d.bytes);
        text_of(&set, 0x0020_000D).unwrap().to_owned()
    };
    assert_ne!(uid(&a1), uid(&b));
    let other = UidKey::for_tenant(&[8; 32].into(), "a");
    assert_ne!(
        other.remap("1.2.3"),
        UidKey::for_tenant(&SECRET.into(), "a").remap("1.2.3")
    );
    assert!(uid(&a1).len() <= 64);
}

#[test]
fn every_syntax_round_trips_with_its_pixels() {
    for (ts, syntax) in [
        (IMPLICIT_LE, Syntax::ImplicitLe),
        (EXPLICIT_BE, Syntax::ExplicitBe),
        (EXPLICIT_LE, Syntax::ExplicitLe),
    ] {
        let input = part10(ts, &data_set(syntax, &[]));
        let done = deid(&input, "t");
        let (layout, set) = parse_output(&done.bytes);
        assert_eq!(layout.transfer_syntax, ts);
        assert_eq!(text_of(&set, 0x0010_0010), Some(""), "{ts}");
        assert_eq!(
            bytes_of(&set, PIXEL_DATA),
            Some(&[0, 64, 128, 255][..]),
            "{ts}"
        );
    }
    // Deflated: the data set inflates, is cleaned, and is deflated again.
    let body = data_set(Syntax::ExplicitLe, &[]);
    let input = part10(
        DEFLATED_LE,
        &miniz_oxide::deflate::compress_to_vec(&body, 6),
    );
    let done = deid(&input, "t");
    let out = layout(&done.bytes, &Limits::default()).unwrap();
    let inflated = inflate(out.body, &Limits::default()).unwrap();
    let set = Reader::new(&inflated, Syntax::ExplicitLe, 1000)
        .read_all()
        .unwrap();
    assert_eq!(text_of(&set, 0x0010_0010), Some(""));
    assert!(!inflated.windows(8).any(|w| w == b"DOE^JANE"));
}

#[test]
fn a_bare_data_set_gets_a_part10_header() {
    for syntax in [Syntax::ImplicitLe, Syntax::ExplicitLe] {
        let done = deid(&data_set(syntax, &[]), "t");
        assert!(done.report.header_added);
        let (layout, set) = parse_output(&done.bytes);
        assert!(layout.header);
        assert_eq!(layout.syntax, syntax);
        assert_eq!(text_of(&set, 0x0010_0020), Some(""));
    }
}

#[test]
fn burned_in_text_withholds_the_identity_removed_claim() {
    let yes = el(Syntax::ExplicitLe, BURNED_IN, b"CS", b"YES");
    let done = deid(
        &part10(EXPLICIT_LE, &data_set(Syntax::ExplicitLe, &yes)),
        "t",
    );
    assert_eq!(done.report.burned_in, BurnedIn::Declared);
    let (_, set) = parse_output(&done.bytes);
    assert_eq!(bytes_of(&set, IDENTITY_REMOVED), None);

    let ultrasound = data_set(Syntax::ExplicitLe, &[]);
    let at = ultrasound.windows(2).position(|w| w == b"CT").unwrap();
    let mut ultrasound = ultrasound;
    ultrasound[at..at + 2].copy_from_slice(b"US");
    let done = deid(&part10(EXPLICIT_LE, &ultrasound), "t");
    assert!(matches!(done.report.burned_in, BurnedIn::Likely(ref why) if why.contains("US")));
}

#[test]
fn malformed_files_are_refused_with_the_reason() {
    let input = part10(EXPLICIT_LE, &data_set(Syntax::ExplicitLe, &[]));
    let limits = Limits::default();
    let key = UidKey::for_tenant(&SECRET.into(), "t");
    let err = deidentify(&input[..input.len() - 3], &key, &limits).unwrap_err();
    assert!(err.to_string().contains("runs past its container"), "{err}");
    let unsupported = part10("1.2.3.4", &data_set(Syntax::ExplicitLe, &[]));
    let err = deidentify(&unsupported, &key, &limits).unwrap_err();
    assert!(matches!(err, StripError::Unsupported(_)), "{err}");
    let no_class = part10(
        EXPLICIT_LE,
        &el(Syntax::ExplicitLe, 0x0010_0010, b"PN", b"X"),
    );
    let err = deidentify(&no_class, &key, &limits).unwrap_err();
    assert!(err.to_string().contains("no (0008,0016)"), "{err}");
    let bomb = part10(
        DEFLATED_LE,
        &miniz_oxide::deflate::compress_to_vec(&vec![0u8; 1 << 20], 6),
    );
    let small = Limits {
        max_input_bytes: 1 << 16,
        ..Limits::default()
    };
    let err = deidentify(&bomb, &key, &small).unwrap_err();
    assert!(matches!(err, StripError::Limit { .. }), "{err}");
}

#[test]
fn group_lengths_go_and_hidden_sequences_or_bad_uids_are_refused() {
    let key = UidKey::for_tenant(&SECRET.into(), "t");
    let limits = Limits::default();
    // (0028,0000) in an old file: removed, and the pixel description still matches.
    let length = el(Syntax::ExplicitLe, 0x0028_0000, b"UL", &0u32.to_le_bytes());
    let body = data_set(Syntax::ExplicitLe, &[]);
    let at = body.windows(4).position(|w| w == [0x28, 0, 2, 0]).unwrap();
    let with_length = [&body[..at], &length, &body[at..]].concat();
    let done = deid(&part10(EXPLICIT_LE, &with_length), "t");
    let (_, set) = parse_output(&done.bytes);
    assert_eq!(bytes_of(&set, 0x0028_0000), None);
    // A standard sequence (Referenced Series, not in the table) hidden as OB: refused.
    let hidden = el(Syntax::ExplicitLe, 0x0008_1115, b"OB", b"1.2.3.4.5.6");
    let mut body = data_set(Syntax::ExplicitLe, &[]);
    let at = body
        .windows(4)
        .position(|w| w == [0x08, 0, 0x40, 0x11])
        .unwrap();
    body.splice(at..at, hidden);
    let err = deidentify(&part10(EXPLICIT_LE, &body), &key, &limits).unwrap_err();
    assert!(
        err.to_string().contains("a sequence encoded as OB"),
        "{err}"
    );
    // A UID that is not one, and an unknown transfer syntax named by its own text.
    let mut bad = data_set(Syntax::ExplicitLe, &[]);
    let at = bad.windows(9).position(|w| w == b"1.2.3.4.7").unwrap();
    bad[at..at + 9].copy_from_slice(b"DOE^JANE!");
    let err = deidentify(&part10(EXPLICIT_LE, &bad), &key, &limits).unwrap_err();
    assert!(err.to_string().contains("(0020,000D): not a UID"), "{err}");
    let body = data_set(Syntax::ExplicitLe, &[]);
    let err = deidentify(&part10("1.2.840.10008.1.2.4.95", &body), &key, &limits).unwrap_err();
    assert!(!err.to_string().contains("1.2.840"), "{err}");
}

#[test]
fn remapped_uids_are_version_8_uuids() {
    let uid = UidKey::for_tenant(&SECRET.into(), "t").remap(ORIGINAL_UID);
    let n: u128 = uid.strip_prefix("2.25.").unwrap().parse().unwrap();
    let uuid = uuid::Uuid::from_u128(n);
    assert_eq!(uuid.get_version_num(), 8);
    assert_eq!(uuid.get_variant(), uuid::Variant::RFC4122);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Mutated and truncated files never panic: each is de-identified (and verified) or
    /// refused.
    #[test]
    fn mutations_and_truncations_never_panic(
        at in 0usize..400,
        byte in any::<u8>(),
        cut in 0usize..400,
        syntax in 0usize..3,
    ) {
        let (ts, syntax) = [
            (EXPLICIT_LE, Syntax::ExplicitLe),
            (IMPLICIT_LE, Syntax::ImplicitLe),
            (EXPLICIT_BE, Syntax::ExplicitBe),
        ][syntax];
        let mut input = part10(ts, &data_set(syntax, &[]));
        let at = at % input.len();
        input[at] = byte;
        input.truncate(input.len() - cut % input.len());
        let key = UidKey::for_tenant(&SECRET.into(), "t");
        // Whatever parses also passed verify inside deidentify.
        let _ = deidentify(&input, &key, &Limits::default());
    }
}
