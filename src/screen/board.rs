//! What the member screen shows, and when it changes (pure; times passed in).
//!
//! A tap is answered at once, from what the service knows when its event is committed: the tag's
//! cached account (a member, a Wellpass member, nobody) and whether delivery is failing. What
//! delivery learns next (the member's first name, an unknown card, a refused admission, EGYM out
//! of reach) changes the answer while it is on screen. A first name is kept only in the view on
//! screen, and dropped when the view goes.

use serde::Serialize;

use crate::egym::Refusal;
use crate::visit::Kind;

/// How long a tap's answer stays on screen; then "Tap your card" again.
pub const SHOWN_FOR_MS: i64 = 6_000;

/// What the service knew of a tag when its tap was committed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Known {
    /// A member (cached account).
    Member,
    /// A Wellpass member: EGYM admits the check-in first.
    WellpassMember,
    /// EGYM said recently that no member has the tag.
    Nobody,
    /// Not asked yet, or too long ago.
    NotYet,
}

/// What happened, as the screen hears of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Happening {
    /// A tap's event was committed.
    Recorded {
        event_id: i64,
        reader: String,
        kind: Kind,
        known: Known,
    },
    /// A tap within the repeat window: `inside` is whether the member is in.
    Repeated { reader: String, inside: bool },
    /// Delivery looked the tag up for a live tap: the member's first name.
    Named { event_id: i64, first_name: String },
    /// The check-in or check-out reached EGYM.
    Delivered { event_id: i64 },
    /// EGYM knows no member with the tag.
    Unknown { event_id: i64 },
    /// EGYM refused a Wellpass member's admission.
    Refused { event_id: i64, refusal: Refusal },
    /// A delivery attempt failed and will be retried (EGYM out of reach or failing).
    Failing { event_id: i64 },
}

/// The answer on screen, as sent to member screens.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct View {
    /// The event it answers (none for a repeated tap).
    pub event_id: Option<i64>,
    pub reader: String,
    /// `checked_in`, `checked_out`, `will_sync`, `checking`, `unknown`, `refused`,
    /// `already_in`, `already_out`.
    pub outcome: &'static str,
    pub title: String,
    pub subtitle: String,
    /// The member's first name, while it is on screen (sent only within the title).
    #[serde(skip)]
    pub name: Option<String>,
    /// When it went up, in steady time.
    #[serde(skip)]
    pub since_steady_ms: i64,
    #[serde(skip)]
    kind: Option<Kind>,
    #[serde(skip)]
    answer: Answer,
}

/// The member screen's state.
#[derive(Debug, Default)]
pub struct Board {
    view: Option<View>,
    /// The last delivery attempt failed (and none has succeeded since).
    failing: bool,
}

impl Board {
    /// The answer on screen at `now_steady_ms`, if any.
    pub fn view(&self, now_steady_ms: i64) -> Option<&View> {
        self.view
            .as_ref()
            .filter(|v| now_steady_ms - v.since_steady_ms < SHOWN_FOR_MS)
    }

    /// Drops a view whose time is over, and its name with it; true if one went.
    pub fn expire(&mut self, now_steady_ms: i64) -> bool {
        let over = self
            .view
            .as_ref()
            .is_some_and(|v| now_steady_ms - v.since_steady_ms >= SHOWN_FOR_MS);
        if over {
            self.view = None;
        }
        over
    }

    /// Takes in what happened at `now_steady_ms`; returns the new view if the screen changes.
    pub fn apply(&mut self, happening: Happening, now_steady_ms: i64) -> Option<View> {
        match happening {
            Happening::Recorded {
                event_id,
                reader,
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
                    since_steady_ms: now_steady_ms,
                    kind: Some(kind),
                    ..answer(outcome, Some(kind), None)
                };
                self.view = Some(view.clone());
                Some(view)
            }
            Happening::Repeated { reader, inside } => {
                let outcome = if inside {
                    Answer::AlreadyIn
                } else {
                    Answer::AlreadyOut
                };
                let view = View {
                    event_id: None,
                    reader,
                    since_steady_ms: now_steady_ms,
                    ..answer(outcome, None, None)
                };
                self.view = Some(view.clone());
                Some(view)
            }
            Happening::Named {
                event_id,
                first_name,
            } => self.update(event_id, now_steady_ms, |view| {
                view.name = Some(first_name);
                None
            }),
            Happening::Delivered { event_id } => {
                self.failing = false;
                self.update(event_id, now_steady_ms, |_| Some(Answer::Done))
            }
            Happening::Unknown { event_id } => {
                self.update(event_id, now_steady_ms, |_| Some(Answer::Unknown))
            }
            Happening::Refused { event_id, refusal } => {
                self.update(event_id, now_steady_ms, |_| Some(Answer::Refused(refusal)))
            }
            Happening::Failing { event_id } => {
                self.failing = true;
                self.update(event_id, now_steady_ms, |view| {
                    // A refusal or an unknown card already said stays said.
                    matches!(view.answer, Answer::Checking | Answer::Done)
                        .then_some(Answer::WillSync)
                })
            }
        }
    }

    /// Changes the view on screen if it answers `event_id`.
    fn update(
        &mut self,
        event_id: i64,
        now_steady_ms: i64,
        change: impl FnOnce(&mut View) -> Option<Answer>,
    ) -> Option<View> {
        let shown = self.view(now_steady_ms).is_some();
        let view = self.view.as_mut().filter(|_| shown)?;
        if view.event_id != Some(event_id) {
            return None;
        }
        let before = view.clone();
        let outcome = change(view).unwrap_or(view.answer);
        let answered = answer(outcome, view.kind, view.name.as_deref());
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
}

/// The words on screen for an answer to a tap of `kind`, greeting `name`.
fn answer(outcome: Answer, kind: Option<Kind>, name: Option<&str>) -> View {
    let greet = |word: &str| match name {
        Some(name) => format!("{word}, {name}"),
        None => word.to_string(),
    };
    let (code, title, subtitle): (&'static str, String, &str) = match (outcome, kind) {
        (Answer::Done, Some(Kind::CheckOut)) => {
            ("checked_out", greet("Goodbye"), "You are checked out")
        }
        (Answer::Done, _) => ("checked_in", greet("Welcome"), "You are checked in"),
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
        (Answer::Refused(refusal), _) => (
            "refused",
            capitalised(refusal.says()),
            "Please see the desk",
        ),
        (Answer::AlreadyIn, _) => (
            "already_in",
            "Already checked in".into(),
            "Have a good workout",
        ),
        (Answer::AlreadyOut, _) => ("already_out", "Already checked out".into(), "See you soon"),
    };
    View {
        event_id: None,
        reader: String::new(),
        outcome: code,
        title,
        subtitle: subtitle.into(),
        name: name.map(str::to_string),
        since_steady_ms: 0,
        kind,
        answer: outcome,
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

    fn recorded(event_id: i64, kind: Kind, known: Known) -> Happening {
        Happening::Recorded {
            event_id,
            reader: "entrance".into(),
            kind,
            known,
        }
    }

    /// Each step: what happened at a time, and the title on screen after it (`None`: idle).
    fn check(steps: &[(Happening, i64, Option<&str>)]) {
        let mut board = Board::default();
        for (happening, at, expected) in steps {
            board.expire(*at);
            board.apply(happening.clone(), *at);
            let title = board.view(*at).map(|v| v.title.as_str());
            assert_eq!(title, *expected, "after {happening:?} at {at}");
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
            (
                Happening::Named {
                    event_id: 1,
                    first_name: "Alex".into(),
                },
                40,
                Some("Welcome, Alex"),
            ),
            (
                Happening::Delivered { event_id: 1 },
                60,
                Some("Welcome, Alex"),
            ),
            // Something about another event changes nothing on screen.
            (
                Happening::Named {
                    event_id: 7,
                    first_name: "Sam".into(),
                },
                70,
                Some("Welcome, Alex"),
            ),
            (
                recorded(2, Kind::CheckOut, Known::Member),
                10_000,
                Some("Goodbye"),
            ),
            (
                Happening::Repeated {
                    reader: "entrance".into(),
                    inside: false,
                },
                11_000,
                Some("Already checked out"),
            ),
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
                    refusal: Refusal::MembershipExpired,
                },
                20_080,
                Some("Wellpass membership expired"),
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
    fn the_answer_and_the_name_go_after_a_few_seconds() {
        let mut board = Board::default();
        board.apply(recorded(1, Kind::CheckIn, Known::Member), 0);
        board.apply(
            Happening::Named {
                event_id: 1,
                first_name: "Alex".into(),
            },
            10,
        );
        assert!(board.view(SHOWN_FOR_MS - 1).is_some());
        assert!(board.expire(SHOWN_FOR_MS));
        assert_eq!(board.view(SHOWN_FOR_MS), None);
        assert!(
            format!("{board:?}").find("Alex").is_none(),
            "the name is kept"
        );
        // A late name for a tap no longer on screen brings nothing back.
        assert_eq!(
            board.apply(
                Happening::Named {
                    event_id: 1,
                    first_name: "Alex".into()
                },
                SHOWN_FOR_MS + 1
            ),
            None
        );
    }
}
