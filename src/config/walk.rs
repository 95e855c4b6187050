//! The TOML walker: each section knows its key path and its allowed keys, and every problem is
//! collected, with its path, instead of stopping at the first.

use std::fmt;
use std::time::Duration;

use toml::Value;

#[derive(Default)]
pub(super) struct Problems(pub(super) Vec<String>);

impl Problems {
    pub(super) fn add(&mut self, path: &str, message: impl fmt::Display) {
        self.0.push(format!("{path}: {message}"));
    }
}

/// One TOML table being read: knows its path and its allowed keys.
pub(super) struct Section<'t> {
    path: String,
    pub(super) table: &'t toml::Table,
}

impl<'t> Section<'t> {
    /// `value` at `path` as a table whose keys must all be in `known`.
    pub(super) fn new(
        path: String,
        value: Option<&'t Value>,
        known: &[&str],
        problems: &mut Problems,
    ) -> Option<Section<'t>> {
        static EMPTY: std::sync::OnceLock<toml::Table> = std::sync::OnceLock::new();
        let table = match value {
            None => EMPTY.get_or_init(toml::Table::new),
            Some(Value::Table(table)) => table,
            Some(other) => {
                problems.add(
                    &path,
                    format!("expected a table, found {}", type_name(other)),
                );
                return None;
            }
        };
        for key in table.keys() {
            if !known.contains(&key.as_str()) {
                let key_path = join(&path, key);
                problems.add(
                    &key_path,
                    format!("unknown key, expected one of: {}", known.join(", ")),
                );
            }
        }
        Some(Section { path, table })
    }

    pub(super) fn key(&self, key: &str) -> String {
        join(&self.path, key)
    }

    pub(super) fn string(&self, key: &str, problems: &mut Problems) -> Option<&'t str> {
        match self.table.get(key)? {
            Value::String(s) => Some(s),
            other => {
                problems.add(
                    &self.key(key),
                    format!("expected a string, found {}", type_name(other)),
                );
                None
            }
        }
    }

    pub(super) fn boolean(&self, key: &str, default: bool, problems: &mut Problems) -> bool {
        match self.table.get(key) {
            None => default,
            Some(Value::Boolean(b)) => *b,
            Some(other) => {
                problems.add(
                    &self.key(key),
                    format!("expected true or false, found {}", type_name(other)),
                );
                default
            }
        }
    }

    pub(super) fn required_string(&self, key: &str, problems: &mut Problems) -> Option<&'t str> {
        if !self.table.contains_key(key) {
            problems.add(&self.key(key), "missing");
            return None;
        }
        self.string(key, problems)
    }

    pub(super) fn duration(
        &self,
        key: &str,
        default: Duration,
        problems: &mut Problems,
    ) -> Duration {
        self.optional_duration(key, problems).unwrap_or(default)
    }

    pub(super) fn optional_duration(&self, key: &str, problems: &mut Problems) -> Option<Duration> {
        let text = self.string(key, problems)?;
        match parse_duration(text) {
            Some(d) => Some(d),
            None => {
                problems.add(
                    &self.key(key),
                    format!(
                        "invalid duration {text:?}, expected a whole number followed by one of \
                         ms, s, m, h, d (e.g. \"90s\", \"2m\", \"4h\")"
                    ),
                );
                None
            }
        }
    }

    pub(super) fn choice<T: Copy>(
        &self,
        key: &str,
        choices: &[(&str, T)],
        problems: &mut Problems,
    ) -> Option<T> {
        let text = self.string(key, problems)?;
        match choices.iter().find(|(name, _)| *name == text) {
            Some((_, value)) => Some(*value),
            None => {
                let names: Vec<&str> = choices.iter().map(|(name, _)| *name).collect();
                problems.add(
                    &self.key(key),
                    format!(
                        "unknown value {text:?}, expected one of: {}",
                        names.join(", ")
                    ),
                );
                None
            }
        }
    }

    pub(super) fn integer(
        &self,
        key: &str,
        range: std::ops::RangeInclusive<i64>,
        problems: &mut Problems,
    ) -> Option<i64> {
        match self.table.get(key)? {
            Value::Integer(n) if range.contains(n) => Some(*n),
            Value::Integer(n) => {
                problems.add(
                    &self.key(key),
                    format!(
                        "{n} is out of range, expected {} to {}",
                        range.start(),
                        range.end()
                    ),
                );
                None
            }
            other => {
                problems.add(
                    &self.key(key),
                    format!("expected an integer, found {}", type_name(other)),
                );
                None
            }
        }
    }

    pub(super) fn positive_number(&self, key: &str, problems: &mut Problems) -> Option<f64> {
        let value = match self.table.get(key)? {
            Value::Integer(n) => *n as f64,
            Value::Float(x) => *x,
            other => {
                problems.add(
                    &self.key(key),
                    format!("expected a number, found {}", type_name(other)),
                );
                return None;
            }
        };
        if !(value > 0.0 && value <= 10_000.0) {
            problems.add(
                &self.key(key),
                format!("{value} is out of range, expected more than 0, at most 10000"),
            );
            return None;
        }
        Some(value)
    }
}

/// Choices for [`Section::choice`] from an enum's values and their names.
pub(super) fn named<T: Copy>(
    values: &[T],
    name: impl Fn(T) -> &'static str,
) -> Vec<(&'static str, T)> {
    values.iter().map(|v| (name(*v), *v)).collect()
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

pub(super) fn type_name(value: &Value) -> &'static str {
    match value {
        Value::String(_) => "a string",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a float",
        Value::Boolean(_) => "a boolean",
        Value::Datetime(_) => "a date-time",
        Value::Array(_) => "an array",
        Value::Table(_) => "a table",
    }
}

/// Parses `"1500ms"`, `"90s"`, `"2m"`, `"4h"`, `"30d"`.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(split);
    if number.is_empty() {
        return None;
    }
    let number: u64 = number.parse().ok()?;
    let unit_ms: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    number.checked_mul(unit_ms).map(Duration::from_millis)
}
