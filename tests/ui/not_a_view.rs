use eventcore::{Command, Decide, Emit, StreamId};
mod common;
use common::*;

struct Ledger;

#[derive(Command)]
struct Deposit {
    #[stream(Ledger)]
    account: StreamId,
}

impl Decide for Deposit {
    type Error = Refused;
    fn decide(&self, _: &DepositState<'_>, _: &mut Emit<'_>) -> Result<(), Refused> {
        Ok(())
    }
}

fn main() {}
