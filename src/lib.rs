//! gym-checkin turns RFID taps at a gym's front desk into EGYM check-ins and check-outs,
//! through a durable SQLite outbox.
//!
//! The modules, in the order a tap flows through them:
//! - [`config`]: the TOML schema, loading, and validation that reports every problem at once.
//! - [`reader`]: one task per reader; resynchronising frame codecs; serial and stdin drivers.
//! - [`tag`]: raw id → normalised EGYM rfid, and the candidate renderings of an id (pure).
//! - [`visit`]: debounce, repeat window and check-in/check-out decisions (pure, time passed in).
//! - [`recorder`]: the one owner of visit state; commits each decided tap as an event.
//! - [`store`]: SQLite: schema and migrations, the events outbox, visit state, tag cache, the
//!   clock's boots. All SQL lives here.
//! - [`delivery`]: the worker that drains the outbox to EGYM: claim, resolve, post, record the
//!   outcome; what each outcome means and the retry schedule ([`delivery::policy`], pure).
//! - [`egym`]: the EGYM client, its error bodies and the classification of answers; and
//!   [`egym::fake`], the stand-in EGYM used by the demo and the tests.
//! - [`daemon`]: wiring of the tasks, shutdown and signals, the timekeeper that keeps the
//!   clock's trust current.
//! - [`listen`]: `gym-checkin listen`, every read with its renderings, recording nothing.
//! - [`calibrate`]: `gym-checkin calibrate`, the reader settings under which a member's card
//!   matches what EGYM has enrolled.
//! - [`status`]: `gym-checkin status`, read from the database while the service runs.
//! - [`demo`]: the whole pipeline on this machine, with the stand-in EGYM and a typed reader.
//! - [`clock`]: the one clock: steady time that no step moves, wall time and whether it is
//!   trusted, placing taps made while it was not; RFC 3339.
//! - [`liveness`]: each task's answer to the watchdog's question.
//! - [`metrics`]: counters since start, and `/metrics` in Prometheus text format.
//! - [`screen`]: the front-desk screen: the member page, the staff page, the event stream and
//!   `/metrics`, served by the daemon itself.

pub mod calibrate;
pub mod clock;
pub mod config;
pub mod console;
pub mod daemon;
pub mod delivery;
pub mod demo;
pub mod egym;
pub mod listen;
pub mod liveness;
pub mod metrics;
pub mod reader;
pub mod recorder;
pub mod screen;
pub mod status;
pub mod store;
pub mod tag;
pub mod visit;
