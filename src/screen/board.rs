//! What the member screen shows, and when it changes (pure; times passed in).
//!
//! A tap is answered at once, from what the service knows when its event is committed: the tag's
//! cached account (a member, a Wellpass member, nobody) and whether delivery is failing. What
//! delivery learns next (the member's first name, an unknown card, a refused admission, EGYM out
//! of reach) changes the answer while it is on screen. A first name is kept only in the view on
//! screen, and dropped when the view goes.
//!
//! A refusal is said on the member screen as "Please see the desk" only: anyone at the entrance
//! reads the screen, and the reason is the member's business. Staff read it on the staff page;
//! [`MemberScreenSettings::show_refusal_reasons`] puts it back on the member screen.
//!
//! A Wellpass member admitted for the first time (EGYM's `firstAdmission`) is welcomed to their
//! first visit.
//!
//! A member is not kept waiting at the door: a tap still being checked after
//! [`visit::AT_THE_DOOR`] is answered "will sync", as when EGYM is out of reach. Delivery holds
//! to the same rule of the desk: a Wellpass refusal that comes later finds the member already
//! inside.

use std::time::Duration;

use serde::Serialize;

use crate::clock::SteadyMs;
use crate::egym::Refusal;
use crate::events::{Happening, Known};
use crate::visit::{self, Kind};

/// How long a tap's answer stays on screen; then "Tap your card" again.
pub const SHOWN_FOR: Duration = Duration::from_secs(6);
/// How long the card of the last refused admission is remembered, to refuse it again when it
/// is tapped again at once; then it is forgotten.
pub const REFUSAL_REMEMBERED: Duration = Duration::from_secs(600);
/// A card enrolled at the desk greets its member on screen only if the tap it answers is at
/// most this old: a member whose card was not recognised waits at the desk while staff enrol
/// it; one whose tap is older has gone.
pub const STILL_AT_THE_DESK: Duration = Duration::from_secs(600);

/// The answer on screen, as sent to member screens.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct View {
    /// The event it answers (none for a repeated tap).
    pub event_id: Option<i64>,
    pub reader: String,
    /// `checked_in`, `checked_out`, `will_sync`, `checking`, `unknown`, `refused`,
    /// `already_in`, `already_out`, `enrolled`.
    pub outcome: &'static str,
    pub title: String,
    pub subtitle: String,
    /// The member's first name, while it is on screen (sent only within the title).
    #[serde(skip)]
    pub name: Option<String>,
    /// When it went up, in steady time.
    #[serde(skip)]
    pub since: SteadyMs,
    /// EGYM admitted a Wellpass member for the first time.
    #[serde(skip)]
    first_visit: bool,
    #[serde(skip)]
    kind: Option<Kind>,
    #[serde(skip)]
    answer: Answer,
    #[serde(skip)]
    tag: Option<String>,
}

/// What the member screen says, as `[screen]` sets it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemberScreenSettings {
    /// Whether a refused Wellpass admission's reason is shown ("Wellpass membership expired"),
    /// rather than "Please see the desk" alone.
    pub show_refusal_reasons: bool,
}

/// The member screen's state.
#[derive(Debug, Default)]
pub struct Board {
    settings: MemberScreenSettings,
    view: Option<View>,
    /// The last delivery attempt failed (and none has succeeded since).
    failing: bool,
    /// The card of the last refused admission, and why: tapped again, it is refused again.
    last_refused: Option<(String, Refusal, SteadyMs)>,
}

/// What the passing of time did to the screen.
#[derive(Debug, PartialEq, Eq)]
pub enum Tick {
    Unchanged,
    /// The answer changed ("will sync" after [`visit::AT_THE_DOOR`]).
    Changed(View),
    /// The answer's time is over: "Tap your card" again.
    Expired,
}

impl Board {
    pub fn new(settings: MemberScreenSettings) -> Board {
        Board {
            settings,
            ..Board::default()
        }
    }

    /// The answer on screen at `now`, if any.
    pub fn view(&self, now: SteadyMs) -> Option<&View> {
        self.view
            .as_ref()
            .filter(|v| now.since(v.since) < SHOWN_FOR)
    }

    /// Moves the screen on to `now`: a check that took too long is answered "will sync"; a view
    /// whose time is over goes, and its name with it.
    pub fn tick(&mut self, now: SteadyMs) -> Tick {
        if self
            .last_refused
            .as_ref()
            .is_some_and(|(_, _, at)| now.since(*at) >= REFUSAL_REMEMBERED)
        {
            self.last_refused = None;
        }
        let Some(view) = &mut self.view else {
            return Tick::Unchanged;
        };
        let age = now.since(view.since);
        if age >= SHOWN_FOR {
            self.view = None;
            return Tick::Expired;
        }
        if view.answer == Answer::Checking && age >= visit::AT_THE_DOOR {
            let words = Words {
                first_visit: view.first_visit,
                ..Words::of(view.kind, view.name.as_deref())
            };
            *view = View {
                event_id: view.event_id,
                reader: std::mem::take(&mut view.reader),
                since: now,
                tag: view.tag.take(),
                ..self.settings.answer(Answer::WillSync, words)
            };
            return Tick::Changed(view.clone());
        }
        Tick::Unchanged
    }

    /// Forgets what the screen holds of `cards` (they were erased): the answer on screen, if it
    /// is one of theirs, and the last refused card, if it is. Returns whether the answer went.
    pub fn forget(&mut self, cards: &[String]) -> bool {
        let theirs = |tag: &str| cards.iter().any(|card| card == tag);
        if self
            .last_refused
            .as_ref()
            .is_some_and(|(tag, _, _)| theirs(tag))
        {
            self.last_refused = None;
        }
        if self
            .view
            .as_ref()
            .and_then(|v| v.tag.as_deref())
            .is_some_and(theirs)
        {
            self.view = None;
            return true;
        }
        false
    }

    /// When the screen next changes by itself, in steady time.
    pub fn next_tick_at(&self) -> Option<SteadyMs> {
        self.view.as_ref().map(|v| {
            v.since
                + if v.answer == Answer::Checking {
                    visit::AT_THE_DOOR
                } else {
                    SHOWN_FOR
                }
        })
    }

    /// Takes in what happened at `now`; returns the new view if the screen changes.
    pub fn apply(&mut self, happening: Happening, now: SteadyMs) -> Option<View> {
        match happening {
            Happening::Recorded {
                event_id,
                reader,
                tag,
                kind,
                known,
            } => {
                let outcome = match (known, self.failing) {
                    (Known::Nobody, _) => Answer::Unknown,
                    (_, true) => Answer::WillSync,
                    (Known::Member, false) => Answer::Done,
                    (Known::WellpassMember | Known::NotYet, false) => Answer::Checking,
                };
                let view = View {
                    event_id: Some(event_id),
                    reader,
                    name: None,
                    since: now,
                    kind: Some(kind),
                    tag: Some(tag),
                    ..self.settings.answer(outcome, Words::of(Some(kind), None))
                };
                self.view = Some(view.clone());
                Some(view)
            }
            Happening::Repeated {
                reader,
                tag,
                inside,
            } => {
                // The same card again while its answer is on screen (a member tapping twice):
                // the answer stays, and what it is still waiting for can still change it.
                let shown = self.view(now).is_some();
                if let Some(view) = self
                    .view
                    .as_mut()
                    .filter(|v| shown && v.tag.as_deref() == Some(tag.as_str()))
                {
                    if view.answer != Answer::Checking {
                        view.since = now;
                    }
                    return Some(view.clone());
                }
                let outcome = match &self.last_refused {
                    Some((refused, refusal, at))
                        if *refused == tag && now.since(*at) < REFUSAL_REMEMBERED =>
                    {
                        Answer::Refused(*refusal)
                    }
                    _ if inside => Answer::AlreadyIn,
                    _ => Answer::AlreadyOut,
                };
                let view = View {
                    event_id: None,
                    reader,
                    since: now,
                    ..self.settings.answer(outcome, Words::of(None, None))
                };
                self.view = Some(view.clone());
                Some(view)
            }
            Happening::Named {
                event_id,
                first_name,
                ..
            } => self.update(event_id, now, |view| {
                view.name = Some(first_name);
                None
            }),
            Happening::Admitted {
                event_id,
                first_visit,
            } => self.update(event_id, now, |view| {
                view.first_visit = first_visit;
                None
            }),
            // Nothing a member at the door is waiting for.
            Happening::AutoCheckedOut { .. } => None,
            Happening::Delivered { event_id } => {
                self.failing = false;
                self.update(event_id, now, |_| Some(Answer::Done))
            }
            Happening::Unknown { event_id } => {
                self.update(event_id, now, |_| Some(Answer::Unknown))
            }
            Happening::Refused {
                event_id, refusal, ..
            } => {
                let changed = self.update(event_id, now, |_| Some(Answer::Refused(refusal)));
                if let Some(tag) = changed.as_ref().and_then(|v| v.tag.clone()) {
                    self.last_refused = Some((tag, refusal, now));
                }
                changed
            }
            Happening::Failing { event_id } => {
                self.failing = true;
                self.update(event_id, now, |view| {
                    // A refusal or an unknown card already said stays said.
                    matches!(
                        view.answer,
                        Answer::Checking | Answer::Done | Answer::Enrolled
                    )
                    .then_some(Answer::WillSync)
                })
            }
            Happening::Enrolled {
                event_id,
                reader,
                kind,
                tapped,
                first_name,
            } => {
                if now.since(tapped) > STILL_AT_THE_DESK {
                    return None;
                }
                // The tap is delivered next: its answer follows this one.
                let view = View {
                    event_id: Some(event_id),
                    reader,
                    since: now,
                    ..self.settings.answer(
                        Answer::Enrolled,
                        Words::of(Some(kind), first_name.as_deref()),
                    )
                };
                self.view = Some(view.clone());
                Some(view)
            }
        }
    }

    /// Changes the view on screen if it answers `event_id`.
    fn update(
        &mut self,
        event_id: i64,
        now: SteadyMs,
        change: impl FnOnce(&mut View) -> Option<Answer>,
    ) -> Option<View> {
        let shown = self.view(now).is_some();
        let view = self.view.as_mut().filter(|_| shown)?;
        if view.event_id != Some(event_id) {
            return None;
        }
        let before = view.clone();
        let outcome = change(view).unwrap_or(view.answer);
        let words = Words {
            first_visit: view.first_visit,
            ..Words::of(view.kind, view.name.as_deref())
        };
        let answered = self.settings.answer(outcome, words);
        view.answer = answered.answer;
        view.outcome = answered.outcome;
        view.title = answered.title;
        view.subtitle = answered.subtitle;
        (*view != before).then(|| view.clone())
    }
}

/// The answers a member can get.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Answer {
    Done,
    WillSync,
    Checking,
    Unknown,
    Refused(Refusal),
    AlreadyIn,
    AlreadyOut,
    /// Staff enrolled the card; its tap is being delivered.
    Enrolled,
}

/// What an answer's words depend on besides the answer: the tap's kind, the member's first name,
/// and whether EGYM admitted them for the first time.
#[derive(Clone, Copy, Debug)]
struct Words<'a> {
    kind: Option<Kind>,
    name: Option<&'a str>,
    first_visit: bool,
}

impl<'a> Words<'a> {
    fn of(kind: Option<Kind>, name: Option<&'a str>) -> Words<'a> {
        Words {
            kind,
            name,
            first_visit: false,
        }
    }
}

impl MemberScreenSettings {
    /// The words on screen for an answer.
    fn answer(self, outcome: Answer, words: Words<'_>) -> View {
        let Words {
            kind,
            name,
            first_visit,
        } = words;
        // A first name EGYM has empty (or blank) greets no one: "Welcome", not "Welcome, ".
        let name = name.map(str::trim).filter(|name| !name.is_empty());
        let greet = |word: &str| match name {
            Some(name) => format!("{word}, {name}"),
            None => word.to_string(),
        };
        let welcome = if first_visit {
            "Welcome to your first visit"
        } else {
            "Welcome"
        };
        let refusal = |refusal: Refusal| -> (String, &'static str) {
            if self.show_refusal_reasons {
                (capitalised(refusal.says()), "Please see the desk")
            } else {
                ("Please see the desk".into(), "")
            }
        };
        let (code, title, subtitle): (&'static str, String, &str) = match (outcome, kind) {
            (Answer::Done, Some(Kind::CheckOut)) => {
                ("checked_out", greet("Goodbye"), "You are checked out")
            }
            (Answer::Done, _) => ("checked_in", greet(welcome), "You are checked in"),
            (Answer::WillSync, Some(Kind::CheckOut)) => (
                "will_sync",
                "Checked out, will sync".into(),
                "Saved here; it reaches the gym's system when the connection is back",
            ),
            (Answer::WillSync, _) => (
                "will_sync",
                "Checked in, will sync".into(),
                "Saved here; it reaches the gym's system when the connection is back",
            ),
            (Answer::Checking, _) => ("checking", greet("One moment"), "Checking your card"),
            (Answer::Unknown, _) => (
                "unknown",
                "Card not recognised".into(),
                "Please see the desk",
            ),
            (Answer::Refused(reason), _) => {
                let (title, subtitle) = refusal(reason);
                ("refused", title, subtitle)
            }
            (Answer::AlreadyIn, _) => (
                "already_in",
                "Already checked in".into(),
                "Have a good workout",
            ),
            (Answer::AlreadyOut, _) => {
                ("already_out", "Already checked out".into(), "See you soon")
            }
            (Answer::Enrolled, _) => ("enrolled", greet(welcome), "Your card is enrolled"),
        };
        View {
            event_id: None,
            reader: String::new(),
            outcome: code,
            title,
            subtitle: subtitle.into(),
            name: words.name.map(str::to_string),
            since: SteadyMs::from_millis(0),
            first_visit,
            kind,
            answer: outcome,
            tag: None,
        }
    }
}

fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHOWN_FOR_MS: i64 = SHOWN_FOR.as_millis() as i64;
    const ANSWER_WITHIN_MS: i64 = visit::AT_THE_DOOR.as_millis() as i64;

    fn at(ms: i64) -> SteadyMs {
        SteadyMs::from_millis(ms)
    }

    fn recorded(event_id: i64, kind: Kind, known: Known) -> Happening {
        Happening::Recorded {
            event_id,
            reader: "entrance".into(),
            tag: format!("0x0{event_id}"),
            kind,
            known,
        }
    }

    fn named(event_id: i64, first_name: &str) -> Happening {
        Happening::Named {
            event_id,
            tag: format!("0x0{event_id}"),
            kind: Kind::CheckIn,
            first_name: first_name.into(),
        }
    }

    fn repeated(tag: &str, inside: bool) -> Happening {
        Happening::Repeated {
            reader: "entrance".into(),
            tag: tag.into(),
            inside,
        }
    }

    /// Each step: what happened at a time, and the title on screen after it (`None`: idle).
    fn check(steps: &[(Happening, i64, Option<&str>)]) {
        check_with(MemberScreenSettings::default(), steps);
    }

    fn check_with(settings: MemberScreenSettings, steps: &[(Happening, i64, Option<&str>)]) {
        let mut board = Board::new(settings);
        for (happening, ms, expected) in steps {
            board.tick(at(*ms));
            board.apply(happening.clone(), at(*ms));
            let title = board.view(at(*ms)).map(|v| v.title.as_str());
            assert_eq!(title, *expected, "after {happening:?} at {ms}");
        }
    }

    #[test]
    fn a_member_is_answered_at_once_and_greeted_by_name_when_it_is_known() {
        check(&[
            (
                recorded(1, Kind::CheckIn, Known::Member),
                0,
                Some("Welcome"),
            ),
            (named(1, "Alex"), 40, Some("Welcome, Alex")),
            (
                Happening::Delivered { event_id: 1 },
                60,
                Some("Welcome, Alex"),
            ),
            // Something about another event changes nothing on screen.
            (named(7, "Sam"), 70, Some("Welcome, Alex")),
            (
                recorded(2, Kind::CheckOut, Known::Member),
                10_000,
                Some("Goodbye"),
            ),
            (repeated("0x02", false), 11_000, Some("Goodbye")),
            (repeated("0x02", false), 17_000, Some("Already checked out")),
        ]);
    }

    #[test]
    fn unknown_cards_refused_admissions_and_an_unreachable_egym_are_said_plainly() {
        check(&[
            (
                recorded(1, Kind::CheckIn, Known::Nobody),
                0,
                Some("Card not recognised"),
            ),
            (
                recorded(2, Kind::CheckIn, Known::NotYet),
                10_000,
                Some("One moment"),
            ),
            (
                Happening::Unknown { event_id: 2 },
                10_050,
                Some("Card not recognised"),
            ),
            (
                recorded(3, Kind::CheckIn, Known::WellpassMember),
                20_000,
                Some("One moment"),
            ),
            (
                Happening::Refused {
                    event_id: 3,
                    tag: "0x03".into(),
                    refusal: Refusal::MembershipExpired,
                },
                20_080,
                Some("Please see the desk"),
            ),
            // EGYM out of reach: the tap is answered all the same.
            (
                recorded(4, Kind::CheckIn, Known::NotYet),
                30_000,
                Some("One moment"),
            ),
            (
                Happening::Failing { event_id: 4 },
                35_000,
                Some("Checked in, will sync"),
            ),
            (
                recorded(5, Kind::CheckOut, Known::Member),
                40_000,
                Some("Checked out, will sync"),
            ),
            (
                Happening::Delivered { event_id: 5 },
                41_000,
                Some("Goodbye"),
            ),
        ]);
    }

    #[test]
    fn a_card_enrolled_at_the_desk_greets_its_member_if_the_tap_is_recent() {
        let enrolled = |event_id, kind, tapped_ms| Happening::Enrolled {
            event_id,
            reader: "entrance".into(),
            kind,
            tapped: at(tapped_ms),
            first_name: Some("Alex".into()),
        };
        let desk_ms = STILL_AT_THE_DESK.as_millis() as i64;
        check(&[
            (
                recorded(1, Kind::CheckIn, Known::Nobody),
                0,
                Some("Card not recognised"),
            ),
            // Staff enrol the card two minutes later, the member still at the desk.
            (
                enrolled(1, Kind::CheckIn, 0),
                120_000,
                Some("Welcome, Alex"),
            ),
            // Its tap delivered: the answer to it.
            (
                Happening::Delivered { event_id: 1 },
                120_050,
                Some("Welcome, Alex"),
            ),
            // A card whose tap is older than that: the member has gone; nothing on screen.
            (enrolled(2, Kind::CheckIn, 0), 200_000 + desk_ms, None),
        ]);
        let mut board = Board::default();
        let view = board
            .apply(enrolled(3, Kind::CheckOut, 0), at(1_000))
            .unwrap();
        assert_eq!(
            (view.outcome, view.subtitle.as_str()),
            ("enrolled", "Your card is enrolled")
        );
        let view = board
            .apply(Happening::Delivered { event_id: 3 }, at(1_100))
            .unwrap();
        assert_eq!(view.title, "Goodbye, Alex");
    }

    #[test]
    fn the_answer_and_the_name_go_after_a_few_seconds() {
        let mut board = Board::default();
        board.apply(recorded(1, Kind::CheckIn, Known::Member), at(0));
        board.apply(named(1, "Alex"), at(10));
        assert!(board.view(at(SHOWN_FOR_MS - 1)).is_some());
        assert_eq!(board.next_tick_at(), Some(at(SHOWN_FOR_MS)));
        assert_eq!(board.tick(at(SHOWN_FOR_MS)), Tick::Expired);
        assert_eq!(board.next_tick_at(), None);
        assert_eq!(board.view(at(SHOWN_FOR_MS)), None);
        assert!(
            format!("{board:?}").find("Alex").is_none(),
            "the name is kept"
        );
        // A late name for a tap no longer on screen brings nothing back.
        assert_eq!(board.apply(named(1, "Alex"), at(SHOWN_FOR_MS + 1)), None);
    }

    #[test]
    fn a_check_that_takes_too_long_is_answered_will_sync_and_keeps_no_one_waiting() {
        let mut board = Board::default();
        board.apply(recorded(1, Kind::CheckIn, Known::WellpassMember), at(0));
        assert_eq!(board.next_tick_at(), Some(at(ANSWER_WITHIN_MS)));
        assert_eq!(board.tick(at(ANSWER_WITHIN_MS - 1)), Tick::Unchanged);
        let Tick::Changed(view) = board.tick(at(ANSWER_WITHIN_MS)) else {
            panic!("still checking");
        };
        assert_eq!(view.title, "Checked in, will sync");
        // Then shown for as long as any answer.
        assert_eq!(
            board.next_tick_at(),
            Some(at(ANSWER_WITHIN_MS + SHOWN_FOR_MS))
        );
        // A plain member's tap is answered at once and waits for nothing.
        let mut board = Board::default();
        board.apply(recorded(2, Kind::CheckIn, Known::Member), at(0));
        assert_eq!(board.tick(at(ANSWER_WITHIN_MS)), Tick::Unchanged);
    }

    #[test]
    fn the_same_card_tapped_again_keeps_its_answer_and_a_refused_one_is_refused_again() {
        check(&[
            (
                recorded(1, Kind::CheckIn, Known::WellpassMember),
                0,
                Some("One moment"),
            ),
            // Tapped twice while EGYM is asked: the answer still comes.
            (repeated("0x01", true), 500, Some("One moment")),
            (
                Happening::Refused {
                    event_id: 1,
                    tag: "0x01".into(),
                    refusal: Refusal::MembershipExpired,
                },
                900,
                Some("Please see the desk"),
            ),
            (repeated("0x01", false), 2_000, Some("Please see the desk")),
            // Once the answer has gone, the same card is still refused, not "Already checked out".
            (repeated("0x01", false), 9_000, Some("Please see the desk")),
            // Another member's repeat is theirs.
            (repeated("0x07", true), 16_000, Some("Already checked in")),
        ]);
    }

    #[test]
    fn a_refusal_says_please_see_the_desk_and_its_reason_only_when_staff_chose_to_show_it() {
        let refused = |board: &mut Board| {
            board.apply(recorded(1, Kind::CheckIn, Known::WellpassMember), at(0));
            board
                .apply(
                    Happening::Refused {
                        event_id: 1,
                        tag: "0x01".into(),
                        refusal: Refusal::GymNotInNetwork,
                    },
                    at(50),
                )
                .unwrap()
        };
        let view = refused(&mut Board::default());
        assert_eq!(
            (view.outcome, view.title.as_str(), view.subtitle.as_str()),
            ("refused", "Please see the desk", "")
        );
        assert!(
            !serde_json::to_string(&view).unwrap().contains("plan"),
            "the reason reached the member screen: {view:?}"
        );
        let view = refused(&mut Board::new(MemberScreenSettings {
            show_refusal_reasons: true,
        }));
        assert_eq!(
            (view.title.as_str(), view.subtitle.as_str()),
            (
                "This gym is not in the member's Wellpass plan",
                "Please see the desk"
            )
        );
    }

    #[test]
    fn a_first_wellpass_admission_is_welcomed_to_the_first_visit() {
        let admitted = |event_id, first_visit| Happening::Admitted {
            event_id,
            first_visit,
        };
        check(&[
            (
                recorded(1, Kind::CheckIn, Known::WellpassMember),
                0,
                Some("One moment"),
            ),
            (named(1, "Frankie"), 20, Some("One moment, Frankie")),
            (admitted(1, true), 40, Some("One moment, Frankie")),
            (
                Happening::Delivered { event_id: 1 },
                60,
                Some("Welcome to your first visit, Frankie"),
            ),
            // Without a name; and a later admission that is not the first.
            (
                recorded(2, Kind::CheckIn, Known::WellpassMember),
                10_000,
                Some("One moment"),
            ),
            (admitted(2, true), 10_040, Some("One moment")),
            (
                Happening::Delivered { event_id: 2 },
                10_060,
                Some("Welcome to your first visit"),
            ),
            (
                recorded(3, Kind::CheckIn, Known::WellpassMember),
                20_000,
                Some("One moment"),
            ),
            (admitted(3, false), 20_040, Some("One moment")),
            (
                Happening::Delivered { event_id: 3 },
                20_060,
                Some("Welcome"),
            ),
        ]);
    }

    #[test]
    fn an_empty_first_name_greets_with_no_trailing_comma() {
        for name in ["", "   "] {
            check(&[
                (
                    recorded(1, Kind::CheckIn, Known::Member),
                    0,
                    Some("Welcome"),
                ),
                (named(1, name), 20, Some("Welcome")),
                (
                    recorded(2, Kind::CheckOut, Known::Member),
                    10_000,
                    Some("Goodbye"),
                ),
                (named(2, name), 10_020, Some("Goodbye")),
            ]);
        }
        // A name with spaces around it is greeted without them.
        check(&[
            (
                recorded(1, Kind::CheckIn, Known::Member),
                0,
                Some("Welcome"),
            ),
            (named(1, " Alex "), 20, Some("Welcome, Alex")),
        ]);
    }
}
