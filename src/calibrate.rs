//! `gym-checkin calibrate --reader NAME --member EMAIL_OR_MEMBERSHIP_ID`: reads one card of a
//! known member and finds the reader settings under which it matches what EGYM has enrolled for
//! that member.
//!
//! The commonest setup failure is a reader that writes cards differently from how they were
//! enrolled: decimal against hex, reversed bytes, 4 of 7 bytes, the wrong `tagFormat`. This
//! finds the member (one request), reads the member's enrolled cards (one request), reads one
//! presentation on the reader, and tries every rendering the reader's settings can produce
//! ([`candidates`], pure) against them. It records nothing and posts nothing.

use std::time::Duration;

use crate::clock::Clock;
use crate::config::Config;
use crate::console::say;
use crate::egym::ApiKey;
use crate::egym::{self, EnrolledRfid};
use crate::reader::ReaderConfig;
use crate::reader::{self, ReaderMessage};
use crate::tag::{self, ByteOrder, IdBytes, IdFormat, Normalisation, RawId};

/// How long staff have to present the card.
const PRESENT_WITHIN: Duration = Duration::from_secs(60);

/// What the reader sent: text (line and keyboard readers), or bytes (an em4100 frame).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Read {
    Text(String),
    Bytes(RawId),
}

/// Reader settings that turn a read into an rfid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rendering {
    /// `None` for a reader that sends bytes: `id-format` does not apply.
    pub id_format: Option<IdFormat>,
    pub id_bytes: IdBytes,
    pub byte_order: ByteOrder,
}

/// Every rfid the reader's settings can make of `read`, with the settings that make it. A text
/// that is not an id in some `id-format` gives nothing for it.
pub fn candidates(read: &Read) -> Vec<(Rendering, String)> {
    let raws: Vec<(Option<IdFormat>, RawId)> = match read {
        Read::Bytes(raw) => vec![(None, raw.clone())],
        Read::Text(text) => IdFormat::ALL
            .into_iter()
            .filter_map(|format| {
                tag::parse_text_id(text, format)
                    .ok()
                    .map(|raw| (Some(format), raw))
            })
            .collect(),
    };
    let mut out = Vec::new();
    for (id_format, raw) in &raws {
        for id_bytes in IdBytes::ALL {
            for byte_order in ByteOrder::ALL {
                let rfid = tag::normalise(
                    raw,
                    Normalisation {
                        id_bytes,
                        byte_order,
                    },
                );
                out.push((
                    Rendering {
                        id_format: *id_format,
                        id_bytes,
                        byte_order,
                    },
                    rfid,
                ));
            }
        }
    }
    out
}

/// A match: the settings, and the enrolled card they match.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Match {
    pub rendering: Rendering,
    pub enrolled: EnrolledRfid,
}

/// The settings under which `read` matches one of the `enrolled` cards. Of several, the one
/// closest to the reader's `current` settings (the fewest lines to change).
pub fn find_match(read: &Read, enrolled: &[EnrolledRfid], current: &ReaderConfig) -> Option<Match> {
    let changes = |r: &Rendering| {
        usize::from(r.id_format.is_some_and(|f| f != current.id_format))
            + usize::from(r.id_bytes != current.normalisation.id_bytes)
            + usize::from(r.byte_order != current.normalisation.byte_order)
    };
    candidates(read)
        .into_iter()
        .filter_map(|(rendering, rfid)| {
            let card = enrolled
                .iter()
                .find(|e| e.rfid.eq_ignore_ascii_case(&rfid))?;
            Some(Match {
                rendering,
                enrolled: card.clone(),
            })
        })
        .min_by_key(|m| changes(&m.rendering))
}

/// The lines to put under the reader: every setting `calibrate` judges, the right ones included.
pub fn settings_lines(found: &Match) -> Vec<String> {
    let r = &found.rendering;
    let mut lines = Vec::new();
    if let Some(format) = r.id_format {
        lines.push(format!("id-format = \"{}\"", format.as_str()));
    }
    lines.push(format!("id-bytes = \"{}\"", r.id_bytes.as_str()));
    lines.push(format!("byte-order = \"{}\"", r.byte_order.as_str()));
    match &found.enrolled.tag_format {
        Some(format) => lines.push(format!("egym-tag-format = \"{format}\"")),
        None => lines.push(
            "# egym-tag-format: leave it out (the card was enrolled without a tagFormat)".into(),
        ),
    }
    lines
}

/// The likeliest reason nothing matched, in a sentence for staff.
pub fn likeliest_cause(read: &Read, enrolled: &[EnrolledRfid]) -> String {
    if enrolled.is_empty() {
        return "EGYM has no card enrolled for this member: enrol the card, then tap it again"
            .into();
    }
    let renderings = candidates(read);
    if renderings.is_empty() {
        return "the reader sent text that is no id in any id-format: check the reader's \
                protocol and baud, or that it is a card reader at all"
            .into();
    }
    let digits = |rfid: &str| rfid.trim_start_matches("0x").to_ascii_uppercase();
    // Three bytes or more of one inside the other: the reader, or the enrolment, kept only part
    // of the number.
    let part_matches = enrolled.iter().any(|card| {
        let card = digits(&card.rfid);
        renderings.iter().any(|(_, rfid)| {
            let read = digits(rfid);
            read.len().min(card.len()) >= 6 && (card.contains(&read) || read.contains(&card))
        })
    });
    if part_matches {
        return "part of the number agrees, not all of it: the card was enrolled through a \
                reader that sends a different part of it, or this reader cuts it short (a MIFARE \
                reader sending 4 bytes of a 7-byte UID does); use a reader that sends the whole \
                UID, or enrol the card again through this one"
            .into();
    }
    let read_bytes = renderings
        .iter()
        .map(|(_, rfid)| digits(rfid).len() / 2)
        .max()
        .unwrap_or(0);
    let enrolled_bytes = enrolled
        .iter()
        .map(|card| digits(&card.rfid).len() / 2)
        .max()
        .unwrap_or(0);
    if read_bytes < enrolled_bytes {
        return format!(
            "the card read has at most {read_bytes} bytes, the enrolled ones {enrolled_bytes}: \
             the reader sends fewer bytes of the card than were enrolled, or this is another card"
        );
    }
    "none of the renderings is enrolled: this is probably not the card enrolled for this member \
     (or it was enrolled as another card's number)"
        .into()
}

/// What `calibrate` found.
#[derive(Debug)]
pub enum Found {
    Matched(Match),
    Nothing {
        read: Read,
        enrolled: Vec<EnrolledRfid>,
    },
}

/// Finds the member, reads the enrolled cards, reads one card on `reader`, and compares.
pub async fn run(
    config: &Config,
    key: &ApiKey,
    reader: &ReaderConfig,
    member: &str,
    clock: Clock,
) -> Result<Found, String> {
    let client = egym::Client::new(
        &config.egym.base_url,
        config.egym.request_timeout,
        config.egym.rate_limit_per_second,
        config.egym.rate_limit_burst,
    )?;
    let account = if member.contains('@') {
        client.account_by_email(key, member).await
    } else {
        client.account_by_membership(key, member).await
    }
    .map_err(|failure| match failure.status() {
        _ if egym::refuses_key(egym::Call::Lookup, &failure) => key_refused(config, &failure),
        Some(404) => format!("EGYM knows no member {member:?} ({failure})"),
        _ => format!("cannot find the member at EGYM: {failure}"),
    })?;
    let enrolled = client
        .enrolled_rfids(key, &account.account_id)
        .await
        .map_err(|failure| {
            if egym::refuses_key(egym::Call::Lookup, &failure) {
                key_refused(config, &failure)
            } else {
                format!("cannot read the member's enrolled cards: {failure}")
            }
        })?;
    say(&format!(
        "Found the member at EGYM, with {} enrolled. Present the member's card on reader {} \
         now (within {} s).",
        if enrolled.len() == 1 {
            "1 card".to_string()
        } else {
            format!("{} cards", enrolled.len())
        },
        reader.name,
        PRESENT_WITHIN.as_secs()
    ));
    let read = read_one(reader, clock).await?;
    Ok(match find_match(&read, &enrolled, reader) {
        Some(found) => Found::Matched(found),
        None => Found::Nothing { read, enrolled },
    })
}

/// What `calibrate` says when EGYM refuses the key: the key, not the member, is the problem.
fn key_refused(config: &Config, failure: &egym::Failure) -> String {
    format!(
        "EGYM refused the API key ({failure}); nothing was looked up. The key is read from {}: \
         check it, and that EGYM gave it the permissions to look up members and their cards",
        config.egym.api_key.describe()
    )
}

/// Reads one presentation on `config`'s reader.
async fn read_one(config: &ReaderConfig, clock: Clock) -> Result<Read, String> {
    let wanted = |message: &ReaderMessage| match message {
        ReaderMessage::Tap(tap) => !tap.repeat,
        ReaderMessage::Unreadable { .. } => true,
        _ => false,
    };
    match reader::read_one(config, clock, PRESENT_WITHIN, wanted).await {
        Ok(ReaderMessage::Tap(tap)) => Ok(match tap.text {
            Some(text) => Read::Text(text),
            None => Read::Bytes(tap.raw),
        }),
        Ok(ReaderMessage::Unreadable { text, .. }) => Ok(Read::Text(text)),
        Ok(other) => Err(format!("reader {} sent {other:?}", config.name)),
        Err(e @ reader::ReadOneError::CannotOpen { .. }) => Err(format!(
            "reader {}: {e}. If the service is running, it has the reader: stop it first (sudo \
             systemctl stop gym-checkin) and start it again afterwards",
            config.name
        )),
        Err(e) => Err(format!("reader {}: {e}", config.name)),
    }
}

/// What `calibrate` prints for what it found.
pub fn report(found: &Found, reader: &str) -> String {
    match found {
        Found::Matched(found) => {
            let mut text = format!(
                "The card matches the member's enrolled card {}. Under [[readers]] name = \"{reader}\", set:\n",
                tag::short(&found.enrolled.rfid)
            );
            for line in settings_lines(found) {
                text.push_str(&format!("{line}\n"));
            }
            text
        }
        Found::Nothing { read, enrolled } => {
            let mut text = "No rendering of the card matches a card enrolled for this member.\n\
                            Read on the reader:\n"
                .to_string();
            match read {
                Read::Text(t) => text.push_str(&format!("  sent {} characters of text\n", t.len())),
                Read::Bytes(raw) => {
                    text.push_str(&format!("  sent {} bytes\n", raw.bytes().len()));
                }
            }
            let mut seen = Vec::new();
            for (r, rfid) in candidates(read) {
                if seen.contains(&rfid) {
                    continue;
                }
                seen.push(rfid.clone());
                let format = r
                    .id_format
                    .map(|f| format!("id-format {}, ", f.as_str()))
                    .unwrap_or_default();
                text.push_str(&format!(
                    "  {:<10} {} bytes  {format}id-bytes {}, byte-order {}\n",
                    tag::short(&rfid),
                    rfid.len().saturating_sub(2) / 2,
                    r.id_bytes.as_str(),
                    r.byte_order.as_str()
                ));
            }
            text.push_str("Enrolled at EGYM:\n");
            if enrolled.is_empty() {
                text.push_str("  (none)\n");
            }
            for card in enrolled {
                text.push_str(&format!(
                    "  {:<10} {} bytes  tagFormat {}\n",
                    tag::short(&card.rfid),
                    card.rfid.len().saturating_sub(2) / 2,
                    card.tag_format.as_deref().unwrap_or("(none)")
                ));
            }
            text.push_str(&format!(
                "Likeliest cause: {}.\n",
                likeliest_cause(read, enrolled)
            ));
            text
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(id_format: IdFormat) -> ReaderConfig {
        let text = format!(
            "[[readers]]\nname = \"desk\"\ndriver = \"stdin\"\nid-format = \"{}\"\n",
            id_format.as_str()
        );
        Config::parse(&text).unwrap().readers.remove(0)
    }

    fn enrolled(rfid: &str, tag_format: Option<&str>) -> EnrolledRfid {
        EnrolledRfid {
            rfid: rfid.into(),
            tag_format: tag_format.map(str::to_string),
        }
    }

    /// (what the reader sent, what was enrolled) → the lines printed, or `None` for no match.
    fn check(read: Read, cards: &[EnrolledRfid], current: IdFormat, expected: Option<&[&str]>) {
        let found = find_match(&read, cards, &reader(current));
        let lines = found.as_ref().map(settings_lines);
        let expected = expected.map(|e| e.iter().map(|l| l.to_string()).collect::<Vec<_>>());
        assert_eq!(lines, expected, "{read:?} against {cards:?}");
    }

    #[test]
    fn a_reader_is_matched_to_how_its_cards_were_enrolled() {
        use IdFormat::*;
        // 1E A6 86 71 printed as the decimal of its bytes reversed (a MIFARE wedge).
        let decimal = Read::Text("1904649758".into());
        check(
            decimal.clone(),
            &[enrolled("0x1EA68671", Some("MIFARE"))],
            Hex,
            Some(&[
                "id-format = \"decimal\"",
                "id-bytes = \"all\"",
                "byte-order = \"reversed\"",
                "egym-tag-format = \"MIFARE\"",
            ]),
        );
        // Enrolled as read: no reversal.
        check(
            decimal,
            &[enrolled("0x7186A61E", None)],
            Decimal,
            Some(&[
                "id-format = \"decimal\"",
                "id-bytes = \"all\"",
                "byte-order = \"as-read\"",
                "# egym-tag-format: leave it out (the card was enrolled without a tagFormat)",
            ]),
        );
        // An em4100 reader's 5 bytes, enrolled as the 4 card bytes: no id-format line.
        let em = Read::Bytes(RawId::new(vec![0x0C, 0x00, 0x06, 0x21, 0xA5]));
        check(
            em.clone(),
            &[enrolled("0x000621A5", Some("HITAG1"))],
            Hex,
            Some(&[
                "id-bytes = \"low32\"",
                "byte-order = \"as-read\"",
                "egym-tag-format = \"HITAG1\"",
            ]),
        );
        check(em, &[enrolled("0x0A0B0C0D0E", None)], Hex, None);
    }

    #[test]
    fn with_no_match_the_likeliest_cause_is_named() {
        let read = Read::Text("04C43BC2".into());
        assert!(likeliest_cause(&read, &[]).contains("no card enrolled"));
        // 88 and the first three bytes of a 7-byte UID, the rest dropped by the reader.
        let cascade = Read::Text("8804C43B".into());
        let cut = likeliest_cause(&cascade, &[enrolled("0x04C43BC21C2680", None)]);
        assert!(cut.contains("part of the number agrees"), "{cut}");
        let shorter = likeliest_cause(&read, &[enrolled("0x0A0B0C0D0E0F1011", None)]);
        assert!(shorter.contains("fewer bytes"), "{shorter}");
        let other = likeliest_cause(&read, &[enrolled("0x0A0B0C0D", None)]);
        assert!(other.contains("not the card enrolled"), "{other}");
    }
}
