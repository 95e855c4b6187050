//! The front-desk screen, served by the daemon itself (`[screen] listen`):
//! - `/`: the member screen. Each tap's answer in large type for a few seconds ("Welcome, Alex",
//!   "Card not recognised", "Wellpass membership expired", "Checked in, will sync"), then "Tap
//!   your card".
//! - `/staff`: who is in the club, readers, the outbox, the last taps, unknown cards with every
//!   rendering, refused admissions and today's Wellpass admissions, the clock; times in the
//!   box's local time.
//! - `/events`: both pages' live feed, Server-Sent Events; `/metrics`: Prometheus.
//! - `/staff/enrol`: the staff page's Enrol action for an unknown card (`enrol.rs`).
//!
//! The screen never stands between a tap and the outbox: the recorder and delivery tell the hub
//! ([`Screen`]) what happened with calls that only take a lock for a moment, and nothing waits
//! for a browser. Each event carries a whole state (the member view, or the staff page's data),
//! so a browser that reconnects needs only the latest of each kind: it gets them first, unless
//! its `Last-Event-ID` says it has them already.

mod access;
mod board;
mod enrol;
mod limits;
mod names;
mod server;
mod staff;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{Notify, broadcast};

use crate::clock::{Clock, SteadyMs};
use crate::events::{Happening, Observer};
use crate::visit::Kind;
pub use board::{MemberScreenSettings, SHOWN_FOR, View};
pub use server::{MAX_CONNECTIONS, MAX_CONNECTIONS_PER_CLIENT, ServerSettings, serve};
pub use staff::{StaffContext, staff_json};

/// Who an event is for: member screens get only what a member may see.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Audience {
    Member,
    Staff,
}

/// One event on the stream.
#[derive(Debug)]
pub struct Sent {
    /// Its number in this run; the stream's `id:` is `<run>-<number>`.
    pub number: u64,
    pub audience: Audience,
    /// A whole member view or staff page, as JSON.
    pub data: String,
}

impl Sent {
    /// The SSE `event:` name.
    pub fn name(&self) -> &'static str {
        match self.audience {
            Audience::Member => "member",
            Audience::Staff => "staff",
        }
    }
}

/// The screen's hub. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Screen(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    /// Tells this run's event ids from an earlier run's (a browser open across a restart).
    run: String,
    clock: Clock,
    state: Mutex<State>,
    events: broadcast::Sender<Arc<Sent>>,
    /// Something the staff page shows has changed.
    staff_changed: Notify,
    /// An answer went up on the member screen.
    shown: Notify,
    /// Member screens connected now: a name is asked for only when one would show it.
    member_screens: std::sync::atomic::AtomicUsize,
}

#[derive(Debug, Default)]
struct State {
    board: board::Board,
    /// First names of the members in the club, in memory only.
    names: names::Names,
    number: u64,
    latest_member: Option<Arc<Sent>>,
    latest_staff: Option<Arc<Sent>>,
}

impl Screen {
    pub fn new(clock: Clock, settings: MemberScreenSettings) -> Screen {
        Screen(Arc::new(Inner {
            run: format!("{:08x}", fastrand::u32(..)),
            clock,
            state: Mutex::new(State {
                board: board::Board::new(settings),
                ..State::default()
            }),
            events: broadcast::channel(64).0,
            staff_changed: Notify::new(),
            shown: Notify::new(),
            member_screens: std::sync::atomic::AtomicUsize::new(0),
        }))
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic aborts the process (panic = "abort"), so the lock is never poisoned.
        self.0.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// This run's id, the prefix of its event ids.
    pub fn run(&self) -> &str {
        &self.0.run
    }

    /// Takes in what happened; member screens hear of it at once if their view changes.
    pub fn happened(&self, happening: Happening) {
        let now = self.0.clock.steady();
        let mut state = self.state();
        self.tick_locked(&mut state, now);
        match &happening {
            Happening::Recorded {
                tag,
                kind: Kind::CheckOut,
                ..
            }
            | Happening::AutoCheckedOut { tag }
            | Happening::Refused { tag, .. } => state.names.left(tag),
            Happening::Named {
                tag,
                kind,
                first_name,
                ..
            } => state.names.learnt(tag, *kind, first_name, now),
            _ => {}
        }
        if let Some(view) = state.board.apply(happening, now) {
            self.show(&mut state, &view);
            drop(state);
            self.0.shown.notify_one();
        }
        self.0.staff_changed.notify_one();
    }

    /// Sends `view` to member screens.
    fn show(&self, state: &mut State, view: &View) {
        let data = serde_json::to_string(view).unwrap_or_default();
        let sent = push(state, Audience::Member, data);
        state.latest_member = Some(sent.clone());
        // Sent under the lock, so that browsers get events in the order of their numbers.
        let _ = self.0.events.send(sent);
    }

    /// Moves the member screen on to now ("will sync" for a check that takes too long, "Tap
    /// your card" once an answer's time is over, its name dropped with it); returns how long
    /// until it next changes by itself.
    pub fn tick(&self) -> Option<std::time::Duration> {
        let now = self.0.clock.steady();
        let mut state = self.state();
        self.tick_locked(&mut state, now);
        state
            .board
            .next_tick_at()
            .map(|at| at.since(now).max(std::time::Duration::from_millis(1)))
    }

    fn tick_locked(&self, state: &mut State, now: SteadyMs) {
        match state.board.tick(now) {
            board::Tick::Unchanged => {}
            board::Tick::Changed(view) => self.show(state, &view),
            board::Tick::Expired => state.latest_member = None,
        }
    }

    /// Completes when an answer goes up on the member screen.
    pub async fn shown(&self) {
        self.0.shown.notified().await;
    }

    /// Something the staff page shows changed (a reader, a delivery, the clock).
    pub fn staff_changed(&self) {
        self.0.staff_changed.notify_one();
    }

    /// Completes when something the staff page shows has changed.
    pub async fn staff_change(&self) {
        self.0.staff_changed.notified().await;
    }

    /// Forgets what the screen holds of `cards` (erased on request): the answer on the member
    /// screen if it is theirs (its first name with it), the last refused card, the first names
    /// the staff page shows, and the staff page's data, which is read again from the database.
    pub fn forget(&self, cards: &[String]) {
        let mut state = self.state();
        if state.board.forget(cards) {
            state.latest_member = None;
        }
        for card in cards {
            state.names.left(card);
        }
        state.latest_staff = None;
        drop(state);
        self.0.staff_changed.notify_one();
    }

    /// No staff page is open any more: the staff page's data is not kept in memory.
    pub fn staff_closed(&self) {
        self.state().latest_staff = None;
    }

    /// Sends the staff page's data.
    pub fn publish_staff(&self, data: String) {
        let mut state = self.state();
        let sent = push(&mut state, Audience::Staff, data);
        state.latest_staff = Some(sent.clone());
        let _ = self.0.events.send(sent);
    }

    /// The first names known of the members with these tags (those in the club whose name a
    /// lookup gave), for the staff page.
    pub fn first_names<'a>(
        &self,
        tags: impl IntoIterator<Item = &'a str>,
    ) -> HashMap<String, String> {
        let now = self.0.clock.steady();
        let mut state = self.state();
        state.names.expire(now);
        tags.into_iter()
            .filter_map(|tag| Some((tag.to_string(), state.names.of(tag)?.to_string())))
            .collect()
    }

    /// Whether a member screen is showing the answer to `event_id` without a name yet: a
    /// lookup would greet the member. With no member screen open, no name is ever asked for.
    pub fn wants_name(&self, event_id: i64) -> bool {
        if self
            .0
            .member_screens
            .load(std::sync::atomic::Ordering::Relaxed)
            == 0
        {
            return false;
        }
        let now = self.0.clock.steady();
        self.state()
            .board
            .view(now)
            .is_some_and(|v| v.event_id == Some(event_id) && v.name.is_none())
    }

    /// Counts a member screen as open until the guard is dropped.
    pub fn member_screen_open(&self) -> MemberScreen {
        self.0
            .member_screens
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        MemberScreen(self.clone())
    }

    /// A new subscriber for `audience`: what it should get first (the latest state it lacks,
    /// given the `Last-Event-ID` it sent, if any), and the stream of what follows.
    pub fn subscribe(
        &self,
        audience: Audience,
        last_event_id: Option<&str>,
    ) -> (Vec<Arc<Sent>>, broadcast::Receiver<Arc<Sent>>) {
        self.tick();
        let state = self.state();
        let receiver = self.0.events.subscribe();
        let seen = last_event_id
            .and_then(|id| id.split_once('-'))
            .filter(|(run, _)| *run == self.0.run)
            .and_then(|(_, number)| number.parse::<u64>().ok());
        let mut first: Vec<Arc<Sent>> = [state.latest_member.clone()]
            .into_iter()
            .chain((audience == Audience::Staff).then(|| state.latest_staff.clone()))
            .flatten()
            .filter(|sent| seen.is_none_or(|seen| sent.number > seen))
            .collect();
        first.sort_by_key(|sent| sent.number);
        (first, receiver)
    }

    /// Whether `audience` may see `sent`.
    pub fn for_audience(sent: &Sent, audience: Audience) -> bool {
        audience == Audience::Staff || sent.audience == Audience::Member
    }
}

/// The screen hears of what happens: the recorder and delivery tell it through their events.
impl Observer for Screen {
    fn happened(&self, happening: Happening) {
        Screen::happened(self, happening);
    }

    fn changed(&self) {
        self.staff_changed();
    }

    fn forget(&self, cards: &[String]) {
        Screen::forget(self, cards);
    }
}

/// A member screen's connection, counted while it lasts.
#[derive(Debug)]
pub struct MemberScreen(Screen);

impl Drop for MemberScreen {
    fn drop(&mut self) {
        self.0
            .0
            .member_screens
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

fn push(state: &mut State, audience: Audience, data: String) -> Arc<Sent> {
    state.number += 1;
    Arc::new(Sent {
        number: state.number,
        audience,
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Boot, ManualSource, TrustRule};
    use crate::events::Known;

    fn screen() -> (Arc<ManualSource>, Screen) {
        let source = Arc::new(ManualSource::new(1_796_083_200_000, 1_000, "b"));
        let (_, trust) = crate::clock::boot_reading(source.as_ref(), &TrustRule::Always);
        let boot = Boot {
            id: 1,
            offset_ms: 0,
            start: SteadyMs::from_millis(0),
        };
        let clock = Clock::new(source.clone(), TrustRule::Always, boot, trust, None);
        (source, Screen::new(clock, MemberScreenSettings::default()))
    }

    #[test]
    fn a_new_subscriber_gets_the_state_it_lacks_first_and_member_screens_only_theirs() {
        let (source, screen) = screen();
        screen.happened(Happening::Recorded {
            event_id: 1,
            reader: "entrance".into(),
            tag: "0x0A0B0C0D".into(),
            kind: Kind::CheckIn,
            known: Known::Member,
        });
        screen.publish_staff("{\"taps\":[]}".into());
        let (first, _) = screen.subscribe(Audience::Member, None);
        assert_eq!(first.len(), 1);
        assert!(first[0].data.contains("\"Welcome\""), "{}", first[0].data);
        let (first, _) = screen.subscribe(Audience::Staff, None);
        assert_eq!(first.iter().map(|s| s.number).collect::<Vec<_>>(), [1, 2]);
        // Reconnecting with the latest id: nothing to catch up on.
        let last = format!("{}-2", screen.run());
        assert!(screen.subscribe(Audience::Staff, Some(&last)).0.is_empty());
        let member_seen = format!("{}-1", screen.run());
        assert_eq!(
            screen
                .subscribe(Audience::Staff, Some(&member_seen))
                .0
                .len(),
            1
        );
        // An id from an earlier run: everything.
        assert_eq!(
            screen
                .subscribe(Audience::Staff, Some("0badc0de-9"))
                .0
                .len(),
            2
        );
        // Once the answer's time is over, a member screen gets nothing old.
        source.advance(SHOWN_FOR.as_millis() as i64);
        assert!(screen.subscribe(Audience::Member, None).0.is_empty());
    }

    #[test]
    fn the_staff_page_learns_the_first_names_of_members_inside_until_they_leave() {
        let (_source, screen) = screen();
        let named = |event_id, tag: &str, kind| Happening::Named {
            event_id,
            tag: tag.into(),
            kind,
            first_name: "Alex".into(),
        };
        screen.happened(named(1, "0x01", Kind::CheckIn));
        screen.happened(named(2, "0x02", Kind::CheckIn));
        let names = screen.first_names(["0x01", "0x02", "0x03"]);
        assert_eq!(names.len(), 2);
        assert_eq!(names["0x01"], "Alex");
        // A check-out tap, and an automatic one.
        screen.happened(Happening::Recorded {
            event_id: 3,
            reader: "entrance".into(),
            tag: "0x01".into(),
            kind: Kind::CheckOut,
            known: Known::Member,
        });
        screen.happened(Happening::AutoCheckedOut { tag: "0x02".into() });
        assert!(screen.first_names(["0x01", "0x02"]).is_empty());
        // A Wellpass member turned away is not in the club.
        screen.happened(named(4, "0x04", Kind::CheckIn));
        screen.happened(Happening::Refused {
            event_id: 4,
            tag: "0x04".into(),
            refusal: crate::egym::Refusal::MembershipExpired,
        });
        assert!(screen.first_names(["0x04"]).is_empty());
        // A member erased on request (`gym-checkin forget`) while in the club.
        screen.happened(named(5, "0x05", Kind::CheckIn));
        screen.happened(named(6, "0x06", Kind::CheckIn));
        screen.forget(&["0x05".to_string()]);
        assert_eq!(
            screen
                .first_names(["0x05", "0x06"])
                .into_keys()
                .collect::<Vec<_>>(),
            ["0x06"]
        );
    }
}
