//! Doctors' schedules: the clinic's time zone, notice and horizon; weekly working hours with a
//! slot step and a buffer; time off; free-slot search; and the schedule's say on bookings.
//!
//! - `week`, `zone`, `slots`: pure (wall-clock hours, IANA zones through jiff, the search and
//!   the booking check; `now` is a parameter).
//! - `requests`: proto messages parsed into validated values (`TryFrom`).
//! - `repository`: SQL; a search or a booking check reads everything in one statement.
//! - `booking`: what `appointments` asks before it books.
//! - `grpc`: the `ScheduleService` handlers (thin edge).
//! - The buffer is part of the range the doctor's exclusion constraint checks (migration V15),
//!   so PostgreSQL enforces it under concurrency like the overlap itself.

pub mod booking;
pub mod grpc;
pub mod repository;
pub mod requests;
pub mod slots;
pub mod week;
pub mod zone;

#[cfg(test)]
mod tests;

pub use grpc::ScheduleHandler;
