//! From frames to presentations: the id read, debounced, and said as an EGYM rfid.

use std::collections::HashSet;
use std::sync::Arc;

use tracing::{debug, warn};

use super::frame::{Frame, TagKind};
use super::message::{CUT_SHORT, RANDOM_UID, ReaderMessage, Tap};
use super::source::{Driver, ReaderConfig};
use crate::clock::Now;
use crate::tag::{self, RawId, TagFormat};
use crate::visit::Debouncer;

/// Turns a reader's frames into presentations: reads the id (`id-format`), debounces it, and
/// says which EGYM rfid and `tagFormat` it is. Pure but for its log lines: the reader task and
/// a capture's replay share it.
#[derive(Debug)]
pub struct Presenter {
    name: Arc<str>,
    config: ReaderConfig,
    debouncer: Debouncer,
    /// The reader says when a card is taken away: a card is one presentation while it stays.
    reports_removal: bool,
    /// The card on such a reader now, as last read.
    present: Option<RawId>,
    /// Its ids are ISO 14443A UIDs (unless it says the card is of another kind).
    reads_uids: bool,
    /// For `listen`: every read goes out (repeats marked), and unreadable ones too.
    pub(super) listening: bool,
    /// Ids already said to be cut-short MIFARE UIDs (said once each, not at every tap).
    said_cut_short: HashSet<String>,
}

/// Cut-short ids remembered as said, at most; then the list starts again.
const SAID_CUT_SHORT_MAX: usize = 1024;

impl Presenter {
    pub fn new(config: ReaderConfig) -> Presenter {
        let (reports_removal, reads_uids) = match &config.driver {
            Driver::Serial { protocol, .. } => (protocol.reports_removal, protocol.reads_uids),
            Driver::Pcsc { .. } => (true, true),
            Driver::Keyboard { .. } | Driver::Stdin => (false, false),
        };
        Presenter {
            name: Arc::from(config.name.as_str()),
            debouncer: Debouncer::new(config.debounce),
            reports_removal,
            present: None,
            reads_uids,
            config,
            listening: false,
            said_cut_short: HashSet::new(),
        }
    }

    /// The reader was (re)opened: what it reads next is a new presentation.
    pub fn reopened(&mut self) {
        self.present = None;
    }

    /// Turns a frame into a tap, unless it is unreadable or part of an ongoing presentation
    /// (both reported all the same when listening).
    pub fn present(&mut self, frame: Frame, now: Now) -> Option<ReaderMessage> {
        let from_text = matches!(frame, Frame::Text(_));
        let text = match &frame {
            Frame::Text(text) if self.listening => Some(text.clone()),
            _ => None,
        };
        let (raw, kind) = match frame {
            Frame::Id { bytes, kind } => (RawId::new(bytes), kind),
            Frame::Text(text) => match tag::parse_text_id(&text, self.config.id_format) {
                Ok(raw) => (raw, TagKind::Unsaid),
                Err(e) if self.listening => {
                    return Some(ReaderMessage::Unreadable {
                        reader: self.name.clone(),
                        text,
                        error: e.to_string(),
                    });
                }
                Err(e) => {
                    // The text may be a card number: log its length, not its content.
                    warn!(reader = %self.name, length = text.len(), error = %e, "unreadable id skipped; check the reader's id-format");
                    return None;
                }
            },
            Frame::NoTag => {
                debug!(reader = %self.name, "card taken away");
                self.present = None;
                self.debouncer.forget_all();
                return self.listening.then(|| ReaderMessage::Removed {
                    reader: self.name.clone(),
                });
            }
            Frame::Warning(warning) => {
                warn!(reader = %self.name, "{warning}");
                return self.listening.then(|| ReaderMessage::Warning {
                    reader: self.name.clone(),
                    warning,
                });
            }
        };
        let tag_format = match kind {
            TagKind::Unsaid => self.config.egym_tag_format,
            TagKind::NoFormat => None,
            TagKind::Format(format) => Some(format),
        };
        let repeat = if self.reports_removal {
            // Held for as long as it stays, however long a search or a reopen takes.
            let same = self.present.as_ref() == Some(&raw);
            self.present = Some(raw.clone());
            same
        } else {
            !self.debouncer.is_new_presentation(&raw, now.steady)
        };
        if repeat && !self.listening {
            debug!(reader = %self.name, "same card still presented");
            return None;
        }
        let uid = match kind {
            TagKind::Format(format) => format.is_uid(),
            TagKind::NoFormat => false,
            TagKind::Unsaid => self.reads_uids,
        };
        if uid && tag::is_random_uid(raw.bytes()) {
            if self.listening {
                return Some(ReaderMessage::RandomUid {
                    reader: self.name.clone(),
                    raw,
                });
            }
            warn!(reader = %self.name, tag = %tag::short(&raw.hex()), "{RANDOM_UID}");
            return None;
        }
        let rfid = tag::normalise(&raw, self.config.normalisation);
        // An EM reader's ids, or HITAG and LEGIC cards', are never MIFARE UIDs.
        let cut_short = from_text
            && tag::is_cut_short_uid(&rfid)
            && !matches!(tag_format, Some(TagFormat::Hitag1 | TagFormat::Legic));
        if cut_short && !self.listening {
            self.say_cut_short(&rfid);
        }
        Some(ReaderMessage::Tap(Tap {
            reader: self.name.clone(),
            rfid,
            raw,
            tag_format,
            direction: self.config.direction,
            at: now,
            repeat,
            cut_short,
            text,
        }))
    }

    fn say_cut_short(&mut self, rfid: &str) {
        if self.said_cut_short.len() >= SAID_CUT_SHORT_MAX {
            self.said_cut_short.clear();
        }
        if !self.said_cut_short.insert(rfid.to_string()) {
            return;
        }
        warn!(reader = %self.name, tag = %tag::short(rfid), "{CUT_SHORT}");
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::clock::{SteadyMs, WallMs, WallTime};
    use crate::reader::protocols;
    use crate::tag::{ByteOrder, IdBytes, IdFormat, Normalisation};
    use crate::visit::Direction;

    fn config(driver: Driver, egym_tag_format: Option<TagFormat>) -> ReaderConfig {
        ReaderConfig {
            name: "desk".into(),
            driver,
            direction: Direction::Toggle,
            debounce: Duration::from_millis(1500),
            id_format: IdFormat::Hex,
            normalisation: Normalisation {
                id_bytes: IdBytes::All,
                byte_order: ByteOrder::AsRead,
            },
            egym_tag_format,
        }
    }

    fn serial(protocol: &str) -> Driver {
        Driver::Serial {
            path: "/dev/null".into(),
            baud: 115_200,
            protocol: protocols::protocol(protocol).unwrap(),
        }
    }

    /// What each frame, read at its second, gives: the tag's hex, or nothing.
    fn presented(presenter: &mut Presenter, frames: Vec<(i64, Frame)>) -> Vec<Option<String>> {
        frames
            .into_iter()
            .map(|(s, frame)| {
                let now = Now {
                    wall: WallMs::from_millis(s * 1000),
                    wall_is: WallTime::Trusted,
                    steady: SteadyMs::from_millis(s * 1000),
                };
                match presenter.present(frame, now) {
                    Some(ReaderMessage::Tap(tap)) => Some(tap.raw.hex()),
                    _ => None,
                }
            })
            .collect()
    }

    const A: [u8; 4] = [0x26, 0xDE, 0xFA, 0xE7];
    const B: [u8; 7] = [0x04, 0xC4, 0x3B, 0xC2, 0x1C, 0x26, 0x80];

    #[test]
    fn a_card_on_a_reader_that_reports_removal_is_one_tap_while_it_stays() {
        let mut presenter = Presenter::new(config(serial("pn532"), Some(TagFormat::Mifare)));
        let taps = presented(
            &mut presenter,
            vec![
                (0, Frame::id(&A)),
                // Read again long after any debounce (searches unanswered, the chip woken
                // again): the same presentation.
                (30, Frame::id(&A)),
                (31, Frame::NoTag),
                (31, Frame::id(&A)),
                // Another card without a removal in between: swapped.
                (32, Frame::id(&B)),
                (33, Frame::id(&B)),
            ],
        );
        let (a, b) = (
            Some(RawId::new(A.to_vec()).hex()),
            Some(RawId::new(B.to_vec()).hex()),
        );
        assert_eq!(taps, [a.clone(), None, None, a.clone(), b, None]);
        // Reopened (unplugged and back): a card still there is presented anew.
        presenter.reopened();
        assert_eq!(presented(&mut presenter, vec![(40, Frame::id(&A))]), [a]);
    }

    #[test]
    fn other_readers_keep_the_time_debounce() {
        let mut presenter = Presenter::new(config(serial("em4100"), None));
        let id = [0x0C, 0x00, 0x06, 0x21, 0xA5];
        let taps = presented(
            &mut presenter,
            vec![
                (0, Frame::id(&id)),
                (1, Frame::id(&id)),
                (10, Frame::id(&id)),
            ],
        );
        assert_eq!(taps.iter().filter(|t| t.is_some()).count(), 2);
    }

    #[test]
    fn random_uids_are_never_sent_from_readers_of_uids() {
        let random = [0x08, 0xA1, 0xB2, 0xC3];
        // Whatever tagFormat a PC/SC reader is set to send, its ids are UIDs.
        let mut pcsc = Presenter::new(config(
            Driver::Pcsc { reader: None },
            Some(TagFormat::Hitag1),
        ));
        assert_eq!(presented(&mut pcsc, vec![(0, Frame::id(&random))]), [None]);
        // A TWN4 says which cards are MIFARE; a LEGIC serial may start with 08.
        let mut twn4 = Presenter::new(config(serial("twn4"), None));
        let kind = |format| Frame::Id {
            bytes: random.to_vec(),
            kind: TagKind::Format(format),
        };
        assert_eq!(
            presented(&mut twn4, vec![(0, kind(TagFormat::Mifare))]),
            [None]
        );
        assert_eq!(
            presented(
                &mut twn4,
                vec![(1, Frame::NoTag), (1, kind(TagFormat::Legic))]
            ),
            [None, Some("08A1B2C3".to_string())]
        );
        // An EM reader's ids are no UIDs at all.
        let mut em = Presenter::new(config(serial("em4100"), None));
        let em_id = [0x08, 0xA1, 0xB2, 0xC3, 0xD4];
        assert!(presented(&mut em, vec![(0, Frame::id(&em_id))])[0].is_some());
    }
}
