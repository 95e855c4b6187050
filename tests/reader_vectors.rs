//! The checked reader test vectors (`tests/data/reader-vectors.json`, a copy of the project's
//! shared reference vectors) through the codecs, the tag normalisation and the candidate
//! renderings.

use gym_checkin::clock::{Now, SteadyMs, WallMs, WallTime};
use gym_checkin::reader::codec::{self, Codec, Frame};
use gym_checkin::reader::{Driver, ReaderConfig};
use gym_checkin::reader::{Presenter, ReaderMessage, new_codec, pcsc, pn532};
use gym_checkin::tag::{self, ByteOrder, IdBytes, IdFormat, Normalisation, RawId, TagFormat};
use gym_checkin::visit::Direction;
use serde_json::Value;

fn vectors() -> Vec<Value> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/reader-vectors.json"
    );
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
    serde_json::from_str(&text).unwrap()
}

/// Where our em4100 codec deliberately differs from the strict parser a vector was written for:
/// one codec reads RDM6300 and ID-12LA framing and their clones' line ends, and accepts
/// lowercase hex.
fn em4100_expectation(vector: &Value) -> Option<Vec<&str>> {
    match vector["id"].as_str().unwrap() {
        // Lowercase hex, rejected by a strict uppercase-only parser.
        "rdm6300-14" => Some(vec!["0102B0A5FD"]),
        // ID-12LA framing (CR LF before ETX) given to a strict RDM6300 parser.
        "rdm6300-16" => Some(vec!["0C000621A5"]),
        // CR alone before ETX, as some ID-12LA clones send: a strict parser drops it, we read
        // it (its checksum is good).
        "id12la-05" => Some(vec!["0C000621A5"]),
        _ => None,
    }
}

fn expected_uids(vector: &Value) -> Vec<&str> {
    match &vector["expected"] {
        Value::Null => Vec::new(),
        expected => expected["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|id| id["uid_hex"].as_str().unwrap())
            .collect(),
    }
}

fn raw_bytes(vector: &Value) -> Vec<u8> {
    let hex = vector["raw_hex"].as_str().unwrap();
    RawId::from_hex(hex).unwrap().bytes().to_vec()
}

fn normalisation(vector: &Value) -> Normalisation {
    let egym = &vector["settings"]["egym"];
    let id_bytes = match egym["id_bytes"].as_str().unwrap() {
        "all" => IdBytes::All,
        "low32" => IdBytes::Low32,
        "low24" => IdBytes::Low24,
        other => panic!("id_bytes {other}"),
    };
    let byte_order = match egym["byte_order"].as_str().unwrap() {
        "as_transmitted" => ByteOrder::AsRead,
        "reversed" => ByteOrder::Reversed,
        other => panic!("byte_order {other}"),
    };
    Normalisation {
        id_bytes,
        byte_order,
    }
}

/// Checks the rfid and every rendering the vector lists for one decoded id.
fn check_id(vector: &Value, index: usize, raw: &RawId) {
    let expected = &vector["expected"]["ids"][index];
    let name = vector["id"].as_str().unwrap();
    assert_eq!(
        tag::normalise(raw, normalisation(vector)),
        expected["egym_rfid"].as_str().unwrap(),
        "{name}"
    );
    if let Some(low32) = expected["egym_rfid_low32"].as_str() {
        let n = Normalisation {
            id_bytes: IdBytes::Low32,
            byte_order: ByteOrder::AsRead,
        };
        assert_eq!(tag::normalise(raw, n), low32, "{name}");
    }
    let ours: Vec<String> = tag::renderings(raw).into_iter().map(|r| r.value).collect();
    for (key, value) in expected["renderings"].as_object().unwrap() {
        let value = value.as_str().unwrap();
        // `dec_*` renderings of ids with no fixed reader width are printed without padding.
        let found = if key.starts_with("dec_") {
            ours.iter()
                .any(|o| o.trim_start_matches('0') == value.trim_start_matches('0'))
        } else {
            ours.iter().any(|o| o == value)
        };
        assert!(
            found,
            "{name}: rendering {key} = {value} missing from {ours:?}"
        );
    }
}

#[test]
fn em4100_vectors() {
    let mut checked = 0;
    for vector in vectors() {
        let protocol = vector["protocol"].as_str().unwrap();
        if protocol != "rdm6300" && protocol != "id12la_ascii" {
            continue;
        }
        let name = vector["id"].as_str().unwrap();
        let mut codec = (codec::protocol("em4100").unwrap().new_codec)();
        let mut frames = Vec::new();
        codec.feed(&raw_bytes(&vector), &mut frames);
        let raws: Vec<RawId> = frames
            .into_iter()
            .map(|f| match f {
                Frame::Id { bytes, .. } => RawId::new(bytes),
                other => panic!("{name}: frame {other:?}"),
            })
            .collect();
        let uids: Vec<String> = raws.iter().map(RawId::hex).collect();
        match em4100_expectation(&vector) {
            Some(ours) => assert_eq!(uids, ours, "{name}"),
            None => {
                assert_eq!(uids, expected_uids(&vector), "{name}");
                if let Some(rejected) = vector["expected"]["rejected_frames"].as_u64() {
                    assert_eq!(codec.discarded().rejected_frames, rejected, "{name}");
                }
                for (i, raw) in raws.iter().enumerate() {
                    check_id(&vector, i, raw);
                }
            }
        }
        checked += 1;
    }
    assert_eq!(checked, 18, "all rdm6300 and id12la_ascii vectors");
}

#[test]
fn line_vectors() {
    let mut checked = 0;
    for vector in vectors() {
        if vector["protocol"] != "line_ascii" {
            continue;
        }
        let name = vector["id"].as_str().unwrap();
        let format = match vector["settings"]["input"].as_str().unwrap() {
            "hex" => IdFormat::Hex,
            "decimal" => IdFormat::Decimal,
            other => panic!("{name}: input {other}"),
        };
        let mut codec = (codec::protocol("line").unwrap().new_codec)();
        let mut frames = Vec::new();
        codec.feed(&raw_bytes(&vector), &mut frames);
        let raws: Vec<RawId> = frames
            .into_iter()
            .filter_map(|f| match f {
                Frame::Text(text) => tag::parse_text_id(&text, format).ok(),
                other => panic!("{name}: {other:?} from a line codec"),
            })
            .collect();
        let uids: Vec<String> = raws.iter().map(RawId::hex).collect();
        assert_eq!(uids, expected_uids(&vector), "{name}");
        for (i, raw) in raws.iter().enumerate() {
            check_id(&vector, i, raw);
        }
        checked += 1;
    }
    assert_eq!(checked, 7, "all line_ascii vectors");
}

#[test]
fn keyboard_wedge_vectors() {
    use gym_checkin::reader::keyboard::KeyDecoder;
    use std::time::Duration;
    use tokio::time::Instant;
    let mut checked = 0;
    for vector in vectors() {
        if vector["protocol"] != "keyboard_wedge" {
            continue;
        }
        let name = vector["id"].as_str().unwrap();
        let settings = &vector["settings"];
        let format = match settings["input"].as_str().unwrap() {
            "hex" => IdFormat::Hex,
            "decimal" => IdFormat::Decimal,
            "fac_card" => IdFormat::FacilityCard,
            other => panic!("{name}: input {other}"),
        };
        // A reader that prints the bytes least significant first is read with byte-order reversed.
        let byte_order = match settings["input_byte_order"].as_str() {
            Some("lsb_first") => ByteOrder::Reversed,
            _ => ByteOrder::AsRead,
        };
        let mut decoder = KeyDecoder::default();
        let mut at = Instant::now();
        let mut typed = Vec::new();
        for event in vector["evdev_key_events"].as_array().unwrap() {
            at += Duration::from_millis(4);
            let (code, value) = (
                event[0].as_u64().unwrap() as u16,
                event[1].as_i64().unwrap() as i32,
            );
            typed.extend(decoder.key(code, value, at));
        }
        // Keys that are no part of an id (kbd-16's Q) are not typed.
        let expected_text: String = vector["raw_text"]
            .as_str()
            .unwrap()
            .trim_end()
            .to_lowercase()
            .chars()
            .filter(|c| c.is_ascii_hexdigit() || *c == ',')
            .collect();
        assert_eq!(
            typed.iter().map(|t| t.to_lowercase()).collect::<Vec<_>>(),
            vec![expected_text],
            "{name}: typed"
        );
        let rfids: Vec<String> = typed
            .iter()
            .filter_map(|text| tag::parse_text_id(text, format).ok())
            .map(|raw| {
                tag::normalise(
                    &raw,
                    Normalisation {
                        id_bytes: IdBytes::All,
                        byte_order,
                    },
                )
            })
            .collect();
        let expected: Vec<&str> = match &vector["expected"] {
            Value::Null => Vec::new(),
            e => e["ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|id| id["egym_rfid"].as_str().unwrap())
                .collect(),
        };
        assert_eq!(rfids, expected, "{name}");
        let ids = vector["expected"]["ids"].as_array().into_iter().flatten();
        for (rfid, id) in rfids.iter().zip(ids) {
            let warned = id["warnings"]
                .as_array()
                .is_some_and(|w| w.iter().any(|w| w == "cascade_tag_0x88_not_uid_data"));
            assert_eq!(tag::is_cut_short_uid(rfid), warned, "{name}: cascade tag");
        }
        checked += 1;
    }
    assert_eq!(checked, 17, "all keyboard_wedge vectors");
}

/// The expected ids of a vector as (uid hex, tagFormat).
fn expected_ids(vector: &Value) -> Vec<(String, Option<String>)> {
    vector["expected"]["ids"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|id| {
            (
                id["uid_hex"].as_str().unwrap().to_string(),
                id["tag_format"].as_str().map(str::to_string),
            )
        })
        .collect()
}

fn of_protocol(protocol: &str) -> Vec<Value> {
    vectors()
        .into_iter()
        .filter(|v| v["protocol"] == protocol)
        .collect()
}

/// A reader configuration with the vector's normalisation and `driver`.
fn reader_config(vector: &Value, driver: Driver, egym_tag_format: Option<&str>) -> ReaderConfig {
    ReaderConfig {
        name: "desk".into(),
        driver,
        direction: Direction::Toggle,
        debounce: std::time::Duration::from_millis(1500),
        id_format: IdFormat::Hex,
        normalisation: normalisation(vector),
        egym_tag_format: egym_tag_format
            .map(|f| TagFormat::parse(f).expect("one of EGYM's tagFormats")),
    }
}

/// (uid hex, tagFormat) of each tap.
fn uids_and_formats(taps: &[(String, Option<String>, String)]) -> Vec<(String, Option<String>)> {
    taps.iter()
        .map(|(uid, format, _)| (uid.clone(), format.clone()))
        .collect()
}

/// Every tap `frames` make on a reader with `config`, as (uid hex, tagFormat, rfid); each frame
/// is read a presentation apart.
fn taps(config: ReaderConfig, frames: Vec<Frame>) -> Vec<(String, Option<String>, String)> {
    let mut presenter = Presenter::new(config);
    frames
        .into_iter()
        .enumerate()
        .filter_map(|(i, frame)| {
            let at = (i as i64 + 1) * 60_000;
            let now = Now {
                wall: WallMs::from_millis(at),
                wall_is: WallTime::Trusted,
                steady: SteadyMs::from_millis(at),
            };
            match presenter.present(frame, now) {
                Some(ReaderMessage::Tap(tap)) => Some((
                    tap.raw.hex(),
                    tap.tag_format.map(|f| f.to_string()),
                    tap.rfid,
                )),
                _ => None,
            }
        })
        .collect()
}

fn hex(text: &str) -> Vec<u8> {
    RawId::from_hex(text).unwrap().bytes().to_vec()
}

/// A PN532 codec that has woken the chip and configured it, and is searching for cards.
fn pn532_searching() -> Box<dyn Codec> {
    let mut codec = (codec::protocol("pn532").unwrap().new_codec)();
    let at = tokio::time::Instant::now();
    codec.opened();
    let mut frames = Vec::new();
    let wake = codec.to_send(at).unwrap();
    // The wake-up the reference quotes: 55 55, zeros, then SAMConfiguration (normal mode).
    assert!(wake.starts_with(&[0x55, 0x55, 0x00]), "{wake:02X?}");
    assert!(wake.ends_with(&hex("0000FF03FDD4140117 00".replace(' ', "").as_str())));
    codec.feed(&hex("0000FF00FF000000FF02FED5151600"), &mut frames);
    assert!(codec.to_send(at).is_some(), "RFConfiguration");
    let configured = [
        hex("0000FF00FF00"),
        pn532::information_frame(pn532::CHIP_TO_HOST, &[0x33]),
    ]
    .concat();
    codec.feed(&configured, &mut frames);
    // The search the reference quotes.
    assert_eq!(codec.to_send(at), Some(hex("0000FF04FCD44A0100E100")));
    assert_eq!(frames, []);
    assert_eq!(codec.discarded().rejected_frames, 0);
    codec
}

#[test]
fn pn532_vectors() {
    let protocol = codec::protocol("pn532").unwrap();
    let vectors = of_protocol("pn532_hsu");
    for vector in &vectors {
        let name = vector["id"].as_str().unwrap();
        let mut codec = pn532_searching();
        let mut frames = Vec::new();
        codec.feed(&raw_bytes(vector), &mut frames);
        let rejected = codec.discarded().rejected_frames;
        let driver = Driver::Serial {
            path: "/dev/null".into(),
            baud: protocol.default_baud,
            protocol,
        };
        let found = taps(
            reader_config(
                vector,
                driver,
                protocol.default_tag_format.map(TagFormat::as_str),
            ),
            frames,
        );
        let expected = expected_ids(vector);
        assert_eq!(uids_and_formats(&found), expected, "{name}");
        match vector["expected"]["rejected_frames"].as_u64() {
            Some(n) => assert_eq!(rejected, n, "{name}"),
            // A malformed answer is counted; "no target" is an answer like any other.
            None if name == "pn532-05" => assert_eq!(rejected, 0, "{name}"),
            None => assert!(rejected > 0, "{name}: nothing counted"),
        }
        for (i, (uid, _, _)) in found.iter().enumerate() {
            check_id(vector, i, &RawId::from_hex(uid).unwrap());
        }
    }
    assert_eq!(vectors.len(), 4, "all pn532_hsu vectors");
}

#[test]
fn pcsc_vectors() {
    let vectors = of_protocol("pcsc_get_data");
    for vector in &vectors {
        let name = vector["id"].as_str().unwrap();
        let answer = raw_bytes(vector);
        let mut codec = new_codec(&Driver::Pcsc { reader: None });
        let mut frames = Vec::new();
        codec.feed(&pcsc::record(pcsc::PRESENTED, &answer), &mut frames);
        let expected = expected_ids(vector);
        let flagged_random = expected.iter().any(|_| {
            vector["expected"]["ids"][0]["warnings"]
                .as_array()
                .is_some_and(|w| w.iter().any(|w| w == "random_uid_uid0_0x08"))
        });
        match pcsc::uid_from_answer(&answer) {
            Ok(uid) => {
                assert_eq!(frames, [Frame::id(&uid)], "{name}");
                assert_eq!(
                    tag::is_random_uid(&uid),
                    flagged_random || name == "pcsc-07"
                );
            }
            Err(warning) => {
                assert!(expected.is_empty(), "{name}: {warning}");
                assert_eq!(frames, [Frame::Warning(warning)], "{name}");
            }
        }
        let config = reader_config(vector, Driver::Pcsc { reader: None }, Some("MIFARE"));
        let found = taps(config, frames);
        if flagged_random {
            // Read, and flagged: a random id is never sent, whatever the vector's policy says.
            assert_eq!(found, [], "{name}");
            continue;
        }
        assert_eq!(uids_and_formats(&found), expected, "{name}");
        for (i, (uid, _, _)) in found.iter().enumerate() {
            check_id(vector, i, &RawId::from_hex(uid).unwrap());
        }
    }
    assert_eq!(vectors.len(), 6, "all pcsc_get_data vectors");
}

#[test]
fn twn4_vectors() {
    let protocol = codec::protocol("twn4").unwrap();
    let vectors = of_protocol("elatec_twn4_simple");
    for vector in &vectors {
        let name = vector["id"].as_str().unwrap();
        let mut codec = (protocol.new_codec)();
        let at = tokio::time::Instant::now();
        codec.opened();
        assert_eq!(codec.to_send(at).as_deref(), Some(&b"0500FF\r"[..]));
        let mut frames = Vec::new();
        codec.feed(&raw_bytes(vector), &mut frames);
        assert_eq!(codec.discarded().rejected_frames, 0, "{name}");
        let driver = Driver::Serial {
            path: "/dev/null".into(),
            baud: protocol.default_baud,
            protocol,
        };
        // The tag type decides the tagFormat, over a reader-wide setting.
        let found = taps(reader_config(vector, driver, Some("MIFARE")), frames);
        assert_eq!(uids_and_formats(&found), expected_ids(vector), "{name}");
        for (i, (_, _, rfid)) in found.iter().enumerate() {
            assert_eq!(
                rfid,
                vector["expected"]["ids"][i]["egym_rfid"].as_str().unwrap(),
                "{name}"
            );
        }
    }
    assert_eq!(vectors.len(), 4, "all elatec_twn4_simple vectors");
}

/// What a Wiegand-to-USB converter does with a frame: checks its parity (leading even over
/// the first half, trailing odd over the second, as ESPHome does) and gives the data bits.
fn wiegand_data(bits: &str) -> Option<u64> {
    let bits: Vec<u8> = bits.bytes().map(|b| b - b'0').collect();
    let n = bits.len();
    let half = n / 2;
    let ones =
        |range: std::ops::Range<usize>| bits[range].iter().map(|b| u32::from(*b)).sum::<u32>();
    let even_ok = ones(0..half).is_multiple_of(2);
    let odd_ok = ones(half..n) % 2 == 1;
    (even_ok && odd_ok).then(|| {
        bits[1..n - 1]
            .iter()
            .fold(0u64, |acc, b| (acc << 1) | u64::from(*b))
    })
}

/// The `wg-*` vectors, as a Wiegand-to-USB converter types them into a keyboard-wedge or line
/// reader: Wiegand 26 as facility and card (`id-format = "facility-card"`) or the 24 bits in 8
/// decimal digits (`decimal`); Wiegand 34 as 10 decimal digits (`decimal`) or two 16-bit
/// halves in 5 + 5 digits (`decimal-5-5`).
#[test]
fn wiegand_vectors_through_a_converter() {
    let vectors = of_protocol("wiegand");
    let mut typed_forms = 0;
    for vector in &vectors {
        let name = vector["id"].as_str().unwrap();
        let data = wiegand_data(vector["raw_bits"].as_str().unwrap());
        let Some(data) = data else {
            // A converter drops a frame whose parity fails: nothing is typed.
            assert!(vector["expected"].is_null(), "{name}: parity failed");
            continue;
        };
        let expected = &vector["expected"]["ids"][0];
        let bit_count = expected["bit_count"].as_u64().unwrap();
        // What the converter types, as the vector lists it, and the id-format that reads it.
        let forms: Vec<(String, IdFormat)> = if bit_count == 26 {
            vec![
                (
                    format!("{:03}{:05}", data >> 16, data & 0xFFFF),
                    IdFormat::FacilityCard,
                ),
                (
                    format!("{:03},{:05}", data >> 16, data & 0xFFFF),
                    IdFormat::FacilityCard,
                ),
                (format!("{data:08}"), IdFormat::Decimal),
            ]
        } else {
            vec![
                (format!("{data:010}"), IdFormat::Decimal),
                (
                    format!("{:05}{:05}", data >> 16, data & 0xFFFF),
                    IdFormat::Decimal55,
                ),
            ]
        };
        let renderings: Vec<&str> = expected["renderings"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_str().unwrap())
            .collect();
        for (text, format) in forms {
            assert!(
                renderings.contains(&text.as_str()),
                "{name}: {text} not among {renderings:?}"
            );
            let mut codec = (codec::protocol("line").unwrap().new_codec)();
            let mut frames = Vec::new();
            codec.feed(format!("{text}\r\n").as_bytes(), &mut frames);
            let raws: Vec<String> = frames
                .into_iter()
                .map(|f| match f {
                    Frame::Text(t) => tag::parse_text_id(&t, format).unwrap().hex(),
                    other => panic!("{name}: {other:?}"),
                })
                .collect();
            assert_eq!(
                raws,
                [expected["uid_hex"].as_str().unwrap()],
                "{name}: {text} as {format:?}"
            );
            typed_forms += 1;
        }
    }
    assert_eq!(vectors.len(), 7, "all wiegand vectors");
    assert_eq!(
        typed_forms,
        3 + 3 + 2 + 2,
        "every typed form of the four good frames"
    );
}
