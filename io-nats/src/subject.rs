//! Which subject an event is published under: [`SubjectFn`], the default
//! [`default_subject`], and the token escaping [`escape_token`].

use eventcore::RecordedEvent;
use std::fmt;
use std::sync::Arc;

/// Why an event could not be given a subject. The relay treats the event as
/// poison: it is retried alone, then parked or the relay stops, per the
/// runner's poison policy; it is never dropped.
///
/// ```
/// use eventcore_nats::SubjectError;
/// let e = SubjectError::new("no subject for internal events");
/// assert_eq!(e.to_string(), "no subject for this event: no subject for internal events");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("no subject for this event: {message}")]
pub struct SubjectError {
    /// What the subject function said.
    pub message: String,
}

impl SubjectError {
    /// An error with `message`.
    pub fn new(message: impl Into<String>) -> Self {
        SubjectError {
            message: message.into(),
        }
    }
}

/// Maps a recorded event to the subject it is published under. Must be
/// deterministic: a re-published event must land on the same subject.
///
/// ```
/// use eventcore_nats::{SubjectError, SubjectFn};
/// let by_stream = SubjectFn::new(|event| {
///     Ok(format!("bank.{}", eventcore_nats::escape_token(event.stream_id.as_str())))
/// });
/// let refuse = SubjectFn::new(|_| Err(SubjectError::new("never")));
/// # let _ = (by_stream, refuse);
/// ```
#[derive(Clone)]
pub struct SubjectFn(Arc<MapSubject>);

type MapSubject = dyn Fn(&RecordedEvent) -> Result<String, SubjectError> + Send + Sync;

impl SubjectFn {
    /// Wraps a function.
    pub fn new(f: impl Fn(&RecordedEvent) -> Result<String, SubjectError> + Send + Sync + 'static) -> Self {
        SubjectFn(Arc::new(f))
    }

    /// [`default_subject`] under `prefix`.
    pub fn default_under(prefix: impl Into<String>) -> Self {
        let prefix = prefix.into();
        SubjectFn::new(move |event| Ok(default_subject(&prefix, event)))
    }

    /// The subject of `event`, checked to be a valid publish subject
    /// (non-empty tokens, no wildcards, no whitespace).
    pub fn subject(&self, event: &RecordedEvent) -> Result<String, SubjectError> {
        let subject = (self.0)(event)?;
        check_subject(&subject)?;
        Ok(subject)
    }
}

impl fmt::Debug for SubjectFn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SubjectFn(..)")
    }
}

/// `<prefix>.<category>.<event type>`, where the category is the stream id
/// up to its first `-` (`account-42` → `account`; the whole id when it has
/// none), and both are escaped with [`escape_token`].
///
/// ```
/// # use eventcore::*;
/// # use std::sync::Arc;
/// # let event = RecordedEvent {
/// #     event_id: EventId::v7(Time::ZERO, [1; 10]), stream_id: StreamId::new("account-42").expect("valid"),
/// #     version: StreamVersion::new(1), position: GlobalPosition::new(3),
/// #     event_type: EventType::new("Bank.Deposited").expect("valid"), schema_version: 1,
/// #     payload: Payload::from_trusted_json("{}"),
/// #     metadata: Arc::new(EventMetadata::new(CommandId::v7(Time::ZERO, [0; 10]), Time::ZERO)) };
/// assert_eq!(eventcore_nats::default_subject("events", &event), "events.account.Bank%2EDeposited");
/// ```
pub fn default_subject(prefix: &str, event: &RecordedEvent) -> String {
    let stream = event.stream_id.as_str();
    let category = stream.split_once('-').map_or(stream, |(category, _)| category);
    format!(
        "{prefix}.{}.{}",
        escape_token(category),
        escape_token(event.event_type.as_str())
    )
}

/// Makes `text` one safe subject token: ASCII letters, digits, `-` and `_`
/// stay; every other byte (of the UTF-8 encoding) becomes `%XX`, so `.`,
/// `*`, `>`, whitespace and `%` itself never reach the subject, and two
/// different texts never share a token. The empty text becomes `%`.
///
/// ```
/// assert_eq!(eventcore_nats::escape_token("a.b c>*"), "a%2Eb%20c%3E%2A");
/// assert_eq!(eventcore_nats::escape_token("Konto-ä"), "Konto-%C3%A4");
/// ```
pub fn escape_token(text: &str) -> String {
    if text.is_empty() {
        return "%".to_owned();
    }
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_' {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn check_subject(subject: &str) -> Result<(), SubjectError> {
    if subject.is_empty() {
        return Err(SubjectError::new("the subject is empty"));
    }
    for token in subject.split('.') {
        if token.is_empty() {
            return Err(SubjectError::new(format!("`{subject}` has an empty token")));
        }
        if token == "*" || token == ">" {
            return Err(SubjectError::new(format!("`{subject}` has a wildcard")));
        }
    }
    if subject.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(SubjectError::new(format!("`{subject}` has whitespace")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_is_injective_on_the_characters_that_matter() {
        let texts = ["a.b", "a%2Eb", "a b", "a_b", "a-b", "", "%", "*", ">"];
        let escaped: std::collections::BTreeSet<_> = texts.iter().map(|t| escape_token(t)).collect();
        assert_eq!(escaped.len(), texts.len());
        for e in &escaped {
            assert!(check_subject(e).is_ok(), "{e} is a valid token");
        }
    }

    #[test]
    fn invalid_subjects_are_refused() {
        for bad in ["", "a..b", "a.*", "a.>", "a b", ".a", "a."] {
            assert!(check_subject(bad).is_err(), "{bad:?} must be refused");
        }
    }
}
