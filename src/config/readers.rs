//! `[[readers]]`: each reader's name, its driver with that driver's own settings, and how its
//! ids are read.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use toml::Value;

use super::walk::{Problems, Section, named, type_name};
use crate::reader::codec::{self, PROTOCOLS};
use crate::reader::{Driver, NO_PCSC, ReaderConfig};
use crate::tag::{ByteOrder, IdBytes, IdFormat, Normalisation, TagFormat};
use crate::visit::Direction;

/// The readers that could be read, each with its place in the file, and whether every one could.
pub(super) fn parse_readers(
    value: Option<&Value>,
    problems: &mut Problems,
) -> (Vec<(usize, ReaderConfig)>, bool) {
    let items = match value {
        None => {
            problems.add(
                "readers",
                "missing: configure at least one [[readers]] entry",
            );
            return (Vec::new(), false);
        }
        Some(Value::Array(items)) if items.is_empty() => {
            problems.add("readers", "empty: configure at least one [[readers]] entry");
            return (Vec::new(), false);
        }
        Some(Value::Array(items)) => items,
        Some(other) => {
            problems.add(
                "readers",
                format!(
                    "expected an array of tables ([[readers]]), found {}",
                    type_name(other)
                ),
            );
            return (Vec::new(), false);
        }
    };
    let mut readers = Vec::new();
    let mut names = HashSet::new();
    let mut complete = true;
    for (i, item) in items.iter().enumerate() {
        match parse_reader(i, item, problems) {
            Some(reader) => {
                if !names.insert(reader.name.clone()) {
                    problems.add(
                        &format!("readers[{i}].name"),
                        format!("{:?} is used by another reader", reader.name),
                    );
                }
                readers.push((i, reader));
            }
            None => complete = false,
        }
    }
    let stdin_readers = readers
        .iter()
        .filter(|(_, r)| matches!(r.driver, Driver::Stdin))
        .count();
    if stdin_readers > 1 {
        problems.add("readers", "at most one reader can use driver = \"stdin\"");
    }
    (readers, complete)
}

fn parse_reader(i: usize, value: &Value, problems: &mut Problems) -> Option<ReaderConfig> {
    const KEYS: &[&str] = &[
        "name",
        "driver",
        "path",
        "baud",
        "protocol",
        "direction",
        "debounce",
        "id-format",
        "id-bytes",
        "byte-order",
        "egym-tag-format",
        "reader",
    ];
    let s = Section::new(format!("readers[{i}]"), Some(value), KEYS, problems)?;
    let name = s.required_string("name", problems).map(str::to_string);
    if let Some(name) = &name {
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !valid {
            problems.add(
                &s.key("name"),
                format!("{name:?}: use 1 to 64 letters, digits, '-', '_' or '.'"),
            );
        }
    }
    let kind = s.choice(
        "driver",
        &[
            ("serial", Kind::Serial),
            ("stdin", Kind::Stdin),
            ("keyboard", Kind::Keyboard),
            ("pcsc", Kind::Pcsc),
        ],
        problems,
    );
    if !s.table.contains_key("driver") {
        problems.add(
            &s.key("driver"),
            "missing, expected one of: serial, keyboard, pcsc, stdin",
        );
    }
    if kind != Some(Kind::Pcsc) && s.table.contains_key("reader") {
        problems.add(&s.key("reader"), "applies only to driver = \"pcsc\"");
    }
    // A reader whose driver is wrong still has its other keys checked.
    let driver = match kind {
        Some(Kind::Serial) => parse_serial(&s, problems),
        Some(Kind::Pcsc) => parse_pcsc(&s, problems),
        Some(Kind::Stdin) => {
            not_serial(&s, SERIAL_ONLY, "", problems);
            Some(Driver::Stdin)
        }
        Some(Kind::Keyboard) => parse_keyboard(&s, problems),
        None => None,
    };
    let direction = s
        .choice(
            "direction",
            &[
                ("in", Direction::In),
                ("out", Direction::Out),
                ("toggle", Direction::Toggle),
            ],
            problems,
        )
        .unwrap_or(Direction::Toggle);
    let debounce = s.duration("debounce", Duration::from_millis(1500), problems);
    let id_format = s
        .choice(
            "id-format",
            &named(&IdFormat::ALL, |f| f.as_str()),
            problems,
        )
        .unwrap_or(IdFormat::Hex);
    let bytes_reader = match &driver {
        Some(Driver::Serial { protocol, .. }) if !protocol.text => Some(protocol.name),
        Some(Driver::Pcsc { .. }) => Some("pcsc"),
        _ => None,
    };
    if let Some(name) = bytes_reader
        && id_format != IdFormat::Hex
    {
        problems.add(
            &s.key("id-format"),
            format!(
                "applies only to text readers (protocol = \"line\", driver = \"keyboard\" or \
                 \"stdin\"); a {name} reader always reads the id's bytes"
            ),
        );
    }
    let id_bytes = s
        .choice("id-bytes", &named(&IdBytes::ALL, |b| b.as_str()), problems)
        .unwrap_or(IdBytes::All);
    let byte_order = s
        .choice(
            "byte-order",
            &named(&ByteOrder::ALL, |o| o.as_str()),
            problems,
        )
        .unwrap_or(ByteOrder::AsRead);
    let egym_tag_format = s
        .choice(
            "egym-tag-format",
            &named(&TagFormat::ALL, |f| f.as_str()),
            problems,
        )
        .or(
            // What the reader reads when the configuration does not say.
            match &driver {
                Some(Driver::Serial { protocol, .. }) => protocol.default_tag_format,
                Some(Driver::Pcsc { .. }) => Some(TagFormat::Mifare),
                _ => None,
            },
        );
    Some(ReaderConfig {
        name: name?,
        driver: driver?,
        direction,
        debounce,
        id_format,
        normalisation: Normalisation {
            id_bytes,
            byte_order,
        },
        egym_tag_format,
    })
}

/// The kinds of `driver`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Serial,
    Keyboard,
    Pcsc,
    Stdin,
}

/// Keys a reader of another driver must not have.
const SERIAL_ONLY: &[&str] = &["path", "baud", "protocol"];

/// Says, of each of `keys` given, that it applies only to serial readers; `hint` follows.
fn not_serial(s: &Section<'_>, keys: &[&str], hint: &str, problems: &mut Problems) {
    for key in keys {
        if s.table.contains_key(*key) {
            problems.add(
                &s.key(key),
                format!("applies only to driver = \"serial\"{hint}"),
            );
        }
    }
}

fn parse_pcsc(s: &Section<'_>, problems: &mut Problems) -> Option<Driver> {
    not_serial(
        s,
        SERIAL_ONLY,
        " (a PC/SC reader is chosen by `reader`, part of its name)",
        problems,
    );
    if !cfg!(feature = "pcsc") {
        problems.add(&s.key("driver"), NO_PCSC);
    }
    let reader = s.string("reader", problems).map(str::to_string);
    if reader.as_deref() == Some("") {
        problems.add(
            &s.key("reader"),
            "empty: give part of the reader's name (e.g. \"ACR122U\"), or leave it out to use \
             the first reader",
        );
    }
    Some(Driver::Pcsc { reader })
}

fn parse_keyboard(s: &Section<'_>, problems: &mut Problems) -> Option<Driver> {
    not_serial(s, &["baud", "protocol"], "", problems);
    let path = s.required_string("path", problems).map(PathBuf::from)?;
    if path.is_relative() {
        problems.add(
            &s.key("path"),
            "must be an absolute path (e.g. /dev/input/by-id/...-event-kbd)",
        );
    }
    Some(Driver::Keyboard { path })
}

fn parse_serial(s: &Section<'_>, problems: &mut Problems) -> Option<Driver> {
    let path = s.required_string("path", problems).map(PathBuf::from);
    if let Some(path) = &path
        && path.is_relative()
    {
        problems.add(
            &s.key("path"),
            "must be an absolute path (e.g. /dev/serial/by-id/...)",
        );
    }
    let baud = s.integer("baud", 50..=4_000_000, problems);
    let names: Vec<&str> = PROTOCOLS.iter().map(|p| p.name).collect();
    let protocol = match s.string("protocol", problems) {
        None if !s.table.contains_key("protocol") => {
            problems.add(
                &s.key("protocol"),
                format!("missing, expected one of: {}", names.join(", ")),
            );
            None
        }
        None => None,
        Some(name) => {
            let found = codec::protocol(name);
            if found.is_none() {
                problems.add(
                    &s.key("protocol"),
                    format!(
                        "unknown value {name:?}, expected one of: {}",
                        names.join(", ")
                    ),
                );
            }
            found
        }
    };
    let protocol = protocol?;
    Some(Driver::Serial {
        path: path?,
        baud: baud.map_or(protocol.default_baud, |b| b as u32),
        protocol,
    })
}
