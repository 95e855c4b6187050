//! Raw reader ids and their normalised EGYM rfid (pure, no I/O).
//!
//! A reader produces either bytes (an em4100 frame) or text (a line or keyboard reader). Text is
//! first turned into bytes according to the reader's `id-format`; the bytes are then trimmed
//! (`id-bytes`), reordered (`byte-order`) and written as `0x` plus uppercase hex, which is what
//! EGYM's lookup expects (`^0x([0-9a-fA-F]{2})+$`).
//!
//! Because no standard says how a card number is printed, every raw id can also be shown in all
//! the renderings other readers and enrolment tools use ([`renderings`]), so staff can compare a
//! card that EGYM does not know with what was enrolled.

use std::fmt;

/// EGYM's `tagFormat`: the card family an rfid belongs to, sent with a lookup (and with an
/// enrolment) so EGYM matches the card among those of its family. A reader that reads EM4x02
/// cards sends none: EGYM has no format for them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TagFormat {
    Hitag1,
    Mifare,
    Legic,
}

impl TagFormat {
    pub const ALL: [TagFormat; 3] = [TagFormat::Hitag1, TagFormat::Mifare, TagFormat::Legic];

    /// EGYM's name, which is also the name in the configuration (`egym-tag-format`).
    pub fn as_str(self) -> &'static str {
        match self {
            TagFormat::Hitag1 => "HITAG1",
            TagFormat::Mifare => "MIFARE",
            TagFormat::Legic => "LEGIC",
        }
    }

    pub fn parse(text: &str) -> Option<TagFormat> {
        TagFormat::ALL.into_iter().find(|f| f.as_str() == text)
    }

    /// Whether the family's ids are ISO 14443A UIDs (which a reader may cut short, and a
    /// phone may make up at random).
    pub fn is_uid(self) -> bool {
        self == TagFormat::Mifare
    }
}

impl fmt::Display for TagFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a text reader writes the id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdFormat {
    /// Hex digits, an even number of them (an optional `0x` prefix is accepted).
    Hex,
    /// Decimal digits; the number of digits gives the byte width (8 → 3, 10 → 4, 12 or 13 → 5).
    Decimal,
    /// Wiegand-26 style `facility,card` ("176,42493"): one facility byte and two card bytes.
    FacilityCard,
    /// Two 16-bit halves as 5 + 5 decimal digits ("0068842493", or "00688,42493"), as Wiegand-34
    /// readers and converters print 32 bits ("08H>55D", "WEG32" in vendor tables): 4 bytes.
    Decimal55,
}

impl IdFormat {
    pub const ALL: [IdFormat; 4] = [
        IdFormat::Hex,
        IdFormat::Decimal,
        IdFormat::FacilityCard,
        IdFormat::Decimal55,
    ];

    /// The name in the configuration (`id-format`).
    pub fn as_str(self) -> &'static str {
        match self {
            IdFormat::Hex => "hex",
            IdFormat::Decimal => "decimal",
            IdFormat::FacilityCard => "facility-card",
            IdFormat::Decimal55 => "decimal-5-5",
        }
    }
}

/// Which trailing bytes of the raw id are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdBytes {
    All,
    Low32,
    Low24,
}

impl IdBytes {
    pub const ALL: [IdBytes; 3] = [IdBytes::All, IdBytes::Low32, IdBytes::Low24];

    /// The name in the configuration (`id-bytes`).
    pub fn as_str(self) -> &'static str {
        match self {
            IdBytes::All => "all",
            IdBytes::Low32 => "low32",
            IdBytes::Low24 => "low24",
        }
    }
}

/// Whether the kept bytes are sent in the order read or reversed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ByteOrder {
    AsRead,
    Reversed,
}

impl ByteOrder {
    pub const ALL: [ByteOrder; 2] = [ByteOrder::AsRead, ByteOrder::Reversed];

    /// The name in the configuration (`byte-order`).
    pub fn as_str(self) -> &'static str {
        match self {
            ByteOrder::AsRead => "as-read",
            ByteOrder::Reversed => "reversed",
        }
    }
}

/// How one reader's raw ids become EGYM rfids.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Normalisation {
    pub id_bytes: IdBytes,
    pub byte_order: ByteOrder,
}

/// Longest id accepted, in bytes. MIFARE triple-size UIDs have 10; anything much longer is not
/// a card number.
pub const MAX_ID_BYTES: usize = 16;

/// An id as the reader delivered it: bytes in transmission order.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RawId(Vec<u8>);

impl RawId {
    pub fn new(bytes: Vec<u8>) -> Self {
        RawId(bytes)
    }

    pub fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// Uppercase hex of the bytes, without prefix.
    pub fn hex(&self) -> String {
        hex_upper(&self.0)
    }

    /// Parses the uppercase or lowercase hex written by [`RawId::hex`].
    pub fn from_hex(text: &str) -> Option<RawId> {
        decode_hex(text).map(RawId)
    }
}

/// Why a text id could not be turned into bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TagError {
    Empty,
    NotHex,
    OddHexDigits { digits: usize },
    NotDecimal,
    DecimalWidth { digits: usize },
    DecimalTooLarge { bytes: usize },
    FacilityCard,
    Decimal55,
    TooLong { bytes: usize },
}

impl fmt::Display for TagError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TagError::Empty => write!(f, "empty id"),
            TagError::NotHex => write!(f, "not a hex id (id-format = \"hex\")"),
            TagError::OddHexDigits { digits } => {
                write!(
                    f,
                    "{digits} hex digits: EGYM needs whole bytes (an even number)"
                )
            }
            TagError::NotDecimal => write!(f, "not a decimal id (id-format = \"decimal\")"),
            TagError::DecimalWidth { digits } => write!(
                f,
                "{digits} decimal digits: expected 8 (3 bytes), 10 (4 bytes), 12 or 13 (5 bytes)"
            ),
            TagError::DecimalTooLarge { bytes } => {
                write!(f, "decimal value does not fit in {bytes} bytes")
            }
            TagError::FacilityCard => write!(
                f,
                "not a facility,card id (id-format = \"facility-card\", e.g. \"176,42493\" or \"17642493\")"
            ),
            TagError::Decimal55 => write!(
                f,
                "not two 16-bit halves as 5 + 5 decimal digits (id-format = \"decimal-5-5\", \
                 e.g. \"0068842493\" or \"00688,42493\", each half at most 65535)"
            ),
            TagError::TooLong { bytes } => {
                write!(
                    f,
                    "{bytes} bytes is longer than any card id ({MAX_ID_BYTES} at most)"
                )
            }
        }
    }
}

impl std::error::Error for TagError {}

/// Turns the text a line or keyboard reader produced into the raw id bytes.
pub fn parse_text_id(text: &str, format: IdFormat) -> Result<RawId, TagError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(TagError::Empty);
    }
    match format {
        IdFormat::Hex => parse_hex_id(text),
        IdFormat::Decimal => parse_decimal_id(text),
        IdFormat::FacilityCard => parse_facility_card(text),
        IdFormat::Decimal55 => parse_decimal_5_5(text),
    }
}

fn parse_hex_id(text: &str) -> Result<RawId, TagError> {
    let digits = text
        .strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))
        .unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(TagError::NotHex);
    }
    if !digits.len().is_multiple_of(2) {
        return Err(TagError::OddHexDigits {
            digits: digits.len(),
        });
    }
    let bytes = decode_hex(digits).ok_or(TagError::NotHex)?;
    check_length(bytes)
}

fn parse_decimal_id(text: &str) -> Result<RawId, TagError> {
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(TagError::NotDecimal);
    }
    let width = match text.len() {
        8 => 3,
        10 => 4,
        12 | 13 => 5,
        digits => return Err(TagError::DecimalWidth { digits }),
    };
    let value: u64 = text.parse().map_err(|_| TagError::NotDecimal)?;
    if value >> (8 * width) != 0 {
        return Err(TagError::DecimalTooLarge { bytes: width });
    }
    Ok(RawId(value.to_be_bytes()[8 - width..].to_vec()))
}

fn parse_facility_card(text: &str) -> Result<RawId, TagError> {
    // "176,42493", or the same run together in 3 + 5 digits ("17642493").
    let (facility, card) = match text.split_once(',') {
        Some(parts) => parts,
        None if text.len() == 8 => text.split_at(3),
        None => return Err(TagError::FacilityCard),
    };
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(facility) || !all_digits(card) {
        return Err(TagError::FacilityCard);
    }
    let facility: u8 = facility.parse().map_err(|_| TagError::FacilityCard)?;
    let card: u16 = card.parse().map_err(|_| TagError::FacilityCard)?;
    let [card_high, card_low] = card.to_be_bytes();
    Ok(RawId(vec![facility, card_high, card_low]))
}

fn parse_decimal_5_5(text: &str) -> Result<RawId, TagError> {
    // "0068842493", or the halves apart: "00688,42493", "00688 42493", "00688-42493".
    let (high, low) = match text.len() {
        10 => text.split_at(5),
        11 if matches!(text.as_bytes()[5], b',' | b' ' | b'-') => (&text[..5], &text[6..]),
        _ => return Err(TagError::Decimal55),
    };
    let half = |s: &str| -> Result<u16, TagError> {
        if !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(TagError::Decimal55);
        }
        s.parse().map_err(|_| TagError::Decimal55)
    };
    let (high, low) = (half(high)?, half(low)?);
    Ok(RawId([high.to_be_bytes(), low.to_be_bytes()].concat()))
}

fn check_length(bytes: Vec<u8>) -> Result<RawId, TagError> {
    if bytes.len() > MAX_ID_BYTES {
        return Err(TagError::TooLong { bytes: bytes.len() });
    }
    Ok(RawId(bytes))
}

/// The EGYM rfid for a raw id: the kept trailing bytes, in the configured order, as `0x` plus
/// uppercase hex. An id shorter than `id-bytes` asks for is kept whole.
pub fn normalise(raw: &RawId, normalisation: Normalisation) -> String {
    let bytes = raw.bytes();
    let keep = match normalisation.id_bytes {
        IdBytes::All => bytes.len(),
        IdBytes::Low32 => bytes.len().min(4),
        IdBytes::Low24 => bytes.len().min(3),
    };
    let mut kept = bytes[bytes.len() - keep..].to_vec();
    if normalisation.byte_order == ByteOrder::Reversed {
        kept.reverse();
    }
    format!("0x{}", hex_upper(&kept))
}

/// Whether a MIFARE UID is a random one (4 bytes, UID0 = 0x08, per NXP AN10927): regenerated at
/// every power-up, so it can never match a stored member id.
pub fn is_random_uid(uid: &[u8]) -> bool {
    uid.len() == 4 && uid[0] == 0x08
}

/// Whether an EGYM rfid is what a MIFARE reader that reports only 4 bytes makes of a 7-byte UID:
/// 4 bytes starting with `0x88`. That byte is the ISO 14443-3 cascade tag, never the first byte of
/// a UID: the reader has sent cascade level 1 (`88` and the UID's first three bytes) and dropped
/// the rest, which no setting can restore. Such an id never matches the card's full UID at EGYM.
/// (An EM card's 4 low bytes may start with 0x88 too: callers know which readers read MIFARE.)
pub fn is_cut_short_uid(rfid: &str) -> bool {
    let digits = rfid.strip_prefix("0x").unwrap_or(rfid);
    digits.len() == 8 && digits.starts_with("88")
}

/// A tag shortened for logs at info level and above: `0x…21A5`. The full id is a credential.
pub fn short(rfid: &str) -> String {
    let digits = rfid.strip_prefix("0x").unwrap_or(rfid);
    if digits.len() <= 4 {
        return rfid.to_string();
    }
    format!("0x…{}", &digits[digits.len() - 4..])
}

/// One way of writing a raw id, as some reader or enrolment tool would show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rendering {
    pub name: &'static str,
    pub value: String,
}

/// Every common rendering of a raw id: hex both ways, the whole id in decimal both ways, and for
/// longer ids the low 32 and 24 bits in decimal and the Wiegand-style splits.
pub fn renderings(raw: &RawId) -> Vec<Rendering> {
    let bytes = raw.bytes();
    let n = bytes.len();
    let reversed: Vec<u8> = bytes.iter().rev().copied().collect();
    let mut out = Vec::new();
    let mut add = |name, value| out.push(Rendering { name, value });
    add("hex", hex_upper(bytes));
    add("hex-reversed", hex_upper(&reversed));
    if n <= 16 {
        add("dec", decimal(bytes));
        add("dec-reversed", decimal(&reversed));
    }
    if n > 4 {
        let low32 = &bytes[n - 4..];
        let low32_reversed: Vec<u8> = low32.iter().rev().copied().collect();
        add("low32-dec10", decimal(low32));
        add("low32-reversed-dec10", decimal(&low32_reversed));
    }
    if n > 3 {
        add("low24-dec8", decimal(&bytes[n - 3..]));
    }
    if n >= 3 {
        let card = u16::from_be_bytes([bytes[n - 2], bytes[n - 1]]);
        add(
            "w26-facility,card",
            format!("{:03},{card:05}", bytes[n - 3]),
        );
    }
    if n >= 4 {
        let high = u16::from_be_bytes([bytes[n - 4], bytes[n - 3]]);
        let low = u16::from_be_bytes([bytes[n - 2], bytes[n - 1]]);
        add("w34-5+5", format!("{high:05},{low:05}"));
    }
    out
}

/// Renderings on one line, for a log field: `hex=0C000621A5 hex-reversed=A521… …`.
pub fn renderings_line(raw: &RawId) -> String {
    renderings(raw)
        .iter()
        .map(|r| format!("{}={}", r.name, r.value))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Big-endian decimal of up to 16 bytes, zero-padded to the width readers print for that many
/// bytes (3 → 8 digits, 4 → 10, 5 → 13).
fn decimal(bytes: &[u8]) -> String {
    let value = bytes
        .iter()
        .fold(0u128, |acc, &b| (acc << 8) | u128::from(b));
    match bytes.len() {
        3 => format!("{value:08}"),
        4 => format!("{value:010}"),
        5 => format!("{value:013}"),
        _ => value.to_string(),
    }
}

pub fn hex_upper(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0F)]));
    }
    out
}

/// The value of one ASCII hex digit, either case.
pub fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

pub fn decode_hex(text: &str) -> Option<Vec<u8>> {
    let digits = text.as_bytes();
    if !digits.len().is_multiple_of(2) {
        return None;
    }
    digits
        .chunks(2)
        .map(|pair| Some(hex_value(pair[0])? << 4 | hex_value(pair[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_text(text: &str, format: IdFormat, expected: Result<&str, TagError>) {
        let got = parse_text_id(text, format).map(|raw| raw.hex());
        assert_eq!(got, expected.map(str::to_string), "{text:?} as {format:?}");
    }

    #[test]
    fn text_ids_become_bytes() {
        use IdFormat::*;
        check_text("0C000621A5", Hex, Ok("0C000621A5"));
        check_text("0c000621a5", Hex, Ok("0C000621A5"));
        check_text("0x0C000621A5", Hex, Ok("0C000621A5"));
        check_text("  0F0184F07A  ", Hex, Ok("0F0184F07A"));
        check_text("F0184F07A", Hex, Err(TagError::OddHexDigits { digits: 9 }));
        check_text("0C00G621A5", Hex, Err(TagError::NotHex));
        check_text("", Hex, Err(TagError::Empty));
        check_text(&"00".repeat(17), Hex, Err(TagError::TooLong { bytes: 17 }));
        check_text("00401829", Decimal, Ok("0621A5"));
        check_text("0000401829", Decimal, Ok("000621A5"));
        check_text("051540009381", Decimal, Ok("0C000621A5"));
        check_text("0051540009381", Decimal, Ok("0C000621A5"));
        check_text(
            "000040182",
            Decimal,
            Err(TagError::DecimalWidth { digits: 9 }),
        );
        check_text(
            "4294967296",
            Decimal,
            Err(TagError::DecimalTooLarge { bytes: 4 }),
        );
        check_text(
            "16777216",
            Decimal,
            Err(TagError::DecimalTooLarge { bytes: 3 }),
        );
        check_text(
            "9999999999999",
            Decimal,
            Err(TagError::DecimalTooLarge { bytes: 5 }),
        );
        check_text("12345abc90", Decimal, Err(TagError::NotDecimal));
        check_text("176,42493", FacilityCard, Ok("B0A5FD"));
        check_text("006,08613", FacilityCard, Ok("0621A5"));
        check_text("256,1", FacilityCard, Err(TagError::FacilityCard));
        check_text("1,65536", FacilityCard, Err(TagError::FacilityCard));
        check_text("17642493", FacilityCard, Ok("B0A5FD"));
        check_text("02207638", FacilityCard, Ok("161DD6"));
        check_text("1764249", FacilityCard, Err(TagError::FacilityCard));
        // Wiegand-34's 32 bits as two 16-bit halves (vectors wg-04 and wg-05).
        check_text("0068842493", Decimal55, Ok("02B0A5FD"));
        check_text("2906242526", Decimal55, Ok("7186A61E"));
        check_text("00688,42493", Decimal55, Ok("02B0A5FD"));
        check_text("00688 42493", Decimal55, Ok("02B0A5FD"));
        check_text("0000000000", Decimal55, Ok("00000000"));
        check_text("6553565535", Decimal55, Ok("FFFFFFFF"));
        check_text("6553665535", Decimal55, Err(TagError::Decimal55));
        check_text("0068842494x", Decimal55, Err(TagError::Decimal55));
        check_text("006884249", Decimal55, Err(TagError::Decimal55));
        check_text("00688;42493", Decimal55, Err(TagError::Decimal55));
        check_text("0068a42493", Decimal55, Err(TagError::Decimal55));
    }

    fn check_normalise(hex: &str, id_bytes: IdBytes, byte_order: ByteOrder, expected: &str) {
        let raw = RawId::from_hex(hex).unwrap();
        let got = normalise(
            &raw,
            Normalisation {
                id_bytes,
                byte_order,
            },
        );
        assert_eq!(got, expected, "{hex} {id_bytes:?} {byte_order:?}");
    }

    #[test]
    fn normalisation_keeps_trailing_bytes_and_reorders() {
        use ByteOrder::*;
        use IdBytes::*;
        check_normalise("0C000621A5", All, AsRead, "0x0C000621A5");
        check_normalise("0C000621A5", Low32, AsRead, "0x000621A5");
        check_normalise("0C000621A5", Low24, AsRead, "0x0621A5");
        check_normalise("0C000621A5", All, Reversed, "0xA52106000C");
        check_normalise("0C000621A5", Low32, Reversed, "0xA5210600");
        check_normalise("1EA68671", All, Reversed, "0x7186A61E");
        check_normalise("0621A5", Low32, AsRead, "0x0621A5");
    }

    #[test]
    fn a_four_byte_id_starting_with_the_cascade_tag_is_cut_short() {
        assert!(is_cut_short_uid("0x8804C43B"));
        // 0x88 elsewhere, or in an id of another length, is ordinary data.
        assert!(!is_cut_short_uid("0x04C43B88"));
        assert!(!is_cut_short_uid("0x880621A5C0"));
        assert!(!is_cut_short_uid("0x88C43B"));
        assert!(!is_cut_short_uid("0x04C43BC21C2680"));
    }

    #[test]
    fn short_tags_keep_the_last_four_digits() {
        assert_eq!(short("0x0C000621A5"), "0x…21A5");
        assert_eq!(short("0x21A5"), "0x21A5");
    }

    #[test]
    fn renderings_of_an_em_card() {
        let raw = RawId::from_hex("0102B0A5FD").unwrap();
        let names: Vec<(&str, String)> = renderings(&raw)
            .into_iter()
            .map(|r| (r.name, r.value))
            .collect();
        let expected = [
            ("hex", "0102B0A5FD"),
            ("hex-reversed", "FDA5B00201"),
            ("dec", "0004340098557"),
            ("dec-reversed", "1089406501377"),
            ("low32-dec10", "0045131261"),
            ("low32-reversed-dec10", "4255494146"),
            ("low24-dec8", "11576829"),
            ("w26-facility,card", "176,42493"),
            ("w34-5+5", "00688,42493"),
        ];
        let expected: Vec<(&str, String)> =
            expected.iter().map(|(n, v)| (*n, v.to_string())).collect();
        assert_eq!(names, expected);
    }
}
