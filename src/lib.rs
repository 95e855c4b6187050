//! gym-checkin turns RFID taps at a gym's front desk into EGYM check-ins and check-outs,
//! through a durable SQLite outbox.
//!
//! A tap flows: [`reader`] (bytes → presentations of tags) → [`recorder`] (visit decisions,
//! committed to [`store`]) → [`delivery`] (the outbox drained to [`egym`]), while [`screen`]
//! shows members and staff what happened.
//!
//! # Layers
//! A module uses only modules on the lines below its own (`tests/tidy.rs` checks this; the
//! binary, `main.rs`, may use any):
//! - [`demo`]: the whole pipeline on this machine, with the stand-in EGYM and a typed reader.
//! - [`listen`], [`calibrate`], [`enrol`], [`status`], [`privacy`]: the other commands, on a
//!   reader, EGYM or the database (`privacy`: `forget` and `export`, through the running service
//!   or on the database).
//! - [`daemon`]: the service: wires the tasks from the configuration, shutdown and signals,
//!   the watchdog, the timekeeper that keeps the clock's trust current.
//! - [`config`]: the file read into each part's own settings, every problem at once.
//! - [`recorder`], [`delivery`]: the tasks that record taps as events, and deliver them.
//! - [`reader`], [`screen`], [`control`]: the reader tasks; the front-desk screen, its hub and
//!   its pages; the control socket `status` asks the running service on.
//! - [`enrolment`]: a card added to a member at EGYM for staff (the staff page, `enrol`, the
//!   control socket), the taps waiting on it then looked up again; presentations claimed for it.
//! - [`events`]: what happens, each said once: its log line, its metric, what the screen hears.
//! - [`store`], [`egym`]: SQLite (all SQL lives there); the EGYM client and its stand-in.
//! - [`visit`], [`metrics`], [`liveness`], [`console`]: visit decisions (pure, time passed
//!   in); counters; each task's answer to the watchdog; what commands print.
//! - [`clock`], [`tag`]: the one clock (steady time, wall time and whether it is trusted);
//!   raw ids, EGYM rfids and their renderings (pure).

pub mod calibrate;
pub mod clock;
pub mod config;
pub mod console;
pub mod control;
pub mod daemon;
pub mod delivery;
pub mod demo;
pub mod egym;
pub mod enrol;
pub mod enrolment;
pub mod events;
pub mod listen;
pub mod liveness;
pub mod metrics;
pub mod privacy;
pub mod reader;
pub mod recorder;
pub mod screen;
pub mod status;
pub mod store;
pub mod tag;
pub mod visit;
