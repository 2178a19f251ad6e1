//! The data-lifecycle walkthrough on PostgreSQL, shared by
//! `cargo run --example data-lifecycle` and its test: two customers with
//! savings accounts; one closes her account (a tombstone ends its stream)
//! and asks to be forgotten (her key is deleted); a retention run removes
//! the closed account's events, archiving them first.

use super::{
    customer_stream, customer_subject, savings_stream, CustomerAction, CustomerCommand, CustomerEvent, SavingsAction,
    SavingsCommand,
};
use eventcore::{
    CommandErrorKind, ReadRequest, RemovedRange, RetentionOptions, RetentionPlan, RetentionPolicy, StreamVersion, Time,
};
use eventcore_postgres::PostgresStore;
use eventcore_shred::{
    open_recorded, ring_for_reading, subjects_in_events, DynKeyStore, KeyStore, NonceSource, PersonalData,
    PersonalError, PgKeyStore,
};
use eventcore_store::EventStore;
use eventcore_tokio::Executor;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The customer who closes her account and is forgotten (customer 1, Ann).
pub const FORGOTTEN_CUSTOMER: u32 = 1;
/// The customer who stays (customer 2, Ben).
pub const KEPT_CUSTOMER: u32 = 2;
/// The account that is closed and removed (`savings-1`, Ann's).
pub const CLOSED_ACCOUNT: u32 = 1;
/// Every piece of personal data the story writes: none may be found in
/// the schema in the clear.
pub const PLAINTEXTS: [&str; 5] = [
    "Ann Example",
    "ann@example.com",
    "ann.new@example.com",
    "Ben Sample",
    "ben@example.com",
];

/// A customer's registration, read back through the key store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadBack {
    /// The name, or `None` when forgotten.
    pub name: Option<String>,
    /// The e-mail address, or `None` when forgotten.
    pub email: Option<String>,
    /// The country (not personal: always readable).
    pub country: String,
    /// How many events the customer's stream holds.
    pub events: usize,
}

/// What the walkthrough saw, for the example to print and its test to check.
#[derive(Debug)]
pub struct LifecycleReport {
    /// Ann's registration before she was forgotten.
    pub before_forget: ReadBack,
    /// Ann's registration after.
    pub after_forget: ReadBack,
    /// Ben's registration after Ann was forgotten.
    pub kept: ReadBack,
    /// Whether a command folding Ann's stream after the forget (her
    /// fields decoding as forgotten) committed.
    pub moved_after_forget: bool,
    /// The kind of error a new e-mail address for Ann met after the forget.
    pub new_data_refused: CommandErrorKind,
    /// The error's text.
    pub new_data_refusal: String,
    /// The subject the refusal's typed cause
    /// (`PersonalError::SubjectForgotten`, in its source chain) names.
    pub new_data_refused_subject: Option<String>,
    /// The kind of error a deposit to the closed account met: the domain
    /// refuses it (it folds `Closed`).
    pub deposit_after_close: CommandErrorKind,
    /// What the retention run removed.
    pub removed: Vec<RemovedRange>,
    /// How many events it archived first.
    pub archived: u64,
    /// The closed account, read after the run: how many events are left,
    /// through which version they were removed, and where it was deleted.
    pub closed_after_removal: (usize, StreamVersion, Option<StreamVersion>),
    /// The kind of error met by opening the closed account again after the
    /// run. Its events are gone, so the domain sees an empty stream and
    /// decides to open it; the tombstone refuses the append: a removed
    /// stream's id is never reused.
    pub reopen_after_removal: CommandErrorKind,
    /// Ben's account, read after the run: how many events it holds.
    pub kept_account_events: usize,
}

/// Runs the walkthrough on `store` (migrated, empty): keys in its schema,
/// commands through an executor with personal data enabled.
///
/// # Errors
///
/// Any setup, command or store failure the story does not expect, as text.
pub async fn run(store: &PostgresStore) -> Result<LifecycleReport, Box<dyn std::error::Error + Send + Sync>> {
    let keys = PgKeyStore::new(store);
    keys.migrate().await?;
    let shared_keys: Arc<dyn DynKeyStore> = Arc::new(keys.clone());
    let executor =
        Executor::new(store.clone()).with_codec_context(PersonalData::new(shared_keys, NonceSource::from_os()?));

    let customer = |customer: u32, action: CustomerAction| CustomerCommand { customer, action };
    let register = |n: u32, name: &str, email: &str, country: &str| {
        customer(
            n,
            CustomerAction::Register {
                name: name.into(),
                email: email.into(),
                country: country.into(),
            },
        )
    };
    let change_email = |n: u32, email: &str| customer(n, CustomerAction::ChangeEmail { email: email.into() });
    executor
        .execute(register(FORGOTTEN_CUSTOMER, "Ann Example", "ann@example.com", "NL"))
        .await?;
    executor
        .execute(register(KEPT_CUSTOMER, "Ben Sample", "ben@example.com", "BE"))
        .await?;
    executor
        .execute(change_email(FORGOTTEN_CUSTOMER, "ann.new@example.com"))
        .await?;
    let savings = |account: u32, action: SavingsAction| SavingsCommand { account, action };
    for (account, customer) in [(CLOSED_ACCOUNT, FORGOTTEN_CUSTOMER), (KEPT_CUSTOMER, KEPT_CUSTOMER)] {
        executor
            .execute(savings(account, SavingsAction::Open { customer }))
            .await?;
        executor.execute(savings(account, SavingsAction::Deposit(500))).await?;
    }
    let before_forget = read_customer(store, &keys, FORGOTTEN_CUSTOMER).await?;

    // Ann closes her account: its last event carries the tombstone.
    executor
        .execute(savings(CLOSED_ACCOUNT, SavingsAction::Withdraw(500)))
        .await?;
    executor.execute(savings(CLOSED_ACCOUNT, SavingsAction::Close)).await?;
    let deposit_after_close = match executor
        .execute(savings(CLOSED_ACCOUNT, SavingsAction::Deposit(1)))
        .await
    {
        Ok(_) => return Err("a deposit to a closed account committed".into()),
        Err(error) => error.kind(),
    };

    // Ann asks to be forgotten: her key goes; her events stay.
    keys.forget(&customer_subject(FORGOTTEN_CUSTOMER)).await?;
    let after_forget = read_customer(store, &keys, FORGOTTEN_CUSTOMER).await?;
    let kept = read_customer(store, &keys, KEPT_CUSTOMER).await?;
    let moved = executor
        .execute(customer(
            FORGOTTEN_CUSTOMER,
            CustomerAction::Move { country: "DE".into() },
        ))
        .await?;
    let moved_after_forget = moved.appended.is_some();
    let (new_data_refused, new_data_refusal, new_data_refused_subject) = match executor
        .execute(change_email(FORGOTTEN_CUSTOMER, "ann.again@example.com"))
        .await
    {
        Ok(_) => return Err("new personal data of a forgotten customer committed".into()),
        Err(error) => (error.kind(), causes(&error), forgotten_subject(&error)),
    };

    // The retention job: closed accounts are removed at once (no grace),
    // archived first. It runs as the schema's owner (this connection).
    let plan = RetentionPlan::new([RetentionPolicy::new("savings-").removing_tombstoned(Duration::ZERO)]);
    let report = store
        .apply_retention(&plan, now(), RetentionOptions::default().archived())
        .await?;
    let closed = store.read(&ReadRequest::new([savings_stream(CLOSED_ACCOUNT)])).await?;
    let closed = closed
        .streams
        .into_iter()
        .next()
        .ok_or("no slice for the closed account")?;
    let reopen = savings(
        CLOSED_ACCOUNT,
        SavingsAction::Open {
            customer: KEPT_CUSTOMER,
        },
    );
    let reopen_after_removal = match executor.execute(reopen).await {
        Ok(_) => return Err("a removed account was opened again".into()),
        Err(error) => error.kind(),
    };
    let kept_account = store.read(&ReadRequest::new([savings_stream(KEPT_CUSTOMER)])).await?;

    Ok(LifecycleReport {
        before_forget,
        after_forget,
        kept,
        moved_after_forget,
        new_data_refused,
        new_data_refusal,
        new_data_refused_subject,
        deposit_after_close,
        removed: report.ranges.clone(),
        archived: report.archived,
        closed_after_removal: (closed.events.len(), closed.removed_through, closed.deleted_at),
        reopen_after_removal,
        kept_account_events: kept_account.streams.iter().map(|s| s.events.len()).sum(),
    })
}

/// Every cause of `error`, joined: the refusal of new personal data is an
/// encode error whose cause names the forgotten subject.
fn causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The subject a `PersonalError::SubjectForgotten` in `error`'s source
/// chain names.
fn forgotten_subject(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut next = error.source();
    while let Some(cause) = next {
        if let Some(PersonalError::SubjectForgotten { subject }) = cause.downcast_ref::<PersonalError>() {
            return Some(subject.as_str().to_owned());
        }
        next = cause.source();
    }
    None
}

/// Reads customer `n`'s stream and opens its registration with the keys
/// that exist now.
async fn read_customer(
    store: &PostgresStore,
    keys: &PgKeyStore,
    customer: u32,
) -> Result<ReadBack, Box<dyn std::error::Error + Send + Sync>> {
    let read = store.read(&ReadRequest::new([customer_stream(customer)])).await?;
    let events: Vec<_> = read.streams.into_iter().flat_map(|s| s.events).collect();
    let ring = ring_for_reading(keys, &subjects_in_events(&events)?).await?;
    let mut back = ReadBack {
        name: None,
        email: None,
        country: String::new(),
        events: events.len(),
    };
    for event in &events {
        match open_recorded::<CustomerEvent>(event, &ring)? {
            CustomerEvent::Registered { name, email, country } => {
                back.name = name.into_known();
                back.email = email.into_known();
                back.country = country;
            }
            CustomerEvent::EmailChanged { email } => back.email = email.into_known(),
            CustomerEvent::Moved { country } => back.country = country,
        }
    }
    Ok(back)
}

fn now() -> Time {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    Time::from_unix_nanos(nanos)
}
