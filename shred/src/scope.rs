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
    Seal {
        ring: KeyRing,
        nonces: Box<NonceSource>,
    },
    Open(KeyRing),
    Execute {
        ring: KeyRing,
        nonces: Box<NonceSource>,
        missing: BTreeSet<SubjectId>,
        opened: BTreeSet<SubjectId>,
        sealed: BTreeSet<SubjectId>,
    },
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

    /// A scope for a command's execution, where reading and writing happen
    /// in one synchronous call (a driver's `on_read`, where the command
    /// decides): sealed fields read are opened with `ring` (fields of
    /// subjects it knows as forgotten read as
    /// [`Personal::Forgotten`](crate::Personal::Forgotten)); `Personal`
    /// values written are sealed with `ring`'s keys. A subject written whose
    /// key the ring does not hold yet is recorded ([`Scope::missing_keys`])
    /// and written as a *placeholder* that holds no plaintext
    /// (`{"$personal":{"subject":"…","pending":true}}`), which never decodes
    /// as a value: the driver fetches or creates the missing keys and
    /// encodes again with the enlarged ring before anything is stored. A
    /// forgotten subject written is refused with
    /// [`PersonalError::SubjectForgotten`].
    ///
    /// ```
    /// use eventcore_shred::{placeholders_in_payload, DataKey, KeyRing, NonceSource, Personal, Scope, SubjectId};
    /// let ann = SubjectId::new("ann")?;
    /// let email = Personal::new(ann.clone(), "ann@example.com".to_owned());
    /// let mut nonces = NonceSource::from_seed([3; 32]);
    ///
    /// // First pass: no key yet. A placeholder, and the subject to fetch.
    /// let scope = Scope::execute(&KeyRing::new(), &mut nonces);
    /// let draft = serde_json::to_string(&email)?;
    /// assert_eq!(draft, r#"{"$personal":{"subject":"ann","pending":true}}"#);
    /// assert_eq!(scope.missing_keys(), [ann.clone()].into());
    /// drop(scope);
    ///
    /// // Second pass, with the key: sealed.
    /// let ring = KeyRing::new().with_key(ann.clone(), DataKey::from_bytes(1, [1; 32]));
    /// let scope = Scope::execute(&ring, &mut nonces);
    /// let sealed = serde_json::to_string(&email)?;
    /// assert!(scope.missing_keys().is_empty() && !sealed.contains("ann@example.com"));
    /// let back: Personal<String> = serde_json::from_str(&sealed)?;
    /// assert_eq!(back, email);
    /// assert_eq!(scope.subjects_opened(), [ann].into());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn execute(ring: &KeyRing, nonces: &mut NonceSource) -> Scope {
        Scope::install(Mode::Execute {
            ring: ring.clone(),
            nonces: Box::new(nonces.fork()),
            missing: BTreeSet::new(),
            opened: BTreeSet::new(),
            sealed: BTreeSet::new(),
        })
    }

    /// The subjects an execute scope wrote placeholders for, because its
    /// ring held no key for them (empty for other scopes): the keys to get
    /// or create before encoding again.
    pub fn missing_keys(&self) -> BTreeSet<SubjectId> {
        FRAMES.with_borrow(|frames| match frames.get(self.depth).map(|f| &f.mode) {
            Some(Mode::Execute { missing, .. }) => missing.clone(),
            _ => BTreeSet::new(),
        })
    }

    /// The subjects whose sealed fields an execute scope opened as
    /// [`Personal::Known`](crate::Personal::Known) (empty for other
    /// scopes): whatever was built from what was read holds their
    /// decrypted data, and must not outlive the execution (a driver does
    /// not cache it).
    pub fn subjects_opened(&self) -> BTreeSet<SubjectId> {
        FRAMES.with_borrow(|frames| match frames.get(self.depth).map(|f| &f.mode) {
            Some(Mode::Execute { opened, .. }) => opened.clone(),
            _ => BTreeSet::new(),
        })
    }

    /// The subjects whose `Personal` values an execute scope sealed (empty
    /// for other scopes): what was encoded came from plaintext the command
    /// held, which the driver does not cache either.
    pub fn subjects_sealed(&self) -> BTreeSet<SubjectId> {
        FRAMES.with_borrow(|frames| match frames.get(self.depth).map(|f| &f.mode) {
            Some(Mode::Execute { sealed, .. }) => sealed.clone(),
            _ => BTreeSet::new(),
        })
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
    /// The key is not in the ring yet (recorded): write a placeholder.
    Pending,
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
            Mode::Execute {
                ring,
                nonces,
                missing,
                sealed,
                ..
            } => match ring.lookup(subject) {
                crate::KeyLookup::Key(key) => {
                    sealed.insert(subject.clone());
                    Ok(WriteAction::Seal(key.clone(), nonces.next_nonce()))
                }
                crate::KeyLookup::Forgotten => Err(PersonalError::SubjectForgotten {
                    subject: subject.clone(),
                }),
                crate::KeyLookup::Absent => {
                    missing.insert(subject.clone());
                    Ok(WriteAction::Pending)
                }
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
    FRAMES.with_borrow(|frames| {
        let ring = match frames.last().map(|f| &f.mode) {
            Some(Mode::Open(ring) | Mode::Execute { ring, .. }) => ring,
            _ => return Ok(ReadAction::Refuse),
        };
        match ring.lookup(subject) {
            crate::KeyLookup::Key(key) => Ok(ReadAction::Key(key.clone())),
            crate::KeyLookup::Forgotten => Ok(ReadAction::Forgotten),
            crate::KeyLookup::Absent => Err(PersonalError::KeyNotInRing {
                subject: subject.clone(),
            }),
        }
    })
}

/// Notes that a field of `subject` was opened as a known value (an
/// execute scope remembers it; other scopes do not care).
pub(crate) fn note_opened(subject: &SubjectId) {
    FRAMES.with_borrow_mut(|frames| {
        if let Some(Frame {
            mode: Mode::Execute { opened, .. },
            ..
        }) = frames.last_mut()
        {
            opened.insert(subject.clone());
        }
    });
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

    fn nonces() -> NonceSource {
        NonceSource::from_seed([0; 32])
    }

    #[test]
    fn an_execute_scope_writes_a_placeholder_for_a_subject_without_a_key_and_names_it() {
        let scope = Scope::execute(&KeyRing::new(), &mut nonces());
        let draft = serde_json::to_string(&vec![Personal::new(alice(), "secret-value".to_owned())]).expect("drafted");
        assert_eq!(draft, r#"[{"$personal":{"subject":"alice","pending":true}}]"#);
        assert!(!draft.contains("secret-value"));
        assert_eq!(scope.missing_keys(), BTreeSet::from([alice()]));
        assert_eq!(scope.take_error(), None);
    }

    #[test]
    fn a_placeholder_never_decodes_as_a_value_in_any_scope() {
        let draft = r#"{"$personal":{"subject":"alice","pending":true}}"#;
        let ring = KeyRing::new().with_key(alice(), DataKey::from_bytes(1, [1; 32]));
        for execute in [false, true] {
            let scope = if execute {
                Scope::execute(&ring, &mut nonces())
            } else {
                Scope::open(&ring)
            };
            assert!(serde_json::from_str::<Personal<String>>(draft).is_err());
            assert_eq!(scope.take_error(), Some(PersonalError::Pending { subject: alice() }));
        }
        assert!(
            serde_json::from_str::<Personal<String>>(draft).is_err(),
            "nor without a scope"
        );
    }

    #[test]
    fn an_execute_scope_seals_with_the_keys_it_holds_and_opens_what_it_reads() {
        let ring = KeyRing::new().with_key(alice(), DataKey::from_bytes(1, [1; 32]));
        let scope = Scope::execute(&ring, &mut nonces());
        let sealed = serde_json::to_string(&Personal::new(alice(), "secret-value".to_owned())).expect("sealed");
        assert!(
            sealed.contains(r#""key":1"#) && !sealed.contains("secret-value"),
            "{sealed}"
        );
        assert!(scope.missing_keys().is_empty());
        assert_eq!(scope.subjects_sealed(), BTreeSet::from([alice()]));
        assert!(scope.subjects_opened().is_empty(), "nothing read yet");
        let back: Personal<String> = serde_json::from_str(&sealed).expect("opens");
        assert_eq!(back.known().map(String::as_str), Some("secret-value"));
        assert_eq!(scope.subjects_opened(), BTreeSet::from([alice()]));
    }

    #[test]
    fn an_execute_scope_reads_a_forgotten_subject_as_forgotten_and_refuses_to_write_it() {
        let sealed = {
            let ring = KeyRing::new().with_key(alice(), DataKey::from_bytes(1, [1; 32]));
            let _scope = Scope::seal(&ring, &mut nonces());
            serde_json::to_string(&Personal::new(alice(), 5)).expect("sealed")
        };
        let forgotten = KeyRing::new().with_forgotten(alice());
        let scope = Scope::execute(&forgotten, &mut nonces());
        let back: Personal<i32> = serde_json::from_str(&sealed).expect("a value, not an error");
        assert!(back.is_forgotten());
        assert!(scope.subjects_opened().is_empty(), "nothing decrypted");
        assert!(serde_json::to_string(&Personal::new(alice(), 6)).is_err());
        assert_eq!(
            scope.take_error(),
            Some(PersonalError::SubjectForgotten { subject: alice() })
        );
        assert!(
            scope.missing_keys().is_empty(),
            "a forgotten subject is not a key to fetch"
        );
    }
}
