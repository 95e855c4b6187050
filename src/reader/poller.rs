//! When to ask a reader that answers only what the host asks (PN532, TWN4): send a request,
//! wait for its answer, search again. Pure: the time is passed in, and the codec says what came
//! back.
//!
//! One request is out at a time, and the rules are the same for every such reader:
//! - A search is sent every `search_every`. Any other request (a wake-up, a setting) goes as
//!   soon as the one before it is answered.
//! - A request not answered within `answer_within` is lost: it is given up on and sent again,
//!   and after `restart_after_lost` lost in a row the codec starts its conversation afresh
//!   (the reader may have been power-cycled).
//! - A request whose answer is refused or spoiled is sent again at once the first time in a
//!   row, then only at the search rate, so a reader that refuses everything is not asked flat
//!   out.
//! - Requests in a row that got no good answer are counted as each is given up on (sent again,
//!   or lost), and the count is back to 0 at a good answer: the reader task tells staff when a
//!   reader stops answering.
//!
//! What the reader sends, and what counts as a good answer, the codec decides; so does the
//! counting of what it throws away.

use std::time::Duration;

use crate::clock::timer::Instant;

/// The times of one kind of reader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// How often the host searches for a card.
    pub search_every: Duration,
    /// A request not answered by then is lost.
    pub answer_within: Duration,
    /// Requests lost in a row after which the conversation starts afresh; `None`: never.
    pub restart_after_lost: Option<u32>,
}

/// What the codec does at a moment it is asked what to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Due {
    /// Nothing yet: ask again at [`Poller::next_at`].
    Later,
    /// Send a request now: the first, the next search, or one whose answer was refused or
    /// spoiled.
    Now,
    /// The request out was never answered: the codec counts it as lost, drops what came of its
    /// answer, and sends a request now; when `restart`, the first of its conversation.
    Lost { restart: bool },
}

/// When to ask the reader, and how many requests in a row it left unanswered.
#[derive(Debug)]
pub struct Poller {
    timing: Timing,
    /// When the request waiting for its answer was sent.
    sent_at: Option<Instant>,
    /// Its answer was refused or spoiled: it is sent again (see [`Poller::again_at`]).
    ask_again: bool,
    /// When the next search is due, once the last one is answered.
    next_search: Option<Instant>,
    /// Requests in a row that got no good answer.
    unanswered: u32,
    /// Answers in a row refused or spoiled (or sent when nothing was asked).
    refusals: u32,
    /// Requests in a row never answered (since the conversation last started).
    lost_in_a_row: u32,
}

impl Poller {
    pub const fn new(timing: Timing) -> Poller {
        Poller {
            timing,
            sent_at: None,
            ask_again: false,
            next_search: None,
            unanswered: 0,
            refusals: 0,
            lost_in_a_row: 0,
        }
    }

    /// What to do at `now`, when the request the codec would send next is a search (`search`)
    /// or not. `Now` and `Lost` are said once: the codec then sends, and says so with
    /// [`Poller::sent`].
    pub fn due(&mut self, now: Instant, search: bool) -> Due {
        match self.sent_at {
            Some(sent_at) if self.ask_again => {
                if now < self.again_at(sent_at) {
                    return Due::Later;
                }
                self.unanswered += 1;
                Due::Now
            }
            Some(sent_at)
                if now.saturating_duration_since(sent_at) >= self.timing.answer_within =>
            {
                self.unanswered += 1;
                self.lost_in_a_row += 1;
                let restart = self
                    .timing
                    .restart_after_lost
                    .is_some_and(|after| self.lost_in_a_row >= after);
                if restart {
                    self.lost_in_a_row = 0;
                }
                Due::Lost { restart }
            }
            Some(_) => Due::Later,
            None if search && self.next_search.is_some_and(|at| now < at) => Due::Later,
            None => Due::Now,
        }
    }

    /// A request was sent at `now`; a search sets when the next one is due.
    pub fn sent(&mut self, now: Instant, search: bool) {
        self.sent_at = Some(now);
        self.ask_again = false;
        if search {
            self.next_search = Some(now + self.timing.search_every);
        }
    }

    /// Whether a request is out, waiting for its answer.
    pub fn waiting(&self) -> bool {
        self.sent_at.is_some()
    }

    /// The request out got a good answer.
    pub fn answered(&mut self) {
        self.sent_at = None;
        self.ask_again = false;
        self.unanswered = 0;
        self.refusals = 0;
        self.lost_in_a_row = 0;
    }

    /// An answer was refused or spoiled: the request out, if any, is sent again. One that
    /// comes when nothing is out counts as a refusal too, but asks nothing.
    pub fn refused(&mut self) {
        self.refusals += 1;
        if self.sent_at.is_some() {
            self.ask_again = true;
        }
    }

    /// When [`Poller::due`] must be asked next if nothing is read before; `None` while nothing
    /// was sent yet, as the first request is due at once.
    pub fn next_at(&self) -> Option<Instant> {
        match self.sent_at {
            Some(sent_at) if self.ask_again => Some(self.again_at(sent_at)),
            Some(sent_at) => Some(sent_at + self.timing.answer_within),
            None => self.next_search,
        }
    }

    /// Requests in a row that got no good answer.
    pub fn unanswered(&self) -> u32 {
        self.unanswered
    }

    /// When a request whose answer was refused is sent again: at once the first time in a row,
    /// then at the search rate.
    fn again_at(&self, sent_at: Instant) -> Instant {
        if self.refusals > 1 {
            sent_at + self.timing.search_every
        } else {
            sent_at
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMING: Timing = Timing {
        search_every: Duration::from_millis(200),
        answer_within: Duration::from_millis(500),
        restart_after_lost: Some(3),
    };

    /// What happens to the poller, at milliseconds from the start.
    #[derive(Clone, Copy, Debug)]
    enum Event {
        /// The codec asks what to do, with a search (or, `Setting`, another request) to send
        /// next; it sends when told to.
        Search(u64),
        Setting(u64),
        Answer,
        Refusal,
    }
    use Event::*;

    /// What the poller says after an event: what to do (for an ask), requests unanswered, and
    /// when to ask next (milliseconds).
    type Said = (Option<Due>, u32, Option<u64>);

    const LATER: Option<Due> = Some(Due::Later);
    const NOW: Option<Due> = Some(Due::Now);
    const LOST: Option<Due> = Some(Due::Lost { restart: false });
    const RESTART: Option<Due> = Some(Due::Lost { restart: true });

    /// Runs `script` on a new poller with `timing`, checking what it says after each event.
    fn check(timing: Timing, script: &[(Event, Said)]) {
        let start = Instant::now();
        let ms = |ms: u64| start + Duration::from_millis(ms);
        let mut poller = Poller::new(timing);
        for (i, (event, expected)) in script.iter().enumerate() {
            let due = match *event {
                Search(at) | Setting(at) => {
                    let search = matches!(event, Search(_));
                    let due = poller.due(ms(at), search);
                    if due != Due::Later {
                        poller.sent(ms(at), search);
                    }
                    Some(due)
                }
                Answer => {
                    poller.answered();
                    None
                }
                Refusal => {
                    poller.refused();
                    None
                }
            };
            let next_at = poller
                .next_at()
                .map(|at| at.duration_since(start).as_millis() as u64);
            assert_eq!(
                (due, poller.unanswered(), next_at),
                *expected,
                "event {i}, {event:?}"
            );
        }
    }

    #[test]
    fn searches_go_at_the_search_rate_and_other_requests_as_soon_as_answered() {
        check(
            TIMING,
            &[
                // A wake-up and a setting, each sent once the one before is answered.
                (Setting(0), (NOW, 0, Some(500))),
                (Setting(10), (LATER, 0, Some(500))),
                (Answer, (None, 0, None)),
                (Setting(30), (NOW, 0, Some(530))),
                (Answer, (None, 0, None)),
                // Then searches, every 200 ms however soon each is answered.
                (Search(40), (NOW, 0, Some(540))),
                (Answer, (None, 0, Some(240))),
                (Search(100), (LATER, 0, Some(240))),
                (Search(240), (NOW, 0, Some(740))),
                (Search(400), (LATER, 0, Some(740))),
                (Answer, (None, 0, Some(440))),
                // Late: searched at once, and the next 200 ms after that.
                (Search(900), (NOW, 0, Some(1400))),
                (Answer, (None, 0, Some(1100))),
                // Another request (the chip woken again, say) does not wait for the search rate.
                (Setting(950), (NOW, 0, Some(1450))),
                (Answer, (None, 0, Some(1100))),
            ],
        );
    }

    #[test]
    fn a_request_not_answered_in_time_is_lost_and_sent_again() {
        check(
            TIMING,
            &[
                (Search(0), (NOW, 0, Some(500))),
                (Search(499), (LATER, 0, Some(500))),
                (Search(500), (LOST, 1, Some(1000))),
                (Search(1000), (LOST, 2, Some(1500))),
                // An answer at last: the count starts again, and so do the losses in a row.
                (Answer, (None, 0, Some(1200))),
                (Search(1200), (NOW, 0, Some(1700))),
                (Search(1700), (LOST, 1, Some(2200))),
                (Search(2200), (LOST, 2, Some(2700))),
            ],
        );
    }

    #[test]
    fn the_conversation_starts_afresh_after_losses_in_a_row() {
        check(
            TIMING,
            &[
                (Search(0), (NOW, 0, Some(500))),
                (Search(500), (LOST, 1, Some(1000))),
                (Search(1000), (LOST, 2, Some(1500))),
                // The third: the codec sends the first request of its conversation, no search.
                (Setting(1500), (RESTART, 3, Some(2000))),
                // Nor is that answered: the losses in a row count from the restart.
                (Setting(2000), (LOST, 4, Some(2500))),
                (Setting(2500), (LOST, 5, Some(3000))),
                (Setting(3000), (RESTART, 6, Some(3500))),
                (Answer, (None, 0, Some(1200))),
                // The search due long ago goes at once.
                (Search(3010), (NOW, 0, Some(3510))),
                (Search(3510), (LOST, 1, Some(4010))),
                (Search(4010), (LOST, 2, Some(4510))),
                (Search(4510), (RESTART, 3, Some(5010))),
            ],
        );
        // A reader whose codec never restarts is asked again and again.
        let script: Vec<(Event, Said)> = [(Search(0), (NOW, 0, Some(500)))]
            .into_iter()
            .chain((1..=5).map(|n| (Search(n * 500), (LOST, n as u32, Some(n * 500 + 500)))))
            .collect();
        check(
            Timing {
                restart_after_lost: None,
                ..TIMING
            },
            &script,
        );
    }

    #[test]
    fn a_refused_answer_is_asked_again_at_once_then_at_the_search_rate() {
        check(
            TIMING,
            &[
                (Search(0), (NOW, 0, Some(500))),
                (Refusal, (None, 0, Some(0))),
                (Search(10), (NOW, 1, Some(510))),
                // A second refusal in a row: 200 ms after the request, not at once.
                (Refusal, (None, 1, Some(210))),
                (Search(20), (LATER, 1, Some(210))),
                (Search(210), (NOW, 2, Some(710))),
                (Refusal, (None, 2, Some(410))),
                (Search(410), (NOW, 3, Some(910))),
                // Refused, then never answered at all.
                (Search(910), (LOST, 4, Some(1410))),
                (Answer, (None, 0, Some(1110))),
                // The refusals in a row ended with the answer: the next is asked again at once.
                (Search(1110), (NOW, 0, Some(1610))),
                (Refusal, (None, 0, Some(1110))),
                (Search(1110), (NOW, 1, Some(1610))),
            ],
        );
    }

    #[test]
    fn a_request_refused_twice_is_one_unanswered_and_a_refusal_of_nothing_asks_nothing() {
        check(
            TIMING,
            &[
                (Search(0), (NOW, 0, Some(500))),
                // One answer spoiled twice over (a frame inside a bad frame, say).
                (Refusal, (None, 0, Some(0))),
                (Refusal, (None, 0, Some(200))),
                (Search(200), (NOW, 1, Some(700))),
                (Answer, (None, 0, Some(400))),
                // An answer to nothing asked: no request is sent for it, and the search stays
                // due at its time, but a refusal of the next search is asked again only at the
                // search rate.
                (Refusal, (None, 0, Some(400))),
                (Search(300), (LATER, 0, Some(400))),
                (Search(400), (NOW, 0, Some(900))),
                (Refusal, (None, 0, Some(600))),
                (Search(600), (NOW, 1, Some(1100))),
            ],
        );
    }
}
