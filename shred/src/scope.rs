//! The scoped, thread-local key ring that `Personal`'s serde impls consult
//! (serde passes no context, so the ring travels beside the call).
//!
//! Scopes nest: the innermost one decides. Each [`Scope`] guard removes
//! its own frame (and any frame a guard inside it leaked) when dropped,
//! including during a panic's unwinding, so a failed encode never leaves a
//! ring installed. A guard is neither `Send` nor `Sync`: it is dropped on
//! the thread that installed it. Do not hold one across an `.await` (the
//! task may resume on another thread); the functions of this crate install
//! and remove theirs around one synchronous serde call.

use crate::error::PersonalError;
use crate::key::{KeyRing, NonceSource};
use crate::SubjectId;
use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;
use std::marker::PhantomData;

pub(crate) enum Mode {
    Collect(BTreeSet<SubjectId>),
    Seal { ring: KeyRing, nonces: Box<NonceSource> },
    Open(KeyRing),
}

struct Frame {
    mode: Mode,
    error: Option<PersonalError>,
}

thread_local! {
    static FRAMES: RefCell<Vec<Frame>> = const { RefCell::new(Vec::new()) };
    static IN_PERSONAL: Cell<bool> = const { Cell::new(false) };
}

/// An installed encryption, decryption or collecting scope: while it
/// lives (and no inner scope hides it), `Personal` fields serialized or
/// deserialized on this thread use it. Most code never touches one:
/// [`seal_event`](crate::seal_event), [`subjects_of_event`](crate::subjects_of_event)
/// and [`open_recorded`](crate::open_recorded) install their own. Use it
/// directly to seal or open something else with serde (a snapshot, a read
/// model row).
///
/// ```
/// use eventcore_shred::{DataKey, KeyRing, NonceSource, Personal, Scope, SubjectId};
/// let alice = SubjectId::new("alice")?;
/// let ring = KeyRing::new().with_key(alice.clone(), DataKey::from_bytes(1, [5; 32]));
/// let name = Personal::new(alice.clone(), "Alice".to_owned());
///
/// assert!(serde_json::to_string(&name).is_err(), "no scope: refused, never plaintext");
/// let sealed = {
///     let _scope = Scope::seal(&ring, &mut NonceSource::from_seed([0; 32]));
///     serde_json::to_string(&name)?
/// };
/// assert!(!sealed.contains("Alice"));
///
/// let _scope = Scope::open(&ring);
/// let back: Personal<String> = serde_json::from_str(&sealed)?;
/// assert_eq!(back.known(), Some(&"Alice".to_owned()));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "the scope ends when the guard is dropped"]
pub struct Scope {
    depth: usize,
    _not_send: PhantomData<*const ()>,
}

impl Scope {
    fn install(mode: Mode) -> Scope {
        let depth = FRAMES.with_borrow_mut(|frames| {
            frames.push(Frame { mode, error: None });
            frames.len() - 1
        });
        Scope {
            depth,
            _not_send: PhantomData,
        }
    }

    /// A collecting scope: `Personal` fields record their subject and write
    /// a placeholder (no key needed, nothing encrypted). What
    /// [`subjects_of_event`](crate::subjects_of_event) uses; read the result
    /// with [`Scope::subjects`].
    pub fn collect() -> Scope {
        Scope::install(Mode::Collect(BTreeSet::new()))
    }

    /// An encryption scope: `Personal` fields are sealed with `ring`'s keys
    /// and nonces drawn from a source forked off `nonces`.
    pub fn seal(ring: &KeyRing, nonces: &mut NonceSource) -> Scope {
        Scope::install(Mode::Seal {
            ring: ring.clone(),
            nonces: Box::new(nonces.fork()),
        })
    }

    /// A decryption scope: sealed fields are opened with `ring`'s keys;
    /// those of subjects the ring knows as forgotten read as
    /// [`Personal::Forgotten`](crate::Personal::Forgotten).
    pub fn open(ring: &KeyRing) -> Scope {
        Scope::install(Mode::Open(ring.clone()))
    }

    /// The subjects a collecting scope has seen so far (empty for other
    /// scopes).
    ///
    /// ```
    /// use eventcore_shred::{Personal, Scope, SubjectId};
    /// let scope = Scope::collect();
    /// serde_json::to_string(&vec![Personal::new(SubjectId::new("a")?, 1), Personal::new(SubjectId::new("b")?, 2)])?;
    /// assert_eq!(scope.subjects().len(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn subjects(&self) -> BTreeSet<SubjectId> {
        FRAMES.with_borrow(|frames| match frames.get(self.depth).map(|f| &f.mode) {
            Some(Mode::Collect(subjects)) => subjects.clone(),
            _ => BTreeSet::new(),
        })
    }

    /// The first field error met in this scope (taken: a second call gives
    /// `None`). serde carries only a message; this is the typed cause
    /// behind it.
    pub fn take_error(&self) -> Option<PersonalError> {
        FRAMES.with_borrow_mut(|frames| frames.get_mut(self.depth).and_then(|f| f.error.take()))
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        // `try_with`: the thread-local may already be gone at thread exit.
        let _ = FRAMES.try_with(|frames| {
            if let Ok(mut frames) = frames.try_borrow_mut() {
                frames.truncate(self.depth);
            }
        });
    }
}

/// What the innermost scope asks of a `Personal` being serialized.
pub(crate) enum WriteAction {
    /// No encryption scope.
    Refuse,
    /// Record the subject, write a placeholder.
    Collected,
    /// Seal with this key and nonce.
    Seal(crate::DataKey, [u8; crate::key::NONCE_BYTES]),
}

pub(crate) fn on_write(subject: &SubjectId) -> Result<WriteAction, PersonalError> {
    FRAMES.with_borrow_mut(|frames| {
        let Some(frame) = frames.last_mut() else {
            return Ok(WriteAction::Refuse);
        };
        match &mut frame.mode {
            Mode::Open(_) => Ok(WriteAction::Refuse),
            Mode::Collect(subjects) => {
                subjects.insert(subject.clone());
                Ok(WriteAction::Collected)
            }
            Mode::Seal { ring, nonces } => match ring.lookup(subject) {
                crate::KeyLookup::Key(key) => Ok(WriteAction::Seal(key.clone(), nonces.next_nonce())),
                crate::KeyLookup::Forgotten => Err(PersonalError::SubjectForgotten {
                    subject: subject.clone(),
                }),
                crate::KeyLookup::Absent => Err(PersonalError::KeyNotInRing {
                    subject: subject.clone(),
                }),
            },
        }
    })
}

/// What the innermost scope answers for a sealed field being read.
pub(crate) enum ReadAction {
    /// No decryption scope.
    Refuse,
    /// The subject is forgotten.
    Forgotten,
    /// The subject's key.
    Key(crate::DataKey),
}

pub(crate) fn on_read(subject: &SubjectId) -> Result<ReadAction, PersonalError> {
    FRAMES.with_borrow(|frames| match frames.last().map(|f| &f.mode) {
        Some(Mode::Open(ring)) => match ring.lookup(subject) {
            crate::KeyLookup::Key(key) => Ok(ReadAction::Key(key.clone())),
            crate::KeyLookup::Forgotten => Ok(ReadAction::Forgotten),
            crate::KeyLookup::Absent => Err(PersonalError::KeyNotInRing {
                subject: subject.clone(),
            }),
        },
        _ => Ok(ReadAction::Refuse),
    })
}

/// Keeps `error` as the innermost scope's typed cause (the first one wins)
/// and hands it back for serde's message.
pub(crate) fn record(error: PersonalError) -> PersonalError {
    FRAMES.with_borrow_mut(|frames| {
        if let Some(frame) = frames.last_mut() {
            frame.error.get_or_insert_with(|| error.clone());
        }
    });
    error
}

/// Marks "inside a personal value" while alive, so that a `Personal`
/// nested in another's value is refused.
pub(crate) struct InsidePersonal(bool);

impl InsidePersonal {
    /// `None` when already inside one (a nested `Personal`).
    pub(crate) fn enter() -> Option<InsidePersonal> {
        if IN_PERSONAL.get() {
            None
        } else {
            IN_PERSONAL.set(true);
            Some(InsidePersonal(true))
        }
    }

    pub(crate) fn active() -> bool {
        IN_PERSONAL.get()
    }
}

impl Drop for InsidePersonal {
    fn drop(&mut self) {
        if self.0 {
            let _ = IN_PERSONAL.try_with(|flag| flag.set(false));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DataKey, Personal};

    fn alice() -> SubjectId {
        SubjectId::new("alice").expect("valid subject")
    }

    #[test]
    fn the_innermost_scope_decides_and_dropping_it_restores_the_outer() {
        let ring = KeyRing::new().with_key(alice(), DataKey::from_bytes(1, [1; 32]));
        let value = Personal::new(alice(), 7u32);
        let outer = Scope::collect();
        {
            let _inner = Scope::seal(&ring, &mut NonceSource::from_seed([0; 32]));
            let sealed = serde_json::to_string(&value).expect("sealed");
            assert!(sealed.contains("$personal"));
        }
        assert!(outer.subjects().is_empty(), "the inner seal scope hid the collector");
        assert_eq!(serde_json::to_string(&value).expect("collected"), "null");
        assert_eq!(outer.subjects(), BTreeSet::from([alice()]));
        drop(outer);
        assert!(serde_json::to_string(&value).is_err(), "no scope left");
    }

    #[test]
    fn a_panic_inside_a_scope_removes_it() {
        let caught = std::panic::catch_unwind(|| {
            let _scope = Scope::collect();
            panic!("boom");
        });
        assert!(caught.is_err());
        assert!(
            serde_json::to_string(&Personal::new(alice(), 1)).is_err(),
            "the collecting scope did not outlive the panic"
        );
    }

    #[test]
    fn an_outer_guard_dropped_first_removes_the_inner_frame_too() {
        let outer = Scope::collect();
        let inner = Scope::collect();
        drop(outer);
        assert!(serde_json::to_string(&Personal::new(alice(), 1)).is_err());
        drop(inner);
        assert!(serde_json::to_string(&Personal::new(alice(), 1)).is_err());
    }
}
