// Shared by the compile-fail cases: an event and a view that are fine.
#[derive(serde::Serialize, serde::Deserialize)]
pub enum AccountEvent {
    Deposited { amount: u64 },
}
impl eventcore::Event for AccountEvent {}

#[derive(Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Account {
    pub balance: u64,
}
impl eventcore::View for Account {
    type Event = AccountEvent;
    const NAME: &'static str = "account";
    fn apply(&mut self, _: &AccountEvent) {}
}

#[derive(Debug, thiserror::Error)]
#[error("refused")]
pub struct Refused;
