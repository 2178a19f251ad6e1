use super::*;
use crate::{RequestId, RetryPolicy, Time};
use std::time::Duration;

const TTL: Duration = Duration::from_secs(3);

fn t(ms: u64) -> Time {
    Time::from_unix_millis(1_000_000 + ms)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn policy() -> LeasePolicy {
    LeasePolicy::new(TTL).with_retry(RetryPolicy {
        max_attempts: u32::MAX,
        initial_backoff: ms(100),
        multiplier: 2,
        max_backoff: ms(400),
    })
}

fn acquire(m: &mut LeaseMachine) -> (RequestId, Time) {
    match m.poll() {
        LeaseStep::Acquire { id, deadline } => (id, deadline),
        other => panic!("expected an acquisition, got {other:?}"),
    }
}

fn renew(m: &mut LeaseMachine) -> (RequestId, LeaseToken, Time) {
    match m.poll() {
        LeaseStep::Renew { id, token, deadline } => (id, token, deadline),
        other => panic!("expected a renewal, got {other:?}"),
    }
}

fn wait(m: &mut LeaseMachine) -> Time {
    match m.poll() {
        LeaseStep::Wait { until } => until,
        other => panic!("expected a wait, got {other:?}"),
    }
}

/// A machine holding token 5 since t(0).
fn held() -> LeaseMachine {
    let mut m = LeaseMachine::new(policy(), t(0), 1);
    let (id, _) = acquire(&mut m);
    m.on_acquired(id, Ok(Some(LeaseToken::new(5))), t(0));
    assert_eq!(
        m.poll(),
        LeaseStep::Held {
            token: LeaseToken::new(5),
            valid_until: t(3_000)
        }
    );
    m
}

#[test]
fn acquires_at_once_with_a_deadline() {
    let mut m = LeaseMachine::new(policy(), t(0), 1);
    let (_, deadline) = acquire(&mut m);
    assert_eq!(deadline, t(3_000), "the request timeout defaults to the TTL");
    assert_eq!(wait(&mut m), deadline);
    assert_eq!(m.token(), None);
}

#[test]
fn a_standby_retries_at_a_quarter_of_the_ttl() {
    let mut m = LeaseMachine::new(policy(), t(0), 1);
    let (id, _) = acquire(&mut m);
    m.on_acquired(id, Ok(None), t(10));
    assert!(m.is_standby());
    assert_eq!(wait(&mut m), t(760));
    m.on_wake(t(500));
    assert_eq!(wait(&mut m), t(760), "not before its time");
    m.on_wake(t(760));
    let (id, _) = acquire(&mut m);
    m.on_acquired(id, Ok(Some(LeaseToken::new(2))), t(770));
    assert!(!m.is_standby());
    assert!(matches!(m.poll(), LeaseStep::Held { token, .. } if token == LeaseToken::new(2)));
}

#[test]
fn transient_acquisition_failures_back_off_with_jitter_within_the_ceiling() {
    let mut m = LeaseMachine::new(policy(), t(0), 3);
    let mut now = t(0);
    for failure in 1..=5u32 {
        let (id, _) = acquire(&mut m);
        m.on_acquired(id, Err(LeaseFailure::Transient("down".into())), now);
        let until = wait(&mut m);
        let ceiling = policy().retry.backoff_ceiling(failure);
        assert!(until.saturating_duration_since(now) <= ceiling, "attempt {failure}");
        now = until;
        m.on_wake(now);
    }
    // Two machines with different seeds draw different waits.
    let draws = |seed| {
        let mut m = LeaseMachine::new(policy(), t(0), seed);
        let (id, _) = acquire(&mut m);
        m.on_acquired(id, Err(LeaseFailure::Transient("down".into())), t(0));
        wait(&mut m)
    };
    assert!((1..20).map(draws).collect::<std::collections::BTreeSet<_>>().len() > 1);
}

#[test]
fn an_unanswered_acquisition_times_out_and_its_late_answer_is_ignored() {
    let mut m = LeaseMachine::new(policy(), t(0), 1);
    let (old, deadline) = acquire(&mut m);
    m.on_wake(deadline);
    let until = wait(&mut m);
    m.on_acquired(old, Ok(Some(LeaseToken::new(9))), until);
    assert_eq!(m.token(), None, "an answer to a request no longer in flight");
    m.on_wake(until);
    let (id, _) = acquire(&mut m);
    assert_ne!(id, old);
}

#[test]
fn a_permanent_failure_ends_the_machine_once() {
    let mut m = LeaseMachine::new(policy(), t(0), 1);
    let (id, _) = acquire(&mut m);
    m.on_acquired(id, Err(LeaseFailure::Permanent("no table".into())), t(1));
    assert_eq!(m.poll(), LeaseStep::Failed("no table".into()));
    assert_eq!(m.poll(), LeaseStep::Finished);
    assert_eq!(m.poll(), LeaseStep::Finished);
}

#[test]
fn renews_every_third_of_the_ttl_and_extends_validity_from_the_send_time() {
    let mut m = held();
    assert_eq!(wait(&mut m), t(1_000));
    m.on_wake(t(1_000));
    let (id, token, deadline) = renew(&mut m);
    assert_eq!(token, LeaseToken::new(5));
    assert_eq!(deadline, t(3_000), "never longer than the tenure has left");
    m.on_renewed(id, Ok(()), t(1_200));
    assert_eq!(
        m.valid_until(),
        Some(t(4_000)),
        "sent at 1s, valid for the TTL from then"
    );
    assert_eq!(wait(&mut m), t(2_200));
    assert_eq!(m.token(), Some(LeaseToken::new(5)));
}

#[test]
fn a_transient_renewal_failure_retries_at_a_quarter_of_the_interval_while_valid() {
    let mut m = held();
    m.on_wake(t(1_000));
    let (id, _, _) = renew(&mut m);
    m.on_renewed(id, Err(LeaseFailure::Transient("blip".into())), t(1_100));
    assert_eq!(m.token(), Some(LeaseToken::new(5)), "still valid");
    assert_eq!(wait(&mut m), t(1_350));
    m.on_wake(t(1_350));
    let (id, _, _) = renew(&mut m);
    m.on_renewed(id, Ok(()), t(1_400));
    assert_eq!(m.valid_until(), Some(t(4_350)));
}

#[test]
fn a_refused_renewal_loses_the_lease() {
    let mut m = held();
    m.on_wake(t(1_000));
    let (id, _, _) = renew(&mut m);
    m.on_renewed(id, Err(LeaseFailure::Lost), t(1_010));
    assert_eq!(m.token(), None);
    assert_eq!(
        m.poll(),
        LeaseStep::Lost {
            token: LeaseToken::new(5)
        }
    );
    assert_eq!(m.poll(), LeaseStep::Finished);
}

#[test]
fn the_validity_passing_by_the_machines_clock_loses_the_lease() {
    let mut m = held();
    m.on_wake(t(1_000));
    let (_, _, deadline) = renew(&mut m);
    assert_eq!(wait(&mut m), deadline.min(t(3_000)));
    // The renewal hangs; failed retries run out of validity.
    m.on_wake(t(3_000));
    assert_eq!(m.token(), None);
    assert_eq!(
        m.poll(),
        LeaseStep::Lost {
            token: LeaseToken::new(5)
        }
    );
}

#[test]
fn a_clock_jump_past_the_validity_loses_the_lease_even_with_a_good_answer() {
    let mut m = held();
    m.on_wake(t(1_000));
    let (id, _, _) = renew(&mut m);
    // The process paused (or the clock stepped) for ten seconds: by the
    // time the answer is looked at, the tenure it extended lapsed too.
    m.on_renewed(id, Ok(()), t(11_000));
    assert_eq!(
        m.poll(),
        LeaseStep::Lost {
            token: LeaseToken::new(5)
        }
    );
}

#[test]
fn a_win_that_arrives_after_its_validity_is_asked_for_again() {
    let mut m = LeaseMachine::new(policy(), t(0), 1);
    let (id, _) = acquire(&mut m);
    m.on_acquired(id, Ok(Some(LeaseToken::new(3))), t(3_000));
    assert_eq!(m.token(), None);
    let (id, _) = acquire(&mut m);
    m.on_acquired(id, Ok(Some(LeaseToken::new(3))), t(3_010));
    assert!(matches!(m.poll(), LeaseStep::Held { valid_until, .. } if valid_until == t(6_000)));
}

#[test]
fn a_stale_renewal_answer_is_ignored() {
    let mut m = held();
    m.on_wake(t(1_000));
    let (id, _, _) = renew(&mut m);
    m.on_renewed(RequestId::new(id.get() + 40), Err(LeaseFailure::Lost), t(1_001));
    assert_eq!(m.token(), Some(LeaseToken::new(5)));
}

#[test]
fn shutdown_hands_back_the_tenure_to_release() {
    let mut m = held();
    m.on_shutdown(t(10));
    assert_eq!(
        m.poll(),
        LeaseStep::Stopped {
            token: Some(LeaseToken::new(5))
        }
    );
    assert_eq!(m.poll(), LeaseStep::Finished);
    let mut idle = LeaseMachine::new(policy(), t(0), 1);
    idle.on_shutdown(t(0));
    assert_eq!(idle.poll(), LeaseStep::Stopped { token: None });
}
