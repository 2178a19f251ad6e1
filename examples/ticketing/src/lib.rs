//! Ticketing: an example service with its own domain, tested with the
//! simulator (`tests/sim_sweep.rs`) and the chaos harness
//! (`tests/chaos.rs`); see `docs/testing-your-domain.md`.
//!
//! A concert is a stream (`concert-<n>`) scheduled with a seat capacity; a
//! reservation is a stream (`reservation-<n>`). [`Reserve`] reads both,
//! checks that the seats are free and appends to both atomically;
//! [`Cancel`] gives the seats back. The rule: a concert never sells more
//! seats than it has.
//!
//! The planted bug ([`Reserve::buggy`], on by default with the
//! `planted-bug` feature): `Reserve` appends with
//! [`ExpectedVersion::Any`] on the concert stream — a check made on a
//! stream the command did not pin — so two reservations that both saw the
//! last free seats both commit, and the concert is oversold.

use eventcore::{require, Command, Decide, Emit, Event, EventFilter, ExpectedVersion, RecordedEvent, StreamId, View};
use eventcore_sim::check::DomainModel;
use eventcore_sim::rng::SimRng;
use eventcore_sim::{Domain, DomainCommand, DomainProjection};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Stream-id prefix of concerts.
pub const CONCERT: &str = "concert-";
/// Stream-id prefix of reservations.
pub const RESERVATION: &str = "reservation-";

/// Whether this build's [`Reserve`] defaults to the planted bug (the
/// `planted-bug` feature).
pub const PLANTED_BUG: bool = cfg!(feature = "planted-bug");

/// The stream of concert `n`.
pub fn concert(n: u64) -> StreamId {
    StreamId::new(format!("{CONCERT}{n}")).unwrap_or_else(|_| unreachable!("concert-<n> is a valid stream id"))
}

/// The stream of reservation `n`.
pub fn reservation(n: u64) -> StreamId {
    StreamId::new(format!("{RESERVATION}{n}")).unwrap_or_else(|_| unreachable!("reservation-<n> is a valid stream id"))
}

/// What happens to a concert.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConcertEvent {
    /// The concert was scheduled with this many seats.
    Scheduled {
        /// Seats in the hall.
        capacity: u64,
    },
    /// Seats were taken by a reservation.
    SeatsTaken {
        /// How many.
        seats: u64,
    },
    /// Seats were given back by a cancellation.
    SeatsReleased {
        /// How many.
        seats: u64,
    },
}

impl Event for ConcertEvent {}

/// What happens to a reservation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReservationEvent {
    /// Seats reserved for a concert.
    Made {
        /// The concert's stream.
        concert: String,
        /// How many seats.
        seats: u64,
    },
    /// The reservation was cancelled.
    Cancelled,
}

impl Event for ReservationEvent {}

/// A command's view of a concert.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Concert {
    /// Scheduled yet?
    pub scheduled: bool,
    /// Seats in the hall.
    pub capacity: u64,
    /// Seats taken.
    pub sold: u64,
}

impl View for Concert {
    type Event = ConcertEvent;
    const NAME: &'static str = "concert";
    fn apply(&mut self, event: &ConcertEvent) {
        match event {
            ConcertEvent::Scheduled { capacity } => {
                self.scheduled = true;
                self.capacity = *capacity;
            }
            ConcertEvent::SeatsTaken { seats } => self.sold += seats,
            ConcertEvent::SeatsReleased { seats } => self.sold = self.sold.saturating_sub(*seats),
        }
    }
}

/// A command's view of a reservation.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Reservation {
    /// Made yet?
    pub made: bool,
    /// Cancelled?
    pub cancelled: bool,
    /// Seats held.
    pub seats: u64,
}

impl View for Reservation {
    type Event = ReservationEvent;
    const NAME: &'static str = "reservation";
    fn apply(&mut self, event: &ReservationEvent) {
        match event {
            ReservationEvent::Made { seats, .. } => {
                self.made = true;
                self.seats = *seats;
            }
            ReservationEvent::Cancelled => self.cancelled = true,
        }
    }
}

/// Why the box office refuses a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TicketingError {
    /// The concert was scheduled already.
    #[error("`{0}` is scheduled already")]
    AlreadyScheduled(StreamId),
    /// The concert is not scheduled.
    #[error("`{0}` is not scheduled")]
    NotScheduled(StreamId),
    /// Not enough free seats.
    #[error("`{concert}` has {free} seats free, {wanted} wanted")]
    SoldOut {
        /// The concert.
        concert: StreamId,
        /// Seats free.
        free: u64,
        /// Seats asked for.
        wanted: u64,
    },
    /// The reservation exists already.
    #[error("`{0}` exists already")]
    Taken(StreamId),
    /// The reservation is not active (never made, or cancelled).
    #[error("`{0}` is not active")]
    NotActive(StreamId),
}

/// Schedules a concert.
#[derive(Clone, Debug, Command)]
pub struct Schedule {
    /// The concert's stream.
    #[stream(Concert)]
    pub concert: StreamId,
    /// Seats in the hall.
    pub capacity: u64,
}

impl Decide for Schedule {
    type Error = TicketingError;
    fn decide(&self, state: &ScheduleState<'_>, out: &mut Emit<'_>) -> Result<(), TicketingError> {
        require!(
            !state.concert.scheduled,
            TicketingError::AlreadyScheduled(self.concert.clone())
        );
        out.emit(
            &self.concert,
            ConcertEvent::Scheduled {
                capacity: self.capacity,
            },
        );
        Ok(())
    }
}

/// Reserves seats of a concert under a new reservation id.
#[derive(Clone, Debug, Command)]
pub struct Reserve {
    /// The concert's stream.
    #[stream(Concert)]
    pub concert: StreamId,
    /// The new reservation's stream.
    #[stream(Reservation)]
    pub reservation: StreamId,
    /// Seats wanted.
    pub seats: u64,
    /// The planted bug: do not pin the concert stream the capacity was
    /// checked on.
    pub buggy: bool,
}

impl Decide for Reserve {
    type Error = TicketingError;
    fn decide(&self, state: &ReserveState<'_>, out: &mut Emit<'_>) -> Result<(), TicketingError> {
        let concert = &state.concert;
        require!(concert.scheduled, TicketingError::NotScheduled(self.concert.clone()));
        require!(!state.reservation.made, TicketingError::Taken(self.reservation.clone()));
        let free = concert.capacity.saturating_sub(concert.sold);
        require!(
            free >= self.seats,
            TicketingError::SoldOut {
                concert: self.concert.clone(),
                free,
                wanted: self.seats,
            }
        );
        out.emit(&self.concert, ConcertEvent::SeatsTaken { seats: self.seats });
        out.emit(
            &self.reservation,
            ReservationEvent::Made {
                concert: self.concert.as_str().to_string(),
                seats: self.seats,
            },
        );
        if self.buggy {
            // "Appending a counter needs no version check": but the
            // capacity check above read that very stream.
            out.expect(&self.concert, ExpectedVersion::Any);
        }
        Ok(())
    }
}

/// Cancels a reservation and gives its seats back.
#[derive(Clone, Debug, Command)]
pub struct Cancel {
    /// The concert's stream.
    #[stream(Concert)]
    pub concert: StreamId,
    /// The reservation's stream.
    #[stream(Reservation)]
    pub reservation: StreamId,
}

impl Decide for Cancel {
    type Error = TicketingError;
    fn decide(&self, state: &CancelState<'_>, out: &mut Emit<'_>) -> Result<(), TicketingError> {
        let r = &state.reservation;
        require!(
            r.made && !r.cancelled,
            TicketingError::NotActive(self.reservation.clone())
        );
        out.emit(&self.reservation, ReservationEvent::Cancelled);
        out.emit(&self.concert, ConcertEvent::SeatsReleased { seats: r.seats });
        Ok(())
    }
}

/// The box office's rules over the committed history, in global order: a
/// concert is scheduled once, never sells more seats than it has, never
/// releases seats it did not sell; a reservation is made once, cancelled at
/// most once; and the seats a concert holds are exactly the seats of its
/// active reservations.
#[derive(Debug, Default)]
pub struct BoxOfficeModel {
    concerts: BTreeMap<String, (u64, u64)>,
    reservations: BTreeMap<String, (String, u64, bool)>,
}

impl DomainModel for BoxOfficeModel {
    fn name(&self) -> &'static str {
        "box office"
    }

    fn apply(&mut self, event: &RecordedEvent) -> Result<(), String> {
        let stream = event.stream_id.as_str();
        if stream.starts_with(CONCERT) {
            let decoded = eventcore::decode_recorded::<ConcertEvent>(event).map_err(|e| e.to_string())?;
            match decoded {
                ConcertEvent::Scheduled { capacity } => {
                    if self.concerts.insert(stream.to_string(), (capacity, 0)).is_some() {
                        return Err(format!("`{stream}` scheduled twice"));
                    }
                }
                ConcertEvent::SeatsTaken { seats } => {
                    let Some((capacity, sold)) = self.concerts.get_mut(stream) else {
                        return Err(format!("`{stream}` sold seats before it was scheduled"));
                    };
                    *sold += seats;
                    if *sold > *capacity {
                        return Err(format!(
                            "`{stream}` oversold: {sold} seats taken of {capacity} (version {})",
                            event.version
                        ));
                    }
                }
                ConcertEvent::SeatsReleased { seats } => {
                    let Some((_, sold)) = self.concerts.get_mut(stream) else {
                        return Err(format!("`{stream}` released seats before it was scheduled"));
                    };
                    *sold = sold
                        .checked_sub(seats)
                        .ok_or_else(|| format!("`{stream}` released {seats} seats of {sold} sold"))?;
                }
            }
        } else if stream.starts_with(RESERVATION) {
            let decoded = eventcore::decode_recorded::<ReservationEvent>(event).map_err(|e| e.to_string())?;
            match decoded {
                ReservationEvent::Made { concert, seats } => {
                    if self
                        .reservations
                        .insert(stream.to_string(), (concert, seats, false))
                        .is_some()
                    {
                        return Err(format!("`{stream}` made twice"));
                    }
                }
                ReservationEvent::Cancelled => match self.reservations.get_mut(stream) {
                    Some((_, _, cancelled)) if !*cancelled => *cancelled = true,
                    Some(_) => return Err(format!("`{stream}` cancelled twice")),
                    None => return Err(format!("`{stream}` cancelled before it was made")),
                },
            }
        }
        Ok(())
    }

    fn finish(&self) -> Vec<String> {
        let mut held: BTreeMap<&str, u64> = BTreeMap::new();
        for (concert, seats, cancelled) in self.reservations.values() {
            if !cancelled {
                *held.entry(concert.as_str()).or_default() += seats;
            }
        }
        self.concerts
            .iter()
            .filter_map(|(concert, (_, sold))| {
                let active = held.get(concert.as_str()).copied().unwrap_or(0);
                (active != *sold).then(|| format!("`{concert}` holds {sold} seats, its active reservations {active}"))
            })
            .collect()
    }
}

/// The service's "seats left" page: per concert, its capacity and the seats
/// sold, built by a subscription to the concert streams. In the simulator
/// it runs as an exactly-once projection; its rule is the page's promise:
/// it never shows more seats sold than the hall has.
///
/// ```
/// use eventcore_example_ticketing::SeatsLeft;
/// use eventcore_sim::DomainProjection;
/// assert_eq!(SeatsLeft::default().state(), "{}");
/// ```
#[derive(Debug, Default)]
pub struct SeatsLeft {
    concerts: BTreeMap<String, (u64, u64)>,
    undecodable: Vec<String>,
}

impl SeatsLeft {
    /// Seats still free at `concert`, once it is scheduled.
    pub fn seats_left(&self, concert: &StreamId) -> Option<u64> {
        self.concerts
            .get(concert.as_str())
            .map(|(capacity, sold)| capacity.saturating_sub(*sold))
    }
}

impl DomainProjection for SeatsLeft {
    fn name(&self) -> String {
        "seats left".into()
    }

    fn filter(&self) -> EventFilter {
        EventFilter::all().with_stream_prefix(CONCERT)
    }

    fn apply(&mut self, event: &RecordedEvent) {
        let row = self.concerts.entry(event.stream_id.to_string()).or_default();
        match eventcore::decode_recorded::<ConcertEvent>(event) {
            Ok(ConcertEvent::Scheduled { capacity }) => row.0 = capacity,
            Ok(ConcertEvent::SeatsTaken { seats }) => row.1 += seats,
            Ok(ConcertEvent::SeatsReleased { seats }) => row.1 = row.1.saturating_sub(seats),
            Err(e) => self.undecodable.push(format!("{}: {e}", event.position)),
        }
    }

    fn state(&self) -> String {
        format!("{:?}", self.concerts)
    }

    fn check(&self) -> Vec<String> {
        let oversold = self
            .concerts
            .iter()
            .filter(|(_, (capacity, sold))| sold > capacity)
            .map(|(concert, (capacity, sold))| {
                format!("the page shows `{concert}` with {sold} of {capacity} seats sold")
            });
        let undecodable = self
            .undecodable
            .iter()
            .map(|e| format!("an event it could not decode at {e}"));
        oversold.chain(undecodable).collect()
    }
}

/// The box office as a simulator [`Domain`]: one to three small concerts,
/// clients reserving 1–3 seats under fresh reservation ids and cancelling
/// reservations issued earlier.
#[derive(Debug)]
pub struct BoxOffice {
    /// Reserve with the planted bug.
    pub buggy: bool,
    concerts: u64,
    issued: Vec<(u64, u64)>,
}

impl BoxOffice {
    /// A box office; `buggy` plants the bug in every `Reserve`.
    pub fn new(buggy: bool) -> Self {
        BoxOffice {
            buggy,
            concerts: 0,
            issued: Vec::new(),
        }
    }

    /// A `Reserve` of `seats` seats of concert `c` under reservation `r`.
    pub fn reserve(&self, c: u64, r: u64, seats: u64) -> Reserve {
        Reserve {
            concert: concert(c),
            reservation: reservation(r),
            seats,
            buggy: self.buggy,
        }
    }
}

impl Default for BoxOffice {
    /// The box office of this build: with the planted bug under the
    /// `planted-bug` feature ([`PLANTED_BUG`]).
    fn default() -> Self {
        BoxOffice::new(PLANTED_BUG)
    }
}

impl Domain for BoxOffice {
    fn name(&self) -> String {
        if self.buggy {
            "box office (planted bug)"
        } else {
            "box office"
        }
        .to_string()
    }

    fn setup(&mut self, rng: &mut SimRng) -> Vec<DomainCommand> {
        self.concerts = rng.between(1, 3);
        (0..self.concerts)
            .map(|c| {
                let capacity = rng.between(2, 8);
                DomainCommand::new(
                    format!("schedule {c} capacity {capacity}"),
                    Schedule {
                        concert: concert(c),
                        capacity,
                    },
                )
            })
            .collect()
    }

    fn next_command(&mut self, rng: &mut SimRng) -> DomainCommand {
        if !self.issued.is_empty() && rng.weighted(&[7, 3]) == Some(1) {
            let (c, r) = self.issued[rng.below(self.issued.len() as u64) as usize];
            return DomainCommand::new(
                format!("cancel {r} of {c}"),
                Cancel {
                    concert: concert(c),
                    reservation: reservation(r),
                },
            );
        }
        let c = rng.below(self.concerts.max(1));
        let r = self.issued.len() as u64;
        let seats = rng.between(1, 3);
        self.issued.push((c, r));
        DomainCommand::new(format!("reserve {r}: {seats} of {c}"), self.reserve(c, r, seats))
    }

    fn describe(&self) -> String {
        format!("concerts={}", self.concerts)
    }

    fn models(&self) -> Vec<Box<dyn DomainModel>> {
        vec![Box::<BoxOfficeModel>::default()]
    }

    fn projections(&self) -> Vec<Box<dyn DomainProjection>> {
        vec![Box::<SeatsLeft>::default()]
    }
}
