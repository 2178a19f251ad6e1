use eventcore::{Command, StreamId};
mod common;
use common::*;

#[derive(Command)]
struct Deposit {
    #[stream(Account)]
    account: StreamId,
}

fn main() {}
